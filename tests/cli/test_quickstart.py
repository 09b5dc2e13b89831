"""`rdist quickstart` end to end, shortened to one epoch per run."""

import json

import pytest

from rdist.artifact import read_metadata, results_key


@pytest.mark.e2e
def test_quickstart_trains_three_models_and_compares_them(cli, tmp_path):
    result = cli("quickstart", "--epochs", "1", "--n", "120", "--out", tmp_path, "--json")
    comparison = json.loads(result.output)
    assert comparison["dataset"] == "digits" and comparison["eps_text"] == "32/255"
    assert comparison["attacks"] == ["clean", "pgd20", "aa:apgd-ce+apgd-t"] and comparison["n"] == 120
    rows = comparison["models"]
    assert [(r["method"], r["arch"]) for r in rows] == [("trades", "smallcnn"), ("rslad", "tinycnn"),
                                                        ("ard", "tinycnn")]
    for row in rows:
        assert row["worst_case"] <= row["accuracy"]["pgd20"] <= row["accuracy"]["clean"]
    teacher = tmp_path / "teacher" / "best.safetensors"
    assert rows[1]["teacher"] and read_metadata(tmp_path / "rslad" / "best.safetensors")["provenance"]["teacher"]
    assert all((tmp_path / run / "log.jsonl").is_file() for run in ("teacher", "rslad", "ard"))
    # the comparison's results were recorded, so a later `rdist compare` reuses them
    key = results_key(comparison["attacks"], "digits", comparison["eps"], comparison["n"])
    assert read_metadata(teacher)["results"][key]["accuracy"] == rows[0]["accuracy"]


def test_epochs_help_states_the_epochs_the_stages_run(cli):
    """The help's default is what runs when --epochs is left out: each stage's own epochs, not one number."""
    from rdist.reproduce.quickstart import STUDENTS, TEACHER

    result = cli("quickstart", "--help", env={"COLUMNS": "400"})
    line = " ".join(next(line for line in result.output.splitlines() if "--epochs" in line).split())
    assert "[default: 10]" not in line
    assert f"{TEACHER.epochs} for the teacher" in line and f"{STUDENTS[0].epochs} for each student" in line, line
    assert {s.epochs for s in STUDENTS} == {STUDENTS[0].epochs}
