"""Progress on stderr, one mechanism for every command: a rich bar, with a row per attack for `rdist attack` and
`rdist compare`; training runs show theirs through `rdist.cli.run_progress.EpochProgress`, on the same bar. (This
half needs nothing of the training engine, as evaluation does not.)"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rdist.cli.common import err_console


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def new_progress() -> Progress:
    """A rich progress display on stderr (not started): a bar per task with its note, elapsed and remaining time."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=err_console, transient=False)


@contextlib.contextmanager
def progress_bar(quiet: bool) -> Iterator[Progress | None]:
    """A rich progress bar on stderr while the block runs, or None with --quiet."""
    if quiet:
        yield None
        return
    with new_progress() as bar:
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
