"""PeerAiD against the spec's formulas (float64): the peer's and the student's losses and their gradients, the attack
against the peer, one official training step (main.py L340-404 with LinfPeerAttack, written again from its formulas),
its paper settings; and, through the engine, the command line without a teacher, the trained peer as a model of its
own, and a kill -9 with --resume that ends with the uninterrupted student, peer and weight average."""

from __future__ import annotations

import copy
import dataclasses
import json
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rdist
from rdist.engine import TrainConfig, load_checkpoint, read_log, train
from rdist.engine.step import attack_phase, update_phase
from rdist.methods import Companion, Recipe, Step, create_method, method_rows
from rdist.methods.peeraid import PEER, PeerAiD
from tests.engine.test_resume import killed_run
from tests.methods.conftest import NUM_CLASSES, linear_model, seeded_
from tests.methods.test_new_companion import assert_resumed_companion

EPS = 8 / 255
# The README's run scripts: CIFAR-10 (T 5, gamma2 0.1), CIFAR-100 (gamma2 1), Tiny-ImageNet (its own weights, T 1).
SETTINGS = [{}, {"kl_peer": 1.0}, {"tau": 1.0, "kl_peer": 100.0, "ce_student": 0.035, "kl_student": 35.0,
                                   "self_kl": 20.0}, {"kl_scale": 1.0, "tau_peer": 2.0, "ce_peer": 0.5},
            {"peer_target_grad": False}]


def reference_loss(reference, student, peer, batch, xa, method: PeerAiD):
    """main.py L359-397 from the spec, in KLbm units (the element mean is KLbm / C), and the error float32 may
    honestly leave in it. The peer's target S(xa) is its own forward, detached only when the switch says so."""
    x, xa = batch.x.double(), xa.double()
    peer_adv, target, student_adv, student_clean = peer(xa), student(xa), student(xa), student(x)
    if not method.peer_target_grad:
        target = target.detach()
    scale = method.kl_scale if method.kl_scale is not None else 1 / NUM_CLASSES
    peer_kl, student_kl = method.kl_peer * method.tau_peer ** 2 * scale, method.tau ** 2 * scale
    peer_loss = (method.ce_peer * reference.ce(peer_adv, batch.y)
                 + peer_kl * reference.kl_batchmean(target, peer_adv, method.tau_peer))
    student_loss = (method.ce_student * reference.ce(student_adv, batch.y)
                    + method.kl_student * student_kl * reference.kl_batchmean(peer_adv.detach(), student_adv,
                                                                              method.tau)
                    + method.self_kl * student_kl * reference.kl_batchmean(student_clean, student_adv, method.tau))
    with torch.no_grad():
        error = (reference.float32_error(method.ce_peer, peer_adv) + reference.float32_error(method.ce_student,
                                                                                              student_adv)
                 + reference.float32_error(peer_kl, target, peer_adv, tau=method.tau_peer)
                 + reference.float32_error(student_kl * (method.kl_student + method.self_kl), peer_adv, student_adv,
                                           student_clean, tau=method.tau))
    return peer_loss + student_loss, error


def adversarial(batch: Step) -> torch.Tensor:
    return (batch.x + 0.1 * torch.randn(batch.x.shape, generator=torch.Generator().manual_seed(3)).sign()).clamp(0, 1)


@pytest.mark.parametrize("hparams", SETTINGS)
def test_loss_is_the_peers_and_the_students(student, peer, make_batch, reference, close, float64_logits, hparams):
    batch, method = make_batch(), PeerAiD(**hparams)
    xa = adversarial(batch)
    expected, error = reference_loss(reference, float64_logits(student), float64_logits(peer), batch, xa, method)
    close(method.loss(student, batch, xa), expected, error)
    assert expected > 10 * error  # every term of substance at these logits


