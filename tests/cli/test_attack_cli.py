"""`rdist attack` and `rdist teacher import` as a user runs them: reports, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rdist
from rdist.artifact import read_metadata
from tests.helpers import CIFAR_SUBSET, requires_cifar_subset


def recording(model: Path, tmp_path: Path, *args) -> list:
    """`rdist attack MODEL ARGS --record --out FILE --quiet`, the command each refusal below runs: refused, it must
    leave the model as it was and write no report (`cli.fails(..., unchanged=[model, tmp_path])`)."""
    return ["attack", model, *args, "--record", "--out", tmp_path / "report.json", "--quiet"]


@pytest.fixture(scope="module")
def pyautoattack_resnet18() -> Path:
    examples = Path(pytest.importorskip("pyautoattack").__file__).parent / "examples" / "model_test.pt"
    if not examples.is_file():
        pytest.skip(f"pyautoattack ships no {examples}")
    return examples


@pytest.mark.e2e
def test_attack_reports_json_and_records_only_when_asked(cli, digits_artifact, tmp_path):
    artifact = tmp_path / "model.safetensors"
    artifact.write_bytes(digits_artifact.read_bytes())
    out = tmp_path / "report.json"
    result = cli("attack", artifact, "--attacks", "clean,fgsm,pgd20", "--eps", "32/255", "--n", "100",
                 "--json", "--out", out)
    report = json.loads(result.output)
    assert report["n"] == 100 and report["dataset"] == "digits" and report["attacks"] == ["clean", "fgsm", "pgd20"]
    assert report["accuracy"]["pgd20"] <= report["accuracy"]["clean"]
    assert json.loads(out.read_text())["accuracy"] == report["accuracy"]
    assert not read_metadata(artifact).get("results"), "results are written back only with --record"
    recorded = cli("attack", artifact, "--attacks", "clean,pgd20", "--eps", "0.125", "--n", "50", "--record", "--quiet")
    assert "worst case" in recorded.output
    (stored,) = read_metadata(artifact)["results"].values()
    assert stored["n"] == 50 and stored["attacks"] == ["clean", "pgd20"]


def test_attack_list_shows_attacks_and_suites(cli):
    result = cli("attack", "--list")
    assert "pgd20-trades" in result.output and "autoattack" in result.output


@pytest.mark.e2e
@requires_cifar_subset()
def test_real_natural_resnet18_is_accurate_and_not_robust(cli, pyautoattack_resnet18, tmp_path):
    """The naturally trained ResNet-18 shipped in pyautoattack, imported and attacked on real CIFAR-10 images."""
    artifact = tmp_path / "natural-resnet18.safetensors"
    cli("teacher", "import", pyautoattack_resnet18, "--arch", "resnet18", "--dataset", "cifar10", "-o", artifact)
    # Clean accuracy on 200 images (one forward each); PGD-20 (21 forward-backward passes of a ResNet-18 an
    # image, and as many again for the attack-failure checks: most of this test's time on a CPU) on the first 16
    # of them: every one falls.
    clean = cli("attack", artifact, "--attacks", "clean", "--data", f"npz:{CIFAR_SUBSET}", "--n", "200", "--json",
                "--device", "cpu")
    assert json.loads(clean.output)["accuracy"]["clean"] > 0.90
    result = cli("attack", artifact, "--attacks", "clean,pgd20", "--data", f"npz:{CIFAR_SUBSET}", "--n", "16",
                 "--json", "--device", "cpu")
    accuracy = json.loads(result.output)["accuracy"]
    assert accuracy["clean"] > 0.80
    assert accuracy["pgd20"] == 0.0


# --- bad input: a clear one-line error, exit code != 0, nothing written -----------------------------------


def test_missing_model_file(cli, tmp_path):
    cli.fails(recording(tmp_path / "nope.safetensors", tmp_path), "not found",
              unchanged=[tmp_path / "nope.safetensors", tmp_path])


def test_a_file_that_is_not_safetensors(cli, tmp_path):
    bogus = tmp_path / "model.safetensors"
    bogus.write_text("this is not a model")
    cli.fails(recording(bogus, tmp_path), "not a readable safetensors file", unchanged=[bogus, tmp_path])


def test_a_truncated_safetensors_file(cli, digits_artifact, tmp_path):
    truncated = tmp_path / "truncated.safetensors"
    data = digits_artifact.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    cli.fails(recording(truncated, tmp_path), "truncated", unchanged=[truncated, tmp_path])


def _rewrite_metadata(source: Path, target: Path, **changes) -> Path:
    from safetensors.torch import load_file, save_file

    meta = {**read_metadata(source), **changes}
    save_file(load_file(str(source)), str(target), metadata={"rdist": json.dumps(meta)})
    return target


def test_unknown_format_version(cli, digits_artifact, tmp_path):
    future = _rewrite_metadata(digits_artifact, tmp_path / "future.safetensors", format_version=99)
    cli.fails(recording(future, tmp_path), "format version 99", unchanged=[future, tmp_path])


def test_unknown_architecture_suggests_close_names(cli, digits_artifact, tmp_path):
    arch = {**read_metadata(digits_artifact)["arch"], "name": "smallcn"}
    odd = _rewrite_metadata(digits_artifact, tmp_path / "odd.safetensors", arch=arch)
    cli.fails(recording(odd, tmp_path), "unknown architecture 'smallcn'", "smallcnn", unchanged=[odd, tmp_path])


def test_weights_that_do_not_fit_name_the_keys(cli, digits_artifact, tmp_path):
    arch = {**read_metadata(digits_artifact)["arch"], "name": "tinycnn"}
    wrong = _rewrite_metadata(digits_artifact, tmp_path / "wrong.safetensors", arch=arch)
    cli.fails(recording(wrong, tmp_path), "do not fit architecture tinycnn", "wrong shape", unchanged=[wrong, tmp_path])


def test_eps_given_in_pixel_levels(cli, digits_artifact, tmp_path):
    cli.fails(recording(digits_artifact, tmp_path, "--eps", "8"), "did you mean 8/255",
              unchanged=[digits_artifact, tmp_path])


def test_dataset_with_another_class_count(cli, tmp_path):
    model = rdist.create_model("tinycnn", num_classes=5, in_channels=1)
    path = rdist.save_model(model, tmp_path / "five.safetensors", dataset="digits", input_shape=[1, 8, 8])
    cli.fails(recording(path, tmp_path, "--data", "digits"), "5 classes", "10", unchanged=[path, tmp_path])


def test_unknown_attack(cli, digits_artifact, tmp_path):
    cli.fails(recording(digits_artifact, tmp_path, "--attacks", "clean,pgd21"), "unknown attack 'pgd21'", "pgd20",
              unchanged=[digits_artifact, tmp_path])


@pytest.mark.parametrize("n", ["0", "-5"])
def test_non_positive_n(cli, digits_artifact, n, tmp_path):
    cli.fails(recording(digits_artifact, tmp_path, "--n", n), "--n must be a positive",
              unchanged=[digits_artifact, tmp_path])


@pytest.mark.parametrize("args, fragments", [
    (("--batch-size", "lots"), ("--batch-size must be a positive integer or auto, got 'lots'",)),
    (("--batch-size", "0"), ("--batch-size must be positive",)),
    (("--precision", "fp16"), ("--precision must be one of fp32, bf16, got 'fp16'",)),
    (("--precision", "bf16"), ("--record stores the fp32 protocol's numbers only", "drop --precision bf16")),
])
def test_bad_batch_size_and_precision(cli, digits_artifact, tmp_path, args, fragments):
    cli.fails(recording(digits_artifact, tmp_path, *args), *fragments, unchanged=[digits_artifact, tmp_path])


def test_bf16_and_auto_batch_report_what_they_ran(cli, digits_artifact):
    result = cli("attack", digits_artifact, "--attacks", "clean,pgd20", "--eps", "32/255", "--n", "40",
                 "--precision", "bf16", "--batch-size", "auto", "--json")
    report = json.loads(result.output)
    assert report["precision"] == "bf16" and report["batch_size"] == 40  # auto on the CPU: min(256, n)
    assert 0 <= report["accuracy"]["pgd20"] <= report["accuracy"]["clean"] <= 1


@pytest.mark.parametrize("device, fragment", [("bogus", "cannot read device 'bogus'"), ("cuda:0", "CUDA")])
def test_unusable_device(cli, digits_artifact, tmp_path, device, fragment):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    cli.fails(recording(digits_artifact, tmp_path, "--device", device), fragment, unchanged=[digits_artifact, tmp_path])


def test_no_model_and_no_list(cli):
    cli.fails(["attack", "--quiet"], "give the MODEL", "--list")


def test_recording_into_a_zoo_download_is_refused(cli, tmp_path):
    cli.fails(["attack", "zoo:any-student", "--record", "--quiet"], "sha256")


def test_import_with_unreadable_normalisation(cli, tmp_path):
    checkpoint = tmp_path / "tiny.pt"
    torch.save(rdist.create_model("tinycnn", in_channels=1).state_dict(), checkpoint)
    out = tmp_path / "o.safetensors"
    cli.fails(["teacher", "import", checkpoint, "--arch", "tinycnn", "--dataset", "digits",
               "--mean", "abc", "--std", "0.3", "-o", out], "--mean takes comma-separated numbers")
    assert not out.exists()


def test_import_unknown_architecture_writes_nothing(cli, pyautoattack_resnet18, tmp_path):
    out = tmp_path / "out.safetensors"
    cli.fails(["teacher", "import", pyautoattack_resnet18, "--arch", "resnet19", "--dataset", "cifar10", "-o", out],
              "resnet18")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_import_into_the_wrong_architecture_names_keys(cli, pyautoattack_resnet18, tmp_path):
    out = tmp_path / "out.safetensors"
    cli.fails(["teacher", "import", pyautoattack_resnet18, "--arch", "preactresnet18",
               "--dataset", "cifar10", "-o", out], "do not fit architecture preactresnet18")
    assert not out.exists()


def test_import_strips_wrapper_prefixes_and_nested_state_dicts(cli, tmp_path):
    model = rdist.create_model("tinycnn", in_channels=1)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}
    checkpoint = tmp_path / "wrapped.pt"
    torch.save(wrapped, checkpoint)
    out = tmp_path / "out.safetensors"
    cli("teacher", "import", checkpoint, "--arch", "tinycnn", "--dataset", "digits", "-o", out)
    loaded = rdist.load_model(out)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_import_refuses_pickled_code(cli, tmp_path):
    from fractions import Fraction

    checkpoint = tmp_path / "pickled.pt"
    torch.save({"weights": Fraction(1, 3)}, checkpoint)  # any object outside weights-only's allow-list
    cli.fails(["teacher", "import", checkpoint, "--arch", "tinycnn", "--dataset", "digits", "-o",
               tmp_path / "o.safetensors"], "weights-only")
