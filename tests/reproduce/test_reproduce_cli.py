"""`rdist reproduce digits-rslad` end to end on the CPU: every stage, a SIGKILL in the middle, the resume, and
the bad input refused before any training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rdist.reproduce import REPRODUCTIONS
from rdist.reproduce.runner import claim_out
from rdist.catalogues import catalogue_path

PROJECT_REPRODUCTIONS = catalogue_path("reproductions.yaml")  # the project's own catalogue

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> str:
    """The project's digits-rslad entry with shorter stages (a 1-epoch teacher, 2-epoch students, 32 images
    evaluated): every stage, the kill after seed 0's first epoch and the resume stay; the minutes go."""
    (entry,) = [e for e in yaml.safe_load(PROJECT_REPRODUCTIONS.read_text())["reproductions"]
                if e["name"] == "digits-rslad"]
    entry["teacher"]["options"]["epochs"] = 1
    entry["options"].update(epochs=2, attack_steps=3, step_size="12/255", eval_n=32)
    entry["evaluation"]["n"] = 32
    path = tmp_path_factory.mktemp("catalogue") / "reproductions.yaml"
    path.write_text(yaml.safe_dump({"reproductions": [entry]}, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def uninterrupted(cli, catalogue, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted") / "digits"
    result = cli("reproduce", "digits-rslad", "--catalogue", catalogue, "--seeds", "0,1", "--out", str(out), "--json")
    return json.loads(result.stdout)


@pytest.mark.e2e
def test_every_stage_leaves_its_output(uninterrupted):
    out = Path(uninterrupted["out"])
    assert (out / "reproduction.json").is_file() and (out / "teacher" / "best.safetensors").is_file()
    for seed in (0, 1):
        assert {"checkpoint.pt", "best.safetensors", "eval.json", "log.jsonl"} <= {
            p.name for p in (out / f"seed-{seed}").iterdir()}
    summary = uninterrupted["summary"]
    for metric in ("clean", "pgd20", "aa"):
        row = summary[metric]
        values = list(row["seeds"].values())
        assert row["mean"] == pytest.approx(sum(values) / 2)
        # Sample std of two values: |a - b| / sqrt(2).
        assert row["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
        assert row["gap"] == pytest.approx(row["mean"] - row["published"])
    assert summary["aa"]["mean"] <= summary["pgd20"]["mean"] + 1e-9 <= summary["clean"]["mean"] + 2e-9


@pytest.mark.e2e
def test_killed_in_the_middle_and_resumed_to_the_same_table(cli, uninterrupted, catalogue, tmp_path):
    out = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", "from rdist.cli.app import main; main()", "reproduce",
                                "digits-rslad", "--catalogue", catalogue, "--seeds", "0,1", "--out", str(out), "--quiet"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        # The teacher stage is done and seed 0's student has finished its first epoch: kill it mid-stage.
        while not (out / "seed-0" / "checkpoint.pt").exists():
            assert process.poll() is None, "the reproduction ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (out / "seed-1" / "eval.json").exists()

    resumed = cli("reproduce", "digits-rslad", "--catalogue", catalogue, "--seeds", "0,1", "--out", str(out), "--json")
    assert json.loads(resumed.stdout)["summary"] == uninterrupted["summary"]

    # Everything is done now: a third run only reads the stages' outputs and prints the table.
    table = cli("reproduce", "digits-rslad", "--catalogue", catalogue, "--seeds", "0,1", "--out", str(out))
    assert "trained and evaluated already" in table.output
    summary = uninterrupted["summary"]
    for metric in ("clean", "pgd20"):
        row = summary[metric]
        assert f"{row['mean']:.2f} ± {row['std']:.2f}" in table.output
        assert f"{round(row['gap'], 2) or 0.0:+.2f}" in table.output
    assert "seed 0" in table.output and "seed 1" in table.output and "published" in table.output


@pytest.mark.parametrize("seeds, message", [("0,1,1", "repeats seed 1"), ("0;1", "cannot read --seeds '0;1'"),
                                            ("-1", "cannot read --seeds")])
def test_bad_seeds_are_one_line(cli, seeds, message, tmp_path):
    cli.fails(["reproduce", "digits-rslad", "--seeds", seeds, "--out", str(tmp_path / "x")], message)
    assert not (tmp_path / "x").exists()


def test_an_out_holding_another_reproduction_is_refused(cli, tmp_path):
    entries = REPRODUCTIONS.load()
    other = REPRODUCTIONS.find("rslad-resnet18-cifar10", entries)
    claim_out(tmp_path / "other", other, other.select_on)
    cli.fails(["reproduce", "digits-rslad", "--out", str(tmp_path / "other")],
              "holds the reproduction rslad-resnet18-cifar10", "not digits-rslad")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "notes.txt").write_text("mine")
    cli.fails(["reproduce", "digits-rslad", "--out", str(tmp_path / "files")], "is not a reproduction directory")
    # The same name with another selection protocol is another reproduction too.
    digits = REPRODUCTIONS.find("digits-rslad", entries)
    claim_out(tmp_path / "val", digits, "val")
    cli.fails(["reproduce", "digits-rslad", "--select-on", "test", "--out", str(tmp_path / "val")], "select on val")


def test_push_of_a_row_without_full_autoattack_is_refused_before_training(cli, tmp_path):
    cli.fails(["reproduce", "digits-rslad", "--push", "org/digits", "--out", str(tmp_path / "x")],
              "records full AutoAttack", "aa:apgd-ce+apgd-t")
    assert not (tmp_path / "x").exists()
