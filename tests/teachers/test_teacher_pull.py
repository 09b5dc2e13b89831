"""`rdist teacher pull|list`: RobustBench checkpoints pre-placed in the cache become rdist artifacts with no
network; HTML pages, pickled code, offline downloads and wrong names end in one-line errors and a clean cache."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

import rdist
from rdist.artifact import read_metadata
from rdist.errors import RdistError
from rdist.teachers.catalogue import CIFAR10_MEAN, CIFAR10_STD, TEACHERS, find_teacher
from rdist.teachers.robustbench import artifact_path, checkpoint_path, drive_url, import_robustbench, pull_teacher

CURATED = ["Zhang2019Theoretically", "Chen2021LTD_WRN34_10", "Chen2021LTD_WRN34_20", "Wang2023Better_WRN-28-10",
           "Cui2023Decoupled_WRN-28-10"]


def files_under(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_robustbench_imports_with_the_pypi_packages_and_knows_every_catalogued_teacher():
    zoo = import_robustbench()
    import pyautoattack
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    assert sys.modules["autoattack"] is pyautoattack, "robustbench's `import autoattack` resolves to pyautoattack"
    for (name, dataset), entry in TEACHERS.items():
        spec = zoo.model_dicts[BenchmarkDataset(dataset)][ThreatModel.Linf][name]
        assert isinstance(spec["gdrive_id"], str) and callable(spec["model"]), name
        assert entry.num_classes == (10 if dataset == "cifar10" else 100)
        assert 0 <= entry.autoattack < entry.clean < 100  # 0: the naturally trained `Standard`


def test_catalogue_has_the_curated_teachers_with_leaderboard_numbers():
    for name in CURATED:
        assert (name, "cifar10") in TEACHERS
    for name in ("Chen2021LTD_WRN34_10", "Wang2023Better_WRN-28-10", "Cui2023Decoupled_WRN-28-10"):
        assert (name, "cifar100") in TEACHERS
    trades = TEACHERS[("Zhang2019Theoretically", "cifar10")]
    assert (trades.arch, trades.clean, trades.autoattack, trades.eps) == ("wrn-34-10", 84.92, 53.08, "0.031")
    assert TEACHERS[("Wang2023Better_WRN-28-10", "cifar100")].mean is not None, "DM models normalise inside"


def test_pull_converts_a_prefilled_checkpoint_offline_and_reuses_the_artifact(tiny_teacher, offline_cache):
    checkpoint, reference = tiny_teacher.place_checkpoint()
    path = pull_teacher(tiny_teacher.entry.name, "cifar10")
    assert path == artifact_path(tiny_teacher.entry) and path.is_file()

    model = rdist.load_model(path)
    meta = model.rdist_meta
    assert meta["arch"] == {"name": "wrn-10-1", "num_classes": 10, "in_channels": 3, "mean": None, "std": None}
    assert meta["dataset"] == "cifar10" and meta["input_shape"] == [3, 32, 32]
    assert meta["leaderboard"]["clean"] == 61.5 and meta["leaderboard"]["autoattack"] == 22.25
    assert meta["provenance"]["robustbench_model"] == tiny_teacher.entry.name
    assert len(meta["provenance"]["checkpoint_sha256"]) == 64
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)

    checkpoint.unlink()  # the second pull must not need the checkpoint: the artifact is reused as it is
    stamp = path.stat().st_mtime_ns
    assert pull_teacher(tiny_teacher.entry.name, "cifar10") == path and path.stat().st_mtime_ns == stamp


@pytest.mark.e2e
def test_cli_pulls_a_real_catalogue_teacher_with_its_normalisation(cli, offline_cache):
    """Wang2023Better_WRN-28-10 (DeepMind WRN, SiLU, normalisation inside) from a checkpoint in robustbench's
    cache: the artifact computes what RobustBench's own model computes."""
    zoo = import_robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    entry = TEACHERS[("Wang2023Better_WRN-28-10", "cifar10")]
    torch.manual_seed(0)
    reference = zoo.model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf][entry.name]["model"]()
    checkpoint_path(entry).parent.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoint_path(entry))

    result = cli("teacher", "pull", entry.name)
    assert result.stdout.strip() == str(artifact_path(entry))
    assert "92.44" in result.output and "67.31" in result.output
    model = rdist.load_model(artifact_path(entry))
    assert model.rdist_arch == {"name": "dm-wrn-28-10", "num_classes": 10, "in_channels": 3,
                                "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)}
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x), rtol=1e-4, atol=1e-5)


