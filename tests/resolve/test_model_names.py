"""Every command and option that takes a model takes every kind of name, and means the same model by it:
`rdist attack NAME`, `rdist compare NAME`, `rdist export NAME`, `--surrogate NAME`, `--teacher NAME`,
`--natural-teacher NAME`, `--companion ROLE=NAME`, `rdist zoo push NAME`, `--initial-weights NAME` and
`rdist.load_model(NAME)`, for a file, zoo:NAME, a RobustBench name,
hf-hub:ORG/REPO and hf://ORG/REPO[@REV][/FILE], all offline (a pre-filled RobustBench cache, the Hub stand-in on
127.0.0.1)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import typer.main
import yaml

import rdist
from rdist.artifact import load_artifact
from rdist.artifact import read_metadata, record_results
from rdist.cli.app import app
from rdist.cli.common import MODEL_HELP
from rdist.data import load_dataset
from rdist.resolve import model_kind
from rdist.files import sha256_file
from rdist.teachers.robustbench import artifact_path, pull_teacher
from tests.helpers import CIFAR_SUBSET, requires_cifar_subset

pytestmark = requires_cifar_subset()
DATA = f"npz:{CIFAR_SUBSET}"
N = 12

REPO = "rdist-test/tiny-wrn"
ZOO_NAME = "tiny-wrn"


@pytest.fixture
def names(tiny_teacher, hub, tmp_path, monkeypatch) -> dict[str, str]:
    """{kind: name} of the same bytes: the RobustBench test teacher, converted from its cached checkpoint."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the Hub stand-in only: every other request still fails
    tiny_teacher.place_checkpoint(seed=1)
    converted = pull_teacher(tiny_teacher.entry.name, "cifar10")
    file = tmp_path / "models" / "tiny-wrn.safetensors"
    file.parent.mkdir()
    shutil.copy(converted, file)
    revision = hub.publish(REPO, {"model.safetensors": file.read_bytes()})
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"students": [{
        "name": ZOO_NAME, "repo": REPO, "file": "model.safetensors", "revision": revision,
        "sha256": sha256_file(file), "arch": "wrn-10-1", "dataset": "cifar10", "method": "trades",
        "teacher": "none", "results": {"clean": 10, "pgd20": 0, "aa": 0}, "command": f"rdist attack zoo:{ZOO_NAME}"}]}))
    monkeypatch.setenv("RDIST_ZOO", str(zoo))
    return {"file": str(file), "zoo": f"zoo:{ZOO_NAME}", "robustbench": tiny_teacher.entry.name,
            "hf-hub": f"hf-hub:{REPO}", "hf-hub@rev": f"hf-hub:{REPO}@{revision}",
            "hf": f"hf://{REPO}", "hf@rev/file": f"hf://{REPO}@{revision}/model.safetensors"}


@pytest.mark.e2e
def test_load_model_takes_every_kind_of_name(names):
    expected = load_artifact(names["file"]).state_dict()
    for kind, spec in names.items():
        assert model_kind(spec) == kind.split("@")[0]
        model = rdist.load_model(spec)
        assert not model.training and model.rdist_meta["arch"]["name"] == "wrn-10-1"
        state = model.state_dict()
        assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected), kind


@pytest.mark.e2e
def test_attack_reports_the_same_numbers_for_every_kind_of_name(cli, names, tiny_teacher):
    reports = {kind: json.loads(cli("attack", spec, "--attacks", "clean,pgd20", "--data", DATA, "--n", N, "--device",
                                    "cpu", "--json").stdout) for kind, spec in names.items()}
    data = load_dataset(DATA)
    with torch.no_grad():
        logits = load_artifact(names["file"]).double()(data.x_test[:N].double() / 255)
    clean = (logits.argmax(1) == data.y_test[:N]).double().mean().item()
    for kind, report in reports.items():
        assert report["n"] == N and report["accuracy"]["clean"] == pytest.approx(clean, abs=1e-6), kind
        assert report["accuracy"] == reports["file"]["accuracy"], kind
    assert reports["robustbench"]["model"] == str(artifact_path(tiny_teacher.entry))
    for kind in ("zoo", "hf-hub", "hf-hub@rev", "hf", "hf@rev/file"):
        assert reports[kind]["model"].startswith(os.environ["HF_HUB_CACHE"]), "a download in the Hub cache"


