"""Batches that mix real and generated images, as the generated-data recipes train (Gowal et al. 2021, Rebuffi
et al. 2021, Wang et al. 2023): every batch of B holds round(F x B) generated images and B - round(F x B) real
ones, and an epoch is one pass over the real training split.

The two streams, both drawn from (seed, epoch) only, so epoch e's batches are the same in a resumed run:
- real: a permutation of the real split on its device (as `Batches`), taken B - round(F x B) at a time;
- generated: round(F x B) indices per batch drawn uniformly with replacement from the whole generated set, as
  the official sampler draws them (`torch.randint` over the unlabelled indices in DM-Improves-AT's
  `core/data/semisup.py`), sorted within the batch so that the reads walk the file forwards.
The last batch of an epoch, with fewer real images left, is filled up to B with generated ones, as that
sampler fills it (with F = 0 nothing is added and it is simply smaller); `drop_last` drops it instead.

The global batch's canonical row order interleaves the two kinds evenly: row p of a batch of T rows with g
generated ones is generated iff floor((p+1) g / T) > floor(p g / T). The official sampler shuffles each batch
for the same reason ("batch-norm / DataParallel hell" without it): every contiguous block of rows, hence every
rank's share, holds the fraction F. Data-parallel: rank r of W yields the contiguous rows `rows(i)` of that
order (`shard_rows`, as `Batches`), so `ShardNoise(generator, rows.start, rows.stop, global_size(i))` gives the
attack's random starts as one process draws them, and the ranks' rows together are the single-process batch.
Each rank reads from the file only its own generated rows.

Generated rows are read on the host (a background thread runs `prefetch` batches ahead, in batch order, from the
precomputed plan: the result does not depend on thread timing) into pinned memory on CUDA, copied with
non_blocking on a side stream one batch ahead of the step (`_to_device`), and placed beside the real rows on the
device; then the whole batch is cropped and flipped with
draws made for the global batch, so generated images are augmented as real ones.
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref
from typing import Iterator

import numpy as np
import torch

from rdist.data.extra import ExtraData
from rdist.data.loader import crop_flip, crop_flip_draws, shard_rows
from rdist.errors import RdistError

_GENERATED_STREAM = 0x6E7261  # keeps the generated stream's seeds apart from any other use of (seed, epoch)
# Prefetchers whose iteration was left suspended: stopped at exit, before the interpreter tears torch down under
# a daemon thread still inside it.
_LIVE: weakref.WeakSet = weakref.WeakSet()


def generated_positions(total: int, generated: int) -> np.ndarray:
    """Whether each row of the canonical order of a batch of `total` rows with `generated` generated ones is
    generated: spread evenly, so that any contiguous block holds the batch's fraction (to within one row)."""
    p = np.arange(total, dtype=np.int64)
    return (p + 1) * generated // total > p * generated // total


def mixed_counts(batch_size: int, fraction: float) -> tuple[int, int]:
    """(real, generated) images of every full batch of `batch_size` with the generated share `fraction`: round(F x B)
    generated; refused when no real image is left (an epoch is one pass over the real ones)."""
    if not 0 <= fraction < 1:
        raise RdistError(f"the extra-data fraction must be in [0, 1), got {fraction}: an epoch is one pass over "
                         f"the real images, so every batch needs at least one")
    generated = round(fraction * batch_size)
    if batch_size - generated < 1:
        raise RdistError(f"a fraction of {fraction} leaves no real image in a batch of {batch_size}; lower "
                         f"the fraction or raise the batch size")
    return batch_size - generated, generated


def mixed_epoch(n_real: int, batch_size: int, fraction: float, drop_last: bool = False) -> tuple[int, int]:
    """(batches, images) of one epoch over `n_real` real images: ceil(n_real / real per batch) batches (floor with
    `drop_last`), every one filled up to `batch_size` with generated images (with F = 0 the last is just smaller)."""
    real, generated = mixed_counts(batch_size, fraction)
    batches = n_real // real if drop_last else -(-n_real // real)
    if generated or drop_last:
        return batches, batches * batch_size
    return batches, n_real


