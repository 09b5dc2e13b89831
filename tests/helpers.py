"""Helpers shared by tests: where the shared data lives, the `rdist` command line run in-process (the `cli`
fixture) and a few-second training."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import rdist
from rdist.data import Batches

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CIFAR_SUBSET = SHARED / "data" / "cifar10-subset.npz"


def requires_cifar_subset():
    return pytest.mark.skipif(not CIFAR_SUBSET.is_file(),
                              reason=f"the shared CIFAR-10 subset is not at {CIFAR_SUBSET} (a clone without ../shared)")


class Cli:
    """`rdist ARGS` run in this process (Click's CliRunner), as the `cli` fixture of tests/conftest.py.

    `cli(*args, env=None, code=0)` runs the command (each argument through str(), so paths pass as they are) and
    checks its exit code (`code=None`: unchecked); it returns Click's Result (`.output`, `.stdout`, `.stderr`).
    `cli.fails(args, *fragments, code=1, env=None, unchanged=())` checks a refusal: exit code `code` (1: bad input,
    2: bad usage), nothing printed but a single `error: ...` line on stderr holding every fragment, and each path
    of `unchanged` (a file, or a folder with everything under it) byte-identical and with no file added.
    """

    def __call__(self, *args, env: dict[str, str] | None = None, code: int | None = 0):
        from rdist.cli.app import app  # here, not at the top: the tests that run no command do not import the CLI

        result = CliRunner().invoke(app, [str(a) for a in args], prog_name="rdist", env=env)
        if code is not None:
            assert result.exit_code == code, _explained(result)
        return result

    def fails(self, args, *fragments: str, code: int = 1, env: dict[str, str] | None = None,
              unchanged: Path | Sequence[Path] = ()):
        paths = [unchanged] if isinstance(unchanged, (str, Path)) else list(unchanged)
        before = [_snapshot(Path(path)) for path in paths]
        result = self(*args, env=env, code=code)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), _explained(result)
        assert lines[0] in result.stderr.splitlines(), f"the error is not on stderr: {result.output}"
        assert "Traceback" not in result.output
        for fragment in fragments:
            assert fragment in lines[0], lines[0]
        for path, snapshot in zip(paths, before):
            assert _snapshot(Path(path)) == snapshot, \
                f"a refused command must not change {path} or leave a file behind in it"
        return result


def _explained(result) -> str:
    """The command's output, and the traceback of an exception it raised (CliRunner keeps it from the output)."""
    if result.exc_info is None or isinstance(result.exception, SystemExit):
        return result.output
    return result.output + "".join(traceback.format_exception(*result.exc_info))


def _snapshot(path: Path) -> dict[str, bytes] | bytes | None:
    """A file's bytes; every file under a folder (hidden ones included) with its bytes; None for nothing there."""
    if path.is_file():
        return path.read_bytes()
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return None


Attack = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def train_briefly(arch: str, dataset, steps: int = 300, seed: int = 0, attack: Attack | None = None):
    """Cross-entropy training of `arch` on `dataset` for `steps` SGD steps: seconds on a CPU.

    With `attack(model, x, y)`, on its adversarial inputs instead (the model in eval mode while it runs).
    """
    torch.manual_seed(seed)
    model = rdist.create_model(arch, num_classes=dataset.num_classes, in_channels=dataset.input_shape[0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = Batches(dataset.x_train, dataset.y_train, 128, shuffle=True, augment=False, seed=seed)
    done = 0
    while done < steps:
        batches.set_epoch(done)
        for x, y in batches:
            if attack is not None:
                model.eval()
                x = attack(model, x, y)
            model.train()
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return model.eval()


def randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine weights, so that eval-mode outputs test them too."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    return model


def refusing_endpoint() -> str:
    """The URL of a port on 127.0.0.1 that nothing listens on (bound, then closed): every connection is refused, as
    a Hub endpoint out of reach without HF_HUB_OFFLINE set."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def rdist_offline(*args, endpoint: str, cache: Path, timeout: float = 120):
    """`rdist ARGS` in a fresh process against Hub `endpoint` with an empty cache `cache` and no HF_HUB_OFFLINE (so
    anything huggingface_hub logs, its retries included, reaches the captured stderr)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache), NO_PROXY="127.0.0.1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-m", "rdist", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)
