"""Run a list of attacks over a test set in batches and report accuracy per attack and the worst case: the one
evaluation path of rdist, in one process or sharded over the processes of a torchrun job (`ranks`).

Every number comes from one table: a row per image, a column per attack (whether the image resists it and is
correct when clean) and per check of `rdist.attacks.flags` (gradients and losses the attacks saw, a second clean
prediction, an unbounded attack). Under torchrun each process fills the rows of its shard and the table is
gathered; accuracies, per-class accuracies and flags are then read from it alike on every process.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from rdist.attacks.base import check_norm
from rdist.attacks.flags import (COLUMNS, UNBOUNDED_IMAGES, UNBOUNDED_STEPS, Flag, Trace,
                                 autoattack_flags, black_box_flags, is_white_box, randomness_flag, trace_flags, traced,
                                 unbounded_flag)
from rdist.attacks.pgd import pgd
from rdist.attacks.registry import CORRUPTIONS, check_norm_support, create_attack
from rdist.device import model_device, model_layout, precision_context
from rdist.errors import RdistError
from rdist.parallel import Ranks, distributed, gather_objects, gather_rows, min_over_ranks
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
    norm: str = "Linf"  # the distance eps bounds: "Linf" or "L2"
    # Accuracy per class: {"classes", "images" (per class), "accuracy" (per attack, per class; None for a class
    # without images), "worst_case" (per class), "worst_class" ({"class", "accuracy"})}; see `per_class`.
    per_class: dict[str, Any] | None = None
    flags: list[dict[str, Any]] = field(default_factory=list)  # `rdist.attacks.flags.Flag`s, as dicts
    # With `corruptions`: accuracy per corruption, at severities 1 to 5.
    corruptions: dict[str, list[float]] | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "eps_text": format_eps(self.eps)}

    def flag_list(self) -> list[Flag]:
        return [Flag.from_dict(f) for f in self.flags]


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
             precision: str = "fp32", progress: Progress | None = None, ranks: Ranks | None = None,
             norm: str = "Linf", checks: bool = True, corruptions: Any = None) -> EvalResult:
    """Accuracy of `model` under each attack on (x, y) (floats in [0, 1] or uint8), in eval mode, within the
    eps-ball of `norm` ("Linf" or "L2").

    An example counts as robust to an attack only if it is also classified correctly when clean, so
    no robust accuracy exceeds clean accuracy; `worst_case` requires robustness to every attack (`corruptions`,
    accuracy on the corrupted test images that `corruptions` holds, `rdist.data.corrupted_images`, stays out of it).
    `batch_size` "auto" takes the largest batch the GPU's memory allows (`auto_batch_size`); the numbers
    depend on the batch size, as batch `start` draws its random starts from seed * 100_003 + start.

    `checks` runs the attack-failure checks of `rdist.attacks.flags` (a second clean forward per image, a short
    unbounded attack on at most UNBOUNDED_IMAGES images, and what the attacks compute anyway); what AutoAttack
    logs is flagged either way. The result also holds the accuracy per class (`per_class`).

    With `ranks` of a torchrun job (`rdist.parallel`), every rank calls this with the same arguments: each
    attacks its share of whole batches (`eval_shard`) with the seeds one process gives them, the per-example
    results are gathered, and every rank returns the result one process would.
    """
    if len(x) == 0:
        raise RdistError("no test images to evaluate on: --n must be > 0")
    check_norm_support(attacks, check_norm(norm))
    if CORRUPTIONS in attacks and corruptions is None:
        raise RdistError("the corruptions evaluation needs the corrupted images: pass "
                         "corruptions=rdist.data.corrupted_images(dataset)")
    ranks = ranks or Ranks()
    if ranks.distributed and not distributed():
        raise RdistError(f"evaluate(ranks=...) of {ranks.world_size} processes needs their process group: start it "
                         "with rdist.parallel.Group.start() under torchrun")
    batch_size = resolve_batch_size(model, x, y, batch_size, precision)
    if ranks.distributed:  # every rank shards alike: the smallest batch any rank's memory allows
        batch_size = min_over_ranks(batch_size)
    mine = eval_shard(len(x), batch_size, ranks)
    names = table_columns(attacks, checks)
    if mine.stop > mine.start:
        table, warnings = per_example_table(model, x[mine], y[mine], attacks, eps=eps, batch_size=batch_size,
                                            seed=seed, surrogate=surrogate, precision=precision, progress=progress,
                                            first=mine.start, total=len(x), norm=norm, checks=checks,
                                            corruptions=corruptions)
    else:  # fewer batches than ranks: this one has none
        table = {name: torch.zeros(0, device=model_device(model)) for name in names}
        warnings = {}
    if ranks.distributed:  # per-example columns are what is combined: the ranks' rows, in rank order
        gathered = gather_rows(torch.stack([table[name].float() for name in names], dim=1))
        table = dict(zip(names, gathered.T))
        merged: dict[str, list[str]] = {}
        for part in gather_objects(warnings):
            for name, messages in part.items():
                merged.setdefault(name, []).extend(messages)
        warnings = merged
    return summarize(table, y, attacks, eps=eps, seed=seed, precision=precision, batch_size=batch_size, norm=norm,
                     warnings=warnings, classes=_class_count(model, y))


def table_columns(attacks: list[str], checks: bool) -> list[str]:
    """The columns of the per-example table, in order: one per attack, then the checks' (see `per_example_table`)."""
    names = list(attacks) if "clean" in attacks else ["clean", *attacks]
    if CORRUPTIONS in attacks:
        from rdist.data.corruptions import CORRUPTIONS as KINDS, SEVERITIES

        names += [f"{CORRUPTIONS}:{c}:{s}" for c in KINDS for s in range(1, SEVERITIES + 1)]
    if checks:
        names.append("check:changed")
        names += [f"check:{a}:{k}" for a in attacks if traced(a) for k in COLUMNS]
        if any(is_white_box(a) and not a.startswith("transfer-") for a in attacks):
            names.append("check:unbounded")
    return names


