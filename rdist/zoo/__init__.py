"""The zoo: published students listed in zoo.yaml, fetched from and pushed to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from rdist.zoo.catalogue import ZooEntry, find_student, load_zoo, zoo_path

ZOO_PREFIX = "zoo:"


def pull_model(name: str, zoo: str | Path | None = None, *, cache_dir: str | Path | None = None,
               endpoint: str | None = None) -> Path:
    """The verified local file of zoo model `name` from the catalogue `zoo` (default: see `zoo_path`)."""
    from rdist.zoo.hub import pull_student

    path = zoo_path(zoo)
    return pull_student(find_student(load_zoo(path), name, path), cache_dir=cache_dir, endpoint=endpoint)


__all__ = ["ZOO_PREFIX", "ZooEntry", "find_student", "load_zoo", "pull_model", "zoo_path"]
