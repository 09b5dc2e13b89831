"""Fixtures for the zoo: a student artifact with recorded results, and zoo.yaml files written for one test (the Hub
stand-in is tests/fixtures/hub.py's `hub`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import rdist
from rdist.artifact import record_results


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
