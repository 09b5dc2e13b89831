"""RobustBench's whole Linf CIFAR zoo in rdist's catalogue: every entry buildable or refused with its reason, the
committed catalogue equal to what the installed robustbench gives, the leaderboard's own numbers, and a teacher of
every architecture family converted from a checkpoint written with RobustBench's own class to the same logits."""

from __future__ import annotations

import dataclasses
import json
import re
from importlib.metadata import version

import pytest
import torch
from torch import nn

import rdist
from rdist.errors import RdistError
from rdist.models import known_architecture
from rdist.resolve import resolve_teacher
from rdist.teachers.catalogue import (CIFAR10_MEAN, CIFAR10_STD, ROBUSTBENCH, SOURCE, TEACHERS, find_teacher,
                                      load_entries)
from rdist.teachers.leaderboard import DATA_FILE, main, scan_zoo
from rdist.teachers.robustbench import artifact_path, checkpoint_path, import_robustbench, pull_teacher

SAAD_TEACHERS = {"Gowal2021Improving_28_10_ddpm_100m": ("dm-wrn-28-10", 36_479_194, "36.5M"),
                 "Bartoldson2024Adversarial_WRN-94-16": ("dm-wrn-94-16", 365_915_610, "365.9M")}


def zoo_dict(dataset: str) -> dict:
    zoo = import_robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return zoo.model_dicts[BenchmarkDataset(dataset)][ThreatModel.Linf]


# ---------------------------------------------------------------- the catalogue against the installed zoo


def test_every_linf_cifar_entry_of_the_installed_zoo_is_buildable_or_refused_with_a_reason():
    for dataset in ("cifar10", "cifar100"):
        assert set(zoo_dict(dataset)) == {n for n, d in ROBUSTBENCH if d == dataset}
    for key, entry in ROBUSTBENCH.items():
        if entry.buildable:
            assert entry.reason is None and TEACHERS[key] is entry and known_architecture(entry.arch), key
            assert entry.params > 0 and isinstance(zoo_dict(entry.dataset)[entry.name]["gdrive_id"], str)
        else:
            assert entry.reason and key not in TEACHERS, key
    reasons = {name: ROBUSTBENCH[(name, dataset)].reason for name, dataset in [
        ("Bai2024MixedNUTS", "cifar10"), ("Debenedetti2022Light_XCiT-S12", "cifar100"), ("Ding2020MMA", "cifar10"),
        ("Kang2021Stable", "cifar10")]}
    assert "combines 2 checkpoints" in reasons["Bai2024MixedNUTS"]
    assert "timm" in reasons["Debenedetti2022Light_XCiT-S12"]
    assert "each image by its own mean" in reasons["Ding2020MMA"]
    assert "neural ODE" in reasons["Kang2021Stable"]
    # Every family rdist builds RobustBench teachers in appears.
    archs = {e.arch for e in TEACHERS.values()}
    for arch in ("wrn-34-10", "dm-wrn-70-16", "dm-preactresnet18", "preactresnet18", "preactresnet18-wong",
                 "resnet18", "resnet50"):
        assert arch in archs


@pytest.mark.e2e
def test_the_committed_catalogue_is_what_the_installed_robustbench_gives():
    """leaderboard.json's zoo part, re-derived now from the installed robustbench (every module on the meta device):
    a robustbench upgrade that changes an entry fails here until the file is regenerated."""
    committed = json.loads(DATA_FILE.read_text())
    assert committed["robustbench_version"] == version("robustbench")
    scanned = scan_zoo(import_robustbench())
    assert [{k: v for k, v in t.items() if k != "leaderboard"} for t in committed["teachers"]] == scanned


def test_leaderboard_numbers_are_robustbenchs_from_the_committed_file():
    """The numbers of model_info/<dataset>/Linf/<name>.json at the recorded commit of RobustBench."""
    expected = {("Zhang2019Theoretically", "cifar10"): (84.92, 53.08, "0.031"),
                ("Standard", "cifar10"): (94.78, 0.0, "8/255"),
                ("Gowal2021Improving_28_10_ddpm_100m", "cifar10"): (87.50, 63.44, "8/255"),
                ("Bartoldson2024Adversarial_WRN-94-16", "cifar10"): (93.68, 73.71, "8/255"),
                ("Chen2021LTD_WRN34_10", "cifar100"): (64.07, 30.59, "8/255"),
                ("Gowal2020Uncovering_extra", "cifar100"): (69.15, 36.88, "8/255")}
    for key, numbers in expected.items():
        entry = ROBUSTBENCH[key]
        assert (entry.clean, entry.autoattack, entry.eps) == numbers, key
    assert ROBUSTBENCH[("Gowal2021Improving_28_10_ddpm_100m", "cifar10")].external == 63.38
    assert ROBUSTBENCH[("Zhang2019Theoretically", "cifar10")].architecture == "WideResNet-34-10"
    assert re.fullmatch(r"[0-9a-f]{40}", SOURCE["model_info_commit"])
    assert SOURCE["source"] == "https://github.com/RobustBench/robustbench"
    for entry in ROBUSTBENCH.values():
        assert 0 <= entry.autoattack <= entry.clean <= 100 and entry.link.startswith("http"), entry.name
        assert entry.leaderboard()["model_info_commit"] == SOURCE["model_info_commit"]


