"""L2, the RobustBench protocol and its leaderboard entry, and common corruptions, on a real CIFAR-10 model: the
naturally trained ResNet-18 shipped in pyautoattack, attacked on the shared CIFAR-10 subset (a few images each, so
that a CPU runs them in seconds)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import rdist
from rdist.attacks import base, create_attack
from rdist.attacks.base import distances
from rdist.attacks.protocol import PROTOCOLS
from rdist.data import corruptions
from rdist.errors import RdistError
from rdist.report.config import EvalConfig
from tests.helpers import CIFAR_SUBSET, requires_cifar_subset

pytestmark = requires_cifar_subset()
DATA = f"npz:{CIFAR_SUBSET}"
FACTS = json.loads((Path(__file__).parents[1] / "export" / "robustbench_model_info.json").read_text())


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory, cli) -> Path:
    checkpoint = Path(pytest.importorskip("pyautoattack").__file__).parent / "examples" / "model_test.pt"
    if not checkpoint.is_file():
        pytest.skip(f"pyautoattack ships no {checkpoint}")
    artifact = tmp_path_factory.mktemp("resnet18") / "natural-resnet18.safetensors"
    cli("teacher", "import", checkpoint, "--arch", "resnet18", "--dataset", "cifar10", "-o", artifact)
    return artifact


@pytest.fixture(scope="module")
def subset():
    with np.load(CIFAR_SUBSET) as arrays:
        return torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])


@pytest.mark.e2e
def test_l2_pgd20_accuracy_falls_with_eps_and_every_example_lies_in_the_l2_ball(resnet18, subset):
    model = rdist.load_model(str(resnet18))
    x, y = subset[0][:4].float() / 255, subset[1][:4]
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    accuracy = []
    for eps in (0.05, 0.15, 0.5):
        x_adv = create_attack("pgd20", model, eps, norm="L2")(x, y)  # checked in the ball by the attack itself
        assert distances(x_adv, x, "L2").max() <= eps + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
        assert distances(x_adv, x, "L2").max() > 0.9 * eps  # the attack used its budget
        with torch.no_grad():
            accuracy.append(((model(x_adv).argmax(1) == y) & clean).float().mean().item())
    assert clean.all() and accuracy == sorted(accuracy, reverse=True) and accuracy[0] > accuracy[-1] == 0.0


L2_EPS = (0.05, 0.5)


@pytest.mark.e2e
def test_attack_in_l2_accuracy_falls_with_eps_and_every_example_lies_in_the_l2_ball(resnet18, cli, monkeypatch):
    """`rdist attack --norm L2 --attacks clean,pgd20,aa:apgd-ce` at eps 0.05 and 0.5 on the subset's first image.

    AutoAttack is its APGD-CE component only: at eps 0.05 the image survives it, and full AutoAttack would then run
    APGD-T, FAB-T (9 targets x 100 steps each) and 5000 Square queries of a ResNet-18 on it, minutes on a CPU (full
    AutoAttack in L2 runs in the protocol test below, at eps 0.5). One image, because a custom AutoAttack keeps
    APGD-CE's 5 restarts on every image that survives them: about 30 s of one core per surviving image. Every
    adversarial batch the attacks return is measured in float64 on its way through rdist's ball check."""
    measured = []  # (attack, norm, eps, largest L2 distance, lowest pixel, highest pixel) per batch
    check = base.check_adversarial

    def measure(x_adv, x, eps, attack="attack", norm="Linf"):
        delta = (x_adv.double() - x.double()).flatten(1)
        measured.append((attack, norm, eps, delta.norm(dim=1).max().item(), x_adv.min().item(), x_adv.max().item()))
        return check(x_adv, x, eps, attack, norm)

    monkeypatch.setattr(base, "check_adversarial", measure)
    accuracy = {}
    for eps in L2_EPS:
        report = json.loads(cli("attack", resnet18, "--norm", "L2", "--attacks", "clean,pgd20,aa:apgd-ce", "--eps",
                                str(eps), "--data", DATA, "--n", "1", "--json", "--device", "cpu").stdout)
        assert (report["norm"], report["eps"], report["n"]) == ("L2", eps, 1)
        accuracy[eps] = report["accuracy"]
        for attack in ("pgd20", "aa:apgd-ce"):
            (batch,) = [m for m in measured if m[0] == attack and m[2] == eps]  # n=1 is one batch
            assert batch[1] == "L2" and batch[3] <= eps + 1e-6 and 0 <= batch[4] and batch[5] <= 1, batch
        pgd_batch = next(m for m in measured if m[0] == "pgd20" and m[2] == eps)
        assert pgd_batch[3] > 0.9 * eps  # the attack used its budget: the ball check saw real perturbations
    assert all(a["clean"] == 1.0 for a in accuracy.values())
    for attack in ("pgd20", "aa:apgd-ce"):
        curve = [accuracy[eps][attack] for eps in L2_EPS]
        assert curve == sorted(curve, reverse=True) and curve[-1] < curve[0], (attack, curve, accuracy)
        assert curve[-1] == 0.0


