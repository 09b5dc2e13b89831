"""A term added to other methods (`base+term`, as +igdm) is one new class, registered by `@register_term`: nothing
else in rdist changes.

`Agree` adds a clean-agreement term to ARD and RSLAD, w * KLbm(T(x) || S(x)). The composition is named, listed,
described, checked, built and trained through the public entry points (`rdist.engine.train`), and its loss checked
against a float64 formula.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rdist
from rdist.engine import TrainConfig, train
from rdist.errors import RdistError
from rdist.methods import (ROBUST, About, Step, Term, check_kind, create_method, list_methods, method_class,
                           register_term)
from rdist.methods import registry
from rdist.methods.losses import kl_batchmean
from rdist.methods.rslad import RSLAD


class Agree(Term):
    term = "agree"
    bases = ("ard", "rslad")
    about = About("a test", "the base method's", "w KL(T(x) || S(x))", url="https://example.org/agree")

    agree_weight: float = 0.25  # weight of the clean-agreement term

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_clean = step.teachers[ROBUST](step.x)
        return self.base.loss(student, step, xa) + self.agree_weight * kl_batchmean(teacher_clean, student(step.x))


@pytest.fixture
def registered(monkeypatch):
    """What `@register_term` above the class does in a term's own file, undone after the test."""
    monkeypatch.setattr(registry, "TERMS", dict(registry.TERMS))
    register_term(Agree)


def test_the_registry_composes_it_with_the_bases_it_names(registered):
    assert {"ard+agree", "rslad+agree"} <= set(list_methods("distill")) and "kd+agree" not in list_methods()
    check_kind("rslad+agree", "distill")
    with pytest.raises(RdistError, match=r"\+agree does not work on kd; it composes with ard, rslad"):
        create_method("kd+agree")
    with pytest.raises(RdistError, match=r"\['agree_weight'\] only apply to \+agree methods; use --method "
                                         r"rslad\+agree"):
        create_method("rslad", agree_weight=0.5)
    composed = method_class("rslad+agree")
    assert (composed.name, composed.kind, composed.teachers) == ("rslad+agree", "distill", (ROBUST,))
    assert composed.defaults() == {"kl_scale": 0.1, "agree_weight": 0.25}
    assert composed.about == About("a test on rslad", RSLAD.about.attack, f"{RSLAD.about.loss} + w KL(T(x) || S(x))",
                                   "https://example.org/agree")
    # A term without a recipe or teachers of its own trains as its base's paper says.
    assert composed.paper_preset("cifar100", "resnet18") == RSLAD.paper_preset("cifar100", "resnet18")
    assert composed.paper_teachers == RSLAD.paper_teachers
    method = create_method("rslad+agree", kl_scale=0.5, agree_weight=1.0, attack_steps=3)
    assert isinstance(method.base, RSLAD) and method.base.kl_scale == 0.5 and method.agree_weight == 1.0
    assert (method.name, method.bn_mode, method.teachers, method.recipe) == ("rslad+agree", "eval", (ROBUST,),
                                                                            RSLAD.recipe)
    assert method.attack_steps == method.base.attack_steps == 3
    assert method.config() == {**method.base.config(), "method": "rslad+agree", "agree_weight": 1.0}


def test_its_loss_is_the_bases_plus_the_term(student, teacher, make_batch, reference, close, float64_logits):
    batch = make_batch()
    xa = (batch.x + 0.03).clamp(0, 1)
    student64, teacher64 = float64_logits(student), float64_logits(teacher)
    soft_labels, adversarial, clean = teacher64(batch.x), student64(xa), student64(batch.x)
    base = 0.1 * (5 / 6 * reference.kl_batchmean(soft_labels, adversarial)
                  + 1 / 6 * reference.kl_batchmean(soft_labels, clean))
    expected = base + 0.5 * reference.kl_batchmean(soft_labels, clean)
    error = reference.float32_error(0.1, soft_labels, adversarial, clean) + reference.float32_error(
        0.5, soft_labels, clean)
    close(Agree(RSLAD(), agree_weight=0.5).loss(student, batch, xa), expected, error)
    assert (expected - base).abs() > 10 * error  # the term counts on this batch


def test_it_trains_through_the_engine(registered, tmp_path):
    torch.manual_seed(1)
    teacher = rdist.save_model(rdist.create_model("smallcnn", num_classes=10, in_channels=1),
                               tmp_path / "teacher.safetensors", dataset="digits", input_shape=[1, 8, 8])
    result = train(TrainConfig(method="rslad+agree", student="tinycnn", data="digits", teachers={ROBUST: str(teacher)},
                               epochs=2, max_steps=3, batch_size=32, attack_steps=2, eval_n=16,
                               method_args={"agree_weight": 0.5}, out=str(tmp_path / "run")))
    assert (result.global_step, result.stopped_by) == (3, "max_steps")
    provenance = rdist.load_model(str(result.last_path)).rdist_meta["provenance"]
    assert provenance["method"] == "rslad+agree" and provenance["teacher"] == str(teacher)
    assert provenance["method_config"] == {"method": "rslad+agree", "eps": 8 / 255, "step_size": 2 / 255,
                                           "attack_steps": 2, "kl_scale": 0.1, "agree_weight": 0.5}
