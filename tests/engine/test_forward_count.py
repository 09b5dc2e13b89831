"""The engine's step runs no forward a method does not ask for: training accuracy comes from the logits the
method's own loss computed, not from extra forwards.

For every method, the student and teacher forwards of one engine step are counted and held to those of the
method's `perturb` and `loss` called directly on the same kind of batch; for a method with a companion, the
companion's too.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import rdist
from rdist.data import Batches
from rdist.engine import Callback, TrainConfig
from rdist.engine.build import build_run
from rdist.engine.step import update_phase
from rdist.engine.trainer import Trainer
from rdist.methods import Step, create_method, list_methods, method_class, register_method, registry
from tests.methods.test_new_companion import PEER, Tutor

ATTACK_STEPS, BATCH, STEPS = 2, 32, 3
A = ATTACK_STEPS
# (student, teacher) forwards of one step at epoch 1 (IAD's warm-up), each method's official ones: its attack's
# (A iterates; TRADES's fixed S(x); AdaAD's and DGAD's teacher at every iterate; SAAD's teacher at x, once) and
# its loss's (TRADES: S(x), S(xa), S(x); SAAD: S(xa), S(x - d), S(x) and T(xa), T(x - d); IGDM: two probes each).
FORWARDS = {
    "natural": (1, 0), "sat": (A + 1, 0), "trades": (1 + A + 3, 0), "mart": (A + 2, 0), "kd": (1, 1),
    "ard": (A + 2, 1), "akd2": (A + 1, 2), "iad-i": (A + 3, 1), "iad-ii": (A + 1, 2), "rslad": (A + 2, 1),
    "adaad": (A + 2, A + 1), "dgad": (A + 2, A + 2), "saad": (A + 3, 1 + 2),
    # B-MTARD and MTARD: the attack's A, S(xa) and S(x); Trob(xa) and Tnat(x).
    "bmtard": (A + 2, 2), "mtard": (A + 2, 2),
    "ard+igdm": (A + 4, 3), "rslad+igdm": (A + 4, 3), "adaad+igdm": (A + 4, A + 3),
}
# A method with companions: (student, teachers and companions together). PeerAiD: the attack's A student iterates and
# its peer's P(x), then S(xa) for the peer's target, S(xa), S(x) and P(xa).
FORWARDS["peeraid"] = (A + 3, 2)


class ForwardCounter:
    def __init__(self, *modules: nn.Module | None):
        self.calls = 0
        for module in modules:
            if module is not None:
                module.register_forward_pre_hook(self._count)

    def _count(self, module, args) -> None:
        self.calls += 1


class CountPerStep(Callback):
    """Reads the counters at every step's report (report_every 1): the difference is one step's forwards."""

    report_every = 1

    def __init__(self, student: ForwardCounter, teachers: ForwardCounter):
        self.student, self.teachers, self.per_step = student, teachers, []
        self.last = (0, 0)

    def on_step(self, info) -> None:
        now = (self.student.calls, self.teachers.calls)
        self.per_step.append((now[0] - self.last[0], now[1] - self.last[1]))
        self.last = now


def _direct_forwards(method_name: str, student: nn.Module, teachers: dict[str, nn.Module], x: torch.Tensor,
                     y: torch.Tensor, companions: dict[str, nn.Module]) -> tuple[int, int]:
    """(student, teacher and companion) forwards of the method's perturb and loss run by hand, as the method needs
    them (companions in eval mode in the attack, in train mode in the loss, as the engine hands them over)."""
    student = copy.deepcopy(student)
    teachers = {role: copy.deepcopy(teacher) for role, teacher in teachers.items()}
    companions = {role: copy.deepcopy(companion) for role, companion in companions.items()}
    students, teacher_calls = ForwardCounter(student), ForwardCounter(*teachers.values(), *companions.values())
    method = create_method(method_name, attack_steps=ATTACK_STEPS)
    method.reset_state(10)
    batch = Step(x, y, epoch=1, epochs=10, teachers=teachers, generator=torch.Generator().manual_seed(0),
                 companions={role: companion.eval() for role, companion in companions.items()})
    student.train(method.bn_mode == "train")
    xa = method.perturb(student, batch)
    student.train()
    batch.companions = {role: companion.train() for role, companion in companions.items()}
    method.loss(student, batch, xa).backward()
    return students.calls, teacher_calls.calls


@pytest.mark.parametrize("method", list_methods())
def test_an_engine_step_forwards_only_what_the_method_needs(method, teacher_files, tmp_path):
    cls = method_class(method)
    run = build_run(TrainConfig(
        method=method, student="tinycnn", data="digits", epochs=10, max_steps=STEPS, batch_size=BATCH,
        attack_steps=ATTACK_STEPS, eval_n=16, teachers={role: teacher_files[role] for role in cls.teachers},
        out=str(tmp_path)).with_absolute_paths())
    x, y = next(iter(Batches(run.train_x, run.train_y, BATCH)))
    expected = _direct_forwards(method, run.student, run.teachers, x, y, run.companions)
    counter = CountPerStep(ForwardCounter(run.student), ForwardCounter(*run.teachers.values(),
                                                                       *run.companions.values()))

    Trainer(run, counter).fit()

    assert counter.per_step == [expected] * STEPS
    assert expected == FORWARDS[method]


def test_an_engine_step_forwards_a_companion_only_as_the_method_does(teacher_files, tmp_path, monkeypatch):
    """Tutor's peer runs once a step, in its loss (P(xa)); the student A times in the attack and once in the loss."""
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    register_method(Tutor)
    run = build_run(TrainConfig(method=Tutor.name, student="tinycnn", data="digits", epochs=10, max_steps=STEPS,
                                batch_size=BATCH, attack_steps=ATTACK_STEPS, eval_n=16,
                                out=str(tmp_path)).with_absolute_paths())
    x, y = next(iter(Batches(run.train_x, run.train_y, BATCH)))
    student, peer = copy.deepcopy(run.student), copy.deepcopy(run.companions[PEER])
    students, peers = ForwardCounter(student), ForwardCounter(peer)
    method = create_method(Tutor.name, attack_steps=ATTACK_STEPS)
    method.reset_state(10)
    step = Step(x, y, epoch=1, epochs=10, generator=torch.Generator().manual_seed(0), companions={PEER: peer.eval()},
                sums=method.new_sums(10))
    xa = method.perturb(student.eval(), step)
    step.companions = {PEER: peer.train()}
    method.loss(student.train(), step, xa).backward()
    peer_counter = ForwardCounter(run.companions[PEER])
    counter = CountPerStep(ForwardCounter(run.student), peer_counter)

    Trainer(run, counter).fit()

    assert (students.calls, peers.calls) == (A + 1, 1)
    assert counter.per_step == [(students.calls, peers.calls)] * STEPS