def test_the_protocol_fixes_attacks_images_precision_and_the_boards_eps():
    config = EvalConfig(protocol="robustbench")
    assert (config.attacks, config.n, config.precision, config.eps) == (("clean", "aa"), 10_000, "fp32", 8 / 255)
    assert EvalConfig(protocol="robustbench", norm="L2").eps == 0.5
    for fields, message in (({"attacks": "clean,pgd20"}, "fixes attacks (clean,aa)"), ({"n": 500}, "fixes n (10000)"),
                            ({"precision": "bf16"}, "fixes precision (fp32)"), ({"protocol": "papers"}, "unknown")):
        with pytest.raises(RdistError, match=re.escape(message)):
            EvalConfig(**{"protocol": "robustbench", **fields})
    with pytest.raises(RdistError, match="evaluates cifar10 in Linf at eps 8/255, not 4/255"):
        EvalConfig(protocol="robustbench", eps="4/255").check_protocol("cifar10")
    with pytest.raises(RdistError, match="no L2 board for cifar100"):
        EvalConfig(protocol="robustbench", norm="L2").check_protocol("cifar100")
    with pytest.raises(RdistError, match="evaluates cifar10 and cifar100 only, not 'digits'"):
        EvalConfig(protocol="robustbench").check_protocol("digits")


@pytest.mark.e2e
def test_aa_in_l2_by_the_protocol_then_its_robustbench_entry(resnet18, tmp_path, monkeypatch, cli):
    """`rdist attack --protocol robustbench --norm L2 --record` (AutoAttack standard, L2, eps 0.5) with the protocol's
    10,000 CIFAR-10 test images shrunk to the subset's first 2, then `rdist export --format robustbench`, checked
    against the fields, types and order of RobustBench's own model_info files and its issue template."""
    model = tmp_path / "resnet18.safetensors"
    model.write_bytes(resnet18.read_bytes())
    real = PROTOCOLS["robustbench"]
    monkeypatch.setitem(PROTOCOLS, "robustbench", dataclasses.replace(
        real, n=2, boards={**real.boards, DATA: real.boards["cifar10"]}, datasets={**real.datasets, DATA: "cifar10"}))
    result = cli("attack", model, "--protocol", "robustbench", "--norm", "L2", "--data", DATA, "--record", "--json",
                 "--device", "cpu")
    report = json.loads(result.stdout)
    assert (report["protocol"], report["norm"], report["eps"], report["n"]) == ("robustbench", "L2", 0.5, 2)
    assert report["attacks"] == ["clean", "aa"] and report["accuracy"] == {"clean": 1.0, "aa": 0.0}
    assert report["flags"] == []

    out, issue = tmp_path / "Natural2026Resnet18.json", tmp_path / "issue.md"
    cli("export", model, "--format", "robustbench", "--threat-model", "L2", "-o", out, "--issue", issue,
        "--title", "A naturally trained ResNet-18", "--link", "https://example.org/paper")
    info = json.loads(out.read_text())
    assert info == {"link": "https://example.org/paper", "name": "A naturally trained ResNet-18", "authors": "",
                    "additional_data": False, "number_forward_passes": 1, "dataset": "cifar10", "venue": "N/A",
                    "architecture": "ResNet-18", "eps": "0.5", "clean_acc": "100.0", "reported": "0.0",
                    "autoattack_acc": "0.0", "footnote": None, "unreliable": False}
    check_model_info(info, board="L2")
    # RobustBench's own record of its models: the same fields and value types.
    from rdist.teachers.robustbench_import import import_robustbench

    import_robustbench()
    from robustbench.utils import ModelInfo

    known = {f.name for f in dataclasses.fields(ModelInfo)}
    ModelInfo(**{k: v for k, v in info.items() if k in known})
    assert set(info) - known == {"unreliable"}  # in 147 of RobustBench's files, not in its dataclass
    text = issue.read_text()
    for heading in FACTS["issue_template"]["headings"]:
        if heading != "## Model 2":
            assert heading + "\n" in text
    for field in FACTS["issue_template"]["fields"]:
        assert re.search(rf"- \*\*{re.escape(field)}\*\*: \S", text), field
    assert "- **Threat Model**: L2" in text and "- **Robust accuracy**: 0.0%" in text
    assert "- **Paper authors**: (to fill in, or pass --authors to rdist export)" in text


def check_model_info(info: dict, board: str) -> None:
    """`info` holds only fields RobustBench's files hold, each of a type they give it, the fields every file has,
    in their order, and numbers written as they write them."""
    fields = FACTS["fields"]
    assert set(info) <= set(fields)
    for key, value in info.items():
        kind = {type(None): "null", str: "string", bool: "boolean", int: "integer", float: "number"}[type(value)]
        assert kind in fields[key]["types"], (key, value)
    everywhere = [k for k, v in fields.items() if v["files"] == FACTS["files"]]
    assert [k for k in info if k in everywhere] == everywhere
    example = next(v for k, v in FACTS["examples"].items() if k.split("/")[1] == board)
    assert [k for k in example if k in info] == [k for k in info if k in example]  # their order
    for key in ("clean_acc", "reported", "autoattack_acc", "corruptions_acc"):
        if key in info:
            assert re.fullmatch(r"\d{1,3}\.\d{1,2}", info[key])
    assert info["eps"] == example["eps"]