def _class_count(model: nn.Module, y: torch.Tensor) -> int:
    """The model's class count (from its rdist metadata), else one more than the largest label."""
    arch = (getattr(model, "rdist_meta", None) or {}).get("arch") or getattr(model, "rdist_arch", None) or {}
    return max(int(arch.get("num_classes") or 0), int(y.max().item()) + 1)
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


def summarize(table: dict[str, torch.Tensor], y: torch.Tensor, attacks: list[str], *, eps: float, seed: int,
              precision: str = "fp32", batch_size: int = DEFAULT_BATCH_SIZE, norm: str = "Linf",
              warnings: dict[str, list[str]] | None = None, classes: int | None = None) -> EvalResult:
    """The EvalResult of the per-example table (`per_example_table`) of the images labelled `y`."""
    y = y.to(table["clean"].device)
    adversarial = [a for a in attacks if a != CORRUPTIONS] or ["clean"]
    worst = torch.stack([table[a] > 0 for a in adversarial]).all(0)
    accuracy = {a: table[a].float().mean().item() for a in attacks}
    flags: list[Flag] = []
    if "check:changed" in table:
        flags += randomness_flag(table) + unbounded_flag(table, norm)
        for attack in attacks:
            if traced(attack):
                flags += trace_flags(attack, table, accuracy)
        flags += black_box_flags(accuracy, table)
    for attack, messages in (warnings or {}).items():
        flags += autoattack_flags(attack, messages)
    corrupted = None
    if CORRUPTIONS in attacks:
        from rdist.data.corruptions import CORRUPTIONS as KINDS, SEVERITIES

        corrupted = {c: [table[f"{CORRUPTIONS}:{c}:{s}"].float().mean().item() for s in range(1, SEVERITIES + 1)]
                     for c in KINDS}
    return EvalResult(n=len(worst), eps=eps, seed=seed, precision=precision, batch_size=batch_size, norm=norm,
                      accuracy=accuracy, worst_case=worst.float().mean().item(),
                      per_class=per_class({a: table[a] for a in attacks}, worst, y, classes),
                      flags=[f.to_dict() for f in flags], corruptions=corrupted)


def per_class(columns: dict[str, torch.Tensor], worst: torch.Tensor, y: torch.Tensor,
              classes: int | None = None) -> dict[str, Any]:
    """Accuracy per class of each column (and of the worst case), from one bincount each: a list over the classes,
    None for a class without images among these; and the class with the lowest worst-case accuracy."""
    classes = max(classes or 0, int(y.max().item()) + 1)
    counts = torch.bincount(y, minlength=classes).double()

    def rates(values: torch.Tensor) -> list[float | None]:
        sums = torch.bincount(y, weights=values.double(), minlength=classes)
        return [None if c == 0 else s / c for s, c in zip(sums.tolist(), counts.tolist())]

    worst_rates = rates(worst)
    present = [(v, k) for k, v in enumerate(worst_rates) if v is not None]
    low, lowest = min(present)
    return {"classes": classes, "images": [int(c) for c in counts.tolist()],
            "accuracy": {name: rates(values) for name, values in columns.items()}, "worst_case": worst_rates,
            "worst_class": {"class": lowest, "accuracy": low}}


