"""Careless and hostile input, category by category: tampered artifact metadata, bad npz datasets, crafted
checkpoints, outputs that cannot be written or would overwrite an input, bad numbers and files, usage errors
and bugs. Every case must end in one `error:` line with the right exit code, leave every input byte-identical
and write nothing (not even a temporary file)."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import rdist
from rdist.artifact import ARCH_FIELDS
from rdist.errors import RdistError
from rdist.files import atomic_path


# --- artifact metadata ---------------------------------------------------------------------------------


def _meta(source: Path) -> dict:
    return rdist.read_metadata(source)


METADATA_CASES: dict[str, tuple[Callable[[dict], object], tuple[str, ...]]] = {
    "arch missing": (lambda m: {k: v for k, v in m.items() if k != "arch"}, ("field 'arch' is missing",)),
    "arch not a mapping": (lambda m: {**m, "arch": "smallcnn"}, ("field 'arch' must be a mapping",)),
    "unknown arch key": (lambda m: {**m, "arch": {**m["arch"], "depth": 3}}, ("field 'arch.depth' is not known",)),
    "num_classes as text": (lambda m: {**m, "arch": {**m["arch"], "num_classes": "10"}},
                            ("field 'arch.num_classes' must be an integer >= 1", "'10'")),
    "num_classes zero": (lambda m: {**m, "arch": {**m["arch"], "num_classes": 0}}, ("'arch.num_classes'",)),
    "mean of two channels": (lambda m: {**m, "arch": {**m["arch"], "mean": [0.5, 0.5], "std": [0.2, 0.2]}},
                             ("'arch.mean' has 2 values but 'arch.in_channels' is 1",)),
    "input_shape of two items": (lambda m: {**m, "input_shape": [8, 8]}, ("field 'input_shape' must have 3 items",)),
    "recorded eps as text": (lambda m: {**m, "results": {"k": {"dataset": "digits", "attacks": ["clean"], "eps": "8/255",
                                                             "n": 10, "accuracy": {"clean": 0.9}, "worst_case": 0.9}}},
                             ("field 'results.k.eps' must be a number",)),
    "provenance teacher a number": (lambda m: {**m, "provenance": {"teacher": 3}},
                                    ("field 'provenance.teacher' must be non-empty text",)),
    "metadata a list": (lambda m: [m], ("the metadata is not a mapping (found list)",)),
}


def _tampered(source: Path, target: Path, change: Callable[[dict], object]) -> Path:
    save_file(load_file(str(source)), str(target), metadata={"rdist": json.dumps(change(_meta(source)))})
    return target


@pytest.mark.parametrize("case", METADATA_CASES)
def test_tampered_metadata_is_refused_naming_the_field(cli, digits_artifact, tmp_path, case):
    change, fragments = METADATA_CASES[case]
    model = _tampered(digits_artifact, tmp_path / "tampered.safetensors", change)
    cli.fails(["attack", model, "--attacks", "clean", "--n", "10", "--quiet", "-o", tmp_path / "r.json", "--record"],
              str(model), *fragments, unchanged=tmp_path)
    with pytest.raises(RdistError, match="metadata"):
        rdist.load_model(model)


def test_compare_refuses_tampered_metadata(cli, digits_artifact, tmp_path):
    change, fragments = METADATA_CASES["num_classes as text"]
    model = _tampered(digits_artifact, tmp_path / "tampered.safetensors", change)
    cli.fails(["compare", "--attacks", "clean", "--n", "10", "--quiet", "--md", tmp_path / "t.md",
               digits_artifact, model], *fragments, unchanged=tmp_path)


def test_the_schema_knows_every_argument_of_create_model():
    assert set(ARCH_FIELDS) == set(inspect.signature(rdist.create_model).parameters)


# --- npz datasets --------------------------------------------------------------------------------------


def _digits_arrays() -> dict[str, np.ndarray]:
    data = rdist.load_dataset("digits")
    return {"x_train": data.x_train[:64].numpy(), "y_train": data.y_train[:64].numpy(),
            "x_test": data.x_test[:32].numpy(), "y_test": data.y_test[:32].numpy()}


def _npz(**changes) -> Callable[[Path], None]:
    return lambda path: np.savez(path, **{**_digits_arrays(), **changes})


class _Payload:
    """Unpickling it creates a marker file: the proof that no pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