@pytest.mark.e2e
def test_compare_puts_every_kind_of_name_side_by_side(cli, names):
    comparison = json.loads(cli("compare", *names.values(), "--attacks", "clean,pgd20", "--data", DATA, "--n", N,
                                "--json", "--quiet").stdout)
    rows = comparison["models"]
    assert [r["label"] for r in rows] == ["tiny-wrn", *list(names.values())[1:]]
    assert len({json.dumps(r["accuracy"]) for r in rows}) == 1, "one model under seven names"
    assert len({(r["params"], r["macs"]) for r in rows}) == 1


@pytest.mark.e2e
def test_surrogate_takes_every_kind_of_name(cli, names):
    reports = {kind: json.loads(cli("attack", names["file"], "--surrogate", spec, "--attacks",
                                    "clean,transfer-pgd20", "--data", DATA, "--n", N, "--device", "cpu",
                                    "--json").stdout) for kind, spec in names.items()}
    for kind, spec in names.items():
        assert reports[kind]["surrogate"] == spec
        assert reports[kind]["accuracy"] == reports["file"]["accuracy"], kind


@pytest.mark.e2e
@pytest.mark.parametrize("option, method", [("--teacher", "kd"), ("--natural-teacher", "akd2")])
def test_teacher_options_take_every_kind_of_name(cli, names, tmp_path, option, method):
    """One step of training with the teacher under each name: the same student weights, its name recorded."""
    students = {}
    for kind, spec in names.items():
        teachers = ["--teacher", spec] if option == "--teacher" else ["--teacher", names["file"], option, spec]
        out = tmp_path / f"{method}-{kind.replace('@', '-')}"
        json.loads(cli("distill", "--method", method, "--student", "tinycnn", *teachers, "--data", DATA, "--epochs",
                       1, "--max-steps", 1, "--batch-size", 16, "--steps", 2, "--eval-n", 16, "--device", "cpu",
                       "--out", out, "--json").stdout)
        student = load_artifact(out / "last.safetensors")
        recorded = student.rdist_meta["provenance"]
        assert recorded["natural_teacher" if option == "--natural-teacher" else "teacher"] == spec
        students[kind] = student.state_dict()
    first = students["file"]
    for kind, state in students.items():
        assert all(torch.equal(state[k], first[k]) for k in first), kind


@pytest.mark.e2e
def test_companion_takes_every_kind_of_name(cli, names, tmp_path, monkeypatch):
    """A companion started from a model (`--companion peer=NAME`, resolved as every model name is), under each name:
    one step of training from the same weights ends with the same peer and student; the name is recorded."""
    from rdist.methods import register_method, registry
    from tests.methods.test_new_companion import PEER, Tutor

    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    register_method(Tutor)
    trained = {}
    for kind, spec in names.items():
        out = tmp_path / f"companion-{kind.replace('@', '-').replace('/', '-')}"
        json.loads(cli("distill", "--method", Tutor.name, "--student", "tinycnn", "--companion", f"{PEER}={spec}",
                       "--data", DATA, "--epochs", 1, "--max-steps", 1, "--batch-size", 16, "--steps", 2, "--eval-n",
                       16, "--device", "cpu", "--out", out, "--json").stdout)
        peer = load_artifact(out / f"{PEER}.safetensors")
        assert peer.rdist_meta["provenance"]["companion"]["model"] == spec
        trained[kind] = {**peer.state_dict(), **{f"student.{k}": v for k, v in
                                                 load_artifact(out / "last.safetensors").state_dict().items()}}
    first = trained["file"]
    for kind, state in trained.items():
        assert state.keys() == first.keys() and all(torch.equal(state[k], first[k]) for k in first), kind


