"""Fixtures for the zoo: the Hub stand-in on 127.0.0.1 with huggingface_hub pointed at it, a student artifact
with recorded results, and zoo.yaml files written for one test."""

from __future__ import annotations

import json
import os
import re
import struct
import sys
from pathlib import Path

import pytest
import yaml

import rdist
from rdist.artifact import record_results
from tests.zoo.hub_server import HubServer

TOKEN = "hf_rdistTestTokenZq8Xv3Lm0Pw5Nc7"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The Hub stand-in; HF_ENDPOINT, HF_HUB_CACHE and HF_TOKEN point at it, and no token file is read."""
    import huggingface_hub.constants

    with HubServer(TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        # The token file of whoever runs the tests must not stand in for HF_TOKEN.
        monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
        yield server


@pytest.fixture
def student(tmp_path) -> Path:
    """A tinycnn digits student whose metadata holds an `rdist attack --record` report (clean, pgd20, aa)."""
    path = tmp_path / "student.safetensors"
    teacher = tmp_path / "teachers" / "smallcnn.safetensors"
    rdist.save_model(rdist.create_model("tinycnn", num_classes=10, in_channels=1), path, dataset="digits",
                     input_shape=[1, 8, 8], provenance={"method": "rslad", "teacher": str(teacher)})
    for n, accuracy in ((100, {"clean": 0.9, "pgd20": 0.5, "aa": 0.45}),
                        (360, {"clean": 0.8812, "fgsm": 0.61, "pgd20": 0.4423, "cw": 0.45, "aa": 0.4201})):
        record_results(path, {"attacks": list(accuracy), "dataset": "digits", "eps": 8 / 255, "n": n,
                              "accuracy": accuracy, "worst_case": min(accuracy.values()), "seed": 0})
    return path


@pytest.fixture
def write_zoo(tmp_path):
    """write_zoo([entry, ...]) -> path of a zoo.yaml holding those students."""

    def write(students: list[dict], name: str = "zoo.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"students": students}, sort_keys=False))
        return path

    return write


def uploaded_files(hub, repo: str) -> dict[str, bytes]:
    """What the Hub stand-in holds in `repo` at its main revision: {path: content}."""
    return hub.state.files(repo, "main")[1]


def safetensors_header(content: bytes) -> dict:
    """The JSON header of a safetensors file (tensor offsets and the metadata), as stored."""
    (length,) = struct.unpack("<Q", content[:8])
    return json.loads(content[8:8 + length])


# An absolute path where a value or word begins: /..., ~/..., C:\..., also after npz: or | (a results key); not the
# // of a URL.
_ABSOLUTE_PATH = re.compile(r"""(?:^|["'|:=\s(])(?:/|~/|[A-Za-z]:\\)(?![/\\])""")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def assert_publishes_no_local_path(files: dict[str, bytes], *local: str | Path) -> None:
    """No path of this machine in any uploaded file (config.json, the card, the safetensors header with its
    metadata): none of `local`, $HOME, the working directory or the Python environment, and no absolute path at all
    among the JSON values and the card's words."""
    machine = {str(p) for p in local} | {str(Path(p).resolve()) for p in local}
    machine |= {os.environ.get("HOME", ""), str(Path.home()), os.getcwd(), sys.prefix, sys.base_prefix}
    assert {"model.safetensors", "config.json", "README.md"} <= set(files)
    for name, content in files.items():
        if name.endswith(".safetensors"):
            header = safetensors_header(content)
            text, values = json.dumps(header), list(_strings(json.loads(header["__metadata__"]["rdist"])))
        elif name.endswith(".json"):
            text = content.decode()
            values = list(_strings(json.loads(text)))
        else:
            text = content.decode()
            values = text.split()
        for path in sorted(p for p in machine if len(p) > 1):
            assert path not in text, f"{name} publishes {path}"
        leaks = [v for v in values if _ABSOLUTE_PATH.search(v)]
        assert not leaks, f"{name} publishes absolute paths: {leaks}"
