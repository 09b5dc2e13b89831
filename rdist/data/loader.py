"""Batches drawn and augmented on the compute device with tensor ops, seeded per epoch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop with `padding` zero pixels on each side, then random horizontal flip, batched.

    One gather over the padded batch replaces a Python loop of per-image crops.
    """
    n, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    dev = images.device
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    rows = (dy[:, None] + torch.arange(h, device=dev)[None])  # (n, h)
    cols = dx[:, None] + torch.arange(w, device=dev)[None]  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch_index = torch.arange(n, device=dev)[:, None, None, None]
    channel_index = torch.arange(images.shape[1], device=dev)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


class Batches:
    """Iterate float [0,1] batches of uint8 images held on the device.

    The order and augmentation of epoch e depend only on (seed, e), so a resumed run draws exactly
    the batches an uninterrupted one would.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 augment: bool = False, seed: int = 0, drop_last: bool = False, padding: int | None = None):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.augment, self.seed, self.drop_last = shuffle, augment, seed, drop_last
        self.padding = max(1, x.shape[-1] // 8) if padding is None else padding
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        generator = torch.Generator(device=self.x.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.y)
        order = torch.randperm(n, generator=generator, device=self.x.device) if self.shuffle else None
        for i in range(len(self)):
            index = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[index] if order is not None else index
            images = self.x[idx]
            if self.augment:
                images = augment(images, self.padding, generator)
            yield images.float().div_(255), self.y[idx]
