"""What `rdist zoo push` publishes names no path of the publisher's machine: a student trained here (teacher file,
npz data, run directory, recorded attack report all under one long, unique directory) is pushed to the Hub
stand-in, and config.json, the card and the safetensors metadata are searched for this machine's paths."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load, load_file

from rdist.artifact import read_metadata
from rdist.data import load_dataset
from rdist.engine import TrainConfig, train
from rdist.files import sha256_file
from rdist.report.config import EvalConfig
from rdist.report.robustness import robustness_report
from rdist.zoo.public import public_metadata, public_reproduction, public_text
from tests.fixtures.hub import TOKEN, assert_publishes_no_local_path, safetensors_header, uploaded_files


@pytest.fixture
def publisher(tmp_path):
    """A directory only this test uses, with a name no published text could hold by chance."""
    root = tmp_path / f"publisher-{uuid.uuid4().hex}-home-of-someone-who-keeps-runs-here"
    root.mkdir()
    return root


@pytest.mark.e2e
def test_a_pushed_student_names_no_path_of_the_publishers_machine(cli, hub, publisher):
    digits = load_dataset("digits")
    data = publisher / "datasets" / "digits.npz"
    data.parent.mkdir()
    np.savez(data, **{k: getattr(digits, k).numpy() for k in ("x_train", "y_train", "x_test", "y_test")})
    teacher = train(TrainConfig(method="natural", student="tinycnn", data=f"npz:{data}", epochs=1, batch_size=64,
                                eval_n=32, out=str(publisher / "runs" / "teacher")))
    student = train(TrainConfig(method="rslad", student="tinycnn", data=f"npz:{data}",
                                teachers={"robust": str(teacher.best_path)}, epochs=1, batch_size=64,
                                attack_steps=2, eval_n=32, out=str(publisher / "runs" / "student")))
    robustness_report(str(student.best_path), EvalConfig(attacks="clean,pgd20,aa", n=16), record=True)
    model = student.best_path
    local = read_metadata(model)
    assert local["provenance"]["run_dir"] == str(publisher / "runs" / "student")  # what must not leave the machine
    before = sha256_file(model)

    result = cli("zoo", "push", model, "--repo", "someone/tiny-student")
    assert TOKEN not in result.output
    (entry,) = yaml.safe_load(result.stdout)
    files = uploaded_files(hub, "someone/tiny-student")
    assert_publishes_no_local_path(files, publisher, publisher.parent, data, model)

    # Paths became names: the run directory's, the teacher's, the data file's, the attacked file's.
    meta = json.loads(safetensors_header(files["model.safetensors"])["__metadata__"]["rdist"])
    provenance = meta["provenance"]
    assert (provenance["run_dir"], provenance["teacher"], provenance["dataset"]) == ("student", "best",
                                                                                    "npz:digits.npz")
    assert meta["dataset"] == entry["dataset"] == "npz:digits.npz"
    assert {r["model"] for r in meta["results"].values() if "model" in r} == {"best.safetensors"}
    assert all("|npz:digits.npz" in key for key in meta["results"])
    assert "--data npz:digits.npz" in entry["command"]
    assert json.loads(files["config.json"])["provenance"]["run_dir"] == "student"
    # Everything else as recorded, and the same weights byte for byte; the local file keeps its paths.
    assert {k: v for k, v in meta.items() if k not in ("dataset", "provenance", "results")} == \
        {k: v for k, v in local.items() if k not in ("dataset", "provenance", "results")}
    assert meta["provenance"].keys() == local["provenance"].keys()
    pushed, kept = load(files["model.safetensors"]), load_file(str(model))
    assert pushed.keys() == kept.keys()
    assert all(pushed[k].numpy().tobytes() == kept[k].numpy().tobytes() for k in kept)
    assert sha256_file(model) == before and read_metadata(model) == local

    # The copy is a valid artifact, pinned by the entry's sha256: it pulls, verifies and loads.
    zoo = publisher / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"students": [entry]}, sort_keys=False))
    pulled = cli("zoo", "pull", entry["name"], "--zoo", zoo)
    import rdist

    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(rdist.load_model(pulled.stdout.strip())(x), rdist.load_model(model)(x))


def test_paths_become_names_and_nothing_else_changes():
    assert public_text("npz:/home/ana/data/d.npz:val") == "npz:d.npz:val"
    assert public_text("/home/ana/My Runs/rslad") == "rslad"
    assert public_text("C:\\Users\\ana\\t.safetensors") == "t.safetensors"
    assert public_text("clean+pgd20|npz:/home/ana/d.npz|0.031373|n=32") == "clean+pgd20|npz:d.npz|0.031373|n=32"
    assert public_text("~/teachers/wrn.safetensors") == "wrn.safetensors"
    for kept in ("8/255", "hf-hub:org/repo@main", "zoo:student", "https://arxiv.org/abs/2108.07969", "digits:val",
                 "relative/file.npz", "Zhang2019Theoretically"):
        assert public_text(kept) == kept

    meta = {"format": "rdist-model", "format_version": 1, "arch": {"name": "tinycnn"}, "dataset": "digits",
            "provenance": {"teacher": "/home/ana/t/best.safetensors", "natural_teacher": "zoo:nat",
                           "run_dir": "/home/ana/runs/r1", "imported_from": "/home/ana/ckpt.pt"},
            "results": {"old key": {"model": "/home/ana/runs/r1/best.safetensors", "surrogate": "hf-hub:o/r",
                                    "dataset": "digits", "attacks": ["clean"], "eps": 0.5, "n": 3}}}
    published = public_metadata(meta)
    assert published["provenance"] == {"teacher": "best", "natural_teacher": "zoo:nat", "run_dir": "r1",
                                       "imported_from": "ckpt.pt"}
    assert published["results"] == {"clean|digits|0.500000|n=3": {
        "model": "best.safetensors", "surrogate": "hf-hub:o/r", "dataset": "digits", "attacks": ["clean"],
        "eps": 0.5, "n": 3}}
    assert meta["provenance"]["run_dir"] == "/home/ana/runs/r1", "the argument is not changed"

    reproduction = {"name": "row", "out": "/home/ana/reproductions/row", "source": {"url": "https://x.org/a"},
                    "seeds": [{"seed": 0, "run_dir": "/home/ana/reproductions/row/seed-0",
                               "model": "/home/ana/reproductions/row/seed-0/best.safetensors"}]}
    assert public_reproduction(reproduction) == {
        "name": "row", "out": "row", "source": {"url": "https://x.org/a"},
        "seeds": [{"seed": 0, "run_dir": "seed-0", "model": "seed-0/best.safetensors"}]}
