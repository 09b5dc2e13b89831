"""Generated-data files (`rdist.data.extra`, `rdist.data.npzfile`): both layouts read right, parts joined without a
copy, hf://datasets downloads once, the arrays memory-mapped in place, and every bad file refused in one line
that names the array and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rdist.data import ExtraData, convert_npz, map_npz, open_extra_data
from rdist.errors import RdistError
from tests.helpers import rdist_offline, refusing_endpoint

CIFAR = {"image_shape": (3, 32, 32), "num_classes": 10}


def edm_arrays(n: int = 40, seed: int = 0, shape=(32, 32, 3)) -> dict[str, np.ndarray]:
    """The DeepMind/EDM layout: `image` uint8 N x H x W x C, `label` int64 (N,)."""
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (n, *shape), dtype=np.uint8), "label": rng.integers(0, 10, n)}


def save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def read_all(extra: ExtraData) -> np.ndarray:
    index = np.arange(len(extra))
    return extra.read_images(index, np.empty((len(extra), *extra.row_shape), np.uint8))


def refused(path: Path | str, *fragments: str, **expected) -> str:
    """The one-line error `open_extra_data` gives for `path`, checked to contain every fragment."""
    with pytest.raises(RdistError) as caught:
        open_extra_data(str(path), **{**CIFAR, **expected})
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_deepmind_edm_layout_reads_as_written(tmp_path):
    arrays = edm_arrays()
    with open_extra_data(str(save(tmp_path / "cifar10_ddpm.npz", **arrays)), **CIFAR) as extra:
        assert (len(extra), extra.layout, extra.row_shape) == (40, "NHWC", (32, 32, 3))
        assert np.array_equal(read_all(extra), arrays["image"])
        assert np.array_equal(extra.labels(np.array([0, 5, 39])), arrays["label"][[0, 5, 39]])
        # Arbitrary rows, repeats and runs alike, come back in the order asked.
        index = np.array([1, 2, 3, 3, 17, 30, 31])
        rows = extra.read_images(index, np.empty((7, 32, 32, 3), np.uint8))
        assert np.array_equal(rows, arrays["image"][index])
        part = extra.parts[0]
        assert isinstance(part.images, np.memmap) and part.images.shape == (40, 32, 32, 3)
        assert extra.describe()["images"] == 40


def test_rdist_layout_is_the_training_half_of_an_npz_dataset(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 12).astype(np.int32)
    path = save(tmp_path / "rdist.npz", x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    with open_extra_data(str(path), **CIFAR) as extra:
        assert (len(extra), extra.layout, extra.row_shape) == (12, "NCHW", (3, 32, 32))
        assert np.array_equal(read_all(extra), x)
        assert np.array_equal(extra.labels(np.arange(12)), y)


def test_parts_are_one_set_without_a_copy_and_layouts_may_differ(tmp_path):
    a, b = edm_arrays(7, seed=2), edm_arrays(5, seed=3)
    pa = save(tmp_path / "part-a.npz", **a)
    pb = save(tmp_path / "part-b.npz", x_train=b["image"].transpose(0, 3, 1, 2).copy(), y_train=b["label"])
    with open_extra_data(f"{pa}, {pb}", **CIFAR) as extra:
        assert len(extra) == 12 and [p.layout for p in extra.parts] == ["NHWC", "NCHW"]
        assert all(isinstance(p.images, np.memmap) for p in extra.parts)
        assert np.array_equal(read_all(extra), np.concatenate([a["image"], b["image"]]))
        index = np.array([5, 6, 7, 11])  # a run that crosses from one file into the next
        assert np.array_equal(extra.labels(index), np.concatenate([a["label"], b["label"]])[index])
    with open_extra_data([str(pb), str(pa)], **CIFAR) as extra:  # a list works too; the first part sets the layout
        assert extra.layout == "NCHW"
        assert np.array_equal(read_all(extra), np.concatenate([b["image"], a["image"]]).transpose(0, 3, 1, 2))


def test_labels_are_held_in_the_smallest_type(tmp_path):
    path = save(tmp_path / "x.npz", **edm_arrays())
    with open_extra_data(str(path), **CIFAR) as extra:
        assert extra.parts[0].labels.dtype == np.uint8
    arrays = edm_arrays()
    arrays["label"] = arrays["label"] * 100
    with open_extra_data(str(save(tmp_path / "y.npz", **arrays)), image_shape=(3, 32, 32), num_classes=1000) as extra:
        assert extra.parts[0].labels.dtype == np.uint16
        assert np.array_equal(extra.labels(np.arange(40)), arrays["label"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads resident memory from /proc")
def test_opening_and_reading_a_large_file_keeps_it_on_disk(tmp_path):
    """60 MB of images: opening reads headers and labels only, and reading rows maps none of the file's pages."""
    n = 20_000
    images = np.lib.format.open_memmap(tmp_path / "image.npy", "w+", np.uint8, (n, 32, 32, 3))
    images[:] = 7
    images.flush()
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as out:
        out.write(tmp_path / "image.npy", "image.npy")
        out.writestr("label.npy", _npy(np.arange(n) % 10))
    del images
    (tmp_path / "image.npy").unlink()

    def resident_mb() -> float:
        return int(next(l for l in Path("/proc/self/status").read_text().splitlines()
                        if l.startswith("VmRSS")).split()[1]) / 1024

    before = resident_mb()
    extra = open_extra_data(str(path), **CIFAR)
    out = np.empty((512, 32, 32, 3), np.uint8)
    for start in range(0, n, 512):  # every image once, in batches
        extra.read_images(np.arange(start, min(start + 512, n)), out[:min(512, n - start)])
    assert int(out[0, 0, 0, 0]) == 7
    assert resident_mb() - before < 15, "the file's pages must not become the process's memory"
    extra.close()


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# ------------------------------------------------------------------ bad files, one line each


