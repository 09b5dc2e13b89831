"""`rdist distill --method iad --student mobilenetv2` trains IAD-I as its paper does: CIFAR-10, the paper's recipe,
the paper's RobustBench teacher, each default named in one header line; explicit options win; offline it stops
at the teacher with the download message and writes nothing."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import rdist
from rdist.engine import TrainConfig
from rdist.engine.config import fill_paper_defaults
from rdist.methods import method_rows
from rdist.teachers.catalogue import TEACHERS
from rdist.teachers.robustbench import artifact_path, import_robustbench

# Fast settings that leave the defaults under test alone (data, recipe, teachers): one step of 8 images.
FAST = ["--max-steps", "1", "--batch-size", "8", "--steps", "1", "--eval-n", "8", "--quiet"]


@pytest.fixture
def cifar10_cache(offline_cache, monkeypatch) -> Path:
    """A tiny CIFAR-10 in torchvision's layout under $RDIST_CACHE/data: 5 x 40 training and 40 test images.

    torchvision checks the official files' md5 sums, which no stand-in can have: here it checks that they exist.
    """
    folder = offline_cache / "data" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, 40))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(c) for c in range(10)]}))
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    return offline_cache


@pytest.fixture
def trades_teacher_cached(offline_cache) -> Path:
    """The cached artifact `Zhang2019Theoretically` resolves to, holding a small WideResNet (a WRN-34-10
    forward on the CPU takes seconds): the resolution by name is what is tested, not the weights."""
    path = artifact_path(TEACHERS[("Zhang2019Theoretically", "cifar10")])
    torch.manual_seed(0)
    rdist.save_model(rdist.create_model("wrn-10-1"), path, dataset="cifar10", input_shape=[3, 32, 32])
    return path


@pytest.mark.e2e
def test_promised_command_trains_iad_i_on_cifar10_with_the_paper_recipe_and_teacher(cli, cifar10_cache,
                                                                                   trades_teacher_cached, tmp_path):
    result = cli("distill", "--method", "iad", "--student", "mobilenetv2", *FAST, "--out", tmp_path / "run")
    header = next(line for line in result.output.splitlines() if line.startswith("paper defaults:"))
    for part in ("--method iad = iad-i", "--data cifar10", "--recipe paper", "--teacher Zhang2019Theoretically",
                 "--epochs N for a short run", "1 step of", "FLOP/s"):
        assert part in header, header
    assert "--natural-teacher" not in header
    meta = rdist.read_metadata(tmp_path / "run" / "last.safetensors")
    provenance = meta["provenance"]
    assert provenance["method"] == "iad-i" and provenance["method_config"]["method"] == "iad-i"
    assert (provenance["dataset"], provenance["teacher"], provenance["recipe"]) == (
        "cifar10", "Zhang2019Theoretically", "paper")
    # IAD's paper recipe: 200 epochs, x0.1 at 100 and 150, weight decay 2e-4 (batch size given: 8).
    assert provenance["schedule"] == {"epochs": 200, "milestones": [100, 150], "lr": 0.1, "weight_decay": 2e-4,
                                      "batch_size": 8, "swa_start": None, "ema": None, "lr_schedule": "step",
                                      "warmup_epochs": 0, "nesterov": False, "label_smoothing": 0.0}
    assert provenance["teacher_arch"] == "wrn-10-1", "the cached artifact of the name, not a download"
    assert provenance["global_step"] == 1


def test_pace_of_the_first_steps_is_reported_on_the_paper_recipe(cli, cifar10_cache, trades_teacher_cached, tmp_path):
    result = cli("distill", "--method", "iad", "--student", "tinycnn", *FAST[:-1], "--out", tmp_path / "run")
    pace = next(line for line in result.output.splitlines() if line.startswith("first 1 step:"))
    assert "s/step, so the run (1 step) takes about" in pace


def test_igdm_trains_adaad_with_igdm(cli, cifar10_cache, tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    rdist.save_model(rdist.create_model("smallcnn", in_channels=1), teacher, dataset="digits", input_shape=[1, 8, 8])
    result = cli("distill", "--method", "igdm", "--student", "tinycnn", "--teacher", teacher, "--data",
                 "digits", "--epochs", "1", *FAST, "--out", tmp_path / "run")
    header = next(line for line in result.output.splitlines() if line.startswith("paper defaults:"))
    assert header == "paper defaults: --method igdm = adaad+igdm (the paper's name)", "explicit options stay out"
    provenance = rdist.read_metadata(tmp_path / "run" / "last.safetensors")["provenance"]
    assert provenance["method"] == "adaad+igdm"
    assert provenance["method_config"]["igdm_alpha"] == 20.0 and provenance["method_config"]["kl_scale"] == 0.1
    assert (provenance["dataset"], provenance["recipe"], provenance["epochs"]) == ("digits", None, 1)


@pytest.mark.parametrize("given, option", [
    ({"data": "npz:x.npz"}, "--data"),
    ({"epochs": 3}, "--recipe"),
    ({"recipe": "paper", "epochs": 3}, "--recipe"),
    ({"teachers": {"robust": "t.safetensors"}}, "--teacher"),
    ({"teachers": {"natural": "n.safetensors"}}, "--natural-teacher"),
])
def test_an_explicit_option_wins_over_each_default(given, option):
    config, defaults = fill_paper_defaults(TrainConfig(method="iad-ii", student="resnet18", **given))
    for field, value in given.items():
        if field == "teachers":
            assert config.teachers.items() >= value.items()
        else:
            assert getattr(config, field) == value
    assert option not in {d.option for d in defaults}
    assert config.recipe == given.get("recipe", None if "epochs" in given else "paper"), \
        "the paper recipe is a default only without --epochs"
    if "data" not in given:
        given_teachers = given.get("teachers", {})
        assert (config.data, config.teachers) == (
            "cifar10", {"robust": given_teachers.get("robust", "Zhang2019Theoretically"),
                        "natural": given_teachers.get("natural", "Standard")})


def test_paper_teachers_follow_the_dataset():
    for method, data, teacher in [("adaad", "cifar10", "Chen2021LTD_WRN34_20"), ("adaad", "cifar100",
                                  "Chen2021LTD_WRN34_10"), ("rslad", "cifar100", "Gowal2020Uncovering_extra"),
                                  ("rslad+igdm", "cifar100", "Wang2023Better_WRN-28-10")]:
        config, _ = fill_paper_defaults(TrainConfig(method=method, student="resnet18", data=data))
        assert config.teachers == {"robust": teacher} and (teacher, data) in TEACHERS
    config, _ = fill_paper_defaults(TrainConfig(method="rslad", student="tinycnn", data="digits"))
    assert config.teachers == {}, "no RobustBench teacher for digits: the run asks for one"
    config, defaults = fill_paper_defaults(TrainConfig(method="trades", student="resnet18"))
    assert (config.recipe, config.epochs, defaults) == (None, None, []), "teacher training asks for --epochs"


def test_no_natural_teacher_for_the_dataset_is_a_clear_error(cli, offline_cache):
    cli.fails(["distill", "--method", "iad-ii", "--student", "tinycnn", "--data", "cifar100",
               "--teacher", "Chen2021LTD_WRN34_10", "--epochs", "1"],
              "iad-ii needs a naturally trained teacher", "RobustBench has no naturally trained cifar100",
              "rdist teacher train --method natural --data cifar100")


def test_offline_the_promised_command_stops_at_the_teacher_and_writes_nothing(cli, offline_cache, tmp_path,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("distill", "--method", "iad", "--student", "mobilenetv2", code=1)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("paper defaults: --method iad = iad-i"), result.output
    assert lines[1].startswith("error: cannot download the checkpoint of Zhang2019Theoretically"), lines[1]
    assert "if this machine is offline, download https://drive.google.com/" in lines[1]
    assert not (tmp_path / "runs").exists()
    assert not (offline_cache / "data").exists(), "no data download was started"
    assert not any(p.is_file() for p in offline_cache.rglob("*"))


def test_offline_saad_prints_its_paper_defaults_and_stops_at_its_teacher(cli, offline_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("distill", "--method", "saad", "--student", "resnet18", code=1)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 2, result.output
    for part in ("--data cifar10", "--recipe paper (the saad paper's schedule", "--teacher "
                 "Gowal2021Improving_28_10_ddpm_100m (the saad paper's teacher, pulled from RobustBench)"):
        assert part in lines[0], lines[0]
    assert lines[1].startswith("error: cannot download the checkpoint of Gowal2021Improving_28_10_ddpm_100m"), lines[1]
    assert not (tmp_path / "runs").exists() and not any(p.is_file() for p in offline_cache.rglob("*"))
    # The recipe that header names: its code's 200 epochs, x0.1 after 100 and 150, wd 2e-4, SWA from epoch 95.
    config, _ = fill_paper_defaults(TrainConfig(method="saad", student="resnet18"))
    assert config.teachers == {"robust": "Gowal2021Improving_28_10_ddpm_100m"} and config.recipe == "paper"
    row = next(r for r in method_rows() if r["method"] == "saad")
    assert row["recipe"] == "200 ep, x0.1 at 100/150, wd 2e-4, SWA from 95"


def test_list_names_each_method_with_its_paper_attack_loss_teacher_and_recipe(cli):
    result = cli("distill", "--list")
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "(iad)" in rows["iad-i"] and "Zhu et al., ICLR 2022" in rows["iad-i"]
    assert "Zhang2019Theoretically" in rows["iad-i"] and "200 ep, x0.1 at 100/150, wd 2e-4" in rows["iad-i"]
    assert "(igdm)" in rows["adaad+igdm"] and "Wang2023Better_WRN-28-10" in rows["adaad+igdm"]
    assert "Zhang2019Theoretically + Standard" in rows["akd2"] and "SWA from 56" in rows["akd2"]
    cifar100 = json.loads(cli("distill", "--list", "--data", "cifar100", "--json").output)
    by_name = {row["method"]: row for row in cifar100}
    assert by_name["adaad"]["teacher"] == "Chen2021LTD_WRN34_10" and by_name["iad-i"]["teacher"] is None
    assert by_name["iad-i"]["aliases"] == "iad" and by_name["adaad+igdm"]["aliases"] == "igdm"
    # The paper and the official code of each, from the method's `About` (a composition: its term's paper).
    assert (by_name["iad-i"]["url"], by_name["iad-i"]["code"]) == ("https://openreview.net/forum?id=u6TRGdzhfip",
                                                                   "https://github.com/ZFancy/IAD")
    assert by_name["rslad+igdm"]["url"] == "https://arxiv.org/abs/2312.03286" and by_name["kd"]["code"] is None
    links = {line.split(":")[0]: line for line in result.output.splitlines() if "  code " in line}
    assert links["rslad"] == "rslad: paper https://arxiv.org/abs/2108.07969  code https://github.com/zibojia/RSLAD"
    assert links["kd"].endswith("code - (none published)") and set(links) == set(by_name)
    assert links["saad"] == "saad: paper https://arxiv.org/abs/2512.10275  code https://github.com/HongsinLee/saad"
    assert links["dgad"] == "dgad: paper https://arxiv.org/abs/2409.01627  code https://github.com/kunsaram01/DGAD"
    assert "Lee and Chung, TMLR 2026" in rows["saad"] and "Gowal2021Improving_28_10_ddpm_100m" in rows["saad"]
    assert "SWA from 95" in rows["saad"] and "Park and Min, ECCV 2024" in rows["dgad"]
    assert "Chen2021LTD_WRN34_20" in rows["dgad"] and by_name["dgad"]["teacher"] == "Chen2021LTD_WRN34_10"


def test_help_lists_the_aliases(cli):
    result = cli("distill", "--help")
    text = " ".join(" ".join(line.strip(" │").split()) for line in result.output.splitlines())  # unwrapped
    assert "iad = iad-i" in text and "igdm = adaad+igdm" in text and "--list" in text


@pytest.mark.e2e
def test_standard_natural_teacher_converts_to_rdist_wrn_with_equal_logits():
    """RobustBench's `Standard` is its WideResNet(28, 10); rdist's wrn-28-10 holds it exactly (the pull's check)."""
    from rdist.teachers.robustbench import _convert

    zoo = import_robustbench()  # before any robustbench import: it makes `import robustbench` work
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    entry = TEACHERS[("Standard", "cifar10")]
    torch.manual_seed(0)
    reference = zoo.model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Standard"]["model"]().eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
    model = _convert(reference, entry)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)
    assert (entry.arch, entry.clean, entry.autoattack) == ("wrn-28-10", 94.78, 0.0)