def test_label_smoothing_reaches_both_cross_entropies_and_no_kl(student, make_batch, reference, close,
                                                                 float64_logits):
    """--label-smoothing (Step.cross_entropy): the peer's CE and the student's, smoothed; the KL terms as they were."""
    plain, peer = make_batch(), linear_model(seed=7)  # a peer whose smoothing shift is of substance on this batch
    plain.companions = {PEER: peer}
    smoothed, xa, method = dataclasses.replace(plain, label_smoothing=0.1), adversarial(plain), PeerAiD(ce_student=0.5)
    peer_adv, student_adv = float64_logits(peer)(xa), float64_logits(student)(xa)

    def smoothing_shift(logits):  # smoothed CE - CE = 0.1 (log p_y - mean_k log p_k), per example
        log_p = reference.log_softmax(logits)
        return 0.1 * (log_p[torch.arange(len(plain.y)), plain.y] - log_p.mean(dim=1)).mean()

    expected = reference_loss(reference, float64_logits(student), float64_logits(peer), plain, xa, method)[0]
    expected = expected + smoothing_shift(peer_adv) + 0.5 * smoothing_shift(student_adv)
    error = reference_loss(reference, float64_logits(student), float64_logits(peer), plain, xa, method)[1]
    close(method.loss(student, smoothed, xa), expected, error)
    assert abs(smoothing_shift(peer_adv)) > 10 * error and abs(smoothing_shift(student_adv)) > 20 * error


@pytest.mark.parametrize("target_grad", [True, False])
def test_gradients_reach_the_student_and_the_peer_as_the_official_code(student, peer, make_batch, reference,
                                                                       float64_logits, close_gradients, target_grad):
    """The peer gets CE and its KL; the student its own terms, and the peer's KL through S(xa) unless detached."""
    batch, method = make_batch(), PeerAiD(peer_target_grad=target_grad)
    xa = adversarial(batch)
    method.loss(student, batch, xa).backward()
    student64, peer64 = float64_logits(student), float64_logits(peer)
    reference_loss(reference, student64, peer64, batch, xa, method)[0].backward()
    close_gradients(student, student64)
    close_gradients(peer, peer64)
    # The leak is of substance: detached, the student's gradient is its own loss's alone.
    other = copy.deepcopy(student)
    PeerAiD(peer_target_grad=not target_grad).loss(other, make_batch(), xa).backward()
    gap = max((a.grad - b.grad).abs().max() for a, b in zip(student.parameters(), other.parameters()))
    assert gap > 1e-3 * max(p.grad.abs().max() for p in student.parameters())


def attack_objective(reference, student, peer, batch):
    """sum_i KL(p(P(x_i)) || p(S(xa_i))): KLDivLoss(reduce=False) summed (attack_function.py L59-84)."""
    with torch.no_grad():
        peer_clean = peer(batch.x.double())
    return lambda xa: reference.kl(peer_clean, student(xa)).sum()


def test_attack_steps_on_the_kl_from_the_peers_clean_soft_labels(student, peer, make_batch, reference,
                                                                  float64_logits, first_step_follows, check_in_ball):
    objective = attack_objective(reference, float64_logits(student), float64_logits(peer), make_batch())
    first_step_follows(objective, lambda n: PeerAiD(attack_steps=n), student, make_batch)
    start = PeerAiD(attack_steps=0).perturb(student, make_batch(seed=5))
    xa = PeerAiD().perturb(student, make_batch(seed=5))
    check_in_ball(xa, make_batch().x, EPS)
    assert 0 < (start - make_batch().x).abs().amax() < 0.01  # x + 0.001 N(0, 1), not clamped
    with torch.no_grad():
        assert objective(xa.double()) > objective(start.double()) + 0.05
    # Against the peer: another peer, another attack.
    other = make_batch(seed=5)
    other.companions = {PEER: linear_model(seed=7)}
    assert (PeerAiD().perturb(student, other) - xa).abs().amax() > EPS / 2


def bn_model(seed: int) -> nn.Module:
    """Batch norm between two layers, so that the order and the modes of the forwards show in its statistics."""
    return seeded_(nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                 nn.Linear(16, NUM_CLASSES)), seed)


