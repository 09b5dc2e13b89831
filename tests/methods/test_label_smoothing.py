"""`--label-smoothing` reaches the cross-entropy terms of a method's outer loss through `Step.cross_entropy`, and
nothing else: not the KL terms, not the inner attack."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rdist.methods.natural import Natural
from rdist.methods.rslad import RSLAD
from rdist.methods.trades import TRADES

SMOOTHING = 0.1


def smoothed_ce(reference, logits: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Mean CE against the smoothed target (1 - s) onehot(y) + s / K, in float64: -(1 - s) log p_y - s/K sum_k log p_k."""
    log_p = reference.log_softmax(logits)
    return (-(1 - smoothing) * log_p[torch.arange(len(y)), y] - smoothing * log_p.mean(dim=1)).mean()


def smoothed(batch, smoothing: float = SMOOTHING):
    return dataclasses.replace(batch, label_smoothing=smoothing)


def test_natural_training_minimises_the_smoothed_cross_entropy(student, make_batch, reference, close, float64_logits):
    batch = smoothed(make_batch())
    model = float64_logits(student)
    logits = model(batch.x)
    error = reference.float32_error(1.0, logits)
    close(Natural().loss(student, batch, None), smoothed_ce(reference, logits, batch.y, SMOOTHING), error)
    # Without smoothing (the default) it is the plain CE, a number the tolerance tells apart from the smoothed one.
    close(Natural().loss(student, make_batch(), None), reference.ce(logits, batch.y), error)
    assert abs(reference.ce(logits, batch.y) - smoothed_ce(reference, logits, batch.y, SMOOTHING)) > 10 * error


@pytest.mark.parametrize("beta", [6.0, 1.0])
def test_trades_smooths_its_clean_cross_entropy_and_not_its_kl(student, make_batch, reference, close, float64_logits,
                                                               beta):
    batch = smoothed(make_batch())
    xa = (batch.x - 0.03).clamp(0, 1)
    model = float64_logits(student)
    clean, adversarial = model(batch.x), model(xa)
    expected = smoothed_ce(reference, clean, batch.y, SMOOTHING) + beta * reference.kl_batchmean(clean, adversarial)
    error = reference.float32_error(1.0, clean) + reference.float32_error(beta, clean, adversarial)
    close(TRADES(beta=beta).loss(student, batch, xa), expected, error)


def test_a_loss_of_kl_terms_only_and_every_attack_ignore_the_smoothing(student, make_batch):
    plain, with_smoothing = make_batch(seed=4), smoothed(make_batch(seed=4))
    xa = (plain.x + 0.02).clamp(0, 1)
    assert torch.equal(RSLAD().loss(student, plain, xa), RSLAD().loss(student, with_smoothing, xa))
    # TRADES's attack maximises a KL, SAT-style methods' a hard-label CE (`ce_pgd`): the same perturbation either way
    assert torch.equal(TRADES().perturb(student, plain), TRADES().perturb(student, with_smoothing))
    assert torch.equal(Natural().ce_pgd(student, plain, start="uniform"),
                       Natural().ce_pgd(student, with_smoothing, start="uniform"))
