"""Where things are and what they are: `rdist --version`, `rdist env`, `--data-dir` (and RDIST_DATA_DIR), the
grouped `--help`, `--batch-size` said to be global, and `rdist teacher import --data/--out`."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import rdist
from rdist.cli.options import (ATTACK_PANEL, DATA_PANEL, DEVICE_PANEL, METHOD_PANEL, OUTPUT_PANEL, RUN_PANEL,
                               SCHEDULE_PANEL, TEACHERS_PANEL)
from rdist.data import DATA_DIR_ENV, data_root
from rdist.files import cache_dir
from tests.data.test_tiny_imagenet import build_archive


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"rdist {rdist.__version__}\n"


def test_env_says_what_a_bug_report_needs(cli, tmp_path, monkeypatch):
    import huggingface_hub
    import torch

    monkeypatch.setenv("RDIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "shared-data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = cli("env", "--json")
    info = json.loads(result.stdout)
    assert info["rdist"] == rdist.__version__ and info["torch"] == torch.__version__
    assert info["cuda"]["available"] == torch.cuda.is_available() and info["cuda"]["torch_built_with"] == \
        torch.version.cuda
    assert len(info["cuda"]["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert info["packages"]["huggingface_hub"] == huggingface_hub.__version__
    assert set(info["optional"]) == {"tensorboard", "wandb"} and all(info["optional"].values()), "dev installs both"
    assert info["paths"]["cache"] == str(tmp_path / "cache")
    assert info["paths"]["data"] == str(tmp_path / "shared-data")
    assert info["paths"]["robustbench_checkpoints"] == str(tmp_path / "cache" / "robustbench")
    assert info["paths"]["hub_cache"] == str(tmp_path / "hub")
    assert info["environment"][DATA_DIR_ENV] == str(tmp_path / "shared-data")

    text = cli("env")
    lines = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in text.stdout.splitlines())
    assert lines["rdist"] == rdist.__version__ and lines["torch"].startswith(torch.__version__)
    assert lines["wandb (optional)"] == info["optional"]["wandb"] and lines["hub cache"] == str(tmp_path / "hub")


@pytest.mark.e2e
def test_the_data_dir_is_where_datasets_are_read_and_downloaded(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("RDIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert data_root() == cache_dir() / "data"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert data_root() == tmp_path / "env" and data_root(tmp_path / "given") == tmp_path / "given"

    # A shared folder holding Tiny-ImageNet's archive where rdist keeps it (DIR/tiny-imagenet), and no network.
    shared = tmp_path / "shared"
    (shared / "tiny-imagenet").mkdir(parents=True)
    build_archive(shared / "tiny-imagenet" / "tiny-imagenet-200.zip")
    from rdist.data import tiny_imagenet

    monkeypatch.setattr(tiny_imagenet, "URL", "http://127.0.0.1:9/nothing.zip")  # a download would fail
    monkeypatch.setenv(DATA_DIR_ENV, str(shared))
    from_env = rdist.load_dataset("tiny-imagenet")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    result = cli("teacher", "train", "--method", "natural", "--arch", "resnet18", "--data", "tiny-imagenet",
                 "--data-dir", shared, "--epochs", 1, "--batch-size", 8, "--eval-n", 2, "--device", "cpu",
                 "--out", tmp_path / "run", "--json")
    assert json.loads(result.stdout)["history"][0]["eval_n"] == 2
    assert len(from_env.y_train) == 12
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["data_dir"] == str(shared)
    assert not (tmp_path / "empty").exists() and not (tmp_path / "cache" / "data").exists()


def test_a_torchvision_set_is_found_in_torchvision_s_own_layout_of_the_data_dir(tmp_path, monkeypatch):
    """CIFAR's files cannot be made offline (torchvision checks their md5), so torchvision's class is replaced by
    one that, like it, finds its files under its root or refuses with its RuntimeError: rdist asks the folder itself
    first (ROOT/cifar-10-batches-py, as timm's --data-dir and torchvision's root lay it out), then ROOT/cifar10,
    where it downloads."""
    import torchvision

    asked = []

    class CIFAR10:
        def __init__(self, root, download, train):
            asked.append((Path(root), download))
            if not (Path(root) / "cifar-10-batches-py").is_dir():
                raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
            n = 5 if train else 3
            self.data = np.full((n, 32, 32, 3), 7, dtype=np.uint8)
            self.targets = list(range(n))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", CIFAR10)
    (tmp_path / "torchvision-root" / "cifar-10-batches-py").mkdir(parents=True)
    data = rdist.load_dataset("cifar10", root=tmp_path / "torchvision-root")
    assert asked == [(tmp_path / "torchvision-root", False)] * 2
    assert data.x_train.shape == (5, 3, 32, 32) and data.y_test.tolist() == [0, 1, 2]
    asked.clear()
    (tmp_path / "rdist-layout" / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    rdist.load_dataset("cifar10", root=tmp_path / "rdist-layout")
    assert asked == [(tmp_path / "rdist-layout", False), (tmp_path / "rdist-layout" / "cifar10", True),
                     (tmp_path / "rdist-layout" / "cifar10", True)]


def _tiny_cifar10(root: Path, n: int, monkeypatch) -> None:
    """n training and n test images of CIFAR-10 in torchvision's layout under `root` (as the files torchvision
    reads; their md5, which no stand-in can have, is checked for existence only)."""
    import torchvision.datasets.cifar as cifar

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(c) for c in range(10)]}))
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())


@pytest.mark.e2e
def test_evaluation_reads_the_dataset_in_the_data_dir(cli, offline_cache, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    _tiny_cifar10(shared, 12, monkeypatch)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))  # --data-dir wins over it; a download would fail
    torch.manual_seed(0)
    model = tmp_path / "cifar10.safetensors"
    rdist.save_model(rdist.create_model("tinycnn"), model, dataset="cifar10", input_shape=[3, 32, 32])

    report = json.loads(cli("attack", model, "--attacks", "clean", "--data-dir", shared, "--device", "cpu",
                            "--json").stdout)
    assert report["dataset"] == "cifar10" and report["n"] == 12, "the 12 test images of the shared folder"
    compared = json.loads(cli("compare", model, "--attacks", "clean", "--data-dir", shared, "--device", "cpu",
                              "--json", "--quiet").stdout)
    assert compared["n"] == 12, compared
    exported = json.loads(cli("export", model, "--out", tmp_path / "model.onnx", "--data-dir", shared, "--json").stdout)
    assert exported["check"]["n"] == 12 and "accuracy" in exported["check"]
    assert not (tmp_path / "empty").exists() and not (offline_cache / "data").exists()
    # One option, the same everywhere a dataset is loaded.
    helps = {tuple(c): _help_of(c, "--data-dir") for c in (["attack"], ["compare"], ["export"], ["reproduce"],
                                                             ["distill"], ["teacher", "train"])}
    assert len(set(helps.values())) == 1 and "$RDIST_DATA_DIR" in next(iter(helps.values())), helps


def _help_of(command_path: list[str], flag: str) -> str:
    import typer.main

    from rdist.cli.app import app

    command = typer.main.get_command(app)
    for name in command_path:
        command = command.commands[name]
    (option,) = [p for p in command.params if flag in getattr(p, "opts", ())]
    return option.help


def test_help_groups_the_training_options_in_panels(cli):
    for command, student in ((["distill"], "--student"), (["teacher", "train"], "--arch")):
        text = cli(*command, "--help", env={"COLUMNS": "200", "TERM": "dumb"}).stdout
        titles = re.findall(r"╭─ (.+?) ─", text)
        assert titles == ["Options", METHOD_PANEL, *([TEACHERS_PANEL] if command == ["distill"] else []), DATA_PANEL,
                          SCHEDULE_PANEL, ATTACK_PANEL, RUN_PANEL, DEVICE_PANEL, OUTPUT_PANEL], titles
        panel = text.split(f"╭─ {METHOD_PANEL}")[1].split("╰")[0]
        assert student in panel and "--initial-weights" in panel and "--hparam" in panel
        schedule = text.split(f"╭─ {SCHEDULE_PANEL}")[1].split("╰")[0]
        assert "--batch-size" in schedule and "GLOBAL batch" in schedule and "timm's --batch-size is per" in schedule
        assert "--config" in text.split(f"╭─ {RUN_PANEL}")[1].split("╰")[0]


def test_teacher_import_takes_data_and_out_like_every_other_command(cli, tmp_path):
    checkpoint = tmp_path / "model.pt"
    torch.manual_seed(0)
    torch.save(rdist.create_model("tinycnn", in_channels=1).state_dict(), checkpoint)
    new = cli("teacher", "import", checkpoint, "--arch", "tinycnn", "--data", "digits", "--out",
              tmp_path / "new.safetensors")
    old = cli("teacher", "import", checkpoint, "--arch", "tinycnn", "--dataset", "digits", "--output",
              tmp_path / "old.safetensors")
    assert new.exit_code == old.exit_code == 0, new.output + old.output
    assert (tmp_path / "new.safetensors").read_bytes() == (tmp_path / "old.safetensors").read_bytes()
    assert rdist.read_metadata(tmp_path / "new.safetensors")["dataset"] == "digits"
    cli.fails(["teacher", "import", checkpoint, "--arch", "tinycnn", "--out", tmp_path / "x"],
              "Missing option '--data'", code=2)
    cli.fails(["teacher", "import", checkpoint, "--arch", "tinycnn", "--data", "digits",
               "--dataset", "cifar10", "-o", tmp_path / "x"], "--data and --dataset")
    help_text = cli("teacher", "import", "--help").stdout
    assert "--data" in help_text and "--dataset" not in help_text and "--output" not in help_text