def official_step(student: nn.Module, peer: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor,
                  steps: int, lr: float = 0.1, weight_decay: float = 2e-4) -> torch.Tensor:
    """One iteration of the official `train_kd` loop at the README's CIFAR-10 settings, from the formulas of
    main.py L340-404 and LinfPeerAttack, in PyTorch's own losses (KLDivLoss's element mean, CrossEntropyLoss),
    run on whatever precision the models have. Returns xa; steps both models' SGD."""
    T, tau_r, gamma1, gamma2, lamb1, lamb2, lamb3 = 5.0, 1.0, 1.0, 0.1, 0.0, 1.0, 1.0
    mean_kl = nn.KLDivLoss(reduction="mean")  # the code's nn.KLDivLoss(): the element mean over B x C
    sgd = [torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay) for m in (peer, student)]
    peer.eval()
    with torch.no_grad():
        peer_logits = peer(x)
    student.eval()  # the attack's model.eval()
    xa = start
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        summed = nn.KLDivLoss(reduction="none")(F.log_softmax(student(xa), 1), F.softmax(peer_logits, 1)).sum()
        (grad,) = torch.autograd.grad(summed, xa)
        xa = torch.min(torch.max(xa.detach() + 2 / 255 * grad.sign(), x - EPS), x + EPS).clamp(0, 1)
    peer.train(), student.train()
    adv_outputs = peer(xa)
    target = student(xa)
    loss_peer = (F.cross_entropy(adv_outputs, y) * gamma1
                 + mean_kl(F.log_softmax(adv_outputs / tau_r, 1), F.softmax(target / tau_r, 1)) * gamma2 * tau_r ** 2)
    student_outputs, logit_nat = student(xa), student(x)
    loss_student = (F.cross_entropy(student_outputs, y) * lamb1
                    + mean_kl(F.log_softmax(student_outputs / T, 1), F.softmax(adv_outputs.detach() / T, 1)) * lamb2
                    * T * T
                    + mean_kl(F.log_softmax(student_outputs / T, 1), F.softmax(logit_nat / T, 1)) * lamb3 * T * T)
    for opt in sgd:
        opt.zero_grad()
    (loss_peer + loss_student).backward()
    for opt in sgd:
        opt.step()
    return xa


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")  # the official element mean, on purpose
def test_one_engine_step_is_one_official_step(inputs):
    """The engine's two phases (attack with the peer in eval mode, then one backward and both SGD steps) against the
    official iteration in float64 from the same start: the adversarial batch, then every weight, momentum-free first
    step included, and both networks' BN running statistics (the student's updated by S(xa) twice and S(x), the
    peer's by P(xa) only)."""
    x, y = inputs
    student, peer = bn_model(seed=3), bn_model(seed=5)
    student64, peer64 = copy.deepcopy(student).double(), copy.deepcopy(peer).double()
    method = PeerAiD(attack_steps=3)
    step = Step(x=x, y=y, epoch=1, epochs=300, generator=torch.Generator().manual_seed(0),
                companions={PEER: peer.eval()})
    xa = attack_phase(student, method, step)
    start = x.double() + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).double()
    expected_xa = official_step(student64, peer64, x.double(), y, start, steps=3)
    torch.testing.assert_close(xa.double(), expected_xa, rtol=0, atol=1e-6)

    step.companions = {PEER: peer.train()}
    sgd = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4) for m in (student, peer)]
    # The reference stepped with its own xa; both must have crafted the same one (above) for this to compare steps.
    update_phase(student, method, step, xa, sgd[0], others=[sgd[1]])
    for ours, theirs in ((student, student64), (peer, peer64)):
        for (name, value), expected in zip(ours.state_dict().items(), theirs.state_dict().values()):
            if value.is_floating_point():
                torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6, msg=name)
        assert int(ours[2].num_batches_tracked) == int(theirs[2].num_batches_tracked)
    assert int(student[2].num_batches_tracked) == 3 and int(peer[2].num_batches_tracked) == 1