class MixedBatches:
    """Iterate float [0,1] batches of real images (uint8 `x`, labels `y`, on the compute device) mixed with
    generated ones from `extra`: `fraction` of each batch generated, same augmentation for both.

    The interface of `Batches`: `set_epoch`, `len`, `global_size(i)`, `rows(i)` (this rank's rows of the
    canonical order of global batch i), so the trainer's noise slicing (`ShardNoise`) and gradient share work
    unchanged. `generated(i)` says which of this rank's rows are generated."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, extra: ExtraData, batch_size: int, *,
                 fraction: float = 0.7, augment: bool = True, seed: int = 0, drop_last: bool = False,
                 padding: int | None = None, rank: int = 0, world_size: int = 1, prefetch: int = 2):
        self.n_real, self.n_generated = mixed_counts(batch_size, fraction)
        if tuple(x.shape[1:]) != tuple(extra.image_shape):
            raise RdistError(f"the generated images are {extra.image_shape} (C, H, W) but the real ones "
                             f"{tuple(x.shape[1:])}; give generated images of the real dataset's shape")
        self.x, self.y, self.extra, self.batch_size = x, y, extra, batch_size
        self.fraction, self.augment, self.seed, self.drop_last = fraction, augment, seed, drop_last
        self.padding = max(1, x.shape[-1] // 8) if padding is None else padding
        self.rank, self.world_size, self.prefetch = rank, world_size, max(1, prefetch)
        self.epoch = 0
        self._positions: dict[tuple[int, int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return mixed_epoch(len(self.y), self.batch_size, self.fraction, self.drop_last)[0]

    def _counts(self, i: int) -> tuple[int, int]:
        """(real, generated) images of global batch `i`: a short last batch is filled up to the batch size."""
        real = min(self.n_real, len(self.y) - i * self.n_real)
        generated = self.n_generated if real == self.n_real or not self.n_generated else self.batch_size - real
        return real, generated

    def global_size(self, i: int) -> int:
        """Rows in global batch `i` (0-based), real and generated."""
        return sum(self._counts(i))

    def rows(self, i: int) -> slice:
        """The rows of global batch `i`'s canonical order that this process yields."""
        return shard_rows(self.global_size(i), self.rank, self.world_size)

    def generated(self, i: int) -> np.ndarray:
        """Which of this process's rows of global batch `i` are generated (bool, one per row)."""
        rows = self.rows(i)
        return generated_positions(self.global_size(i), self._counts(i)[1])[rows]

    def _runs(self, i: int) -> tuple[slice, slice, slice]:
        """This rank's rows of global batch `i`, and the runs of the batch's real list and of its sorted generated
        list that they hold (contiguous, since the rows are)."""
        real, generated = self._counts(i)
        total, rows = real + generated, self.rows(i)
        # floor(p g / T) generated rows come before canonical row p (`generated_positions`)
        gen = slice(rows.start * generated // total, rows.stop * generated // total)
        return rows, slice(rows.start - gen.start, rows.stop - gen.stop), gen

    def _local_positions(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(real, generated) positions in this rank's rows of batch `i`, on the device; one pattern serves every
        full batch, so they are built once."""
        real, generated = self._counts(i)
        rows = self.rows(i)
        key = (real + generated, generated, rows.start, rows.stop)
        if key not in self._positions:
            is_generated = torch.from_numpy(self.generated(i))
            self._positions[key] = (torch.nonzero(~is_generated).flatten().to(self.x.device),
                                    torch.nonzero(is_generated).flatten().to(self.x.device))
        return self._positions[key]

    def generated_indices(self) -> list[np.ndarray]:
        """Every global batch's generated images of this epoch (indices into `extra`, sorted), from (seed, epoch)."""
        rng = np.random.default_rng([self.seed, self.epoch, _GENERATED_STREAM])
        return [np.sort(rng.integers(0, len(self.extra), self._counts(i)[1])) for i in range(len(self))]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.x.device
        generator = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.y), generator=generator, device=device)
        plan = self.generated_indices()
        mine = [indices[self._runs(i)[2]] for i, indices in enumerate(plan)]
        with _Prefetcher(self.extra, mine, device, depth=self.prefetch) as host:
            uploads = _to_device(host, len(self), device)
            for i in range(len(self)):
                rows, real_run, _ = self._runs(i)
                draws = crop_flip_draws(self.global_size(i), self.padding, generator, device) if self.augment else None
                start = i * self.n_real
                real_index = order[start + real_run.start:start + real_run.stop]
                gen_images, gen_labels = next(uploads)
                if self.extra.layout == "NHWC":
                    gen_images = gen_images.permute(0, 3, 1, 2)
                images = torch.empty((rows.stop - rows.start, *self.x.shape[1:]), dtype=self.x.dtype, device=device)
                labels = torch.empty(rows.stop - rows.start, dtype=self.y.dtype, device=device)
                real_at, gen_at = self._local_positions(i)
                images[real_at], labels[real_at] = self.x[real_index], self.y[real_index]
                images[gen_at], labels[gen_at] = gen_images, gen_labels
                if draws is not None:
                    images = crop_flip(images, self.padding, *(d[rows] for d in draws))
                yield images.float().div_(255), labels


