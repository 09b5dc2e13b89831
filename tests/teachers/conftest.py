"""Fixtures for pulling RobustBench teachers with no network: a private cache, proxies that refuse every
connection, and a small WideResNet registered in RobustBench's own model zoo next to the real ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

from rdist.teachers.catalogue import TEACHERS, TeacherEntry
from rdist.teachers.robustbench import checkpoint_path, import_robustbench

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

    def place_checkpoint(self, seed: int = 0) -> tuple[Path, nn.Module]:
        """Save a seeded model where robustbench looks (wrapped and prefixed as DataParallel saves do)."""
        torch.manual_seed(seed)
        reference = self.build().eval()
        with torch.no_grad():  # non-trivial BatchNorm statistics, so eval-mode outputs test them too
            for module in reference.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.3, 0.3)
                    module.running_var.uniform_(0.5, 2.0)
        path = checkpoint_path(self.entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
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
