"""Tiny-ImageNet from an archive of the official layout that the test builds (3 classes, a few JPEGs written with
PIL), downloaded over HTTP from 127.0.0.1, parsed, cached; the offline error; the registry's facts."""

from __future__ import annotations

import functools
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest
import torch

import rdist
from rdist.data import dataset_shape, train_size
from rdist.data import tiny_imagenet
from rdist.errors import RdistError

# wnids.txt lists classes unsorted, as the official file does; rdist numbers them in sorted order (ImageFolder's).
WNIDS = ["n02124075", "n01443537", "n04067472"]
TRAIN_PER_CLASS = 4
COLOUR = {"n01443537": (200, 30, 30), "n02124075": (30, 200, 30), "n04067472": (30, 30, 200)}
# (file, wnid) in val_annotations.txt order
VAL = [("val_0.JPEG", "n04067472"), ("val_1.JPEG", "n01443537"), ("val_2.JPEG", "n02124075"),
       ("val_3.JPEG", "n01443537"), ("val_4.JPEG", "n04067472")]


def jpeg(colour: tuple[int, int, int], grey: bool = False) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (64, 64), colour)
    if grey:  # a few official images are single-channel JPEGs
        image = image.convert("L")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=100)
    return out.getvalue()


def build_archive(path: Path, *, val_annotations: bool = True, wrong_size: bool = False) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        root = "tiny-imagenet-200/"
        archive.writestr(root + "wnids.txt", "\n".join(WNIDS) + "\n")
        archive.writestr(root + "words.txt", "".join(f"{w}\tclass {w}\n" for w in WNIDS))
        for wnid in WNIDS:
            archive.writestr(f"{root}train/{wnid}/{wnid}_boxes.txt", "")
            for k in range(TRAIN_PER_CLASS):
                archive.writestr(f"{root}train/{wnid}/images/{wnid}_{k}.JPEG",
                                 jpeg(COLOUR[wnid], grey=(wnid == "n02124075" and k == 1)))
        for file, wnid in VAL:
            archive.writestr(f"{root}val/images/{file}", jpeg(COLOUR[wnid]))
        if val_annotations:
            archive.writestr(root + "val/val_annotations.txt",
                             "".join(f"{file}\t{wnid}\t0\t0\t63\t63\n" for file, wnid in VAL))
        archive.writestr(root + "test/images/test_0.JPEG", jpeg((0, 0, 0)))
        if wrong_size:
            from PIL import Image

            out = io.BytesIO()
            Image.new("RGB", (32, 32)).save(out, "JPEG")
            archive.writestr(f"{root}train/{WNIDS[0]}/images/{WNIDS[0]}_9.JPEG", out.getvalue())
    return path


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The built archive at an http://127.0.0.1 URL that tiny_imagenet downloads from; yields the server's log."""
    folder = tmp_path / "www"
    folder.mkdir()
    build_archive(folder / "tiny-imagenet-200.zip")
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setattr(tiny_imagenet, "URL", f"http://127.0.0.1:{server.server_address[1]}/tiny-imagenet-200.zip")
    yield requests
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_parse_and_cache(served, tmp_path):
    root = tmp_path / "data"
    data = rdist.load_dataset("tiny-imagenet", root=root)
    assert served == ["/tiny-imagenet-200.zip"], "downloaded once"
    assert data.x_train.shape == (3 * TRAIN_PER_CLASS, 3, 64, 64) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (len(VAL), 3, 64, 64)
    assert data.num_classes == 200, "the dataset's facts, whatever subset of the classes an archive holds"
    classes = sorted(WNIDS)
    assert data.y_train.tolist() == [k for k in range(3) for _ in range(TRAIN_PER_CLASS)]
    assert data.y_test.tolist() == [classes.index(wnid) for _, wnid in VAL], "labels from val_annotations.txt"
    for images, labels in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        for image, label in zip(images, labels):
            colour = torch.tensor(COLOUR[classes[label]], dtype=torch.float32)
            mean = image.float().mean(dim=(1, 2))
            if not torch.allclose(mean, mean.mean().expand(3), atol=2):  # the grey image has equal channels
                assert torch.allclose(mean, colour, atol=3), (mean, colour)
    grey = data.x_train[classes.index("n02124075") * TRAIN_PER_CLASS + 1].float()
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2]), "greyscale becomes RGB"

    cache = root / "tiny-imagenet" / tiny_imagenet.CACHE
    assert cache.is_file()
    (root / "tiny-imagenet" / tiny_imagenet.ARCHIVE).unlink()  # the cache alone serves the next load
    again = rdist.load_dataset("tiny-imagenet", root=root)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    assert len(served) == 1


def test_offline_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tiny_imagenet, "URL", "http://127.0.0.1:9/tiny-imagenet-200.zip")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with pytest.raises(RdistError) as caught:
        rdist.load_dataset("tiny-imagenet", root=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "from http://127.0.0.1:9/tiny-imagenet-200.zip" in message and "download it elsewhere" in message
    assert str(tmp_path / "tiny-imagenet" / "tiny-imagenet-200.zip") in message
    assert not (tmp_path / "tiny-imagenet" / "tiny-imagenet-200.zip").exists(), "no half-written archive"


def test_an_archive_placed_by_hand_is_used_and_damaged_ones_are_refused(tmp_path):
    folder = tmp_path / "tiny-imagenet"
    folder.mkdir()
    build_archive(folder / tiny_imagenet.ARCHIVE)
    assert len(rdist.load_dataset("tiny-imagenet", root=tmp_path).y_train) == 3 * TRAIN_PER_CLASS

    for options, fragment in (({"val_annotations": False}, "val_annotations.txt"), ({"wrong_size": True}, "32x32")):
        other = tmp_path / str(len(fragment))
        (other / "tiny-imagenet").mkdir(parents=True)
        build_archive(other / "tiny-imagenet" / tiny_imagenet.ARCHIVE, **options)
        with pytest.raises(RdistError, match=fragment) as caught:
            rdist.load_dataset("tiny-imagenet", root=other)
        assert "\n" not in str(caught.value)
    broken = tmp_path / "broken"
    (broken / "tiny-imagenet").mkdir(parents=True)
    (broken / "tiny-imagenet" / tiny_imagenet.ARCHIVE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RdistError, match="not a readable zip archive.*delete it"):
        rdist.load_dataset("tiny-imagenet", root=broken)


def test_registry_facts():
    assert dataset_shape("tiny-imagenet") == (3, 200, 64)  # every dataset's facts: test_datasets.py
    assert train_size("tiny-imagenet") == 100_000
    assert "tiny-imagenet" in rdist.data.list_datasets()
    assert tiny_imagenet.URL == "http://cs231n.stanford.edu/tiny-imagenet-200.zip", "the official archive"
