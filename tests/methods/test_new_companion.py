"""A method that trains a second network and learns as it goes is one new class too: nothing in rdist/engine changes.

`Tutor` has no teacher. A peer network, a companion the engine builds and trains beside the student (PeerAiD's
shape), learns the labels on the student's adversarial examples, and the student distils from it. Its state (B-MTARD's
shape): a weight on the distillation term that follows the two terms' losses relative to the first step's, and
per-class weights that each epoch's end sets from the epoch's mistakes, summed over the ranks (Fair-ARD's shape).
Per-example weights are normalised by the global batch's minimum and maximum (SAAD's shape). It is trained through
`rdist.engine.train` and `rdist distill`, killed with SIGKILL and resumed to the uninterrupted run's student, peer and
state; tests/engine/test_distributed.py trains it on two processes and tests/engine/test_forward_count.py counts its
forwards and host syncs.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import rdist
from rdist.engine import LAST, TrainConfig, load_checkpoint, read_log, resume_config, train
from rdist.engine.build import build_run
from rdist.errors import RdistError
from rdist.methods import About, Companion, Method, Recipe, Step, Term, register_method
from rdist.methods import registry
from rdist.methods.losses import kl_per_sample
from tests.engine.test_resume import killed_run

PEER = "peer"


class Tutor(Method):
    name = "tutor"
    companions = {PEER: Companion()}  # the student's architecture, the student's SGD and schedule
    recipe = Recipe(epochs=10, milestones=(5,), weight_decay=5e-4)
    about = About("a test", "PGD on CE(S(xa), y), uniform start", "CE(P(xa), y) + w KL(P(xa) || S(xa)), weighted")

    rate: float = 0.5  # how fast the distillation weight follows the losses' ratio

    def initial_state(self, classes: int) -> dict[str, torch.Tensor]:
        return {"weight": torch.tensor(0.5), "first": torch.zeros(2), "started": torch.tensor(False),
                "class_weight": torch.ones(classes)}

    def epoch_sums(self, classes: int) -> dict[str, torch.Tensor]:
        return {"mistakes": torch.zeros(classes)}

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        return self.ce_pgd(student, step, start="uniform")

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        peer_logits, student_logits = step.companions[PEER](xa), student(xa)
        peer_ce = F.cross_entropy(peer_logits.float(), step.y, reduction="none")
        kl = kl_per_sample(peer_logits.detach(), student_logits)
        hard = peer_ce.detach()
        low, high = step.batch.min(hard), step.batch.max(hard)  # over the global batch
        focus = (1 + (hard - low) / (high - low + 1e-8)) * self.state["class_weight"][step.y]
        total = peer_ce.mean() + self.state["weight"] * (focus * kl).mean()
        with torch.no_grad():  # the state follows the global batch's mean losses, on the device
            losses = torch.stack([step.batch.mean(peer_ce), step.batch.mean(kl)])
            first = torch.where(self.state["started"], self.state["first"], losses)
            ratio = losses / first
            weight = self.state["weight"] - self.rate * step.lr_scale * (self.state["weight"] - ratio[1] / ratio.sum())
            step.sums["mistakes"].index_add_(0, step.y, (student_logits.argmax(1) != step.y).float())
        # Replaced, not written into: `total`'s graph holds the old weight.
        self.state.update(weight=weight, first=first, started=torch.ones_like(self.state["started"]))
        return total

    def on_epoch_end(self, epoch: int, sums: dict[str, torch.Tensor]) -> None:
        mistakes = sums["mistakes"]
        self.state["class_weight"] = 1 + mistakes / mistakes.sum().clamp(min=1)


@pytest.fixture
def registered(monkeypatch):
    """What `@register_method` above the class does in a method's own file, undone after the test."""
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    register_method(Tutor)


def tutor_config(out: Path, **overrides) -> TrainConfig:
    """A short digits run of a tinycnn student and peer: 18 steps an epoch (1,150 training images, batch 64)."""
    values = dict(method=Tutor.name, student="tinycnn", data="digits", epochs=3, batch_size=64, lr=0.05,
                  attack_steps=2, eval_n=32, out=str(out))
    return TrainConfig(**{**values, **overrides})


