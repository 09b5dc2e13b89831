"""The zoo: published students listed in zoo.yaml, fetched from and pushed to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from rdist.zoo.catalogue import ZOO, ZooEntry

ZOO_PREFIX = "zoo:"


def pull_model(name: str, zoo: str | Path | None = None, *, cache_dir: str | Path | None = None,
               endpoint: str | None = None) -> Path:
    """The verified local file of zoo model `name` from the catalogue `zoo` (default: see `ZOO.path`)."""
    from rdist.zoo.hub import pull_student

    return pull_student(ZOO.find(name, path=zoo), cache_dir=cache_dir, endpoint=endpoint)


__all__ = ["ZOO", "ZOO_PREFIX", "ZooEntry", "pull_model"]
