"""Fixtures for pulling RobustBench teachers with no network: a private cache, proxies that refuse every
connection, and a small WideResNet registered in RobustBench's own model zoo next to the real ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

from rdist.data import dataset_shape
from rdist.teachers.catalogue import TEACHERS, TeacherEntry, entry_from_record
from rdist.teachers.leaderboard import describe_entry
from rdist.teachers.robustbench import checkpoint_path, import_robustbench
from tests.helpers import randomise_batchnorm

# A port nothing listens on: any download attempt fails at once instead of reaching the internet.
REFUSING_PROXY = "http://127.0.0.1:9"


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """A fresh $RDIST_CACHE, and proxies that make every HTTP(S) request fail immediately."""
    cache = tmp_path / "rdist-cache"
    monkeypatch.setenv("RDIST_CACHE", str(cache))
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, REFUSING_PROXY)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return cache


@dataclass
class TinyTeacher:
    entry: TeacherEntry
    build: Callable[[], nn.Module]  # RobustBench's builder for it

    def place_checkpoint(self, seed: int = 0,
                         wrap: Callable[[dict], object] = lambda state: {"state_dict": state},
                         ) -> tuple[Path, nn.Module]:
        """Save a seeded model where robustbench looks: its state dict with DataParallel's `module.` prefix,
        wrapped by `wrap` (by default as {"state_dict": ...})."""
        torch.manual_seed(seed)
        reference = randomise_batchnorm(self.build().eval())
        path = checkpoint_path(self.entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(wrap({f"module.{k}": v for k, v in reference.state_dict().items()}), path)
        return path, reference


@pytest.fixture
def tiny_teacher(offline_cache, monkeypatch) -> TinyTeacher:
    """`Tiny2019Trades_WRN10`: a TRADES-style WRN-10-1 (with the unused `sub_block1`) in RobustBench's zoo and
    in rdist's catalogue, for the duration of one test."""
    zoo = import_robustbench()  # before any robustbench import: it makes `import robustbench` work
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    def build() -> nn.Module:
        return WideResNet(depth=10, widen_factor=1, sub_block1=True)

    entry = TeacherEntry("Tiny2019Trades_WRN10", "cifar10", "wrn-10-1", 61.5, 22.25, "test teacher",
                         "https://example.org/tiny")
    monkeypatch.setitem(zoo.model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf], entry.name,
                        {"model": build, "gdrive_id": "tiny-test-id"})
    monkeypatch.setitem(TEACHERS, (entry.name, entry.dataset), entry)
    return TinyTeacher(entry, build)


@pytest.fixture
def zoo_teacher(offline_cache, monkeypatch) -> Callable[..., TinyTeacher]:
    """`register(name, dataset, build, checkpoint=None)`: RobustBench's builder `build` as a Linf entry of its model
    zoo and of rdist's catalogue, for one test. The entry is derived as `python -m rdist.teachers.leaderboard`
    derives every entry (its module built on the meta device and read by rdist.teachers.families); `checkpoint`
    overrides how its checkpoint loads ({"containers": [...], "strict": bool})."""
    zoo = import_robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    def register(name: str, dataset: str, build: Callable[[], nn.Module], checkpoint: dict | None = None):
        spec = {"model": build, "gdrive_id": f"{name}-test-id"}
        described = describe_entry(name, spec, num_classes=dataset_shape(dataset)[1])
        assert described["reason"] is None, described["reason"]
        record = {"name": name, "dataset": dataset, "threat_model": "Linf", **described, "leaderboard": None}
        record["checkpoint"] = {**record["checkpoint"], **(checkpoint or {})}
        entry = entry_from_record(record, commit="0" * 40)
        monkeypatch.setitem(zoo.model_dicts[BenchmarkDataset(dataset)][ThreatModel.Linf], name, spec)
        monkeypatch.setitem(TEACHERS, (name, dataset), entry)
        return TinyTeacher(entry, build)

    return register


@pytest.fixture
def real_teacher(offline_cache) -> Callable[[str, str], TinyTeacher]:
    """`get(name, dataset)`: a real catalogue entry with the builder of the installed RobustBench zoo."""
    zoo = import_robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    def get(name: str, dataset: str) -> TinyTeacher:
        build = zoo.model_dicts[BenchmarkDataset(dataset)][ThreatModel.Linf][name]["model"]
        return TinyTeacher(TEACHERS[(name, dataset)], build)

    return get
