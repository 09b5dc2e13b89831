"""Shared fixtures for the method tests: tiny seeded models, a fixed batch, and `reference`, the spec's math
written a second time (float64, explicit exp/log) so that tests never check rdist's KL helper against itself."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rdist.methods.base import Step

NUM_CLASSES = 5
INPUT_SHAPE = (2, 3, 3)
BATCH_SIZE = 8


def seeded_(model: nn.Module, seed: int) -> nn.Module:
    """Overwrite every parameter with N(0, 1) draws from `seed`: logits of a few units, so softmaxes are far
    from uniform and every loss term is of substance."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


def linear_model(seed: int) -> nn.Module:
    return seeded_(nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, NUM_CLASSES)), seed)


def frozen(model: nn.Module) -> nn.Module:
    """A teacher as the engine hands it over: eval mode, no parameter gradients."""
    return model.eval().requires_grad_(False)


@pytest.fixture
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch: x in [0, 1] (some pixels near the box edges), labels covering every class."""
    generator = torch.Generator().manual_seed(1234)
    x = torch.rand((BATCH_SIZE, *INPUT_SHAPE), generator=generator)
    y = torch.arange(BATCH_SIZE) % NUM_CLASSES
    return x, y


@pytest.fixture
def student() -> nn.Module:
    return linear_model(seed=0)


@pytest.fixture
def bn_student() -> nn.Module:
    """A student with batch norm, for the methods whose attack runs with BN in train mode."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 16), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, NUM_CLASSES))
    return seeded_(model, seed=3)


@pytest.fixture
def teacher() -> nn.Module:
    return frozen(linear_model(seed=1))


@pytest.fixture
def natural_teacher() -> nn.Module:
    return frozen(linear_model(seed=2))


@pytest.fixture
def peer() -> nn.Module:
    """A companion trained beside the student (PeerAiD's peer): trainable, unlike the teachers."""
    return linear_model(seed=4)


@pytest.fixture
def make_batch(inputs, teacher, natural_teacher, peer):
    """Step factory: `make_batch(seed=0, epoch=1, epochs=10)`; the seed drives the attack's random start."""

    def make(seed: int = 0, epoch: int = 1, epochs: int = 10) -> Step:
        x, y = inputs
        return Step(x=x, y=y, epoch=epoch, epochs=epochs, teachers={"robust": teacher, "natural": natural_teacher},
                    generator=torch.Generator().manual_seed(seed), companions={"peer": peer})

    return make


class Float64Logits(nn.Module):
    """A copy of `model` that computes in float32, as the method does, and hands its logits over in float64.

    The reference maths then start from the very logits the method saw, so the only difference left between the
    two is the float32 arithmetic of the loss itself, which `Reference.float32_error` bounds. (A float64 model would
    add the rounding of every layer, a quantity that depends on the torch build's kernels.)"""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float()).double()


@pytest.fixture
def float64_logits():
    """`float64_logits(model)`: a `Float64Logits` copy for reference computations; the original keeps its own
    parameters and gradients."""
    return Float64Logits


FLOAT32_EPS = torch.finfo(torch.float32).eps
# Roundings a float32 loss may accumulate per unit of magnitude: a log-softmax rounds z / tau, its max shift and
# its log-sum-exp (each about one eps of the entry's size), a KL subtracts two such entries and sums over classes
# and the batch. Measured on torch 2.14.1 (CPU), the losses here sit within 0.4 such roundings of their float64
# values and the gradients within 4 roundings of their largest entry; 16 leaves room for other builds' kernels and
# stays far below any error of substance (a wrong KL scale or direction, a missing term).
ROUNDING_STEPS = 16


