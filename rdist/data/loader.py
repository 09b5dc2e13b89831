"""Batches drawn and augmented on the compute device with tensor ops, seeded per epoch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop with `padding` zero pixels on each side, then random horizontal flip, batched."""
    return crop_flip(images, padding, *crop_flip_draws(len(images), padding, generator, images.device))


def crop_flip_draws(n: int, padding: int, generator: torch.Generator, device: torch.device | str):
    """The random draws of `augment` for `n` images: (row offset, column offset, flip) per image. Drawn for a
    whole global batch and sliced, they give each rank its rows' augmentation."""
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    return dy, dx, flip


def crop_flip(images: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor,
              flip: torch.Tensor) -> torch.Tensor:
    """Each image cropped at (dy, dx) of its zero-padded self and mirrored where `flip`.

    One gather over the padded batch replaces a Python loop of per-image crops: each output pixel's flat
    position in its padded image, shared by the channels (an expanded index, never materialised per channel).
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    dev = images.device
    rows = dy[:, None] + torch.arange(h, device=dev)[None]  # (n, h)
    cols = dx[:, None] + torch.arange(w, device=dev)[None]  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * (w + 2 * padding) + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, (h + 2 * padding) * (w + 2 * padding)).gather(2, index).reshape(n, c, h, w)


def shard_rows(total: int, rank: int, world_size: int) -> slice:
    """The rows of a batch of `total` examples that process `rank` of `world_size` holds: contiguous,
    floor or ceil of total / world_size each, in rank order, so that the ranks' rows make up the batch."""
    return slice(rank * total // world_size, (rank + 1) * total // world_size)


class Batches:
    """Iterate float [0,1] batches of uint8 images held on the device.

    The order and augmentation of epoch e depend only on (seed, e), so a resumed run draws exactly
    the batches an uninterrupted one would. With `world_size` > 1 (data-parallel training) every process
    draws the same global batch of `batch_size` and its augmentation, and yields only its `shard_rows`:
    the ranks' batches together are exactly the single-process batch.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 augment: bool = False, seed: int = 0, drop_last: bool = False, padding: int | None = None,
                 rank: int = 0, world_size: int = 1):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.augment, self.seed, self.drop_last = shuffle, augment, seed, drop_last
        self.padding = max(1, x.shape[-1] // 8) if padding is None else padding
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def global_size(self, i: int) -> int:
        """Images in global batch `i` (0-based): the batch size, or what is left for the last one."""
        return min(self.batch_size, len(self.y) - i * self.batch_size)

    def rows(self, i: int) -> slice:
        """The rows of global batch `i` that this process yields."""
        return shard_rows(self.global_size(i), self.rank, self.world_size)

    def __iter__(self):
        generator = torch.Generator(device=self.x.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.y)
        order = torch.randperm(n, generator=generator, device=self.x.device) if self.shuffle else None
        for i in range(len(self)):
            index = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[index] if order is not None else index
            images, labels = self.x[idx], self.y[idx]
            if self.augment:  # the whole global batch's crops and flips, drawn alike on every rank
                images = augment(images, self.padding, generator)
            if self.world_size > 1:
                rows = self.rows(i)
                images, labels = images[rows], labels[rows]
            yield images.float().div_(255), labels