def test_wrong_dtype_is_refused(tmp_path):
    arrays = edm_arrays()
    path = save(tmp_path / "f.npz", image=arrays["image"].astype(np.float32) / 255, label=arrays["label"])
    refused(path, "array 'image'", "uint8", "float32", "save 0-255 uint8 images")


@pytest.mark.parametrize("shape", [(28, 28, 3), (32, 32, 1), (3, 32, 32)])
def test_wrong_size_or_channels_are_refused(tmp_path, shape):
    path = save(tmp_path / "f.npz", **edm_arrays(shape=shape))
    message = refused(path, "array 'image'", "N x H x W x C = N x 32 x 32 x 3", str((40, *shape)))
    assert ("store them as 'x_train'/'y_train'" in message) == (shape == (3, 32, 32)), message


def test_images_must_match_the_real_dataset_given(tmp_path):
    path = save(tmp_path / "f.npz", **edm_arrays())
    refused(path, "N x 8 x 8 x 1", image_shape=(1, 8, 8))
    refused(path, "label 9", "[0, 5)", num_classes=5)


@pytest.mark.parametrize("bad, fragment", [(-1, "label -1"), (10, "label 10")])
def test_labels_out_of_range_are_refused(tmp_path, bad, fragment):
    arrays = edm_arrays()
    arrays["label"][17] = bad
    refused(save(tmp_path / "f.npz", **arrays), "array 'label'", fragment, "[0, 10)")


def test_labels_must_be_one_integer_per_image(tmp_path):
    arrays = edm_arrays()
    refused(save(tmp_path / "a.npz", image=arrays["image"], label=arrays["label"].astype(np.float32)),
            "array 'label'", "integer class labels", "float32")
    refused(save(tmp_path / "b.npz", image=arrays["image"], label=arrays["label"][:, None]), "1-D")
    refused(save(tmp_path / "c.npz", image=arrays["image"], label=arrays["label"][:39]),
            "array 'label' has 39 labels for 40 images")