class Reference:
    """The spec's definitions on float64 logits, by a different code path from rdist.methods.losses."""

    @staticmethod
    def rounding(size: float) -> float:
        """ROUNDING_STEPS float32 roundings of a number of this size."""
        return ROUNDING_STEPS * FLOAT32_EPS * size

    @classmethod
    def float32_error(cls, weight: float, *logits: torch.Tensor, tau: float = 1.0) -> float:
        """How far float32 may honestly leave `weight * f(logits)` from its float64 value, f a CE or KL of
        log-softmaxes at temperature tau: ROUNDING_STEPS roundings of the largest number in the chain,
        max(|z / tau|, |log_softmax(z / tau)|), times the term's weight.

        This is what makes large-tau terms (ARD's tau^2 = 900 times a KL of near-uniform softmaxes) loose in
        absolute terms: the KL is a difference of two log-probabilities of size log C, multiplied by tau^2."""
        magnitude = max(max((z.double() / tau).abs().max().item(), cls.log_softmax(z, tau).abs().max().item())
                        for z in logits)
        return cls.rounding(abs(weight) * max(magnitude, 1.0))

    @staticmethod
    def log_softmax(logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        z = logits.double() / tau
        z = z - z.max(dim=1, keepdim=True).values
        return z - torch.log(torch.exp(z).sum(dim=1, keepdim=True))

    @classmethod
    def softmax(cls, logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        return torch.exp(cls.log_softmax(logits, tau))

    @classmethod
    def kl(cls, target_logits: torch.Tensor, input_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        """KL(p(target/tau) || p(input/tau)) per example: sum_c P_c (log P_c - log Q_c)."""
        log_p, log_q = cls.log_softmax(target_logits, tau), cls.log_softmax(input_logits, tau)
        return (torch.exp(log_p) * (log_p - log_q)).sum(dim=1)

    @classmethod
    def kl_batchmean(cls, target_logits: torch.Tensor, input_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        return cls.kl(target_logits, input_logits, tau).mean()

    @classmethod
    def ce(cls, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy: -log p_y."""
        return -cls.log_softmax(logits)[torch.arange(len(y)), y].mean()

    @classmethod
    def renyi_entropy(cls, logits: torch.Tensor, order: float, eps: float = 1e-12) -> torch.Tensor:
        """Renyi entropy of p(logits) per example, with SAAD's eps inside the log: -sum_c p_c log(p_c + eps) at order
        1 (Shannon), log(sum_c p_c^order + eps) / (1 - order) otherwise."""
        p = cls.softmax(logits)
        if order == 1:
            return -(p * torch.log(p + eps)).sum(dim=1)
        return torch.log((p ** order).sum(dim=1) + eps) / (1 - order)


@pytest.fixture
def reference() -> type[Reference]:
    return Reference


def assert_close(actual: torch.Tensor, expected: torch.Tensor, error: float) -> None:
    """`actual` (float32) equals the float64 `expected` up to `error` (from `Reference.float32_error`) and the
    rounding of its own size."""
    torch.testing.assert_close(actual.double(), expected.double(), rtol=ROUNDING_STEPS * FLOAT32_EPS, atol=error)


@pytest.fixture
def close():
    """`close(actual, expected, error)`: the same number up to float32's honest error (`Reference.float32_error`)."""
    return assert_close


def assert_close_gradients(model: nn.Module, reference_model: nn.Module) -> None:
    """Each parameter's gradient equals the reference's up to ROUNDING_STEPS roundings of the largest gradient entry
    of the model: both run the same float32 layers backwards from loss gradients that differ by float32 rounding,
    and a gradient that is zero in exact arithmetic (a bias before batch norm) is a sum of such rounded numbers."""
    largest = max(p.grad.abs().max().item() for p in reference_model.parameters())
    for (name, ours), theirs in zip(model.named_parameters(), reference_model.parameters()):
        error = Reference.rounding(largest)
        torch.testing.assert_close(ours.grad.double(), theirs.grad.double(), rtol=0, atol=error, 
                                   msg=lambda message: f"{name}: {message}")


@pytest.fixture
def close_gradients():
    """`close_gradients(model, reference_model)`: parameter gradients agree to float32 rounding."""
    return assert_close_gradients


def assert_first_step_follows(objective64, method_with_steps, student: nn.Module, make_batch,
                              tolerance: float = 1e-6) -> None:
    """The method's attack starts where its random start puts it and takes its first step along the sign of the
    gradient of `objective64` (the spec's inner objective, float64) there, projected to the eps-ball and [0, 1].

    `method_with_steps(n)` builds the method with n attack steps; the starts of both runs are drawn from the same
    seed. Pixels whose float64 gradient is within rounding of zero may take either sign and are left out."""
    start = method_with_steps(0).perturb(student, make_batch(seed=5))
    stepped = method_with_steps(1).perturb(student, make_batch(seed=5))
    method = method_with_steps(1)
    x = make_batch().x.double()
    start64 = start.double().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective64(start64), start64)
    expected = torch.min(torch.max(start.double() + method.step_size * grad.sign(), x - method.eps),
                         x + method.eps).clamp(0, 1)
    decided = grad.abs() > tolerance * grad.abs().max()
    assert decided.float().mean() > 0.9 and grad.abs().max() > 0  # the gradient has a sign almost everywhere
    torch.testing.assert_close(stepped.double()[decided], expected[decided], rtol=0, atol=1e-6)


@pytest.fixture
def first_step_follows():
    """`first_step_follows(objective64, method_with_steps, student, make_batch)`: see `assert_first_step_follows`."""
    return assert_first_step_follows


@pytest.fixture
def check_in_ball():
    """`check_in_ball(xa, x, eps)`: the adversarial batch lies in the L-inf eps-ball around x and in [0, 1]."""

    def check(xa: torch.Tensor, x: torch.Tensor, eps: float) -> None:
        assert xa.shape == x.shape
        assert (xa - x).abs().amax().item() <= eps + 1e-6
        assert xa.min().item() >= 0 and xa.max().item() <= 1

    return check
