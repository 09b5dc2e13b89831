"""Throughput of batches mixed from real and generated images (`MixedBatches`) over a file larger than a batch
by five orders of magnitude.

    python bench/extra_data_throughput.py [--images 1000000] [--batch 512] [--fraction 0.7] [--batches 325]
        [--device cpu|cuda] [--dir DIR] [--keep]

Writes a DeepMind/EDM-layout file of `--images` CIFAR-shaped images (uint8 N x 32 x 32 x 3 `image`, integer
`label`; 1,000,000 images are 3.07 GB) into a temporary folder under `--dir` (after checking its free space),
reads it through once so that the page cache is warm, then times, on `--device`:
- the time to the first batch: opening the file (zip and npy headers, every label read and checked) and drawing,
  reading, augmenting and placing on the device the first batch of `--batch`;
- images per second over the next `--batches` batches (one epoch of the 50,000 CIFAR training images by
  default), each drawn, read, augmented (crop and flip) and made ready as float [0,1] on the device, with the
  real-only `Batches` over the same real set for comparison;
- the process's peak resident memory while opening and iterating, less what it held before, against the file's
  size.
The file is deleted at the end unless `--keep`. Not a test: numbers depend on the machine and its page cache.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rdist.data import Batches, MixedBatches, open_extra_data
from rdist.data.npzfile import NpzWriter

SHAPE = (32, 32, 3)
CHUNK = 16_384


def status(field: str) -> float:
    """A VmRSS / VmHWM line of /proc/self/status, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> bool:
    """Reset VmHWM to the current resident size (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def write_file(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    chunks = (rng.integers(0, 256, (min(CHUNK, n - s), *SHAPE), dtype=np.uint8) for s in range(0, n, CHUNK))
    with NpzWriter(path) as out:
        out.add("image", np.uint8, (n, *SHAPE), chunks)
        out.add("label", np.int64, (n,), [rng.integers(0, 10, n)])


def warm(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        buffer = bytearray(64 << 20)
        while f.readinto(buffer):
            pass
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(batches, count: int, device: torch.device) -> tuple[int, float]:
    images, start = 0, time.perf_counter()
    for k, (x, _) in enumerate(batches):
        images += len(x)
        if k + 1 == count:
            break
    sync(device)
    return images, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--fraction", type=float, default=0.7)
    parser.add_argument("--batches", type=int, default=325)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    size = args.images * int(np.prod(SHAPE)) + args.images * 8 + (1 << 20)
    free = shutil.disk_usage(args.dir).free
    if free < size * 1.2 + (2 << 30):
        raise SystemExit(f"{args.dir} has {free / 2**30:.1f} GiB free; the file needs {size / 2**30:.2f} GiB and "
                         "this leaves less than 2 GiB beside it: pass --dir elsewhere or fewer --images")
    folder = Path(tempfile.mkdtemp(prefix="rdist-extra-bench-", dir=args.dir))
    path = folder / "generated.npz"
    try:
        start = time.perf_counter()
        write_file(path, args.images)
        file_size = path.stat().st_size
        print(f"wrote {path}: {args.images:,} images, {file_size / 2**30:.2f} GiB in "
              f"{time.perf_counter() - start:.1f} s; read through once in {warm(path):.1f} s (warm page cache)")

        real_x = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8).to(device)
        real_y = torch.randint(0, 10, (50_000,)).to(device)
        sync(device)
        before = status("VmRSS")
        peak_reset = reset_peak()

        start = time.perf_counter()
        extra = open_extra_data(str(path), image_shape=(3, 32, 32), num_classes=10)
        opened = time.perf_counter() - start
        mixed = MixedBatches(real_x, real_y, extra, args.batch, fraction=args.fraction, seed=0)
        iterator = iter(mixed)
        next(iterator)
        sync(device)
        first = time.perf_counter() - start
        count = min(args.batches, len(mixed) - 1)
        images, elapsed = timed(iterator, count, device)
        peak = status("VmHWM") - before
        del iterator

        real_images, real_elapsed = timed(Batches(real_x, real_y, args.batch, shuffle=True, augment=True), count,
                                          device)
        print(f"device {device}, batch {args.batch}, fraction {args.fraction} ({mixed.n_generated} generated + "
              f"{mixed.n_real} real per batch), torch threads {torch.get_num_threads()}")
        print(f"time to first batch: {first:.2f} s (opening and checking the file {opened:.2f} s)")
        print(f"mixed batches: {images / elapsed:,.0f} images/s over {count} batches ({images:,} images, "
              f"{elapsed:.2f} s); real-only Batches: {real_images / real_elapsed:,.0f} images/s")
        print(f"peak memory growth: {peak:,.1f} MiB = {100 * peak * 2**20 / file_size:.2f}% of the "
              f"{file_size / 2**20:,.0f} MiB file" + ("" if peak_reset else " (peak not reset: upper bound)"))
        extra.close()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