DATASET_CASES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "float labels": (_npz(y_train=np.zeros(64, np.float32)), ("y_train must be a 1-D array of integer",)),
    "2-D labels": (_npz(y_test=np.zeros((32, 1), np.int64)), ("y_test must be a 1-D array",)),
    "negative label": (_npz(y_train=np.full(64, -1, np.int64)), ("label -1 is outside",)),
    "more labels than images": (_npz(y_train=np.zeros(65, np.int64)), ("x_train has 64 images but y_train has 65",)),
    "empty arrays": (_npz(x_train=np.zeros((0, 1, 8, 8), np.uint8), y_train=np.zeros(0, np.int64)),
                     ("the train split is empty",)),
    "empty test split": (_npz(x_test=np.zeros((0, 1, 8, 8), np.uint8), y_test=np.zeros(0, np.int64)),
                         ("the test split is empty",)),
    "float images": (_npz(x_train=np.zeros((64, 1, 8, 8), np.float32)), ("x_train must be uint8 NCHW images",)),
    "3-D images": (_npz(x_test=np.zeros((32, 8, 8), np.uint8)), ("x_test must be uint8 NCHW",)),
    "train and test shapes differ": (_npz(x_test=np.zeros((32, 1, 9, 9), np.uint8)),
                                     ("train images are (1, 8, 8) but test images are (1, 9, 9)",)),
    "missing arrays": (lambda path: np.savez(path, x_train=np.zeros((4, 1, 8, 8), np.uint8)), ("lacks arrays",)),
    "zero-byte file": (lambda path: path.write_bytes(b""), ("is unreadable", "empty or truncated")),
    "text file": (lambda path: path.write_text("x_train,y_train\n1,2\n"), ("not a NumPy file",)),
    "truncated archive": (lambda path: (_npz()(path), path.write_bytes(path.read_bytes()[:300])), ("unreadable",)),
    "single array": (lambda path: path.write_bytes(_npy_bytes()), ("holds a single array",)),
    "object array": (lambda path: np.savez(path, **{**_digits_arrays(),
                                                    "y_train": np.array([_Payload(path.with_name("pwned"))] * 64,
                                                                        dtype=object)}),
                     ("pickled Python objects", "never unpickles")),
}


def _npy_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 1, 8, 8), np.uint8))
    return buffer.getvalue()


@pytest.mark.parametrize("case", DATASET_CASES)
def test_bad_npz_dataset_is_refused(cli, digits_artifact, tmp_path, case):
    write, fragments = DATASET_CASES[case]
    data = tmp_path / "data.npz"
    write(data)
    cli.fails(["attack", digits_artifact, "--data", f"npz:{data}", "--attacks", "clean", "--n", "10",
               "--quiet", "-o", tmp_path / "r.json"], str(data), *fragments, unchanged=tmp_path)
    assert not (tmp_path / "pwned").exists(), "an object array was unpickled"


def test_a_good_npz_dataset_loads(tmp_path):
    _npz()(tmp_path / "data.npz")
    data = rdist.load_dataset(f"npz:{tmp_path / 'data.npz'}")
    assert data.num_classes == 10 and data.y_train.dtype == torch.int64 and data.input_shape == (1, 8, 8)


# --- checkpoints on --resume ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A one-epoch natural run of tinycnn on digits (seconds), with its checkpoint.pt."""
    out = tmp_path_factory.mktemp("run") / "natural"
    rdist.train(rdist.TrainConfig(method="natural", student="tinycnn", data="digits", epochs=1, batch_size=128,
                                  eval_n=16, out=str(out)))
    return out


def _without(key: str) -> Callable[[dict], dict]:
    return lambda state: {k: v for k, v in state.items() if k != key}


def _renamed_first_weight(state: dict) -> dict:
    model = dict(state["model"])
    first = next(iter(model))
    model[f"{first}.renamed"] = model.pop(first)
    return {**state, "model": model}


