"""rdist.files: an atomic write leaves no temporary file and the old file intact wherever it is interrupted, gives new
files the umask's mode and keeps a rewritten file's; the sweep deletes rdist's own temporary files only; a held
directory refuses a second holder in one line naming the first."""

from __future__ import annotations

import ast
import inspect
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import rdist.files
from rdist.errors import RdistError
from rdist.files import LOCK_FILE, atomic_path, hold_directory, sweep_temp_files

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cleanup_lines() -> set[int]:
    """The lines of atomic_path's outermost `finally`: the cleanup, which an interrupt must not pre-empt itself."""
    source, first = inspect.getsourcelines(atomic_path.__wrapped__)
    tree = ast.parse(textwrap.dedent("".join(source)))
    outer = next(node for node in ast.walk(tree) if isinstance(node, ast.Try) and node.finalbody)
    return {line + first - 1 for node in outer.finalbody for line in range(node.lineno, node.end_lineno + 1)}


def _write_interrupted_at(target: Path, event: int | None) -> int:
    """Rewrite `target` through atomic_path, raising KeyboardInterrupt at its `event`-th line event (None: never);
    returns the number of line events before its cleanup."""
    code, cleanup = atomic_path.__wrapped__.__code__, _cleanup_lines()
    seen = 0

    def trace(frame, kind, arg):
        return local if frame.f_code is code else None

    def local(frame, kind, arg):
        nonlocal seen
        if kind == "line" and frame.f_lineno not in cleanup:
            seen += 1
            if seen == event:
                raise KeyboardInterrupt
        return local

    sys.settrace(trace)
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("new")
    finally:
        sys.settrace(None)
    return seen


def test_an_atomic_write_interrupted_at_any_statement_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "file.json"
    target.write_text("old")
    events = _write_interrupted_at(tmp_path / "other.json", None)
    assert events >= 10, "every statement of atomic_path reports a line event"
    (tmp_path / "other.json").unlink()
    for event in range(1, events + 1):
        with pytest.raises(KeyboardInterrupt):
            _write_interrupted_at(target, event)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json"], f"interrupted at line event {event}"
        assert target.read_text() == "old", f"interrupted at line event {event}"
    _write_interrupted_at(target, None)
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]


def test_an_atomic_write_whose_writer_fails_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_text("old")
    for error in (KeyboardInterrupt, RuntimeError):
        with pytest.raises(error):
            with atomic_path(target) as tmp:
                tmp.write_text("half of the new")
                raise error
        assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_new_files_follow_the_umask_and_rewritten_files_keep_their_mode(tmp_path, monkeypatch):
    state = {"w": torch.arange(4.0)}

    def write(path: Path) -> None:  # safetensors replaces the file it is given with one of its own, mode 0600
        with atomic_path(path) as tmp:
            save_file(state, str(tmp))

    for umask, expected in ((0o022, 0o644), (0o027, 0o640), (0o077, 0o600)):
        monkeypatch.setattr(rdist.files, "_UMASK", umask)
        write(tmp_path / f"new-{umask:o}.safetensors")
        assert _mode(tmp_path / f"new-{umask:o}.safetensors") == expected
    monkeypatch.setattr(rdist.files, "_UMASK", 0o022)
    for mode in (0o644, 0o640, 0o600, 0o664):
        path = tmp_path / f"rewritten-{mode:o}.safetensors"
        write(path)
        path.chmod(mode)
        write(path)
        assert _mode(path) == mode and torch.equal(load_file(str(path))["w"], state["w"])


@pytest.mark.e2e
def test_new_files_get_the_umask_of_the_process(tmp_path):
    """Read from the process itself: a child with umask 0022 writes 0644 files, with 0027 0640 files."""
    script = ("import sys, torch\nfrom safetensors.torch import save_file\nfrom rdist.files import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n    save_file({'w': torch.zeros(1)}, str(tmp))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for umask, expected in ((0o022, 0o644), (0o027, 0o640)):
        path = tmp_path / f"{umask:o}.safetensors"
        subprocess.run([sys.executable, "-c", script, str(path)], env=env, umask=umask, check=True, timeout=120)
        assert _mode(path) == expected


def test_the_sweep_deletes_rdists_temporary_files_only(tmp_path):
    stale_dir = tmp_path / ".checkpoint.pt.0123456789abcdef.tmp"
    stale_dir.mkdir()
    (stale_dir / "checkpoint.pt").write_text("half")
    (stale_dir / ".tmpAb12Cd").write_text("a writer's own temporary file")
    stale_file = tmp_path / ".best.safetensors.fedcba9876543210.tmp"  # a file of that name is swept as well
    stale_file.write_text("half")
    # A user's files that only look alike, among them 8-character names (pre-release rdist's mkstemp ones).
    kept = [tmp_path / name for name in (".notes.tmp", "notes.tmp", ".best.safetensors.0123456789abcdef.tmp.bak",
                                         "best.safetensors", LOCK_FILE, ".x.0123456789ABCDEF.tmp",
                                         ".draft.20261206.tmp", ".notes.backup01.tmp",
                                         ".best.safetensors.k2j3h4g5.tmp")]
    for path in kept:
        path.write_text("the user's")
    (tmp_path / "sub").mkdir()
    nested = tmp_path / "sub" / ".log.jsonl.0123456789abcdef.tmp"
    nested.write_text("another directory's")
    link = tmp_path / ".last.safetensors.fedcba9876543210.tmp"
    link.symlink_to(tmp_path / "best.safetensors")

    assert sorted(sweep_temp_files(tmp_path)) == sorted([stale_dir, stale_file])
    assert not stale_dir.exists() and not stale_file.exists()
    assert all(p.read_text() == "the user's" for p in kept) and nested.is_file() and link.is_symlink()


@pytest.mark.e2e
def test_a_held_directory_refuses_another_holder_and_is_free_again_after(tmp_path):
    run_dir = tmp_path / "runs" / "a"  # made by the hold
    with hold_directory(run_dir, "wait for it or pass another --out"):
        assert (run_dir / LOCK_FILE).is_file()
        # Another open file description, as another process has: refused at once, naming this process.
        with pytest.raises(RdistError) as refused:
            with hold_directory(run_dir, "wait for it or pass another --out"):
                pass
        assert str(refused.value) == (f"{run_dir} is being written by process {os.getpid()} on host "
                                      f"{socket.gethostname()}; wait for it or pass another --out")
        other = subprocess.run([sys.executable, "-c", "import sys\nfrom rdist.files import hold_directory\n"
                                "with hold_directory(sys.argv[1], 'try later'):\n    pass\n", str(run_dir)],
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                               timeout=120)
        assert other.returncode != 0 and f"being written by process {os.getpid()}" in other.stderr
    assert not (run_dir / LOCK_FILE).exists()
    with hold_directory(run_dir, "try later"):
        pass
