"""`rdist compare`: models side by side, to answer "which one should I ship?"."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from rdist.cli import common
from rdist.cli.common import attack_progress, console, err_console, print_json, progress_bar, user_errors
from rdist.errors import RdistError

DEFAULT_SWEEP = "0:16/255:2/255"  # the x axis of the robust-accuracy plot: 0 to 16/255 in steps of 2/255


@user_errors
def compare(
    models: list[str] = typer.Argument(..., help="rdist .safetensors artifacts, zoo:NAME or .onnx files (from "
                                       "`rdist export`); with --runs, training run directories"),
    suite: str = common.SUITE,
    attacks: str = common.ATTACKS,
    eps: str = common.EPS,
    data: str = typer.Option(None, "--data", "-d", help="cifar10, cifar100, svhn, digits or npz:PATH "
                             "\\[default: the dataset the models record]"),
    n: int = common.N_IMAGES,
    batch_size: int = common.BATCH_SIZE,
    seed: int = typer.Option(0, "--seed", help="seed of the attacks' random starts"),
    surrogate: str = typer.Option(None, "--surrogate", help="model to craft transfer attacks on, for every row "
                                  "\\[default for an .onnx file: the artifact it was exported from]"),
    device: str = common.DEVICE,
    fresh: bool = typer.Option(False, "--fresh", help="recompute results even when an artifact has them recorded "
                               "for the same attacks, data, eps and n"),
    record: bool = typer.Option(False, "--record", help="write newly computed results into the artifacts "
                                "(zoo downloads excepted), so that the next comparison reuses them"),
    runs: bool = typer.Option(False, "--runs", help="the arguments are training run directories: compare their "
                              "best checkpoints and, with --plot, draw their training curves from log.jsonl"),
    plot: Path = typer.Option(None, "--plot", help="write PNG figures to this directory: robust accuracy against "
                              "eps, accuracy against parameters, and with --runs the training curves"),
    sweep: str = typer.Option(DEFAULT_SWEEP, "--sweep", help="eps values of the robust-accuracy plot: "
                              "START:STOP:STEP or a list such as 0,4/255,8/255"),
    sweep_attack: str = typer.Option("pgd20", "--sweep-attack", help="the attack of the robust-accuracy plot"),
    csv_out: str = typer.Option(None, "--csv", help="write the table as CSV (raw numbers) to this file; - for stdout"),
    md_out: str = typer.Option(None, "--md", help="write the table as Markdown (for a paper or a README) to this "
                               "file; - for stdout"),
    json_out: bool = typer.Option(False, "--json", help="print the comparison as JSON instead of a table"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Put models side by side: size, MACs, latency, accuracy under each attack, worst case and provenance.

    Results an artifact already records for the same attacks, data, eps and n are reused. An .onnx file is
    timed in ONNX Runtime and attacked with what needs no gradient of it (clean, square, transfer-*).
    Example: rdist compare --suite quick --data digits --md table.md --plot figures a.safetensors b.safetensors
    """
    from rdist.report.compare import compare_models, to_csv, to_markdown, training_logs
    from rdist.report.plots import check_writable_dir, write_plots

    to_stdout = [name for name, on in (("--json", json_out), ("--csv -", csv_out == "-"), ("--md -", md_out == "-"))
                 if on]
    if len(to_stdout) > 1:
        raise RdistError(f"{' and '.join(to_stdout)} would all print to stdout; write all but one to a file")
    if plot is not None:
        check_writable_dir(plot, "--plot")
    for option, target in (("--csv", csv_out), ("--md", md_out)):
        if target and target != "-":
            check_writable_dir(Path(target).parent, option)
    with progress_bar(quiet or json_out) as bar:
        comparison = compare_models(models, suite=suite, attacks=attacks, eps=eps, data=data, n=n,
                                    batch_size=batch_size, seed=seed, device=device, fresh=fresh, record=record,
                                    runs=runs, sweep=sweep if plot is not None else None, sweep_attack=sweep_attack,
                                    surrogate=surrogate, progress=attack_progress(bar))
    notes = err_console if to_stdout else console
    if plot is not None:
        written = write_plots(comparison, plot, training_logs(comparison) if runs else None)
        comparison["plots"] = [str(p) for p in written]
    for target, render in ((csv_out, to_csv), (md_out, to_markdown)):
        if target == "-":
            sys.stdout.write(render(comparison))
            sys.stdout.flush()  # before the notes on stderr, so that a terminal shows them after the table
        elif target:
            _write(Path(target), render(comparison))
            comparison.setdefault("files", []).append(target)
    if json_out:
        print_json(comparison)
    elif not to_stdout:
        print_table(comparison)
    _print_notes(notes, comparison)


def _write(path: Path, text: str) -> None:
    from rdist.utils import atomic_path

    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise RdistError(f"cannot write {path} ({exc.strerror or exc}); choose another file") from None


def print_table(comparison: dict) -> None:
    """A row per model; in a terminal too narrow for that, a column per model instead."""
    from rdist.report.compare import caption, table

    header, body = table(comparison)
    widths = [max(len(text) for text in column) for column in zip(header, *body)]
    needed = sum(widths) + 3 * len(widths) + 2  # padding and the space between columns
    if console.is_terminal and needed > console.width:
        out = Table("", *(cells[0] for cells in body), caption=caption(comparison), caption_justify="left",
                    box=box.SIMPLE_HEAD)
        for i, name in enumerate(header[1:], 1):
            out.add_row(name, *(cells[i] for cells in body), style="bold" if name == "worst case" else None)
        console.print(out)
        return
    text_columns = {"model", "arch", "runtime", "method", "teacher"}
    out = Table(caption=caption(comparison), caption_justify="left", box=box.SIMPLE_HEAD)
    for name in header:
        out.add_column(name, justify="left" if name in text_columns else "right", no_wrap=True,
                       style="bold" if name == "worst case" else None)
    for cells in body:
        out.add_row(*cells)
    # A file or a pipe gets the whole table, as wide as it needs: never a cropped cell.
    target = console if console.is_terminal else Console(width=max(console.width, needed))
    target.print(out)


def _print_notes(notes: Console, comparison: dict) -> None:
    reused = [r["label"] for r in comparison["models"] if r["reused"]]
    if reused:
        notes.print(f"reused the results recorded in {', '.join(reused)} (--fresh recomputes them)", highlight=False,
                    soft_wrap=True)
    for path in comparison.get("plots", []) + comparison.get("files", []):
        notes.print(f"wrote {path}", highlight=False, soft_wrap=True)
