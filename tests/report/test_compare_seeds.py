"""`rdist compare --runs` on seed groups: runs that differ only by seed are one row, mean ± std, with the seed count,
in the table, the CSV, the JSON and the plots."""

from __future__ import annotations

import csv
import io
import json
import statistics

import pytest


TRAIN = ["--arch", "tinycnn", "--data", "digits", "--epochs", "1", "--batch-size", "256", "--eval-n", "40",
         "--eps", "32/255", "--step-size", "16/255", "--steps", "2", "--quiet"]
COMPARE = ["--attacks", "clean,pgd20", "--n", "40", "--eps", "32/255"]


@pytest.fixture(scope="module")
def groups(cli, tmp_path_factory):
    root = tmp_path_factory.mktemp("seed-groups")
    for method in ("natural", "sat"):
        cli("teacher", "train", "--method", method, *TRAIN, "--seeds", "0,1", "--out", root / method)
    return root


def test_seeds_train_one_run_directory_per_seed_under_the_group(groups):
    for method in ("natural", "sat"):
        assert sorted(p.name for p in (groups / method).iterdir()) == ["seed-0", "seed-1"]
        assert all((groups / method / f"seed-{s}" / "best.safetensors").is_file() for s in (0, 1))


def test_the_same_command_again_continues_the_group_instead_of_retraining(cli, groups):
    before = (groups / "sat" / "seed-1" / "checkpoint.pt").stat().st_mtime_ns
    cli("teacher", "train", "--method", "sat", *TRAIN, "--seeds", "0,1", "--out", groups / "sat")
    assert (groups / "sat" / "seed-1" / "checkpoint.pt").stat().st_mtime_ns == before
    # A different configuration in the same group is refused by the resume's identity check.
    cli.fails(["teacher", "train", "--method", "sat", *TRAIN[:-1], "--lr", "0.01", "--seeds", "0",
               "--out", groups / "sat"], "configuration differs")


def test_two_seeds_of_two_methods_are_two_rows_with_mean_std_and_seed_count(cli, groups, tmp_path):
    result = cli("compare", "--runs", groups / "natural", groups / "sat", *COMPARE,
                 "--csv", tmp_path / "t.csv", "--json", "--plot", tmp_path / "plots",
                 "--sweep", "0,32/255")
    comparison = json.loads(result.stdout)
    rows = {r["label"]: r for r in comparison["models"]}
    assert set(rows) == {"natural", "sat"}
    for row in rows.values():
        assert row["seeds"] == [0, 1] and len(row["members"]) == 2
        for attack in ("clean", "pgd20"):
            values = [m["accuracy"][attack] for m in row["members"]]
            assert row["accuracy"][attack] == pytest.approx(statistics.fmean(values))
            assert row["accuracy_std"][attack] == pytest.approx(statistics.stdev(values))
    assert {p.rsplit("/", 1)[-1] for p in comparison["plots"]} == {
        "robust-accuracy-vs-eps-pgd20.png", "accuracy-vs-params.png", "per-class-accuracy.png", "training-curves.png"}
    assert len(comparison["sweep"]["std"]["sat"]) == 2

    table = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert [r["model"] for r in table] == ["natural", "sat"]
    assert all(r["seeds"] == "2" and r["seed_list"] == "0 1" and r["pgd20_std"] != "" for r in table)

    text = cli("compare", "--runs", groups / "natural", groups / "sat", *COMPARE)
    lines = [line for line in text.output.splitlines() if line.strip().startswith(("natural", "sat"))]
    assert len(lines) == 2 and all(line.count("±") == 3 and " 2 " in line for line in lines), text.output
    assert "seeds" in text.output


def test_runs_of_one_group_given_one_by_one_are_grouped_too(cli, groups):
    runs = [str(groups / "sat" / f"seed-{s}") for s in (0, 1)]
    result = cli("compare", "--runs", *runs, *COMPARE, "--json")
    (row,) = json.loads(result.stdout)["models"]
    assert row["label"] == "sat" and row["seeds"] == [0, 1]
