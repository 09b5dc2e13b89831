"""`MixedBatches`: real and generated images in every batch at the asked fraction, both streams a function of
(seed, epoch) only, the ranks' rows together the single-process batch, generated images read from the file as
written and augmented as real ones."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from rdist.attacks.pgd import ShardNoise, random_start
from rdist.data import MixedBatches, open_extra_data
from rdist.data.mixed import generated_positions
from rdist.errors import RdistError

SHAPE = (3, 8, 8)
N_REAL, N_GEN = 203, 300


@pytest.fixture(scope="module")
def real():
    """Real images with labels 0-4; generated ones (below) have labels 5-9, so each row says where it came from."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (N_REAL, *SHAPE), generator=g, dtype=torch.uint8), torch.randint(0, 5, (N_REAL,),
                                                                                                   generator=g)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """(file in the DeepMind/EDM layout, its images as NCHW, its labels)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (N_GEN, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(5, 10, N_GEN)
    path = tmp_path_factory.mktemp("extra") / "cifar_ddpm.npz"
    np.savez(path, image=images, label=labels)
    return path, torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels)


@pytest.fixture
def extra(generated):
    with open_extra_data(str(generated[0]), image_shape=SHAPE, num_classes=10) as opened:
        yield opened


def batches(real, extra, **options) -> MixedBatches:
    options = {"fraction": 0.7, "seed": 3, **options}
    return MixedBatches(*real, extra, options.pop("batch_size", 32), **options)


def epoch(loader: MixedBatches, e: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(e)
    return list(loader)


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b))


def test_every_batch_holds_the_fraction_and_an_epoch_is_one_pass_over_the_real_images(real, extra):
    loader = batches(real, extra, augment=False)
    got = epoch(loader)
    assert loader.n_generated == round(0.7 * 32) == 22 and loader.n_real == 10
    assert len(got) == len(loader) == 21  # ceil(203 / 10)
    for i, (x, y) in enumerate(got):
        is_generated = y >= 5
        assert torch.equal(is_generated, torch.from_numpy(loader.generated(i)))
        assert len(y) == 32, "the last batch is filled up to the batch size with generated images, as the official sampler"
        assert int(is_generated.sum()) == (22 if i < 20 else 32 - 3)
    real_rows = torch.cat([x[y < 5] for x, y in got])
    assert len(real_rows) == N_REAL
    # every real image exactly once: sort both by their bytes
    key = lambda t: sorted(bytes(r) for r in (t * 255).round().to(torch.uint8).flatten(1).numpy())  # noqa: E731
    assert key(real_rows) == key(real[0].float() / 255)


def test_drop_last_and_no_generated_images(real, extra):
    assert len(batches(real, extra, drop_last=True)) == 20
    assert all(len(y) == 32 for _, y in epoch(batches(real, extra, drop_last=True)))
    plain = epoch(batches(real, extra, fraction=0.0, augment=False))
    assert len(plain) == 7 and [len(y) for _, y in plain] == [32] * 6 + [11]
    assert all(bool((y < 5).all()) for _, y in plain)


def test_generated_rows_are_the_drawn_file_images_in_nchw(real, extra, generated):
    _, images, labels = generated
    loader = batches(real, extra, augment=False)
    plan = loader.generated_indices()
    for i, (x, y) in enumerate(epoch(loader)):
        rows = torch.from_numpy(loader.generated(i))
        index = torch.from_numpy(plan[i])
        assert torch.equal(x[rows], images[index].float() / 255)
        assert torch.equal(y[rows], labels[index])
    assert all(np.all(np.diff(p) >= 0) for p in plan), "sorted within a batch: the reads walk the file forwards"


def test_generated_images_are_cropped_and_flipped_as_real_ones(real, extra, generated):
    _, images, _ = generated
    flipped = 0
    loader = batches(real, extra, padding=0)
    plan = loader.generated_indices()
    for i, (x, _) in enumerate(epoch(loader)):
        original = images[torch.from_numpy(plan[i])].float() / 255
        mine = x[torch.from_numpy(loader.generated(i))]
        mirrored = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(mine, original)])
        assert all(torch.equal(a, b) or m for a, b, m in zip(mine, original, mirrored))
        flipped += int(mirrored.sum())
    assert flipped > 100, "about half of the generated images must be mirrored"
    padded = torch.cat([x[torch.from_numpy(loader.generated(i))] for i, (x, _) in
                        enumerate(epoch(batches(real, extra, padding=2)))])
    assert (padded == 0).flatten(1).any(1).float().mean() > 0.5, "zero-padded crops of generated images"


def test_the_same_seed_and_epoch_give_the_same_batches_however_reached(real, extra):
    resumed = batches(real, extra)
    uninterrupted = batches(real, extra, prefetch=5)
    for e in range(3):
        expected = epoch(uninterrupted, e)
    assert same(epoch(resumed, 2), expected), "epoch 2 depends only on (seed, 2), not on epochs 0 and 1"
    assert same(epoch(batches(real, extra, prefetch=1), 2), expected), "nor on how far the reader runs ahead"
    assert not same(epoch(resumed, 1), expected)
    assert not same(epoch(batches(real, extra, seed=4), 2), expected)


@pytest.mark.parametrize("world", [2, 3, 5, 40])  # 40 ranks: some hold no row of a batch of 32
def test_the_ranks_rows_make_up_the_single_process_batch(real, extra, world):
    whole = epoch(batches(real, extra))
    shards = [batches(real, extra, rank=r, world_size=world) for r in range(world)]
    parts = [epoch(s) for s in shards]
    for i, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([p[i][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[i][1] for p in parts]), y)
        rows = [s.rows(i) for s in shards]
        assert rows[0].start == 0 and rows[-1].stop == shards[0].global_size(i) == len(y)
        assert all(a.stop == b.start for a, b in zip(rows, rows[1:]))
        # every rank's share holds the fraction to within a row (BN sees mixed batches on every rank)
        total, gen = len(y), int((y >= 5).sum())
        for r, s in zip(rows, shards):
            assert abs(int(s.generated(i).sum()) - (r.stop - r.start) * gen / total) <= 1


def test_shard_noise_over_the_ranks_rows_is_the_single_process_noise(real, extra):
    x, _ = next(iter(batches(real, extra)))
    whole = random_start(x, 0.1, "uniform", torch.Generator().manual_seed(9))
    shards = []
    for r in range(3):
        loader = batches(real, extra, rank=r, world_size=3)
        xr, _ = next(iter(loader))
        rows = loader.rows(0)
        shards.append(random_start(xr, 0.1, "uniform",
                                   ShardNoise(torch.Generator().manual_seed(9), rows.start, rows.stop,
                                              loader.global_size(0))))
    assert torch.equal(torch.cat(shards), whole)


def test_the_canonical_order_spreads_generated_rows_evenly():
    for total, gen in ((512, 358), (32, 22), (32, 29), (7, 0), (5, 5)):
        flags = generated_positions(total, gen)
        assert int(flags.sum()) == gen
        for block in (1, 3, 16, 100):
            for start in range(0, total - block + 1, max(1, block // 2)):
                assert abs(int(flags[start:start + block].sum()) - block * gen / total) <= 1


def test_leaving_an_epoch_early_stops_the_reader(real, extra):
    for _, _ in zip(range(2), batches(real, extra, prefetch=1)):
        pass
    assert not [t for t in threading.enumerate() if t.name == "rdist-extra-data" and t.is_alive()]


def test_a_read_failure_reaches_the_training_loop_in_one_line(real, generated):
    extra = open_extra_data(str(generated[0]), image_shape=SHAPE, num_classes=10)
    loader = batches(real, extra)
    extra.close()  # the file descriptors are gone: the reader thread's first read fails
    with pytest.raises(RdistError, match="cannot read extra data .*cifar_ddpm.npz"):
        next(iter(loader))


def test_bad_settings_are_refused(real, extra):
    with pytest.raises(RdistError, match=r"in \[0, 1\)"):
        batches(real, extra, fraction=1.0)
    with pytest.raises(RdistError, match="leaves no real image in a batch of 1"):
        batches(real, extra, batch_size=1)
    with pytest.raises(RdistError, match=r"generated images are \(3, 8, 8\).*real ones \(3, 4, 4\)"):
        MixedBatches(real[0][:, :, :4, :4], real[1], extra, 32)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_on_cuda_generated_rows_come_through_pinned_memory_and_ranks_still_add_up(real, extra, generated,
                                                                                   monkeypatch):
    import rdist.data.mixed as mixed

    host: list[tuple[torch.Tensor, torch.Tensor]] = []  # every batch the reading thread handed over, in order
    results = mixed._Prefetcher._results

    def watched(self):
        for item in results(self):
            host.append(item)
            yield item

    monkeypatch.setattr(mixed._Prefetcher, "_results", watched)
    device_real = (real[0].cuda(), real[1].cuda())
    loader = batches(device_real, extra, augment=False)
    loader.set_epoch(0)
    got = []
    for i, (x, y) in enumerate(loader):
        # Batch i + 1's rows were taken (and their copy queued on the side stream) before batch i came out.
        assert len(host) == min(i + 2, len(loader)), (i, len(host))
        got.append((x, y))
    assert len(host) == len(loader) and all(im.is_pinned() and lab.is_pinned() for im, lab in host), \
        "the generated rows must come to the GPU from pinned host memory, or non_blocking copies are synchronous"
    plan = loader.generated_indices()
    _, images, _ = generated
    for i, (x, y) in enumerate(got):
        assert x.is_cuda and y.is_cuda and len(y) == 32
        rows = torch.from_numpy(loader.generated(i)).cuda()
        assert torch.equal(x[rows].cpu(), images[torch.from_numpy(plan[i])].float() / 255)
    whole = epoch(batches(device_real, extra))
    parts = [epoch(batches(device_real, extra, rank=r, world_size=2)) for r in range(2)]
    assert all(torch.equal(torch.cat([p[i][0] for p in parts]), x) for i, (x, _) in enumerate(whole))
    assert same(epoch(batches(device_real, extra)), whole)