# ---------------------------------------------------------------- rdist teacher list


def test_teacher_list_names_both_saad_teachers_with_their_architectures_and_sizes(cli):
    result = cli("teacher", "list", "--data", "cifar10", "--json")
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    for name, (arch, params, _) in SAAD_TEACHERS.items():
        assert (rows[name]["arch"], rows[name]["params"], rows[name]["buildable"]) == (arch, params, True)
    table = cli("teacher", "list", "--data", "cifar10")
    for name, (arch, _, size) in SAAD_TEACHERS.items():
        row = next(line for line in table.output.splitlines() if line.split()[:1] == [name])
        assert arch in row and size in row and "93.68" in table.output


def test_teacher_list_sorts_and_shows_the_unbuildable_only_when_asked(cli):
    def names(*args):
        result = cli("teacher", "list", "--json", *args)
        return json.loads(result.stdout)

    by_aa = names("--data", "cifar100")
    assert [r["autoattack"] for r in by_aa] == sorted((r["autoattack"] for r in by_aa), reverse=True)
    assert by_aa[0]["model"] == "Wang2023Better_WRN-70-16" and all(r["buildable"] for r in by_aa)
    by_params = names("--sort", "params")
    assert [r["params"] for r in by_params] == sorted(r["params"] for r in by_params)
    by_clean = names("--sort", "clean")
    assert [r["clean"] for r in by_clean] == sorted((r["clean"] for r in by_clean), reverse=True)
    assert [r["model"].lower() for r in names("--sort", "name")] == sorted(r["model"].lower() for r in by_params)

    everything = names("--all")
    assert len(everything) == len(ROBUSTBENCH) > len(by_params) == len(TEACHERS)
    mixed = next(r for r in everything if r["model"] == "Bai2024MixedNUTS" and r["dataset"] == "cifar10")
    assert (mixed["buildable"], mixed["arch"], mixed["pulled"]) == (False, None, False)
    assert "checkpoints" in mixed["reason"]

    table = cli("teacher", "list", "--all", "--data", "cifar10")
    assert "rdist cannot build" in table.output and "Bai2024MixedNUTS" in table.output
    assert "Bai2024MixedNUTS" not in cli("teacher", "list").output
    cli.fails(["teacher", "list", "--sort", "robust"], "unknown --sort order 'robust'")


def test_a_refused_name_says_why_wherever_it_is_used(cli, offline_cache):
    cli.fails(["teacher", "pull", "Bai2024MixedNUTS"],
              "Bai2024MixedNUTS (CIFAR-10) is not a teacher rdist can build", "combines 2 checkpoints")
    with pytest.raises(RdistError, match="ResNeSt-152"):
        resolve_teacher("Sehwag2021Proxy_ResNest152", dataset="cifar10")
    with pytest.raises(RdistError, match="not a teacher rdist can build"):
        find_teacher("Debenedetti2022Light_XCiT-L12", "cifar100")


# ---------------------------------------------------------------- every family, converted to the same logits


def _without_class_constants(state: dict) -> dict:
    """RobustBench's checkpoints of normalising subclasses lack the class's mu/sigma buffers."""
    return {"state_dict": {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in ("mu", "sigma")}}