@pytest.mark.e2e
def test_a_killed_run_resumes_to_the_uninterrupted_student_peer_and_state(registered, tmp_path):
    uninterrupted = train(tutor_config(tmp_path / "whole"))
    steps_per_epoch = uninterrupted.global_step // 3
    process = killed_run(tutor_config(tmp_path / "killed"), steps_per_epoch + 5, f"{__name__}:Tutor")
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert load_checkpoint(tmp_path / "killed")["epoch"] == 1

    resumed = train(resume_config(tmp_path / "killed"))

    assert resumed.global_step == uninterrupted.global_step and resumed.epochs_done == 3
    whole, after_kill = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "killed")
    for part in ("model", "method_state"):
        assert whole[part].keys() == after_kill[part].keys()
        assert all(torch.equal(v, after_kill[part][k]) for k, v in whole[part].items()), part
    assert_resumed_companion(tmp_path / "whole", tmp_path / "killed", PEER)
    # The companion's lr schedule, as the student's, steps after every optimiser step.
    assert whole["companions"][PEER]["scheduler"]["last_epoch"] == uninterrupted.global_step
    # The state moved: the weight from its 0.5, the class weights from ones at each epoch's end.
    state = whole["method_state"]
    assert state["started"] and abs(state["weight"] - 0.5) > 1e-3 and not torch.equal(state["class_weight"],
                                                                                       torch.ones(10))
    assert [r.epoch for r in read_log(tmp_path / "killed" / "log.jsonl")] == [1, 2, 3]


def assert_resumed_companion(whole_dir: Path, killed_dir: Path, role: str) -> None:
    """The companion `role` of the killed and resumed run in `killed_dir` is the uninterrupted run's, exactly: its
    weights, its optimiser's momentum and its schedule in checkpoint.pt, and the artifacts the uninterrupted run
    wrote (last.safetensors, <role>.safetensors), which the killed run rewrote after its resume."""
    whole, after_kill = (load_checkpoint(d)["companions"][role] for d in (whole_dir, killed_dir))
    assert all(torch.equal(v, after_kill["model"][k]) for k, v in whole["model"].items())
    momentum = [s["momentum_buffer"] for s in whole["optimizer"]["state"].values()]
    assert momentum and all(torch.equal(m, s["momentum_buffer"]) for m, s in
                            zip(momentum, after_kill["optimizer"]["state"].values()))
    assert whole["scheduler"] == after_kill["scheduler"]
    for name in (LAST, f"{role}.safetensors"):
        first, second = load_file(str(whole_dir / name)), load_file(str(killed_dir / name))
        assert all(torch.equal(v, second[k]) for k, v in first.items()), name


def test_the_peer_is_a_model_of_its_own_with_the_runs_provenance(registered, tmp_path):
    result = train(tutor_config(tmp_path, epochs=1, max_steps=3))
    peer = rdist.load_model(str(tmp_path / "peer.safetensors"))
    provenance = peer.rdist_meta["provenance"]
    assert provenance["method"] == "tutor" and provenance["epoch"] == 1 and provenance["global_step"] == 3
    assert provenance["companion"]["role"] == PEER and provenance["companion"]["model"] == "tinycnn"
    assert provenance["companion"]["schedule"]["lr"] == 0.05 and provenance["companion"]["momentum"] == 0.9
    student = rdist.load_model(str(result.last_path))
    assert not all(torch.equal(v, student.state_dict()[k]) for k, v in peer.state_dict().items())


def test_a_stateful_method_updates_its_state_from_the_losses_of_the_first_step(registered):
    """Two steps by hand: the first records its losses and moves the weight by rate * (w - 1/2); the second moves it
    towards the share of its distillation loss relative to the first step's."""
    torch.manual_seed(0)
    student, peer = (rdist.create_model("tinycnn", num_classes=10, in_channels=1) for _ in range(2))
    digits = rdist.load_dataset("digits")
    x, y = digits.x_train[:16].float() / 255, digits.y_train[:16]
    method = Tutor(rate=0.25)
    method.reset_state(10)
    losses = []
    for step_number in (1, 2):
        step = Step(x, y, epoch=1, epochs=2, companions={PEER: peer}, sums=method.new_sums(10))
        with torch.no_grad():
            peer_ce = F.cross_entropy(peer(x), y, reduction="none").mean()
            kl = kl_per_sample(peer(x), student(x)).mean()
        losses.append(torch.stack([peer_ce, kl]))
        weight = method.state["weight"].clone()
        method.loss(student, step, x).backward()
        ratio = losses[-1] / losses[0]
        torch.testing.assert_close(method.state["weight"], weight - 0.25 * (weight - ratio[1] / ratio.sum()))
        torch.testing.assert_close(method.state["first"], losses[0])
        torch.testing.assert_close(step.sums["mistakes"].sum(), (student(x).argmax(1) != y).sum().float())
        with torch.no_grad():
            for p in student.parameters():
                p -= 0.5 * p.grad
                p.grad = None
    assert method.state["weight"] != 0.5 and method.state["started"]


