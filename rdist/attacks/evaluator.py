"""Run a list of attacks over a test set in batches and report accuracy per attack and the worst case: the one
evaluation path of rdist, in one process or sharded over the processes of a torchrun job (`ranks`)."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rdist.attacks.registry import create_attack
from rdist.device import model_device, model_layout, precision_context
from rdist.errors import RdistError
from rdist.parallel import Ranks, distributed, gather_rows, min_over_ranks
from rdist.utils import format_eps

DEFAULT_BATCH_SIZE = 256
# (attack name, images done so far, images in all, a note such as an AutoAttack stage)
Progress = Callable[[str, int, int, str], None]


@dataclass
class EvalResult:
    n: int
    eps: float
    accuracy: dict[str, float] = field(default_factory=dict)
    worst_case: float = 0.0
    seed: int = 0
    precision: str = "fp32"
    batch_size: int = DEFAULT_BATCH_SIZE  # the one the numbers were made with ("auto" resolved)

    def to_dict(self) -> dict:
        return {**asdict(self), "eps_text": format_eps(self.eps)}


AUTO_MAX_BATCH = 4096  # past this a batch fills no GPU better; it only delays the first progress report
# The share of free GPU memory a PGD step's footprint may grow to under --batch-size auto: AutoAttack holds
# several copies of a batch (best points, gradients, restarts) and FAB-T a Jacobian row per target.
AUTO_MEMORY_SHARE = 0.25


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


def auto_batch_size(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32") -> int:
    """The largest batch (a multiple of 256, at most AUTO_MAX_BATCH and len(x)) whose PGD step fits in
    AUTO_MEMORY_SHARE of the free GPU memory, from the measured footprint of one step on 256 images.

    On the CPU memory is not what limits a batch: DEFAULT_BATCH_SIZE.
    """
    device = x.device
    if device.type != "cuda":
        return min(DEFAULT_BATCH_SIZE, len(x))
    probe = min(DEFAULT_BATCH_SIZE, len(x))
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    allocated = torch.cuda.memory_allocated(device)
    xb = x[:probe].detach().clone().requires_grad_(True)
    with _eval_mode(model), precision_context(device, precision):
        loss = F.cross_entropy(model(xb), y[:probe], reduction="sum")
    torch.autograd.grad(loss, xb)
    per_image = max(torch.cuda.max_memory_allocated(device) - allocated, 1) / probe
    free, _ = torch.cuda.mem_get_info(device)
    fits = int(free * AUTO_MEMORY_SHARE / per_image) // probe * probe
    return max(probe, min(fits, AUTO_MAX_BATCH, len(x)))


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str], *, eps: float = 8 / 255,
             batch_size: int | str = DEFAULT_BATCH_SIZE, seed: int = 0, surrogate: nn.Module | None = None,
             precision: str = "fp32", progress: Progress | None = None, ranks: Ranks | None = None) -> EvalResult:
    """Accuracy of `model` under each attack on (x, y) (floats in [0, 1] or uint8), in eval mode.

    An example counts as robust to an attack only if it is also classified correctly when clean, so
    no robust accuracy exceeds clean accuracy; `worst_case` requires robustness to every attack.
    `batch_size` "auto" takes the largest batch the GPU's memory allows (`auto_batch_size`); the numbers
    depend on the batch size, as batch `start` draws its random starts from seed * 100_003 + start.

    With `ranks` of a torchrun job (`rdist.parallel`), every rank calls this with the same arguments: each
    attacks its share of whole batches (`eval_shard`) with the seeds one process gives them, the per-example
    results are gathered, and every rank returns the result one process would.
    """
    if len(x) == 0:
        raise RdistError("no test images to evaluate on: --n must be > 0")
    ranks = ranks or Ranks()
    if ranks.distributed and not distributed():
        raise RdistError(f"evaluate(ranks=...) of {ranks.world_size} processes needs their process group: start it "
                         "with rdist.parallel.Group.start() under torchrun")
    batch_size = resolve_batch_size(model, x, y, batch_size, precision)
    if ranks.distributed:  # every rank shards alike: the smallest batch any rank's memory allows
        batch_size = min_over_ranks(batch_size)
    mine = eval_shard(len(x), batch_size, ranks)
    if mine.stop > mine.start:
        robust = correct_per_example(model, x[mine], y[mine], attacks, eps=eps, batch_size=batch_size, seed=seed,
                                     surrogate=surrogate, precision=precision, progress=progress, first=mine.start)
    else:  # fewer batches than ranks: this one has none
        robust = {name: torch.zeros(0, dtype=torch.bool, device=model_device(model)) for name in attacks}
    if ranks.distributed:  # per-example correctness is what is combined: the ranks' rows, in rank order
        table = gather_rows(torch.stack([robust[name] for name in attacks], dim=1).to(torch.uint8)).bool()
        robust = dict(zip(attacks, table.T))
    return summarize(robust, eps, seed, precision, batch_size)


def eval_shard(n: int, batch_size: int, ranks: Ranks) -> slice:
    """The rows of an evaluation set of `n` images that `ranks.rank` attacks: whole batches of `batch_size` (so
    that each meets the seeds one process would give it), split as evenly as the batch count allows."""
    batches = -(-n // batch_size)
    first, last = ranks.rank * batches // ranks.world_size, (ranks.rank + 1) * batches // ranks.world_size
    return slice(min(first * batch_size, n), min(last * batch_size, n))


def resolve_batch_size(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | str,
                       precision: str) -> int:
    """`batch_size` as a number: "auto" measured on the model's device (`auto_batch_size`)."""
    if batch_size != "auto":
        return int(batch_size)
    device = model_device(model)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return auto_batch_size(model, x.to(device), y.to(device), precision)


