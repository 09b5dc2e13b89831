"""Data-parallel training and evaluation over the processes `torchrun` starts: torch.distributed and
DistributedDataParallel (DDP), one process per GPU (nccl) or per CPU process (gloo).

    torchrun --nproc-per-node 4 -m rdist distill --method METHOD ... --batch-size 128

`--batch-size` is the GLOBAL batch. What makes N processes compute what one process computes:

- data: every rank draws the same seeded permutation and augmentation and keeps its rows of each global
  batch (`Batches(rank=, world_size=)`); the attack's random starts are drawn for the whole global batch and
  sliced alike (`ShardNoise`);
- gradients: DDP averages the ranks' gradients. A batch that does not split evenly (an epoch's last) has
  each rank's gradient scaled by its share of the batch, so the update is the mean over the global batch;
- the inner attack differentiates w.r.t. the input only, on the UNWRAPPED student: DDP's reducer hooks run
  when a parameter's gradient is accumulated into `.grad`, which `torch.autograd.grad(loss, xa)` never does,
  and a forward outside the wrapper leaves the reducer's per-iteration state (prepare_for_backward, bucket
  rebuild, static-graph counting) alone. Only the outer loss's forwards go through DDP, followed by exactly
  one backward, in which every parameter receives a gradient: find_unused_parameters stays off;
- BatchNorm: with `--sync-bn` statistics are those of the global batch (exactly the single-process BN);
  without, each rank normalises with its own shard's statistics, as the official single-GPU codes' BN
  sees per-GPU batches, and the running statistics are rank 0's, broadcast after every optimiser step (as
  nn.DataParallel keeps its first GPU's), so that every rank attacks and evaluates the same model;
- evaluation: each rank attacks whole batches of the evaluation set with the seeds one process would use;
  the per-example results are gathered, so every rank computes the same accuracies and selects the same
  best epoch; rank 0 alone writes the log, the artifacts and the checkpoint.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import re
import signal
import warnings
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from rdist.attacks.evaluator import EvalResult, Progress, correct_per_example, resolve_batch_size, summarize
from rdist.attacks.pgd import Noise, ShardNoise
from rdist.data import Batches
from rdist.errors import RdistError
from rdist.utils import default_device, first_line

BACKENDS = ("nccl", "gloo")
# How gloo and NCCL report a peer that died: a RuntimeError, not always a torch.distributed.DistError.
_COMMUNICATION_FAILURES = ("gloo", "NCCL", "Connection reset", "Connection closed", "ProcessGroup")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_env() -> Ranks:
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them (0, 1 and 0 when absent)."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    try:
        rank, world_size, local_rank = (int(os.environ.get(name, default)) for name, default in zip(names, (0, 1, 0)))
    except ValueError:
        given = ", ".join(f"{name}={os.environ.get(name)!r}" for name in names)
        raise RdistError(f"{given} must be integers (as torchrun sets them); start rdist with torchrun") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise RdistError(f"RANK={rank} is not a rank of WORLD_SIZE={world_size}; start rdist with torchrun")
    return Ranks(rank, world_size, local_rank)


class RankError(RdistError):
    """A problem of this process alone (its GPU, a lost peer): every rank that meets one reports it."""


def sync_bn_note(world_size: int) -> str | None:
    """What to tell a user who asked for --sync-bn, or None when it takes effect."""
    if world_size > 1:
        return None
    return ("--sync-bn has no effect in a single process: it synchronises BatchNorm statistics across the "
            "processes torchrun starts (torchrun --nproc-per-node N -m rdist ...)")


class Parallel:
    """This process's part in a data-parallel job; with one process every method is the single-process way."""

    def __init__(self, ranks: Ranks, device: torch.device, backend: str | None, sync_bn: bool = False):
        self.ranks, self.device, self.backend, self.sync_bn = ranks, device, backend, sync_bn
        self.grad_scale = 1.0  # this rank's gradient weight for the batch being trained (see batch_noise)

    @property
    def distributed(self) -> bool:
        return self.ranks.world_size > 1

    @property
    def comm_device(self) -> torch.device:
        """Where collectives' tensors live: the GPU for nccl, the CPU for gloo."""
        return self.device if self.backend == "nccl" else torch.device("cpu")

    # -- starting and ending -------------------------------------------------------------------------

    @classmethod
    def start(cls, device: str | None = None, backend: str | None = None, sync_bn: bool = False) -> "Parallel":
        """Join the job torchrun started (or stay one process) on this rank's device."""
        ranks = ranks_from_env()
        if backend is not None and backend not in BACKENDS:
            raise RdistError(f"--dist-backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        if not ranks.world_size > 1:
            if sync_bn:
                warnings.warn(sync_bn_note(1), stacklevel=2)
            return cls(ranks, default_device(device), None)
        dev = _rank_device(ranks, device)
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        if backend == "nccl" and dev.type != "cuda":
            raise RdistError("--dist-backend nccl runs on CUDA GPUs only but the device is the CPU; use "
                             "--dist-backend gloo (the CPU default) or --device cuda")
        parallel = cls(ranks, dev, backend, sync_bn)
        if not dist.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group(backend, device_id=dev if backend == "nccl" else None)
            # One group for the process's life: a process that trains or attacks more than once (--seeds, the
            # models of `rdist compare`) joins it again, since a second init after a destroy can hang under
            # torchrun's rendezvous store.
            atexit.register(_close_group)
        return parallel

    def check_same(self, **what: Any) -> None:
        """Refuse to start when the ranks run other rdist/torch versions or another configuration."""
        if not self.distributed:
            return
        mine = {"rdist": version("rdist"), "torch": torch.__version__, **what}
        everyone: list[Any] = [None] * self.ranks.world_size
        dist.all_gather_object(everyone, mine)
        reference = everyone[0]
        for rank, theirs in enumerate(everyone):
            differences = [f"{key} {reference.get(key)!r} (rank 0) vs {theirs.get(key)!r} (rank {rank})"
                           for key in sorted(set(reference) | set(theirs)) if reference.get(key) != theirs.get(key)]
            if differences:
                raise RdistError(f"the processes of this job differ: {'; '.join(differences)}; start every "
                                 "process with the same rdist install and the same command")

    def share(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object) on every rank: what rank 0 alone decided, such as whether it could
        hold the run directory. `value` itself in one process."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.comm_device)
        return box[0]

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (downloads, cache writes), the others after it, from its cache."""
        if self.distributed and not self.ranks.is_main:
            dist.barrier()
        yield
        if self.distributed and self.ranks.is_main:
            dist.barrier()

    @contextlib.contextmanager
    def session(self, run_dir: Path) -> Iterator[None]:
        """Around training: a lost peer or torchrun's stop becomes a one-line error saying how to go on."""
        if not self.distributed:
            yield
            return
        resume = f"the last finished epoch's checkpoint is in {run_dir}: continue with --resume {run_dir}"

        def stopped_by_torchrun(signum, frame):
            raise RankError(f"stopped by torchrun because another process of the job failed; {resume}")

        previous = signal.signal(signal.SIGTERM, stopped_by_torchrun)
        try:
            yield
        except (dist.DistError, RuntimeError) as exc:
            if not isinstance(exc, dist.DistError) and not any(m in str(exc) for m in _COMMUNICATION_FAILURES):
                raise
            # Our message is on its way out: torchrun's SIGTERM to the survivors must not cut it short.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            cause = re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc)).split(". ")[0]  # no source path
            raise RankError(f"rank {self.ranks.rank} lost contact with the other processes (one was killed or "
                            f"failed: {cause}); {resume}") from None
        else:
            signal.signal(signal.SIGTERM, previous)

    # -- training ------------------------------------------------------------------------------------

    def check_batch(self, batch_size: int, train_size: int) -> None:
        world = self.ranks.world_size
        if batch_size % world:
            lower, higher = batch_size - batch_size % world, batch_size - batch_size % world + world
            raise RdistError(f"--batch-size {batch_size} (the global batch) does not divide by the {world} "
                             f"processes torchrun started; pass a multiple of {world}, e.g. "
                             f"{lower or higher} or {higher}")
        last = train_size % batch_size
        if 0 < last < world:
            raise RdistError(f"with --batch-size {batch_size} each epoch ends with a batch of {last} image(s), "
                             f"fewer than the {world} processes; pick a batch size that leaves 0 or at least "
                             f"{world} images for the last batch of the {train_size} training images")

    def convert_sync_bn(self, model: nn.Module) -> nn.Module:
        """With --sync-bn under torchrun: BatchNorm layers that normalise with the global batch's statistics."""
        if not (self.sync_bn and self.distributed):
            return model
        if self.device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return _convert_batchnorm(model, CpuSyncBatchNorm)

    def wrap(self, student: nn.Module, optimizer: torch.optim.Optimizer) -> nn.Module:
        """The module the outer loss runs through: DDP over `student` (the student itself in one process).

        The attack, the accuracy probe and the evaluation use `student` unwrapped (see the module docstring).
        """
        if not self.distributed:
            return student
        # Buffers are synchronised at construction (identical starts) but not before every forward: SyncBN keeps
        # them equal, and without it broadcast_buffers (below) does, after each step. torch 2.14 renamed the flag.
        no_forward_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                           inspect.signature(nn.parallel.DistributedDataParallel).parameters
                           else {"broadcast_buffers": False})
        ddp = nn.parallel.DistributedDataParallel(
            student, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=False, **no_forward_sync)
        ddp.register_forward_hook(lambda module, inputs, output: _scale_gradient(output, self.grad_scale))
        if not self.sync_bn and any(b.is_floating_point() for b in student.buffers()):
            optimizer.register_step_post_hook(lambda *args: self.broadcast_buffers(student))
        return ddp

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's BN running statistics to every rank, in one collective. (num_batches_tracked counts the
        same forwards on every rank and needs no broadcast.)"""
        buffers = [b for b in model.buffers() if b.is_floating_point()]
        flat = torch.cat([b.flatten() for b in buffers]).to(self.comm_device)
        dist.broadcast(flat, 0)
        for buffer, value in zip(buffers, flat.split([b.numel() for b in buffers])):
            buffer.copy_(value.view_as(buffer))

    def batch_noise(self, generator: torch.Generator, batches: Batches, i: int) -> Noise:
        """The attack noise source for global batch `i` (0-based) of `batches`, and this rank's gradient share
        of it: every rank draws the whole batch's random starts and keeps its rows."""
        if not self.distributed:
            return generator
        rows, total = batches.rows(i), batches.global_size(i)
        self.grad_scale = (rows.stop - rows.start) * self.ranks.world_size / total
        return ShardNoise(generator, rows.start, rows.stop, total)

    def batches(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, **options: Any) -> Batches:
        """Batches of which this rank yields its rows."""
        return Batches(x, y, batch_size, rank=self.ranks.rank, world_size=self.ranks.world_size, **options)

    def bn_refresh_batches(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Batches:
        """The batches that recompute an averaged model's BN statistics: sharded when BN is synchronised
        (the global statistics, once), else the whole data on every rank (the same statistics everywhere)."""
        if self.sync_bn and self.distributed:
            return self.batches(x, y, batch_size)
        return Batches(x, y, batch_size)

    def mean_over_ranks(self, values: list[float]) -> list[float]:
        """`values` (as many on every rank) averaged over the ranks; as they are in one process."""
        if not self.distributed or not values:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(total)
        return (total / self.ranks.world_size).tolist()

    def reduce_totals(self, totals: Any) -> Any:
        """An epoch's training totals over all ranks: counts summed. Each step's loss is the mean over the ranks
        already, as the trainer reads them (`EpochTotals.read(mean_over_ranks)`)."""
        if not self.distributed:
            return totals
        totals.read(self.mean_over_ranks)  # the correct counts on the host (every loss was read at the last step)
        counts = torch.tensor([totals.clean, totals.robust, totals.clean_seen, totals.robust_seen, totals.images],
                              dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(counts)
        totals.clean, totals.robust, totals.clean_seen, totals.robust_seen, totals.images = \
            (round(v) for v in counts.tolist())
        return totals

    # -- evaluation ----------------------------------------------------------------------------------

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str], *,
                 eps: float = 8 / 255, batch_size: int | str = 256, seed: int = 0,
                 surrogate: nn.Module | None = None, precision: str = "fp32",
                 progress: Progress | None = None) -> EvalResult:
        """`attacks.evaluate`, sharded: this rank attacks its whole batches, with the seeds one process gives
        them, and the per-example results of all ranks are gathered; every rank returns the same result."""
        if len(x) == 0:
            raise RdistError("no test images to evaluate on: --n must be > 0")
        world = self.ranks.world_size
        batch_size = resolve_batch_size(model, x, y, batch_size, precision)
        if self.distributed:  # every rank shards alike: the smallest batch any rank's memory allows
            size = torch.tensor([batch_size], device=self.comm_device)
            dist.all_reduce(size, op=dist.ReduceOp.MIN)
            batch_size = int(size.item())
        shards = [self.eval_rows(len(x), batch_size, rank) for rank in range(world)]
        mine = shards[self.ranks.rank]
        if mine.stop > mine.start:
            local = correct_per_example(model, x[mine], y[mine], attacks, eps=eps, batch_size=batch_size, seed=seed,
                                        surrogate=surrogate, precision=precision, progress=progress, first=mine.start)
        else:  # fewer batches than ranks: this one has none
            local = {name: torch.zeros(0, dtype=torch.bool) for name in attacks}
        if not self.distributed:
            return summarize(local, eps, seed, precision, batch_size)
        stacked = torch.stack([local[name].to(self.comm_device, torch.uint8) for name in attacks])
        longest = max(s.stop - s.start for s in shards)
        padded = torch.zeros(len(attacks), longest, dtype=torch.uint8, device=self.comm_device)
        padded[:, :stacked.shape[1]] = stacked
        gathered = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(gathered, padded)
        everyone = torch.cat([g[:, :s.stop - s.start] for g, s in zip(gathered, shards)], dim=1).bool()
        return summarize(dict(zip(attacks, everyone)), eps, seed, precision, batch_size)

    def eval_rows(self, n: int, batch_size: int, rank: int | None = None) -> slice:
        """The rows of an evaluation set of `n` images that `rank` attacks: whole batches of `batch_size`,
        split as evenly as the batch count allows."""
        rank = self.ranks.rank if rank is None else rank
        batches = -(-n // batch_size)
        first, last = rank * batches // self.ranks.world_size, (rank + 1) * batches // self.ranks.world_size
        return slice(min(first * batch_size, n), min(last * batch_size, n))


def _close_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _rank_device(ranks: Ranks, name: str | None) -> torch.device:
    """Under torchrun: the GPU of LOCAL_RANK (one per process), or the CPU."""
    if name is not None and name != "cuda":
        device = default_device(name)
        if device.type == "cuda":
            raise RdistError(f"--device {name} names one GPU, but under torchrun each process takes the GPU of "
                             "its LOCAL_RANK: pass --device cuda (and CUDA_VISIBLE_DEVICES to choose the GPUs)")
        return device
    if name is None and not torch.cuda.is_available():
        return torch.device("cpu")
    default_device("cuda")  # refuses when no GPU is visible
    count = torch.cuda.device_count()
    if ranks.local_rank >= count:
        raise RankError(f"rank {ranks.rank} (LOCAL_RANK={ranks.local_rank}) has no GPU: this node shows {count} "
                        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); start at most "
                        f"{count} processes per node (torchrun --nproc-per-node {count})")
    return torch.device("cuda", ranks.local_rank)


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `scale`: the same as scaling the loss, so that
    SyncBatchNorm's cross-rank gradient terms are weighted alike."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def _scale_gradient(output: torch.Tensor, scale: float) -> torch.Tensor:
    return output if scale == 1.0 else _ScaleGradient.apply(output, scale)


class _AllReduceSum(torch.autograd.Function):
    """The sum over ranks of a per-rank tensor; its gradient is the sum over ranks of the upstream gradients
    (every rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """SyncBatchNorm for CPU processes (gloo): torch's SyncBatchNorm refuses CPU tensors, and DDP refuses it in
    a CPU module.

    In training mode under torch.distributed: the mean, then the variance of the centred inputs (two passes, as
    accurate as one process's BN), summed over all ranks with autograd-aware all_reduce, so that the backward
    pass carries every rank's gradient terms; running statistics updated as BatchNorm does (unbiased variance).
    Otherwise it is plain BatchNorm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=torch.float64)
        dist.all_reduce(count)
        mean = _AllReduceSum.apply(x.sum(dims)) / count.item()
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.square().sum(dims)) / count.item()
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                n = count.item()
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * (n / (n - 1)), factor)
        return out


def _convert_batchnorm(module: nn.Module, cls: type[nn.modules.batchnorm._BatchNorm]) -> nn.Module:
    """`module` with every BatchNorm layer replaced by `cls`, sharing its parameters and buffers (so the
    optimiser, checkpoints and artifacts see the same tensors under the same names)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, cls)):
        converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, _convert_batchnorm(child, cls))
    return module