def _to_device(host: Iterator[tuple[torch.Tensor, torch.Tensor]], count: int,
               device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first `count` batches of `host` on `device`. On the CPU as they come. On CUDA each batch's copy is issued
    one batch ahead, on a side stream, from pinned memory (the pattern of NVIDIA's and timm's prefetching loaders):
    when batch k is handed out, batch k + 1's copy is already queued, so it runs during step k and step k + 1 never
    waits for it. The consumer's stream waits on an event recorded after batch k's copy (a wait on the GPU, not a
    host sync), and `record_stream` tells the caching allocator that the consumer's stream uses the tensors, so
    their memory is not handed out again before its work on them is done."""
    if device.type != "cuda":
        for _ in range(count):
            images, labels = next(host)
            if device.type != "cpu":
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            yield images, labels
        return
    side = torch.cuda.Stream(device)

    def upload() -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event]:
        images, labels = next(host)
        with torch.cuda.stream(side):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(side)
        return images, labels, copied

    pending = upload() if count else None
    for k in range(count):
        images, labels, copied = pending
        consumer = torch.cuda.current_stream(device)
        consumer.wait_event(copied)
        images.record_stream(consumer)
        labels.record_stream(consumer)
        pending = upload() if k + 1 < count else None
        yield images, labels


class _Prefetcher:
    """Reads each batch's generated rows (`batches[i]`, sorted indices) on a background thread, in order, up to
    `depth` batches ahead: into pinned host memory for a CUDA `device`. Iterating yields (uint8 images, int64
    labels). Leaving the `with` block, or the interpreter's exit, stops and joins the thread."""

    def __init__(self, extra: ExtraData, batches: list[np.ndarray], device: torch.device, *, depth: int):
        self.extra, self.batches = extra, batches
        self.pin, self.reuse = device.type == "cuda", device.type == "cpu"
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rdist-extra-data", daemon=True)

    def __enter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        _LIVE.add(self)
        self.thread.start()
        return self._results()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():  # unblock a put() waiting on a full queue
            try:
                self.queue.get(timeout=0.05)
            except queue.Empty:
                pass
        _LIVE.discard(self)

    def _results(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            item = self.queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self) -> None:
        try:
            # On the CPU the consumer copies each batch's rows before it takes the next, so `depth` + 2 buffers
            # (queued, being filled, being copied) are reused in turn: the process holds them and nothing more.
            # Pinned buffers come from torch's caching host allocator instead, which reuses a block only once
            # the non_blocking copy from it has completed.
            most = max((len(index) for index in self.batches), default=0)
            ring = [torch.empty((most, *self.extra.row_shape), dtype=torch.uint8)
                    for _ in range(self.queue.maxsize + 2 if self.reuse else 0)]
            for k, index in enumerate(self.batches):
                if ring:
                    images = ring[k % len(ring)][:len(index)]
                else:
                    images = torch.empty((len(index), *self.extra.row_shape), dtype=torch.uint8, pin_memory=self.pin)
                self.extra.read_images(index, images.numpy())
                labels = torch.from_numpy(self.extra.labels(index))
                if not self._put((images, labels.pin_memory() if self.pin else labels)):
                    return
        except BaseException as exc:  # raised again on the consuming thread
            self._put(exc)


@atexit.register
def _stop_prefetchers() -> None:
    for prefetcher in list(_LIVE):
        prefetcher.close()