@pytest.mark.e2e
def test_export_takes_every_kind_of_name(cli, names, tmp_path):
    """`rdist export NAME`: the same model's graph under each name, checked on the same images; the ONNX file
    records the name it was given (a file: its absolute path) and the bytes it came from."""
    import onnx

    from rdist.onnx import read_onnx_metadata

    published = sha256_file(names["file"])
    results = {}
    for kind, spec in names.items():
        out = tmp_path / f"export-{kind.replace('@', '-').replace('/', '-')}.onnx"
        results[kind] = json.loads(cli("export", spec, "--out", out, "--data", DATA, "--check-n", N, "--json").stdout)
        source = read_onnx_metadata(out)["source"]
        assert source["sha256"] == published and source["spec"] == (spec if kind != "file" else
                                                                    str(Path(spec).resolve())), kind
    graphs = {kind: onnx.load(result["path"]).graph.SerializeToString() for kind, result in results.items()}
    for kind, result in results.items():
        assert result["check"]["n"] == N and result["check"]["accuracy"] == results["file"]["check"]["accuracy"], kind
        assert graphs[kind] == graphs["file"], f"{kind}: the same graph and weights (the metadata names the source)"


@pytest.mark.e2e
def test_initial_weights_take_every_kind_of_name(cli, names, tmp_path):
    """A run started from a model's weights (fine-tuning), under each name: the student starts as that model, so a
    step of training from each name ends with the same weights; the name is recorded in the provenance."""
    expected = load_artifact(names["file"]).state_dict()
    students = {}
    for kind, spec in names.items():
        out = tmp_path / f"initial-{kind.replace('@', '-').replace('/', '-')}"
        json.loads(cli("teacher", "train", "--method", "natural", "--arch", "wrn-10-1", "--initial-weights", spec,
                       "--data", DATA, "--epochs", 1, "--max-steps", 1, "--batch-size", 16, "--eval-n", 16, "--lr",
                       1e-9, "--device", "cpu", "--out", out, "--json").stdout)
        student = load_artifact(out / "last.safetensors")
        assert student.rdist_meta["provenance"]["initial_weights"] == spec
        students[kind] = student.state_dict()
    first = students["file"]
    for kind, state in students.items():
        assert all(torch.equal(state[k], first[k]) for k in first), kind
    # A step at a learning rate of 1e-9 leaves the weights where they started: the model's own.
    weights = [k for k, v in expected.items() if k.endswith("weight") and v.dim() > 1]
    assert weights and all(torch.allclose(first[k], expected[k], atol=1e-6) for k in weights)


@pytest.mark.e2e
def test_zoo_push_takes_any_kind_of_name(cli, names, hub):
    # What `rdist attack --record` leaves in a file, then that file published by someone else on the Hub.
    record_results(names["file"], {"attacks": ["clean", "pgd20", "aa"], "dataset": "cifar10", "eps": 8 / 255,
                                   "n": 100, "accuracy": {"clean": 0.5, "pgd20": 0.25, "aa": 0.2},
                                   "worst_case": 0.2, "seed": 0})
    hub.publish("someone/measured", {"model.safetensors": Path(names["file"]).read_bytes()})
    result = cli("zoo", "push", "hf-hub:someone/measured", "--repo", "rdist-test/republished", "--name", "again",
                 "--method", "trades")
    (entry,) = yaml.safe_load(result.stdout)
    assert entry["sha256"] == sha256_file(names["file"]) and entry["results"] == {"clean": 50, "pgd20": 25, "aa": 20}
    assert hub.state.repos["rdist-test/republished"].main == entry["revision"]


KINDS_FRAGMENTS = ("an .safetensors file", "zoo:NAME", "a RobustBench name", "hf-hub:ORG/REPO[@REV]")