def test_the_cli_builds_the_peer_of_another_architecture_or_from_a_model(registered, tmp_path, cli):
    common = ["distill", "--method", Tutor.name, "--student", "tinycnn", "--data", "digits", "--epochs", "1",
              "--max-steps", "2", "--batch-size", "32", "--steps", "2", "--eval-n", "16", "--device", "cpu"]
    result = cli(*common, "--companion", "peer=smallcnn", "--out", tmp_path / "cli", "--json")
    peer = rdist.load_model(str(tmp_path / "cli" / "peer.safetensors"))
    assert peer.rdist_arch["name"] == "smallcnn" and peer.rdist_meta["provenance"]["companion"]["model"] == "smallcnn"
    assert json.loads(result.stdout)["global_step"] == 2

    # A model to start from: the run's peer is that model's weights before the first step.
    start = tmp_path / "cli" / "peer.safetensors"
    run = build_run(tutor_config(tmp_path / "from-model", companions={PEER: str(start)}).with_absolute_paths())
    assert all(torch.equal(v, peer.state_dict()[k]) for k, v in run.companions[PEER].state_dict().items())
    assert all(p.requires_grad for p in run.companions[PEER].parameters())


def test_companions_a_method_does_not_declare_or_that_do_not_fit_are_refused(registered, tmp_path, cli):
    with pytest.raises(RdistError, match=r"tutor has no companion 'guide': drop --companion guide=\.\.\. "
                                         r"\(its companions: peer\)"):
        train(tutor_config(tmp_path / "a", companions={"guide": "tinycnn"}))
    with pytest.raises(RdistError, match=r"natural has no companion 'peer'.*it trains no companion"):
        train(TrainConfig(method="natural", student="tinycnn", data="digits", epochs=1,
                          companions={PEER: "tinycnn"}, out=str(tmp_path / "b")))
    cifar = rdist.save_model(rdist.create_model("tinycnn", num_classes=100, in_channels=1),
                             tmp_path / "hundred.safetensors", dataset="cifar100", input_shape=[1, 8, 8])
    with pytest.raises(RdistError, match=r"companion peer .* has 100 classes but dataset digits has 10"):
        build_run(tutor_config(tmp_path / "c", companions={PEER: str(cifar)}).with_absolute_paths())
    cli.fails(["distill", "--method", Tutor.name, "--student", "tinycnn", "--companion", "resnet18", "--epochs", "1"],
              "cannot read --companion 'resnet18': write ROLE=ARCH")


class Counted(Term):
    """A term with state of its own over a stateful base: the composition keeps both."""

    term = "counted"
    bases = (Tutor.name,)

    def initial_state(self, classes: int) -> dict[str, torch.Tensor]:
        return {"steps": torch.zeros((), dtype=torch.int64)}

    def epoch_sums(self, classes: int) -> dict[str, torch.Tensor]:
        return {"seen": torch.zeros(classes)}

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        self.state["steps"] = self.state["steps"] + 1
        return self.base.loss(student, step, xa)

    def on_epoch_end(self, epoch: int, sums: dict[str, torch.Tensor]) -> None:
        self.state["steps"] = self.state["steps"] * 0


def test_a_composition_keeps_its_bases_state_and_its_own():
    method = Counted(Tutor())
    assert method.companions == {PEER: Companion()}
    method.reset_state(3)
    assert set(method.state_dict()) == {"base.weight", "base.first", "base.started", "base.class_weight", "steps"}
    assert set(method.new_sums(3)) == {"mistakes", "seen"} and len(method.state_tensors()) == 5
    method.state["steps"] = torch.tensor(7)
    method.base.state["weight"] = torch.tensor(0.25)
    saved = method.state_dict()
    method.reset_state(3)
    method.load_state_dict(saved)
    assert method.state["steps"] == 7 and method.base.state["weight"] == 0.25
    method.end_epoch(1, {"mistakes": torch.tensor([1.0, 0.0, 3.0]), "seen": torch.zeros(3)})
    assert method.state["steps"] == 0 and torch.equal(method.base.state["class_weight"], torch.tensor([1.25, 1, 1.75]))
    with pytest.raises(RdistError, match=r"method tutor keeps state \['class_weight', 'first', 'started', 'weight'\], "
                                         r"the checkpoint holds \['weight'\]"):
        method.load_state_dict({"base.weight": torch.tensor(0.5), "steps": torch.tensor(1)})
    with pytest.raises(RdistError, match=r"state steps is torch.int64 \(\), the checkpoint's torch.float32 \(2,\)"):
        method.load_state_dict({**saved, "steps": torch.zeros(2)})


def test_a_step_tells_the_method_how_far_the_lr_has_decayed(registered, tmp_path, monkeypatch):
    """B-MTARD decays its own update rates with the student's lr: step.lr_scale is 1, then 0.1 after a milestone."""
    seen = []
    loss = Tutor.loss
    monkeypatch.setattr(Tutor, "loss", lambda self, student, step, xa: seen.append((step.epoch, step.lr_scale))
                        or loss(self, student, step, xa))
    train(tutor_config(tmp_path, epochs=2, milestones=(1,), max_steps=20))
    assert sorted(set(seen)) == [(1, 1.0), (2, pytest.approx(0.1))] and len(seen) == 20
