"""Data-parallel training over the processes of a `rdist.parallel.Group`: DistributedDataParallel (DDP) with
a GLOBAL `--batch-size`, computing what one process computes.

    torchrun --nproc-per-node 4 -m rdist distill --method METHOD ... --batch-size 128

- data: every rank draws the same seeded permutation and augmentation and keeps its rows of each global
  batch (`Batches(rank=, world_size=)`); the attack's random starts are drawn for the whole global batch and
  sliced alike (`ShardNoise`);
- gradients: DDP averages the ranks' gradients. A batch that does not split evenly (an epoch's last) has
  each rank's loss scaled by its share of the batch (`shard` returns it; `update_phase` applies it), so that
  the update is the mean over the global batch;
- the inner attack differentiates w.r.t. the input only, on the UNWRAPPED student: DDP's reducer hooks run
  when a parameter's gradient is accumulated into `.grad`, which `torch.autograd.grad(loss, xa)` never does,
  and a forward outside the wrapper leaves the reducer's per-iteration state (prepare_for_backward, bucket
  rebuild, static-graph counting) alone. Only the outer loss's forwards go through DDP, followed by exactly
  one backward, in which every parameter receives a gradient: find_unused_parameters stays off;
- BatchNorm: with `--sync-bn` statistics are those of the global batch (exactly the single-process BN,
  `rdist.engine.sync_bn`); without, each rank normalises with its own shard's statistics, as the official
  single-GPU codes' BN sees per-GPU batches, and the running statistics are rank 0's, broadcast after every
  optimiser step (`sync_buffers`, as nn.DataParallel keeps its first GPU's), so that every rank attacks and
  evaluates the same model;
- a method's companions (`Method.companions`) are each wrapped in a DDP of their own and follow the student's
  rules (attack unwrapped, one backward, BN statistics); the method's statistics of the global batch come from
  `step.batch` (`rdist.parallel.GlobalBatch`, collectives that carry gradients), and its state is broadcast from
  rank 0 after every step (`sync_buffers`), so that every rank holds what one process would;
- evaluation: `rdist.attacks.evaluator.evaluate(..., ranks=)` shards the evaluation set and gathers the
  per-example results, so every rank selects the same best epoch; rank 0 alone writes the log, the artifacts
  and the checkpoint.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from rdist.attacks.pgd import Noise, ShardNoise
from rdist.data import Batches, ExtraData, MixedBatches
from rdist.engine.sync_bn import convert_sync_bn, sync_bn_note
from rdist.errors import RdistError
from rdist.parallel import GlobalBatch, Group, broadcast_tensors


@dataclass(frozen=True)
class DataParallelTraining:
    """This process's part in data-parallel training; in one process every method is the single-process way."""

    group: Group
    sync_bn: bool = False

    @classmethod
    def start(cls, device: str | None = None, backend: str | None = None,
              sync_bn: bool = False) -> "DataParallelTraining":
        """Join the job torchrun started (or stay one process) on this rank's device."""
        group = Group.start(device, backend)
        if sync_bn and not group.distributed:
            warnings.warn(sync_bn_note(1), stacklevel=2)
        return cls(group, sync_bn and group.distributed)

    @property
    def distributed(self) -> bool:
        return self.group.distributed

    @property
    def world_size(self) -> int:
        return self.group.ranks.world_size

    def check_batch(self, batch_size: int, train_size: int, filled: bool = False) -> None:
        """Refuse a global batch that does not split over the processes, or an epoch whose last batch leaves a
        process without a row (unless `filled`: generated images fill every batch up to the batch size)."""
        world = self.world_size
        if batch_size % world:
            lower, higher = batch_size - batch_size % world, batch_size - batch_size % world + world
            raise RdistError(f"--batch-size {batch_size} (the global batch) does not divide by the {world} "
                             f"processes torchrun started; pass a multiple of {world}, e.g. "
                             f"{lower or higher} or {higher}")
        last = 0 if filled else train_size % batch_size
        if 0 < last < world:
            raise RdistError(f"with --batch-size {batch_size} each epoch ends with a batch of {last} image(s), "
                             f"fewer than the {world} processes; pick a batch size that leaves 0 or at least "
                             f"{world} images for the last batch of the {train_size} training images")

    def convert_sync_bn(self, model: nn.Module) -> nn.Module:
        """With --sync-bn under torchrun: BatchNorm layers that normalise with the global batch's statistics."""
        return convert_sync_bn(model, self.group.device) if self.sync_bn else model

    def wrap(self, student: nn.Module) -> nn.Module:
        """The module the outer loss runs through: DDP over `student` (the student itself in one process).

        The attack, the accuracy probe and the evaluation use `student` unwrapped (see the module docstring).
        """
        if not self.distributed:
            return student
        # Buffers are synchronised at construction (identical starts) but not before every forward: SyncBN keeps
        # them equal, and without it `sync_buffers` does, after each step. torch 2.14 renamed the flag.
        no_forward_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                           inspect.signature(nn.parallel.DistributedDataParallel).parameters
                           else {"broadcast_buffers": False})
        device = self.group.device
        return nn.parallel.DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else
                                                   None, find_unused_parameters=False, **no_forward_sync)

    def sync_buffers(self, *models: nn.Module, state: Sequence[torch.Tensor] = ()) -> None:
        """After an optimiser step: rank 0's copies, on every rank, of what the ranks could hold apart: without
        --sync-bn the BN running statistics of `models` (num_batches_tracked counts the same forwards everywhere), and
        a method's `state` (which it computes from the global batch, so this only guards against drift), in one
        collective per dtype."""
        if not self.distributed:
            return
        buffers = [] if self.sync_bn else [b for model in models for b in model.buffers() if b.is_floating_point()]
        broadcast_tensors([*buffers, *state])

    def shard(self, generator: torch.Generator, batches: Batches | MixedBatches, i: int
              ) -> tuple[Noise, float, GlobalBatch]:
        """For global batch `i` (0-based) of `batches`: the attack's noise source (every rank draws the whole
        batch's random starts and keeps its rows), this rank's weight in the mean gradient (its share of the
        batch times the number of ranks: 1 when the batch splits evenly) and its rows of the batch (`step.batch`)."""
        rows, total = batches.rows(i), batches.global_size(i)
        if not self.distributed:
            return generator, 1.0, GlobalBatch(total)
        return (ShardNoise(generator, rows.start, rows.stop, total), (rows.stop - rows.start) * self.world_size / total,
                GlobalBatch(total, rows.start, rows.stop))

    def batches(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, extra: ExtraData | None = None,
                fraction: float | None = None, **options) -> Batches | MixedBatches:
        """Batches of which this rank yields its rows; with `extra`, mixed with its generated images at `fraction`
        of every batch (`MixedBatches`: the real split is shuffled, not sampled, and both streams augmented)."""
        ranks = self.group.ranks
        if extra is not None:
            options = {k: v for k, v in options.items() if k != "shuffle"}
            return MixedBatches(x, y, extra, batch_size, fraction=fraction, rank=ranks.rank,
                                world_size=ranks.world_size, **options)
        return Batches(x, y, batch_size, rank=ranks.rank, world_size=ranks.world_size, **options)

    def bn_refresh_batches(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Batches:
        """The batches that recompute an averaged model's BN statistics: sharded when BN is synchronised
        (the global statistics, once), else the whole data on every rank (the same statistics everywhere)."""
        if self.sync_bn:
            return self.batches(x, y, batch_size)
        return Batches(x, y, batch_size)