def test_pickled_object_arrays_are_never_loaded(tmp_path):
    arrays = edm_arrays()
    objects = np.empty(40, dtype=object)
    objects[:] = [int(v) for v in arrays["label"]]
    refused(save(tmp_path / "f.npz", image=arrays["image"], label=objects), "array 'label'", "pickled Python objects")


def test_missing_arrays_name_both_layouts(tmp_path):
    arrays = edm_arrays()
    refused(save(tmp_path / "a.npz", images=arrays["image"], labels=arrays["label"]),
            "['images', 'labels']", "'image'", "'x_train'")
    refused(save(tmp_path / "b.npz", image=arrays["image"]), "no 'label' array")
    refused(save(tmp_path / "c.npz", image=arrays["image"][:0], label=arrays["label"][:0]), "holds no images")


def test_not_an_npz_or_truncated_or_absent(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    refused(junk, "not a readable NumPy .npz")
    whole = save(tmp_path / "whole.npz", **edm_arrays()).read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(whole[:len(whole) // 2])
    refused(cut, "not a readable NumPy .npz")
    refused(tmp_path / "absent.npz", "not found")
    refused(f"{tmp_path / 'whole.npz'},", "empty part")


@pytest.mark.e2e
def test_compressed_members_are_refused_and_the_named_conversion_fixes_them(tmp_path, cli):
    arrays = edm_arrays()
    packed = tmp_path / "packed.npz"
    np.savez_compressed(packed, **arrays)
    message = refused(packed, "array 'image' is compressed", "rdist data convert")
    converted = tmp_path / "packed-uncompressed.npz"
    command = f"rdist data convert {packed} {converted}"
    assert command in message, "the command names the file and its converted copy"
    # The command as the message writes it, in a fresh process: it works and says nothing on stderr.
    done = subprocess.run([str(Path(sys.executable).with_name("rdist")), *command.split()[1:]], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stderr == "" and "uncompressed" in done.stdout, done
    cli.fails(["data", "convert", tmp_path / "absent.npz", tmp_path / "out.npz"], "absent.npz", unchanged=tmp_path)
    with zipfile.ZipFile(converted) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    with open_extra_data(str(converted), **CIFAR) as extra:
        assert np.array_equal(read_all(extra), arrays["image"])
    with np.load(converted, allow_pickle=False) as loaded:  # still an ordinary npz for numpy
        assert np.array_equal(loaded["label"], arrays["label"])


def test_conversion_refuses_object_arrays_and_writes_nothing(tmp_path):
    source = tmp_path / "objects.npz"
    np.savez_compressed(source, label=np.array([1, "a"], dtype=object))
    with pytest.raises(RdistError, match="pickled Python objects"):
        convert_npz(source, tmp_path / "out.npz")
    assert sorted(os.listdir(tmp_path)) == ["objects.npz"]


def test_map_npz_maps_every_member_in_place(tmp_path):
    arrays = {"a": np.arange(1000, dtype=np.int16).reshape(10, 100), "b": np.ones(3, np.float64)}
    mapped = map_npz(save(tmp_path / "f.npz", **arrays))
    assert all(isinstance(m, np.memmap) for m in mapped.values())
    assert all(np.array_equal(mapped[k], arrays[k]) for k in arrays)


# ------------------------------------------------------------------ hf://datasets


def test_hub_dataset_file_downloads_once_into_the_cache(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    arrays = edm_arrays()
    local = save(tmp_path / "1m.npz", **arrays)
    hub.publish("datasets/P2333/DM-Improves-AT", {"cifar10/1m.npz": local.read_bytes()})
    source = "hf://datasets/P2333/DM-Improves-AT/cifar10/1m.npz"
    with open_extra_data(source, **CIFAR) as extra:
        assert np.array_equal(read_all(extra), arrays["image"])
        assert Path(os.environ["HF_HUB_CACHE"]) in extra.parts[0].path.parents
        assert extra.describe()["sources"] == [source]
    downloads = [p for m, p, _ in hub.state.requests if m == "GET" and p.endswith("/cifar10/1m.npz")]
    assert len(downloads) == 1
    with open_extra_data(f"{source},{local}", **CIFAR) as extra:  # a Hub part beside a local one
        assert len(extra) == 80
    assert len([p for m, p, _ in hub.state.requests if m == "GET" and p.endswith("/cifar10/1m.npz")]) == 1, \
        "the second open reads the cache"


def test_hub_dataset_offline_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 at import
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    refused("hf://datasets/P2333/DM-Improves-AT@main/cifar10/5m.npz", "cannot download",
            "http://127.0.0.1:9/datasets/P2333/DM-Improves-AT/resolve/main/cifar10/5m.npz",
            "give its local path instead", "/data/5m.npz", endpoint="http://127.0.0.1:9")


def test_hub_names_must_be_dataset_files(tmp_path):
    refused("hf://models/org/repo/x.npz", "is not a Hub dataset file", "hf://datasets/ORG/REPO/PATH")


# ------------------------------------------------------------------ https://


@pytest.fixture
def web(tmp_path, monkeypatch):
    """A local HTTP server over tmp_path/www (a stand-in for storage.googleapis.com): (base URL, paths requested)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("RDIST_CACHE", str(tmp_path / "cache"))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, requested
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_a_url_downloads_once_into_rdists_cache_and_a_compressed_file_is_converted_there(web):
    base, root, requested = web
    arrays = edm_arrays()
    (root / "dm-adversarial-robustness").mkdir()
    np.savez_compressed(root / "dm-adversarial-robustness" / "cifar10_ddpm.npz", **arrays)  # compressed, as may be
    url = f"{base}/dm-adversarial-robustness/cifar10_ddpm.npz"
    with open_extra_data(url, **CIFAR) as extra:
        assert np.array_equal(read_all(extra), arrays["image"])
        local = extra.parts[0].path
        assert extra.describe()["sources"] == [url]
    assert local == Path(os.environ["RDIST_CACHE"]) / "extra" / base.removeprefix("http://") / \
        "dm-adversarial-robustness" / "cifar10_ddpm.npz"
    with zipfile.ZipFile(local) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert sorted(p.name for p in local.parent.iterdir()) == ["cifar10_ddpm.npz"]  # no download or temporary left
    with open_extra_data(url, **CIFAR) as extra:
        assert len(extra) == 40
    assert requested == ["/dm-adversarial-robustness/cifar10_ddpm.npz"], "the second open reads the cache"


def test_a_url_that_cannot_be_fetched_names_where_to_put_the_file(web):
    base, _, _ = web
    url = f"{base}/missing/cifar10_ddpm.npz"
    target = Path(os.environ["RDIST_CACHE"]) / "extra" / base.removeprefix("http://") / "missing" / "cifar10_ddpm.npz"
    refused(url, "cannot download", url, "HTTPError", f"save it as {target}")
    assert not target.parent.exists() or not any(target.parent.iterdir()), "nothing half-downloaded is left"
    refused(f"{base}/listing/", "names no .npz file")


@pytest.mark.e2e
def test_hub_dataset_out_of_reach_fails_at_once_in_one_line(tmp_path):
    """No HF_HUB_OFFLINE, an endpoint that refuses connections: huggingface_hub alone would retry five times (about
    30 s) and log eleven lines; rdist asks once and prints its one line, naming the file and where to put it."""
    endpoint, source = refusing_endpoint(), "hf://datasets/P2333/DM-Improves-AT/cifar10/1m.npz"
    done = rdist_offline("teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data", "digits",
                         "--epochs", "1", "--extra-data", source, "--out", tmp_path / "run", endpoint=endpoint,
                         cache=tmp_path / "cache")
    assert done.returncode == 1 and done.stdout == "", done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    for fragment in (f"error: cannot download {source}", f"the Hub at {endpoint} is out of reach",
                     "Connection refused", f"{endpoint}/datasets/P2333/DM-Improves-AT/resolve/main/cifar10/1m.npz",
                     "give its local path instead (e.g. --extra-data /data/1m.npz)"):
        assert fragment in line, line
    assert not (tmp_path / "run").exists()
