"""What every command shares: consoles, one-line errors, progress on stderr, JSON output."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from typing import Any, Callable, Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rdist.errors import RdistError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on one line to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def user_errors(fn: Callable) -> Callable:
    """Turn RdistError into a one-line message and exit code 1; no traceback for bad input."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RdistError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def progress_bar(quiet: bool) -> Iterator[Progress | None]:
    """A rich progress bar on stderr, or None with --quiet."""
    if quiet:
        yield None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=False) as bar:
        yield bar


def attack_progress(bar: Progress | None, prefix: str = "") -> Callable[[str, int, int, str], None] | None:
    """The `progress` callback of the attack functions: one bar row per attack, or None without a bar."""
    if bar is None:
        return None
    tasks: dict[str, int] = {}

    def on_attack(name: str, done: int, total: int, note: str) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(f"{prefix}{name}", total=total, note="")
        bar.update(tasks[name], completed=done, note=note)

    return on_attack


# Options that `rdist attack` and `rdist compare` share, with the same meaning and defaults.
SUITE = typer.Option("standard", "--suite", "-s", help="named suite: quick (clean,fgsm,pgd20), standard "
                     "(+cw,aa), autoattack, papers, full (+pgd20-trades,square)")
ATTACKS = typer.Option(None, "--attacks", "-a", help="comma-separated attacks instead of a suite, e.g. "
                       "clean,pgd20,cw,aa:apgd-ce+apgd-t; `rdist attack --list` shows them all")
EPS = typer.Option("8/255", "--eps", help="L-inf budget in [0,1] pixel units: 8/255 or 0.031")
N_IMAGES = typer.Option(1000, "--n", help="number of test images (the first n)")
BATCH_SIZE = typer.Option("256", "--batch-size", help="images per attack batch, or auto: the largest the GPU's "
                          "memory allows (256 on the CPU); the random starts, hence the numbers, depend on it")
DEVICE = typer.Option(None, "--device", help="device the attacks run on: cpu, cuda, cuda:1 "
                      "\\[default: cuda if available]")