def per_example_table(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str], *,
                      eps: float = 8 / 255, batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                      surrogate: nn.Module | None = None, precision: str = "fp32", progress: Progress | None = None,
                      first: int = 0, total: int | None = None, norm: str = "Linf", checks: bool = True,
                      corruptions: Any = None) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The per-example table of (x, y) (see `table_columns`), and what each AutoAttack logged.

    A column per attack holds whether each example resists it (and is correct when clean); `corruptions` holds
    the share of its 75 corrupted versions classified correctly. `first` is the index of x[0] in the whole
    evaluation set of `total` images: the attack seeds depend on it, so that a shard of the set starting at a batch
    boundary (data-parallel evaluation) meets exactly the attacks the whole set would, and the unbounded attack
    picks the same images.
    """
    device = model_device(model)
    context = precision_context(device, precision)  # checks the name before any work
    # fp32 inputs whatever the caller's dtype: the attack steps and the eps-ball projection need fp32 (bf16
    # has 8 bits of mantissa, too few to hold x + eps within the checker's 1e-6).
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    x, y = x.to(device).contiguous(memory_format=model_layout(model)), y.to(device)
    table: dict[str, torch.Tensor] = {}
    warnings: dict[str, list[str]] = {}
    batches = range(0, len(x), batch_size)
    with _eval_mode(model, surrogate), context:
        with torch.no_grad():
            clean = [model(x[i:i + batch_size]).argmax(1) for i in batches]
            clean_correct = torch.cat(clean) == y
            table["clean"] = clean_correct.float()
            if checks:  # the same images again: a deterministic model predicts the same classes
                again = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in batches])
                table["check:changed"] = (again != torch.cat(clean)).float()
        if "clean" in attacks and progress:
            progress("clean", len(x), len(x), "")
        for name in attacks:
            if name == "clean":
                continue
            if name == CORRUPTIONS:
                table.update(_corruption_columns(model, y, corruptions, batch_size, first, progress))
                continue
            done = [0]  # images of the attack finished before the running batch, for AutoAttack's stage notes
            stage = (lambda note, name=name: progress(name, done[0], len(x), note)) if progress else None
            # One attack object for the whole evaluation (AutoAttack builds four sub-attacks), reseeded per batch.
            attack = create_attack(name, model, eps, seed=seed, surrogate=surrogate, on_stage=stage, norm=norm)
            trace = Trace(attack.steps) if checks and traced(name) else None
            attack.observer = trace
            correct, traces = [], []
            for start in batches:
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                done[0] = start
                # The batch's index in the whole set enters the seed: the same seed gives the same random starts
                # in every run, whatever the number of processes sharing the set.
                attack.reseed(seed * 100_003 + first + start)
                x_adv = attack(xb, yb)
                with torch.no_grad():
                    correct.append(model(x_adv).argmax(1) == yb)
                if trace:
                    traces.append(trace.take())
                if progress:
                    progress(name, start + len(xb), len(x), "")
            # Per-example correctness is what is combined (and, across processes, gathered).
            table[name] = (torch.cat(correct) & clean_correct).float()
            for key in COLUMNS if trace else ():
                table[f"check:{name}:{key}"] = torch.cat([t[key] for t in traces]).to(device)
            if getattr(attack, "warnings", None):
                warnings[name] = list(attack.warnings)
        if checks and "check:unbounded" in table_columns(attacks, checks):
            table["check:unbounded"] = _unbounded(model, x, y, clean_correct, batch_size, first, total or len(x),
                                                  norm)
    return table, warnings


def _unbounded(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clean_correct: torch.Tensor, batch_size: int,
               first: int, total: int, norm: str) -> torch.Tensor:
    """Per example: -1 where not checked, else whether it stays correct under UNBOUNDED_STEPS of PGD on the
    cross-entropy from the input itself, at a budget covering the whole box. The images checked are the correctly
    classified ones among every `stride`-th of the whole set (at most UNBOUNDED_IMAGES), chosen by their index in
    the whole set, so that every sharding checks the same ones; no random start, so that their batch does not
    matter either."""
    stride = math.ceil(total / UNBOUNDED_IMAGES)
    index = torch.arange(first, first + len(x), device=x.device)
    rows = torch.nonzero((index % stride == 0) & clean_correct).flatten()
    column = torch.full((len(x),), -1.0, device=x.device)
    eps = 1.0 if norm == "Linf" else math.sqrt(x[0].numel())  # the box's L-inf and L2 diameters
    for chunk in rows.split(batch_size):
        xb, yb = x[chunk], y[chunk]
        x_adv = pgd(lambda xa: F.cross_entropy(model(xa), yb, reduction="none"), xb, eps=eps, step_size=eps / 10,
                    steps=UNBOUNDED_STEPS, start="zero", norm=norm)
        with torch.no_grad():
            column[chunk] = (model(x_adv).argmax(1) == yb).float()
    return column


def _corruption_columns(model: nn.Module, y: torch.Tensor, corruptions: Any, batch_size: int, first: int,
                        progress: Progress | None) -> dict[str, torch.Tensor]:
    """Per example, whether each corrupted version is classified correctly, and the share of them that are."""
    from rdist.data.corruptions import CORRUPTIONS as KINDS, SEVERITIES

    device = y.device
    columns = {}
    variants = [(c, s) for c in KINDS for s in range(1, SEVERITIES + 1)]
    for k, (kind, severity) in enumerate(variants):
        correct = []
        for start in range(0, len(y), batch_size):
            rows = slice(first + start, first + min(start + batch_size, len(y)))
            xb = corruptions.images(kind, severity, rows).to(device).float().div_(255)
            with torch.no_grad():
                correct.append(model(xb.contiguous(memory_format=model_layout(model))).argmax(1)
                               == y[start:start + batch_size])
        columns[f"{CORRUPTIONS}:{kind}:{severity}"] = torch.cat(correct).float()
        if progress:
            progress(CORRUPTIONS, (k + 1) * len(y) // len(variants), len(y), f"{kind} {severity}")
    columns[CORRUPTIONS] = torch.stack(list(columns.values())).mean(0)
    return columns