def summarize(robust: dict[str, torch.Tensor], eps: float, seed: int, precision: str = "fp32",
              batch_size: int = DEFAULT_BATCH_SIZE) -> EvalResult:
    """The EvalResult of per-example correctness vectors, one per attack (all of the same images)."""
    worst = torch.stack(list(robust.values())).all(0)
    return EvalResult(n=len(worst), eps=eps, seed=seed, precision=precision, batch_size=batch_size,
                      accuracy={k: v.float().mean().item() for k, v in robust.items()},
                      worst_case=worst.float().mean().item())


def correct_per_example(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str], *,
                        eps: float = 8 / 255, batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                        surrogate: nn.Module | None = None, precision: str = "fp32",
                        progress: Progress | None = None, first: int = 0) -> dict[str, torch.Tensor]:
    """For each attack, whether each example of (x, y) resists it (and is correct when clean).

    `first` is the index of x[0] in the whole evaluation set: the attack seeds depend on it, so that a
    shard of the set starting at a batch boundary (data-parallel evaluation) meets exactly the attacks
    the whole set would.
    """
    device = model_device(model)
    context = precision_context(device, precision)  # checks the name before any work
    # fp32 inputs whatever the caller's dtype: the attack steps and the eps-ball projection need fp32 (bf16
    # has 8 bits of mantissa, too few to hold x + eps within the checker's 1e-6).
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    x, y = x.to(device).contiguous(memory_format=model_layout(model)), y.to(device)
    robust = {}
    with _eval_mode(model, surrogate), context:
        with torch.no_grad():
            clean_correct = torch.cat([model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                                       for i in range(0, len(x), batch_size)])
        for name in attacks:
            if name == "clean":
                robust[name] = clean_correct
                if progress:
                    progress(name, len(x), len(x), "")
                continue
            done = [0]  # images of the attack finished before the running batch, for AutoAttack's stage notes
            stage = (lambda note, name=name: progress(name, done[0], len(x), note)) if progress else None
            # One attack object for the whole evaluation (AutoAttack builds four sub-attacks), reseeded per batch.
            attack = create_attack(name, model, eps, seed=seed, surrogate=surrogate, on_stage=stage)
            correct = []
            for start in range(0, len(x), batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                done[0] = start
                # The batch's index in the whole set enters the seed: the same seed gives the same random starts
                # in every run, whatever the number of processes sharing the set.
                attack.reseed(seed * 100_003 + first + start)
                x_adv = attack(xb, yb)
                with torch.no_grad():
                    correct.append(model(x_adv).argmax(1) == yb)
                if progress:
                    progress(name, start + len(xb), len(x), "")
            # Per-example correctness is what is combined (and, across processes, gathered).
            robust[name] = torch.cat(correct) & clean_correct
    return robust
