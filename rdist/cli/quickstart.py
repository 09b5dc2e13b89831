"""`rdist quickstart`: the whole pipeline, small, on the CPU."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import typer

from rdist.cli.common import console, err_console, print_json, user_errors
from rdist.cli.progress import attack_progress, progress_bar
from rdist.cli.run_progress import EpochProgress
from rdist.reproduce.quickstart import STUDENTS, TEACHER


@user_errors
def quickstart(
    out: Path = typer.Option(None, "--out", "-o", help="directory for the three runs "
                             "\\[default: runs/quickstart-<timestamp>]"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1"),
    seed: int = typer.Option(0, "--seed", help="seed of every run and attack"),
    epochs: int = typer.Option(None, "--epochs", help="epochs of each of the three runs \\[default: "
                               f"{TEACHER.epochs} for the teacher, {STUDENTS[0].epochs} for each student]"),
    n: int = typer.Option(None, "--n", help="digits test images each model is attacked on (the first n) "
                          "\\[default: 359, the whole test set]"),
    json_out: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Train a robust teacher (TRADES, smallcnn), distil two students (RSLAD and ARD, tinycnn) and compare all
    three under clean, PGD-20 and AutoAttack's APGD-CE/APGD-T, on scikit-learn's digits at eps 32/255.

    Takes a few minutes on two CPU cores and needs no download.
    """
    from rdist.cli.compare import print_table
    from rdist.reproduce.quickstart import TEST_IMAGES, check_n, compare_quickstart, train_quickstart

    n = TEST_IMAGES if n is None else n
    check_n(n)

    out = out or Path("runs") / f"quickstart-{datetime.now():%Y%m%d-%H%M%S}"
    started = time.perf_counter()
    show = not (quiet or json_out)

    def on_stage(stage) -> None:
        if show:
            err_console.print(f"[bold]{stage.name}[/]: {stage.method} on {stage.arch}, {stage.epochs} epochs")

    models = train_quickstart(out, device=device, seed=seed, epochs=epochs,
                              callback=EpochProgress() if show else None, on_stage=on_stage)
    with progress_bar(not show) as bar:
        comparison = compare_quickstart(models, device=device, seed=seed, n=n,
                                        progress=attack_progress(bar, "attack ")).to_dict()
    if json_out:
        print_json(comparison)
        return
    print_table(comparison)
    console.print(f"runs in {out}; done in {time.perf_counter() - started:.0f} s", highlight=False)