def test_html_page_in_place_of_the_checkpoint_is_deleted_and_reported(cli, offline_cache):
    entry = TEACHERS[("Zhang2019Theoretically", "cifar10")]
    path = checkpoint_path(entry)
    path.parent.mkdir(parents=True)
    path.write_text("\n<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>")
    cli.fails(["teacher", "pull", entry.name], "HTML page", str(path), drive_url("1hPz9QQwyM7QSuWu-ANG_uXR-29xtL8t_"))
    assert files_under(offline_cache) == [], "the page is deleted and no artifact is written"


def test_offline_download_fails_naming_where_to_put_the_file(offline_cache):
    entry = TEACHERS[("Chen2021LTD_WRN34_10", "cifar100")]
    with pytest.raises(RdistError) as error:
        pull_teacher(entry.name, "cifar100")
    message = str(error.value)
    assert "\n" not in message and "offline" in message
    assert f"save it as {checkpoint_path(entry)}" in message and "drive.google.com" in message
    assert files_under(offline_cache) == [], "a failed download leaves nothing in the cache"


def test_a_checkpoint_that_pickles_code_is_refused_without_running_it(tiny_teacher, tmp_path):
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self):
            return pathlib.Path.touch, (marker,)

    path = checkpoint_path(tiny_teacher.entry)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "extra": Payload()}, path)
    with pytest.raises(RdistError, match="not a weights-only PyTorch checkpoint"):
        pull_teacher(tiny_teacher.entry.name, "cifar10")
    assert not marker.exists(), "the pickled call must never run"
    assert not artifact_path(tiny_teacher.entry).exists()


def test_a_checkpoint_for_another_architecture_is_refused(tiny_teacher):
    path = checkpoint_path(tiny_teacher.entry)
    path.parent.mkdir(parents=True)
    torch.save({"fc.weight": torch.zeros(10, 64), "fc.bias": torch.zeros(10)}, path)
    with pytest.raises(RdistError, match="does not fit RobustBench's architecture of Tiny2019Trades_WRN10"):
        pull_teacher(tiny_teacher.entry.name, "cifar10")
    assert not artifact_path(tiny_teacher.entry).exists()


def test_unknown_names_get_suggestions_and_other_datasets_are_named(cli, offline_cache):
    cli.fails(["teacher", "pull", "Zhang2019Theoreticaly"],
              "unknown teacher 'Zhang2019Theoreticaly'", "did you mean: Zhang2019Theoretically")
    cli.fails(["teacher", "pull", "Zhang2019Theoretically", "--data", "cifar100"], "CIFAR-10 model", "--data cifar10")
    with pytest.raises(RdistError, match="CIFAR-100 model"):
        find_teacher("Gowal2020Uncovering_extra", "cifar10")
    with pytest.raises(RdistError, match="no RobustBench teachers for dataset 'svhn'"):
        find_teacher("Zhang2019Theoretically", "svhn")
    assert files_under(offline_cache) == []


def test_list_shows_the_teachers_with_leaderboard_numbers(cli, tiny_teacher):
    result = cli("teacher", "list", "--data", "cifar100", "--json")
    import json

    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {n for n, d in TEACHERS if d == "cifar100"} and "Zhang2019Theoretically" not in rows
    assert (rows["Chen2021LTD_WRN34_10"]["clean"], rows["Chen2021LTD_WRN34_10"]["autoattack"]) == (64.07, 30.59)
    assert rows["Chen2021LTD_WRN34_10"]["pulled"] is False

    tiny_teacher.place_checkpoint()
    pull_teacher(tiny_teacher.entry.name, "cifar10")
    table = cli("teacher", "list", "--data", "cifar10")
    for name in CURATED:
        assert name in table.output
    assert "84.92" in table.output and "53.08*" in table.output and "eps 0.031" in table.output
    pulled_row = next(line for line in table.output.splitlines() if tiny_teacher.entry.name in line)
    assert "yes" in pulled_row
    assert read_metadata(artifact_path(tiny_teacher.entry))["leaderboard"]["source"] == "RobustBench"
