"""`--initial-weights MODEL`: a run starts from a model's weights (fine-tuning a published student); the model must be
of the student's architecture and fit the data, and the run records it in its provenance and its identity."""

from __future__ import annotations

import pytest
import torch

import rdist
from rdist.engine import TrainConfig, load_checkpoint, resume_config, train
from rdist.engine.build import build_run
from rdist.errors import RdistError


def config(out, **overrides) -> TrainConfig:
    return TrainConfig(**{"method": "natural", "student": "tinycnn", "data": "digits", "epochs": 1, "batch_size": 64,
                          "eval_n": 32, "out": str(out), **overrides})


@pytest.fixture
def published(tmp_path):
    """A tinycnn digits student as a file, with weights no seed of a new run would draw."""
    torch.manual_seed(123)
    model = rdist.create_model("tinycnn", num_classes=10, in_channels=1)
    return rdist.save_model(model, tmp_path / "published.safetensors", dataset="digits", input_shape=[1, 8, 8])


def test_a_run_starts_from_the_weights_it_is_given_and_records_them(published, tmp_path):
    run = build_run(config(tmp_path / "run", initial_weights=str(published)))
    given = rdist.load_model(published).state_dict()
    state = run.student.state_dict()
    assert state.keys() == given.keys() and all(torch.equal(state[k], given[k]) for k in given)
    fresh = build_run(config(tmp_path / "fresh")).student.state_dict()
    assert not all(torch.equal(fresh[k], given[k]) for k in given), "without it, the seed's initialisation"

    result = train(config(tmp_path / "run", initial_weights=str(published)))
    provenance = rdist.read_metadata(result.best_path)["provenance"]
    assert provenance["initial_weights"] == str(published)
    assert load_checkpoint(tmp_path / "run")["identity"]["initial_weights"] == str(published)
    # Part of what the run is: the same command without it is another run, refused in that directory.
    with pytest.raises(RdistError, match=r"already holds a run of another configuration \(initial_weights "
                                         rf"'{published}' \(run\) vs None \(now\)\)"):
        train(config(tmp_path / "run"))
    assert train(resume_config(tmp_path / "run")).epochs_done == 1, "--resume keeps the run's own"


@pytest.mark.parametrize("student, data, message", [
    ("smallcnn", "digits", "is a tinycnn, not a smallcnn: pass --student tinycnn"),
    ("tinycnn", "subset", "takes inputs of shape (1, 8, 8) but dataset"),
])
def test_weights_that_do_not_fit_are_refused_in_one_line(published, tmp_path, student, data, message):
    from tests.helpers import CIFAR_SUBSET

    if data == "subset":
        if not CIFAR_SUBSET.is_file():
            pytest.skip(f"the shared CIFAR-10 subset is not at {CIFAR_SUBSET}")
        data = f"npz:{CIFAR_SUBSET}"
    with pytest.raises(RdistError) as error:
        build_run(config(tmp_path / "run", student=student, data=data, initial_weights=str(published)))
    text = str(error.value)
    assert text.startswith(f"--initial-weights {published}") and "\n" not in text and message in text, text
    assert not (tmp_path / "run").exists()