def test_an_export_without_the_protocols_report_is_refused(resnet18, tmp_path, cli):
    cli.fails(["export", resnet18, "--format", "robustbench", "-o", tmp_path / "x.json"],
              "records no RobustBench Linf evaluation", "--protocol robustbench --record",
              unchanged=[tmp_path, resnet18])
    assert not (tmp_path / "x.json").exists()


def build_archive(path: Path, labels: np.ndarray, images: np.ndarray) -> None:
    """A CIFAR-10-C archive of the official layout (CIFAR-10-C/labels.npy and one <corruption>.npy per corruption,
    N x 32 x 32 x 3 uint8, severity 1 first) over `images` (NHWC) and `labels`: Gaussian noise growing with the
    severity, a different draw per corruption."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w") as tar:
        arrays = {"labels.npy": np.tile(labels, 5)}
        for name in corruptions.CORRUPTIONS:
            noisy = [np.clip(images + rng.normal(0, 4 * s, images.shape), 0, 255).astype(np.uint8) for s in range(1, 6)]
            arrays[f"{name}.npy"] = np.concatenate(noisy)
        arrays["speckle_noise.npy"] = arrays["gaussian_noise.npy"]  # the archives hold corruptions RobustBench skips
        for file, array in arrays.items():
            data = io.BytesIO()
            np.save(data, array)
            member = tarfile.TarInfo(f"CIFAR-10-C/{file}")
            member.size = data.tell()
            data.seek(0)
            tar.addfile(member, data)


@pytest.mark.e2e
def test_corruptions_from_the_official_archive_layout(resnet18, subset, tmp_path, monkeypatch, cli):
    x, y = subset
    monkeypatch.setenv("RDIST_CACHE", str(tmp_path / "cache"))
    home = tmp_path / "cache" / "data" / "cifar10-c"
    home.mkdir(parents=True)
    build_archive(home / "CIFAR-10-C.tar", y[:6].numpy(), x[:6].permute(0, 2, 3, 1).numpy())
    result = cli("attack", resnet18, "--attacks", "corruptions", "--data", DATA, "--n", "4", "--json", "--device",
                 "cpu")
    report = json.loads(result.stdout)
    assert report["attacks"] == ["clean", "corruptions"] and not (home / "CIFAR-10-C.tar").exists()  # extracted once
    assert sorted(p.name for p in (home / "CIFAR-10-C").iterdir()) == sorted(corruptions.FILES)
    model, images = rdist.load_model(str(resnet18)), corruptions.corrupted_images("cifar10")
    expected = {}
    for name in corruptions.CORRUPTIONS:
        expected[name] = []
        for severity in range(1, 6):
            batch = images.images(name, severity, slice(0, 4)).float() / 255
            with torch.no_grad():
                expected[name].append((model(batch).argmax(1) == y[:4]).float().mean().item())
    assert report["corruptions"].keys() == expected.keys()
    for name, values in expected.items():
        assert report["corruptions"][name] == pytest.approx(values), name
    assert report["accuracy"]["corruptions"] == pytest.approx(np.mean(list(expected.values())))
    assert report["worst_case"] == report["accuracy"]["clean"]  # corruptions stay out of the worst case
    assert np.mean([v[4] for v in expected.values()]) < np.mean([v[0] for v in expected.values()])
    # more images than the archive holds per severity: refused, naming how many it has
    cli.fails(["attack", resnet18, "--attacks", "corruptions", "--data", DATA, "--n", "7", "--quiet"],
              "holds 6 images per severity, fewer than the 7")
    # labels that are not those of the test images: other pictures, refused
    np.save(home / "CIFAR-10-C" / "labels.npy", np.tile((y[:6].numpy() + 1) % 10, 5))
    cli.fails(["attack", resnet18, "--attacks", "corruptions", "--data", DATA, "--n", "4", "--quiet"],
              "the labels of the first 4 test images differ from CIFAR-10-C's")


def test_corruptions_offline_fail_in_one_line_naming_the_files(resnet18, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("RDIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(corruptions.SETS, "cifar10", dataclasses.replace(corruptions.SETS["cifar10"],
                                                                         url=(tmp_path / "nowhere.tar").as_uri()))
    cli.fails(["attack", resnet18, "--attacks", "corruptions", "--data", DATA, "--n", "2", "--quiet"],
              "could not download CIFAR-10-C", "download CIFAR-10-C.tar (2.9 GB) elsewhere",
              str(tmp_path / "cache" / "data" / "cifar10-c" / "CIFAR-10-C.tar"), "labels.npy", "shot_noise.npy",
              "elastic_transform.npy", unchanged=tmp_path)
    assert not (tmp_path / "cache" / "data" / "cifar10-c" / "CIFAR-10-C").exists()
