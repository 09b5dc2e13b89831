"""`rdist reproduce NAME --push ORG/REPO` against the Hub stand-in: the best seed is published through the zoo push
with the reproduction in its card; without a token nothing is trained."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.fixtures.hub import assert_publishes_no_local_path, uploaded_files

# A row small enough for a test, evaluated with full AutoAttack as the zoo requires.
TINY = {"name": "digits-tiny", "teacher": {"method": "sat", "arch": "tinycnn", "options": {"epochs": 1}},
        "method": "rslad", "student": "tinycnn", "dataset": "digits", "select_on": "val",
        "options": {"epochs": 1, "batch_size": 128, "eps": "32/255", "step_size": "16/255", "attack_steps": 2,
                    "eval_n": 40},
        "evaluation": {"n": 12, "eps": "32/255", "aa": "aa"}, "published": {"aa": 20.0},
        "source": {"paper": "a test", "table": "none"}}


def catalogue(tmp_path):
    path = tmp_path / "reproductions.yaml"
    path.write_text(yaml.safe_dump({"reproductions": [TINY]}, sort_keys=False))
    return path


def test_push_without_a_token_is_refused_before_training(cli, hub, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    cli.fails(["reproduce", "digits-tiny", "--catalogue", catalogue(tmp_path), "--push", "org/tiny", "--out",
               tmp_path / "out"], "--push needs a Hugging Face token", "nothing was trained")
    assert not (tmp_path / "out").exists() and hub.state.repos == {}


@pytest.mark.e2e
def test_push_publishes_the_best_seed_with_the_reproduction_in_its_card(cli, hub, tmp_path):
    result = cli("reproduce", "digits-tiny", "--catalogue", str(catalogue(tmp_path)), "--seeds", "0,1", "--push",
                 "rdist-zoo/digits-tiny", "--out", str(tmp_path / "out"), "--quiet")
    entry = yaml.safe_load(result.stdout[result.stdout.index("- name:"):])[0]
    assert (entry["name"], entry["repo"], entry["method"], entry["arch"]) == (
        "digits-tiny", "rdist-zoo/digits-tiny", "rslad", "tinycnn")
    assert entry["command"].endswith("--n 12 --eps 32/255 --seed 0")

    from huggingface_hub import hf_hub_download

    # A cache of the test's own: huggingface_hub read HF_HUB_CACHE at import, and the stand-in's commits repeat.
    card = open(hf_hub_download(entry["repo"], "README.md", revision=entry["revision"], endpoint=hub.url,
                                cache_dir=tmp_path / "test-reads")).read()
    assert "rdist reproduce digits-tiny --seeds 0,1" in card
    assert "| AutoAttack accuracy | 20.00% |" in card and "a test, none" in card
    # The same push as `rdist zoo push`: nothing names this machine's paths (the teacher stage's file, the runs).
    files = uploaded_files(hub, entry["repo"])
    assert_publishes_no_local_path(files, tmp_path)
    reproduction = json.loads(files["config.json"])["reproduction"]
    assert reproduction["out"] == "out" and [(s["run_dir"], s["model"]) for s in reproduction["seeds"]] == [
        ("seed-0", "seed-0/best.safetensors"), ("seed-1", "seed-1/best.safetensors")]