def _assert_same_logits(teacher, reference: nn.Module, arch: str, mean=None) -> dict:
    path = pull_teacher(teacher.entry.name, teacher.entry.dataset)
    model = rdist.load_model(path)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = reference.eval()(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert expected.std() > 1e-3, "outputs of substance, not a constant"
    assert path == artifact_path(teacher.entry) and model.rdist_arch["name"] == arch
    assert model.rdist_arch["num_classes"] == teacher.entry.num_classes
    if mean is not None:  # the statistics of the RobustBench class, to float32's precision (as it computes)
        assert torch.equal(torch.tensor(model.rdist_arch["mean"]), torch.tensor(mean)), model.rdist_arch["mean"]
    return model.rdist_meta


# (catalogue name, dataset, rdist arch, expected mean, checkpoint layout): real entries of the installed zoo.
REAL = [
    ("Rebuffi2021Fixing_R18_ddpm", "cifar100", "dm-preactresnet18", (0.5071, 0.4865, 0.4409), None),
    ("Sehwag2021Proxy_R18", "cifar10", "resnet18", None, None),
    ("Engstrom2019Robustness", "cifar10", "resnet50", (0.4914, 0.4822, 0.4465), _without_class_constants),
    ("Wong2020Fast", "cifar10", "preactresnet18-wong", CIFAR10_MEAN, _without_class_constants),
    ("Rice2020Overfitting", "cifar100", "preactresnet18", (0.5070751592371323, 0.48654887331495095,
                                                           0.4409178433670343), _without_class_constants),
    ("Addepalli2021Towards_PARN18", "cifar100", "preactresnet18", None, None),
]


@pytest.mark.e2e
@pytest.mark.parametrize("name, dataset, arch, mean, layout", REAL, ids=[r[0] for r in REAL])
def test_a_real_zoo_entry_converts_to_the_same_logits(real_teacher, name, dataset, arch, mean, layout):
    teacher = real_teacher(name, dataset)
    assert teacher.entry.arch == arch
    _, reference = teacher.place_checkpoint(wrap=layout) if layout else teacher.place_checkpoint()
    _assert_same_logits(teacher, reference, arch, mean=mean)


def test_robustbenchs_wrapped_checkpoint_with_extra_keys_converts_and_records_what_it_ignored(real_teacher):
    """Andriushchenko2020Understanding: robustbench reads checkpoint['last'] and loads it with strict=False."""
    teacher = real_teacher("Andriushchenko2020Understanding", "cifar10")
    extra = {"module.extra_head.weight": torch.ones(3)}
    _, reference = teacher.place_checkpoint(wrap=lambda state: {"last": {**state, **extra}, "best": state})
    meta = _assert_same_logits(teacher, reference, "preactresnet18-wong")
    assert meta["provenance"]["ignored_checkpoint_keys"] == ["extra_head.weight"]


def test_an_extra_key_is_refused_for_a_model_robustbench_loads_strictly(tiny_teacher):
    path = checkpoint_path(tiny_teacher.entry)
    tiny_teacher.place_checkpoint(wrap=lambda state: {"state_dict": {**state, "module.extra.weight": torch.ones(1)}})
    with pytest.raises(RdistError, match=r"does not fit .*unexpected 1: extra\.weight"):
        pull_teacher(tiny_teacher.entry.name, "cifar10")
    assert path.is_file() and not artifact_path(tiny_teacher.entry).exists()


def test_pull_stops_before_any_download_when_robustbench_builds_another_architecture(tiny_teacher, monkeypatch):
    """A catalogue made from another robustbench than the installed one: refused on the meta device, so no
    multi-gigabyte download happens first (offline, the download would be the error otherwise)."""
    stale = dataclasses.replace(tiny_teacher.entry, arch="wrn-16-1")
    monkeypatch.setitem(TEACHERS, (stale.name, stale.dataset), stale)
    with pytest.raises(RdistError, match="builds Tiny2019Trades_WRN10 as wrn-10-1, but rdist's catalogue .* says "
                                         "wrn-16-1; install robustbench"):
        pull_teacher(stale.name, "cifar10")


def _small(module_path: str, cls: str, **kwargs):
    def build() -> nn.Module:
        import importlib

        return getattr(importlib.import_module(module_path), cls)(**kwargs)

    return build


# Small depth/width variants of RobustBench's own classes: (name, dataset, builder, rdist arch, mean).
SMALL = [
    ("TinyRice_WRN10", "cifar10", _small("robustbench.model_zoo.cifar10", "Rice2020OverfittingNet", depth=10,
                                          widen_factor=1), "wrn-10-1", CIFAR10_MEAN),
    ("TinyChen_WRN10", "cifar100", _small("robustbench.model_zoo.cifar100", "Chen2020EfficientNet", depth=10,
                                          widen_factor=2), "wrn-10-2", (0.5071, 0.4867, 0.4408)),
    ("TinyHendrycks_WRN10", "cifar10", _small("robustbench.model_zoo.cifar10", "Hendrycks2019UsingNet", depth=10,
                                              widen_factor=1), "wrn-10-1", (0.5, 0.5, 0.5)),
    ("TinyWu_WRN10", "cifar100", _small("robustbench.model_zoo.cifar100", "Wu2020AdversarialNet", depth=10,
                                        widen_factor=1), "wrn-10-1",
     (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)),
    ("TinyBartoldson_DMWRN10", "cifar10", _small("robustbench.model_zoo.architectures.dm_wide_resnet", "DMWideResNet",
                                                 num_classes=10, depth=10, width=2, activation_fn=nn.SiLU,
                                                 mean=CIFAR10_MEAN, std=CIFAR10_STD), "dm-wrn-10-2", CIFAR10_MEAN),
]


@pytest.mark.parametrize("name, dataset, build, arch, mean", SMALL, ids=[s[0] for s in SMALL])
def test_a_small_variant_of_a_zoo_class_converts_to_the_same_logits(zoo_teacher, name, dataset, build, arch, mean):
    import_robustbench()
    teacher = zoo_teacher(name, dataset, build)
    assert teacher.entry.arch == arch and torch.equal(torch.tensor(teacher.entry.mean), torch.tensor(mean))
    _, reference = teacher.place_checkpoint(wrap=_without_class_constants)
    _assert_same_logits(teacher, reference, arch, mean=mean)


def test_an_entry_without_model_info_has_no_numbers_and_the_list_says_so(cli, zoo_teacher):
    import_robustbench()
    teacher = zoo_teacher("TinyHendrycks_WRN10", "cifar10", SMALL[2][2])
    assert teacher.entry.clean is None and teacher.entry.autoattack is None
    table = cli("teacher", "list", "--data", "cifar10")
    row = next(line for line in table.output.splitlines() if "TinyHendrycks_WRN10" in line)
    assert row.split()[-2:] == ["-", "-"] and "RobustBench published no numbers" in table.output
    teacher.place_checkpoint()
    result = cli("teacher", "pull", teacher.entry.name)
    assert "RobustBench published no numbers" in result.output


# ---------------------------------------------------------------- the tool that writes leaderboard.json

# RobustBench's record of TRADES, as model_info/cifar10/Linf/Zhang2019Theoretically.json holds it.
TRADES_INFO = {"link": "https://arxiv.org/abs/1901.08573",
               "name": "Theoretically Principled Trade-off between Robustness and Accuracy",
               "authors": "Hongyang Zhang, Yaodong Yu, Jiantao Jiao, Eric P. Xing, Laurent El Ghaoui, "
                          "Michael I. Jordan",
               "additional_data": False, "number_forward_passes": 1, "dataset": "cifar10", "venue": "ICML 2019",
               "architecture": "WideResNet-34-10", "eps": "0.031", "clean_acc": "84.92", "reported": "56.43",
               "footnote": "Uses \\(\\ell_{\\infty} \\) = 0.031 \u2248 7.9/255 instead of 8/255.",
               "autoattack_acc": "53.08"}


@pytest.mark.e2e
def test_the_tool_copies_model_info_and_leaves_entries_without_it_without_numbers(tmp_path, capsys):
    info = tmp_path / "model_info"
    for dataset in ("cifar10", "cifar100"):
        (info / dataset / "Linf").mkdir(parents=True)
    (info / "cifar10" / "Linf" / "Zhang2019Theoretically.json").write_text(json.dumps(TRADES_INFO))
    out = tmp_path / "leaderboard.json"
    assert main(["--from", str(info), "--commit", "ab" * 20, "--output", str(out)]) == 0
    assert f"{len(ROBUSTBENCH) - 1} without model_info" in capsys.readouterr().out
    header, entries = load_entries(out)
    assert (header["model_info_commit"], header["robustbench_version"]) == ("ab" * 20, version("robustbench"))
    by_key = {(e.name, e.dataset): e for e in entries}
    assert set(by_key) == set(ROBUSTBENCH)
    trades = by_key[("Zhang2019Theoretically", "cifar10")]
    assert (trades.clean, trades.autoattack, trades.eps, trades.arch) == (84.92, 53.08, "0.031", "wrn-34-10")
    assert trades.paper == TRADES_INFO["name"] and trades.additional_data is False
    others = [e for key, e in by_key.items() if key != ("Zhang2019Theoretically", "cifar10")]
    assert all(e.clean is None and e.autoattack is None and e.model_info_commit is None for e in others)


@pytest.mark.parametrize("problem", ["not model_info", "bad commit", "bad record"])
def test_the_tool_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, capsys, problem):
    info = tmp_path / "model_info"
    for dataset in ("cifar10", "cifar100"):
        (info / dataset / "Linf").mkdir(parents=True)
    (info / "cifar10" / "Linf" / "Standard.json").write_text('{"clean_acc": "n/a"}')
    source = tmp_path if problem == "not model_info" else info
    commit = "HEAD" if problem == "bad commit" else "ab" * 20
    out = tmp_path / "leaderboard.json"
    assert main(["--from", str(source), "--commit", commit, "--output", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert {"not model_info": "model_info directory", "bad commit": "40-hex-digit",
            "bad record": "Standard.json is not a RobustBench model_info record"}[problem] in error
    assert not out.exists()