def _batch(teacher: nn.Module) -> Step:
    digits = rdist.load_dataset("digits")
    x, y = next(iter(Batches(digits.x_train, digits.y_train, 64, shuffle=True, seed=0)))
    return Step(x, y, epoch=1, epochs=10, teachers={"robust": teacher}, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method_name, has_clean", [("rslad", True), ("sat", False)])
def test_training_accuracy_counts_the_loss_logits_of_train_mode(method_name, has_clean):
    """RSLAD's loss runs S(x) and S(xa): both are counted; SAT's runs S(xa) only, so clean is not measured."""
    torch.manual_seed(0)
    teacher = rdist.create_model("smallcnn", num_classes=10, in_channels=1).eval().requires_grad_(False)
    student = rdist.create_model("tinycnn", num_classes=10, in_channels=1)
    method = create_method(method_name, attack_steps=2)
    batch = _batch(teacher)
    student.eval()
    xa = method.perturb(student, batch)
    before = copy.deepcopy(student).train()  # train-mode BN normalises by the batch: the loss's own logits
    with torch.no_grad():
        clean = (before(batch.x).argmax(1) == batch.y).sum()
        robust = (before(xa).argmax(1) == batch.y).sum()

    out = update_phase(student, method, batch, xa, torch.optim.SGD(student.parameters(), lr=0.1))

    assert out.images == len(batch.y)
    assert torch.equal(out.robust_correct, robust)
    if has_clean:
        assert torch.equal(out.clean_correct, clean)
    else:
        assert out.clean_correct is None
    assert out.loss.dtype == torch.float32 and out.loss.dim() == 0 and not out.loss.requires_grad
