"""Run a list of attacks over a test set in batches and report accuracy per attack and the worst case."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from rdist.attacks.registry import create_attack
from rdist.errors import RdistError
from rdist.utils import format_eps

# (attack name, images done so far, images in all, a note such as an AutoAttack stage)
Progress = Callable[[str, int, int, str], None]


@dataclass
class EvalResult:
    n: int
    eps: float
    accuracy: dict[str, float] = field(default_factory=dict)
    worst_case: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict:
        return {**asdict(self), "eps_text": format_eps(self.eps)}


@contextlib.contextmanager
def _eval_mode(*models: nn.Module | None):
    modes = [(m, m.training) for m in models if m is not None]
    for m, _ in modes:
        m.eval()
    try:
        yield
    finally:
        for m, was_training in modes:
            m.train(was_training)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str], *, eps: float = 8 / 255,
             batch_size: int = 256, seed: int = 0, surrogate: nn.Module | None = None,
             progress: Progress | None = None) -> EvalResult:
    """Accuracy of `model` under each attack on (x, y) (floats in [0, 1] or uint8), in eval mode.

    An example counts as robust to an attack only if it is also classified correctly when clean, so
    no robust accuracy exceeds clean accuracy; `worst_case` requires robustness to every attack.
    """
    if len(x) == 0:
        raise RdistError("no test images to evaluate on: --n must be > 0")
    robust = correct_per_example(model, x, y, attacks, eps=eps, batch_size=batch_size, seed=seed,
                                 surrogate=surrogate, progress=progress)
    return summarize(robust, eps, seed)


def summarize(robust: dict[str, torch.Tensor], eps: float, seed: int) -> EvalResult:
    """The EvalResult of per-example correctness vectors, one per attack (all of the same images)."""
    worst = torch.stack(list(robust.values())).all(0)
    return EvalResult(n=len(worst), eps=eps, seed=seed,
                      accuracy={k: v.float().mean().item() for k, v in robust.items()},
                      worst_case=worst.float().mean().item())


def correct_per_example(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str], *,
                        eps: float = 8 / 255, batch_size: int = 256, seed: int = 0,
                        surrogate: nn.Module | None = None, progress: Progress | None = None,
                        first: int = 0) -> dict[str, torch.Tensor]:
    """For each attack, whether each example of (x, y) resists it (and is correct when clean).

    `first` is the index of x[0] in the whole evaluation set: the attack seeds depend on it, so that a
    shard of the set starting at a batch boundary (data-parallel evaluation) meets exactly the attacks
    the whole set would.
    """
    device = next(model.parameters()).device
    if x.dtype == torch.uint8:
        x = x.float() / 255
    x, y = x.to(device), y.to(device)
    robust = {}
    with _eval_mode(model, surrogate):
        with torch.no_grad():
            clean_correct = torch.cat([model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                                       for i in range(0, len(x), batch_size)])
        for name in attacks:
            if name == "clean":
                robust[name] = clean_correct
                if progress:
                    progress(name, len(x), len(x), "")
                continue
            correct = []
            for start in range(0, len(x), batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                done = start
                stage = (lambda note, done=done: progress(name, done, len(x), note)) if progress else None
                # The batch index enters the seed: the same seed gives the same random starts in every run.
                attack = create_attack(name, model, eps, seed=seed * 100_003 + first + start, surrogate=surrogate,
                                       on_stage=stage)
                x_adv = attack(xb, yb)
                with torch.no_grad():
                    correct.append(model(x_adv).argmax(1) == yb)
                if progress:
                    progress(name, start + len(xb), len(x), "")
            robust[name] = torch.cat(correct) & clean_correct
    return robust