@pytest.mark.e2e
def test_an_unknown_name_fails_on_one_line_everywhere_with_the_kinds_and_close_names(cli, names):
    for typo, close in (("Tiny2019Trades_WRN1O", "Tiny2019Trades_WRN10"), ("tiny-wrn", "zoo:tiny-wrn")):
        for args in (["attack", typo, "--data", DATA],
                     ["compare", typo, "--data", DATA],
                     ["attack", names["file"], "--surrogate", typo, "--attacks", "clean,transfer-pgd20", "--data",
                      DATA, "--n", N],
                     ["distill", "--method", "kd", "--student", "tinycnn", "--teacher", typo, "--data", DATA,
                      "--epochs", 1],
                     ["zoo", "push", typo, "--repo", "rdist-test/x"]):
            cli.fails(args, f"'{typo}' is not a file", f"did you mean: {close}?", *KINDS_FRAGMENTS)


@pytest.mark.e2e
def test_hub_names_that_lead_nowhere_fail_on_one_line(cli, names):
    missing = "0" * 40
    for spec, fragment in (("hf-hub:nobody/ghost", "cannot download model.safetensors of hf-hub:nobody/ghost at main"),
                           (f"hf-hub:{REPO}@{missing}", f"hf-hub:{REPO} at {missing}"),
                           ("hf-hub:no-org", "does not name a Hub repo"),
                           (f"hf-hub:{REPO}@", "without a revision"),
                           ("hf://nobody/ghost", "cannot download model.safetensors of hf://nobody/ghost at main"),
                           (f"hf://{REPO}/other.safetensors", f"cannot download other.safetensors of hf://{REPO}"),
                           (f"hf://{REPO}@{missing}/model.safetensors", f"hf://{REPO} at {missing}"),
                           ("hf://no-org", "does not name a Hub repo: write hf://ORG/REPO[@REV][/FILE]"),
                           (f"hf://{REPO}@/model.safetensors", "has @ without a revision"),
                           (f"hf://datasets/{REPO}", "names a file of a Hub dataset repo")):
        cli.fails(["attack", spec, "--data", DATA], fragment)


@pytest.mark.e2e
def test_record_never_writes_into_a_download(cli, names, hub):
    requests = len(hub.state.requests)
    for spec in (names["zoo"], names["hf-hub"], names["hf"]):
        cli.fails(["attack", spec, "--record", "--data", DATA], f"--record would change {spec}")
    assert len(hub.state.requests) == requests, "refused before anything was downloaded"

    published = sha256_file(names["file"])
    comparison = json.loads(cli("compare", names["file"], names["hf-hub"], "--attacks", "clean", "--data", DATA,
                                "--n", N, "--record", "--json", "--quiet").stdout)
    downloaded = Path(comparison["models"][1]["model"])
    assert sha256_file(downloaded) == published, "the Hub download is left as published"
    assert read_metadata(names["file"])["results"], "the file took the results"


def test_every_model_argument_and_option_says_which_names_it_takes():
    """The README's promise ("A model is ...") holds for each command: each says so in its --help."""
    taking = {}

    def walk(command, path):
        for param in command.params:
            if param.name in ("model", "models", "teacher", "natural_teacher", "surrogate", "initial_weights"):
                taking[f"{path} {param.name}"] = getattr(param, "help", None) or ""
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "rdist")
    # `zoo push --teacher` is the teacher's name as zoo.yaml shows it: text, no model is loaded.
    assert "recorded in the artifact" in taking.pop("rdist zoo push teacher")
    assert set(taking) == {"rdist distill teacher", "rdist distill natural_teacher", "rdist attack model",
                           "rdist attack surrogate", "rdist compare models", "rdist compare surrogate",
                           "rdist export model", "rdist zoo push model", "rdist distill initial_weights",
                           "rdist teacher train initial_weights"}
    assert {where for where, text in taking.items() if MODEL_HELP not in text} == set()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    sentence = re.search(r"A model is [^\n]*(?:\n[^\n]+)*", readme).group(0)
    for fragment in ("`.safetensors`", "`zoo:NAME`", "RobustBench", "`hf-hub:ORG/REPO[@REV]`", "every command"):
        assert fragment in sentence, fragment
