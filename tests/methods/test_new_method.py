"""A method with a third model is one new class, registered by `@register_method`: nothing in rdist/engine changes.

`TwoTeachers` distils from the average of two robust teachers' soft labels, a "robust" one and a "peer": a
student, two teachers, and a role the engine has never heard of. It is trained through the public entry points
(`rdist.engine.train` and `rdist distill`), resumed, and its loss checked against a float64 formula.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import rdist
from rdist.cli.options import hparam_help
from rdist.engine import TrainConfig, load_checkpoint, resume_config, train
from rdist.errors import RdistError
from rdist.methods import ROBUST, About, Method, Recipe, Step, create_method, register_method
from rdist.methods import registry
from rdist.methods.losses import kl_batchmean

PEER = "peer"


class TwoTeachers(Method):
    name = "two-teachers"
    teachers = (ROBUST, PEER)
    recipe = Recipe(epochs=10, milestones=(5,), weight_decay=5e-4)
    about = About("a test", "PGD on CE(S(xa), y), uniform start", "KL(mean of two teachers' p(T(x)) || S(xa))")

    peer_weight: float = 0.5  # the peer's share of the soft labels

    def perturb(self, student: nn.Module, batch: Step) -> torch.Tensor:
        return self.ce_pgd(student, batch, start="uniform")

    def loss(self, student: nn.Module, batch: Step, xa: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p = ((1 - self.peer_weight) * batch.teachers[ROBUST](batch.x).softmax(1)
                 + self.peer_weight * batch.teachers[PEER](batch.x).softmax(1))
        return kl_batchmean(p.log(), student(xa))  # log-probabilities are logits of the same softmax


@pytest.fixture
def registered(monkeypatch):
    """What `@register_method` above the class does in a method's own file, undone after the test."""
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    register_method(TwoTeachers)


def _teacher(path, seed: int) -> str:
    torch.manual_seed(seed)
    model = rdist.create_model("smallcnn", num_classes=10, in_channels=1)
    return str(rdist.save_model(model, path, dataset="digits", input_shape=[1, 8, 8]))


@pytest.fixture
def teacher_files(tmp_path):
    return {ROBUST: _teacher(tmp_path / "robust.safetensors", 1), PEER: _teacher(tmp_path / "peer.safetensors", 2)}


def _config(out, teachers, **overrides) -> TrainConfig:
    values = dict(method=TwoTeachers.name, student="tinycnn", data="digits", teachers=teachers, epochs=2,
                  max_steps=3, batch_size=32, attack_steps=2, eval_n=16, out=str(out))
    return TrainConfig(**{**values, **overrides})


def test_its_loss_is_the_kl_to_the_averaged_teachers(make_batch, student, teacher, natural_teacher, float64_logits,
                                                    reference, close):
    batch = make_batch()
    batch.teachers = {ROBUST: teacher, PEER: natural_teacher}
    method = TwoTeachers(peer_weight=0.25)
    xa = (batch.x + 0.01).clamp(0, 1)
    x64, xa64 = batch.x.double(), xa.double()
    p = 0.75 * reference.softmax(float64_logits(teacher)(x64)) + 0.25 * reference.softmax(
        float64_logits(natural_teacher)(x64))
    adversarial = float64_logits(student)(xa64)
    expected = reference.kl_batchmean(p.log(), adversarial)
    close(method.loss(student, batch, xa), expected, reference.float32_error(1.0, p.log(), adversarial))
    assert method.teachers == (ROBUST, PEER) and TwoTeachers.defaults() == {"peer_weight": 0.5}


def test_it_trains_and_resumes_through_the_engine(registered, teacher_files, tmp_path):
    # 36 steps an epoch (1,150 training images, batch 32): 40 steps end one epoch and cut the second.
    cut = train(_config(tmp_path / "run", teacher_files, max_steps=40, method_args={"peer_weight": 0.3}))
    assert (cut.epochs_done, cut.global_step, cut.stopped_by) == (1, 40, "max_steps")
    assert load_checkpoint(tmp_path / "run")["identity"]["teachers"] == teacher_files
    resumed = train(resume_config(tmp_path / "run"))  # the roles come back from the checkpoint
    assert (resumed.epochs_done, resumed.stopped_by) == (2, "epochs")
    provenance = rdist.load_model(str(resumed.last_path)).rdist_meta["provenance"]
    # Each role is recorded under the artifact's teacher keys, with its architecture.
    assert provenance["teacher"] == teacher_files[ROBUST] and provenance["peer_teacher"] == teacher_files[PEER]
    assert provenance["peer_teacher_arch"] == "smallcnn" and provenance["method_config"]["peer_weight"] == 0.3


def test_the_cli_takes_a_new_role_and_its_hyper_parameter(cli, registered, teacher_files, tmp_path):
    common = ["distill", "--method", TwoTeachers.name, "--student", "tinycnn", "--data", "digits", "--epochs", "1",
              "--max-steps", "2", "--batch-size", "32", "--steps", "2", "--eval-n", "16", "--device", "cpu"]
    result = cli(*common, "--teacher", teacher_files[ROBUST], "--teacher", f"peer={teacher_files[PEER]}", "--hparam",
                 "peer_weight=0.25", "--out", tmp_path / "cli", "--json")
    assert json.loads(result.stdout)["global_step"] == 2
    provenance = rdist.load_model(str(tmp_path / "cli" / "last.safetensors")).rdist_meta["provenance"]
    assert provenance["peer_teacher"] == teacher_files[PEER] and provenance["method_config"]["peer_weight"] == 0.25
    # Its field's comment is the help of its hyper-parameter.
    assert hparam_help("peer_weight").startswith("the peer's share of the soft labels \\[default: the method's paper "
                                                 "value: two-teachers 0.5]")
    cli.fails([*common, "--teacher", teacher_files[ROBUST], "--out", tmp_path / "m"], "needs a peer teacher",
              "--teacher peer=MODEL")


def test_a_role_the_method_does_not_declare_is_refused(registered, teacher_files, tmp_path):
    with pytest.raises(RdistError, match=r"takes no extra teacher: drop --teacher extra=MODEL"):
        train(_config(tmp_path / "run", {**teacher_files, "extra": teacher_files[PEER]}))
    with pytest.raises(RdistError, match=r"peer_weight must be a number, got 'high'"):
        create_method(TwoTeachers.name, peer_weight="high")