def _reshaped_first_weight(state: dict) -> dict:
    model = dict(state["model"])
    first = next(iter(model))
    model[first] = torch.zeros(3, 3)
    return {**state, "model": model}


CHECKPOINT_CASES: dict[str, tuple[Callable[[dict], object], tuple[str, ...]]] = {
    "config missing": (_without("config"), ("field 'config' is missing",)),
    "identity missing": (_without("identity"), ("field 'identity' is missing",)),
    "config not a mapping": (lambda s: {**s, "config": ["natural"]}, ("field 'config' must be a mapping",)),
    "epochs as text": (lambda s: {**s, "config": {**s["config"], "epochs": "1"}},
                       ("field 'config.epochs' must be an integer",)),
    "negative epoch": (lambda s: {**s, "epoch": -1}, ("field 'epoch' must be an integer >= 0",)),
    "weights as numbers": (lambda s: {**s, "model": {"w": 1.0}}, ("field 'model.w' must be a tensor",)),
    "model key renamed": (_renamed_first_weight, ("do not fit architecture tinycnn", "missing 1", "unexpected 1")),
    "model weight reshaped": (_reshaped_first_weight, ("do not fit architecture tinycnn", "wrong shape")),
    "optimiser of another model": (lambda s: {**s, "optimizer": {"state": {}, "param_groups": []}},
                                   ("optimiser, schedule, weight average or RNG state", "does not fit this run")),
    "method state of another method": (lambda s: {**s, "method_state": {"weight": torch.zeros(2)}},
                                       ("method natural keeps state none, the checkpoint holds ['weight']",)),
    "companion of another run": (lambda s: {**s, "companions": {"peer": {"model": {}, "optimizer": s["optimizer"],
                                                                          "scheduler": {}}}},
                                 ("it holds companions ['peer'], this run trains none",)),
    "companion without its optimiser": (lambda s: {**s, "companions": {"peer": {"model": {}, "scheduler": {}}}},
                                        ("field 'companions.peer.optimizer' is missing",)),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_crafted_checkpoint_is_refused_on_resume(cli, finished_run, tmp_path, case):
    change, fragments = CHECKPOINT_CASES[case]
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    checkpoint = run_dir / "checkpoint.pt"
    torch.save(change(torch.load(checkpoint, weights_only=True)), checkpoint)
    cli.fails(["teacher", "train", "--resume", run_dir, "--quiet"],
              f"cannot resume {run_dir}", *fragments, unchanged=tmp_path)


def test_a_checkpoint_that_is_text_is_refused(cli, finished_run, tmp_path):
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    (run_dir / "checkpoint.pt").write_text("not a checkpoint")
    cli.fails(["teacher", "train", "--resume", run_dir, "--quiet"], "checkpoint.pt is unreadable", unchanged=tmp_path)


# --- output paths ----------------------------------------------------------------------------------------


def test_attack_out_naming_the_model_leaves_it_byte_identical(cli, digits_artifact, tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(digits_artifact.read_bytes())
    cli.fails(["attack", model, "--attacks", "clean", "--n", "10", "--quiet", "-o", model],
              "--out", "would overwrite the model", str(model), unchanged=tmp_path)
    cli.fails(["attack", model, "--attacks", "clean", "--n", "10", "--quiet", "-o",
               tmp_path / "." / "model.safetensors"], "would overwrite the model", unchanged=tmp_path)


def _blocker(tmp_path: Path) -> Path:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file, not a directory")
    return blocker


def _teacher_in_run_dir(tmp_path: Path, digits_artifact: Path) -> list:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(digits_artifact, run_dir / "best.safetensors")
    return ["distill", "--method", "rslad", "--student", "tinycnn", "--data", "digits", "--teacher",
            run_dir / "best.safetensors", "--out", run_dir, "--quiet"]


def _npz_data(tmp_path: Path) -> Path:
    _npz()(tmp_path / "data.npz")
    return tmp_path / "data.npz"


ATTACK = ["attack", "--attacks", "clean", "--n", "10", "--quiet"]
OUTPUT_CASES: dict[str, tuple[Callable[[Path, Path], list], tuple[str, ...]]] = {
    "--out a directory": (lambda t, m: [*ATTACK, m, "-o", t], ("it is a directory", "--out takes a file")),
    "--out under a file": (lambda t, m: [*ATTACK, m, "-o", _blocker(t) / "r.json"], ("a-file is a file",)),
    "--out in an unwritable directory": (lambda t, m: [*ATTACK, m, "-o", "/sys/rdist-report.json"],
                                         ("cannot write to /sys/rdist-report.json",)),
    "--out naming the npz data": (lambda t, m: [*ATTACK, m, "--data", f"npz:{_npz_data(t)}", "-o", t / "data.npz"],
                                  ("would overwrite the dataset",)),
    "import -o naming the checkpoint": (
        lambda t, m: ["teacher", "import", _state_dict(t), "--arch", "tinycnn", "--dataset", "digits", "-o",
                      t / "tiny.pt"], ("--output", "would overwrite the checkpoint")),
    "import -o under a file": (
        lambda t, m: ["teacher", "import", _state_dict(t), "--arch", "tinycnn", "--dataset", "digits", "-o",
                      _blocker(t) / "x.safetensors"], ("a-file is a file, not a directory",)),
    "train --out a file": (lambda t, m: ["teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data",
                                         "digits", "--out", _blocker(t), "--quiet"],
                           ("it is a file, and --out takes a directory",)),
    "train --out under a file": (lambda t, m: ["teacher", "train", "--method", "natural", "--arch", "tinycnn",
                                               "--data", "digits", "--out", _blocker(t) / "run", "--quiet"],
                                 ("a-file is a file, not a directory",)),
    "distill over its teacher": (lambda t, m: _teacher_in_run_dir(t, m), ("would overwrite the teacher",)),
    "compare --csv naming a model": (lambda t, m: ["compare", "--attacks", "clean", "--n", "10", "--quiet",
                                                   "--csv", _copy(m, t), _copy(m, t)],
                                     ("--csv", "would overwrite the model")),
    "compare --md under a file": (lambda t, m: ["compare", "--md", _blocker(t) / "t.md", m], ("a-file is a file",)),
    "compare --plot a file": (lambda t, m: ["compare", "--plot", _blocker(t), m], ("--plot takes a directory",)),
}


def _state_dict(tmp_path: Path) -> Path:
    torch.save(rdist.create_model("tinycnn", in_channels=1).state_dict(), tmp_path / "tiny.pt")
    return tmp_path / "tiny.pt"


def _copy(model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model.safetensors"
    if not target.exists():
        shutil.copy(model, target)
    return target


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_unusable_output_is_refused_before_any_work(cli, digits_artifact, tmp_path, case):
    if "unwritable" in case and not _unwritable("/sys"):
        pytest.skip("/sys is writable here")
    build, fragments = OUTPUT_CASES[case]
    args = build(tmp_path, digits_artifact)
    cli.fails(args, *fragments, unchanged=tmp_path)


def _unwritable(directory: str) -> bool:
    try:
        fd, probe = tempfile.mkstemp(dir=directory)
    except OSError:
        return True
    os.close(fd)
    os.unlink(probe)
    return False


def test_atomic_writes_turn_os_errors_into_one_message_naming_the_path(tmp_path):
    blocker = _blocker(tmp_path)
    with pytest.raises(RdistError, match=r"cannot write to .*a-file/x\.json"):
        with atomic_path(blocker / "x.json") as tmp:
            tmp.write_text("{}")


# --- numbers and files -------------------------------------------------------------------------------


def _import(tmp_path: Path, checkpoint: Path, *extra) -> list:
    return ["teacher", "import", checkpoint, "--arch", "tinycnn", "--dataset", "digits", "-o",
            tmp_path / "out.safetensors", *extra]


def _file(name: str, content: bytes) -> Callable[[Path], Path]:
    def write(tmp_path: Path) -> Path:
        (tmp_path / name).write_bytes(content)
        return tmp_path / name

    return write


TRAIN = ["teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data", "digits", "--quiet"]
NUMBER_AND_FILE_CASES: dict[str, tuple[Callable[[Path], list], tuple[str, ...], int]] = {
    "--step-size in pixel levels": (lambda t: [*TRAIN, "--out", t / "run", "--step-size", "8"],
                                    ("--step-size 8 is not in [0,1]", "write --step-size 8/255"), 1),
    "--step-size unreadable": (lambda t: [*TRAIN, "--out", t / "run", "--step-size", "two"],
                               ("cannot read --step-size 'two'",), 1),
    "--num-classes 0": (lambda t: _import(t, _state_dict(t), "--num-classes", "0"), ("--num-classes",), 2),
    "a text file as .pt": (lambda t: _import(t, _file("x.pt", b"hello")(t)),
                           ("x.pt is not a weights-only PyTorch checkpoint",), 1),
    "a zero-byte .pt": (lambda t: _import(t, _file("x.pt", b"")(t)), ("not a weights-only PyTorch checkpoint",), 1),
    "a list as .pt": (lambda t: (torch.save([1, 2], t / "x.pt"), _import(t, t / "x.pt"))[1],
                      ("does not hold a state dict of tensors",), 1),
    "junk as .safetensors": (lambda t: _import(t, _file("x.safetensors", b"junk")(t)),
                             ("x.safetensors is not a readable safetensors file",), 1),
    "a UTF-16 zoo.yaml": (lambda t: ["zoo", "list", "--zoo", _file("zoo.yaml", "students: []\n".encode("utf-16"))(t)],
                          ("zoo.yaml is not UTF-8 text",), 1),
    "a Latin-1 zoo.yaml": (lambda t: ["zoo", "list", "--zoo", _file("zoo.yaml", "# caf\xe9\nstudents: []\n"
                                                                  .encode("latin-1"))(t)], ("not UTF-8 text",), 1),
}


@pytest.mark.parametrize("case", NUMBER_AND_FILE_CASES)
def test_bad_numbers_and_files_are_refused(cli, tmp_path, case):
    build, fragments, code = NUMBER_AND_FILE_CASES[case]
    args = build(tmp_path)
    result = cli.fails(args, *fragments, code=code, unchanged=tmp_path)
    if "step-size" in case:
        assert "--eps" not in result.output


def test_import_reads_a_safetensors_state_dict(cli, tmp_path):
    model = rdist.create_model("tinycnn", in_channels=1)
    save_file(model.state_dict(), str(tmp_path / "weights.safetensors"))
    cli(*_import(tmp_path, tmp_path / "weights.safetensors"))
    loaded = rdist.load_model(tmp_path / "out.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


# --- usage errors and bugs ---------------------------------------------------------------------------


USAGE_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "unknown option": (["attack", "--bogus"], ("No such option: --bogus", "rdist attack --help")),
    "--n abc": (["attack", "m.safetensors", "--n", "abc"], ("Invalid value for '--n'",)),
    "unknown command": (["atack"], ("No such command 'atack'",)),
    "missing option": (["teacher", "import", "x.pt", "--dataset", "digits", "-o", "o.safetensors"],
                       ("Missing option '--arch'",)),
    "missing argument": (["compare"], ("Missing argument",)),
}


@pytest.mark.parametrize("case", USAGE_CASES)
def test_usage_errors_are_one_line_with_exit_code_2(cli, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    args, fragments = USAGE_CASES[case]
    cli.fails(args, *fragments, code=2, unchanged=tmp_path)


def _bug(*args, **kwargs):
    raise ZeroDivisionError("division by zero, deep inside")


def test_an_unexpected_exception_is_one_line_with_a_hint(cli, monkeypatch):
    monkeypatch.setattr("rdist.cli.attack._print_attack_list", _bug)  # a bug planted where `--list` runs
    monkeypatch.delenv("RDIST_DEBUG", raising=False)
    result = cli.fails(["attack", "--list"],
                       "unexpected ZeroDivisionError: division by zero, deep inside", "report it", "RDIST_DEBUG=1")
    assert "Traceback" not in result.output


def test_rdist_debug_shows_the_traceback(cli, monkeypatch):
    monkeypatch.setattr("rdist.cli.attack._print_attack_list", _bug)
    monkeypatch.setenv("RDIST_DEBUG", "1")
    result = cli("attack", "--list", code=1)
    assert isinstance(result.exception, ZeroDivisionError) and result.exit_code == 1