def test_flags_defaults_recipe_and_paper_settings():
    assert PeerAiD.name == "peeraid" and PeerAiD.kind == "distill" and PeerAiD.bn_mode == "eval"
    assert PeerAiD.teachers == () and PeerAiD.companions == {PEER: Companion()} and PeerAiD.paper_teachers == {}
    assert PeerAiD.defaults() == {"tau": 5.0, "tau_peer": 1.0, "ce_peer": 1.0, "kl_peer": 0.1, "ce_student": 0.0,
                                  "kl_student": 1.0, "self_kl": 1.0, "kl_scale": None, "peer_target_grad": True}
    # configs/PeerAiD_resnet18_cifar10.json: 300 epochs, decays when the 0-based epoch reaches 214, 259 and 284
    # (rdist's milestones, after which the lr is a tenth), SWA from the first decay (the 1-based epoch 215).
    assert PeerAiD.recipe == Recipe(epochs=300, milestones=(214, 259, 284), weight_decay=2e-4, swa_start=215)
    assert PeerAiD.paper_preset("cifar10", "resnet18") == (PeerAiD.recipe, {})
    assert PeerAiD.paper_preset("cifar100", "wrn-34-10") == (PeerAiD.recipe, {"kl_peer": 1.0})
    tiny = {"tau": 1.0, "kl_peer": 100.0, "ce_student": 0.035, "kl_student": 35.0, "self_kl": 20.0}
    assert PeerAiD.paper_preset("tiny-imagenet", "resnet18") == (Recipe(200, (99, 149), 2e-4, swa_start=100), tiny)
    assert PeerAiD.paper_preset("tiny-imagenet", "wrn-34-10") == (Recipe(100, (49, 79), 2e-4, swa_start=50), tiny)
    row = next(r for r in method_rows() if r["method"] == "peeraid")
    assert row["teacher"] is None and row["companions"] == ["peer"]
    assert row["recipe"] == "300 ep, x0.1 at 214/259/284, wd 2e-4, SWA from 215"
    assert (row["url"], row["code"]) == ("https://arxiv.org/abs/2403.06668", "https://github.com/jaewonalive/PeerAiD")
    assert create_method("peeraid", peer_target_grad=False).config()["peer_target_grad"] is False


# -- through the engine and the command line --

def digits_run(out, **overrides) -> TrainConfig:
    """Two short digits epochs of a tinycnn student and peer (18 steps each at batch 64), SWA from the first."""
    values = dict(method="peeraid", student="tinycnn", data="digits", epochs=2, batch_size=64, lr=0.05,
                  attack_steps=2, eval_n=32, swa_start=1, out=str(out))
    return TrainConfig(**{**values, **overrides})


@pytest.mark.e2e
def test_a_killed_run_resumes_to_the_uninterrupted_student_peer_and_average(cli, tmp_path):
    uninterrupted = train(digits_run(tmp_path / "whole"))
    process = killed_run(digits_run(tmp_path / "killed"), uninterrupted.global_step // 2 + 5)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert load_checkpoint(tmp_path / "killed")["epoch"] == 1

    result = cli("distill", "--resume", tmp_path / "killed", "--json")

    assert json.loads(result.stdout)["global_step"] == uninterrupted.global_step
    whole, after_kill = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "killed")
    for part in ("model", "average"):
        assert all(torch.equal(v, after_kill[part][k]) for k, v in whole[part].items()), part
    assert whole["average"]["n_averaged"] == 2  # the average of both epochs, the one before the kill restored
    assert_resumed_companion(tmp_path / "whole", tmp_path / "killed", PEER)
    assert [r.epoch for r in read_log(tmp_path / "killed" / "log.jsonl")] == [1, 2]


@pytest.mark.e2e
def test_distils_from_the_command_line_without_a_teacher_and_its_peer_is_a_model(cli, tmp_path):
    # As the issue types it: no --teacher, and none is asked for.
    result = cli("distill", "--method", "peeraid", "--student", "tinycnn", "--data", "digits", "--epochs", "2",
                 "--out", tmp_path / "run", "--json")
    assert json.loads(result.stdout)["epochs_done"] == 2
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert [record.epoch for record in log] == [1, 2] and all(0 < record.train_loss < 100 for record in log)
    provenance = rdist.read_metadata(tmp_path / "run" / "last.safetensors")["provenance"]
    assert provenance["method"] == "peeraid" and "teacher" not in provenance
    assert provenance["method_config"] == create_method("peeraid").config()
    peer_file = tmp_path / "run" / "peer.safetensors"
    peer = rdist.load_model(str(peer_file))
    assert peer.rdist_arch["name"] == "tinycnn" and peer.rdist_meta["provenance"]["companion"]["role"] == PEER
    # The trained peer is a robust model of its own: rdist attack takes it as any model.
    attacked = cli("attack", peer_file, "--attacks", "clean,pgd20", "--n", "64", "--eps", "32/255", "--json")
    report = json.loads(attacked.stdout)
    assert 0 <= report["accuracy"]["pgd20"] <= report["accuracy"]["clean"] <= 1 and report["accuracy"]["clean"] > 0.1
