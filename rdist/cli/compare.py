"""`rdist compare`: models side by side, to answer "which one should I ship?"."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from rdist.cli import common
from rdist.cli.common import console, err_console, print_json, user_errors
from rdist.cli.progress import attack_progress, progress_bar
from rdist.errors import RdistError

# The x axis of the robust-accuracy plot: 0 to 16/255 in steps of 2/255 (L-inf), 0 to 1 in steps of 0.125 (L2).
DEFAULT_SWEEP = {"Linf": "0:16/255:2/255", "L2": "0:1:0.125"}


@user_errors
def compare(
    models: list[str] = typer.Argument(..., help=f"the models, each {common.MODEL_HELP}, or an .onnx file from "
                                       "`rdist export`; with --runs, training run directories"),
    suite: str = common.SUITE,
    attacks: str = common.ATTACKS,
    eps: str = common.EPS,
    norm: str = common.NORM,
    data: str = common.DATA,
    data_dir: str = common.DATA_DIR,
    n: int = common.N_IMAGES,
    batch_size: str = common.BATCH_SIZE,
    seed: int = typer.Option(0, "--seed", help="seed of the attacks' random starts"),
    surrogate: str = typer.Option(None, "--surrogate", help=f"model to craft transfer attacks on, for every row: "
                                  f"{common.MODEL_HELP} \\[default for an .onnx file: the artifact it was exported "
                                  "from]"),
    device: str = common.DEVICE,
    fresh: bool = typer.Option(False, "--fresh", help="recompute results even when an artifact has them recorded "
                               "for the same attacks, data, eps and n"),
    record: bool = typer.Option(False, "--record", help="write newly computed results into the artifacts "
                                "(zoo downloads excepted), so that the next comparison reuses them"),
    runs: bool = typer.Option(False, "--runs", help="the arguments are training run directories: compare their "
                              "best checkpoints and, with --plot, draw their training curves from log.jsonl"),
    plot: Path = typer.Option(None, "--plot", help="write PNG figures to this directory: robust accuracy against "
                              "eps, accuracy against parameters, worst-case accuracy per class, and with --runs the "
                              "training curves"),
    sweep: str = typer.Option(None, "--sweep", help="eps values of the robust-accuracy plot: START:STOP:STEP or a "
                              f"list such as 0,4/255,8/255 \\[default: {DEFAULT_SWEEP['Linf']} for Linf, "
                              f"{DEFAULT_SWEEP['L2']} for L2]", show_default=False),
    sweep_attack: str = typer.Option("pgd20", "--sweep-attack", help="the attack of the robust-accuracy plot"),
    csv_out: str = typer.Option(None, "--csv", help="write the table as CSV (raw numbers) to this file; - for stdout"),
    md_out: str = typer.Option(None, "--md", help="write the table as Markdown (for a paper or a README) to this "
                               "file; - for stdout"),
    json_out: bool = typer.Option(False, "--json", help="print the comparison as JSON instead of a table"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Put models side by side: size, MACs, latency, accuracy under each attack, worst case, worst class and
    provenance; a flagged number (a sign of gradient masking or a failed attack) gets a footnote.

    Results an artifact already records for the same attacks, data, eps, norm and n are reused. An .onnx file is
    timed in ONNX Runtime and attacked with what needs no gradient of it (clean, square, transfer-*).
    Example: rdist compare --suite quick --data digits --md table.md --plot figures a.safetensors b.safetensors
    """
    from rdist.attacks import resolve_attacks
    from rdist.data import npz_file
    from rdist.report.compare import compare_models, training_logs
    from rdist.report.config import EvalConfig
    from rdist.report.plots import write_plots
    from rdist.report.render import to_csv, to_markdown
    from rdist.files import atomic_path, check_output

    config = EvalConfig(attacks=resolve_attacks(suite, attacks), eps=eps, data=data, data_dir=data_dir, n=n,
                        batch_size=batch_size, seed=seed, surrogate=surrogate, device=device, norm=norm)
    to_stdout = [name for name, on in (("--json", json_out), ("--csv -", csv_out == "-"), ("--md -", md_out == "-"))
                 if on]
    if len(to_stdout) > 1:
        raise RdistError(f"{' and '.join(to_stdout)} would all print to stdout; write all but one to a file")
    # A run directory's inputs are the files in it; a model argument is its own input.
    inputs = [("the model", Path(spec) / name) for spec in models for name in ("best.safetensors",
              "last.safetensors", "log.jsonl")] if runs else [("the model", spec) for spec in models]
    inputs.append(("the dataset", npz_file(data or "")))
    if plot is not None:
        check_output(plot, "--plot", directory=True, inputs=inputs)
    for option, target in (("--csv", csv_out), ("--md", md_out)):
        if target and target != "-":
            check_output(target, option, inputs=inputs)
    with progress_bar(quiet or json_out) as bar:
        result = compare_models(models, config, runs=runs, fresh=fresh, record=record,
                                sweep=(sweep or DEFAULT_SWEEP[config.norm]) if plot is not None else None,
                                sweep_attack=sweep_attack, progress=attack_progress(bar))
    comparison = result.to_dict()  # what the renderers lay out and --json prints, with the files written
    notes = err_console if to_stdout else console
    if plot is not None:
        written = write_plots(comparison, plot, training_logs(result) if runs else None)
        comparison["plots"] = [str(p) for p in written]
    for target, render in ((csv_out, to_csv), (md_out, to_markdown)):
        if target == "-":
            sys.stdout.write(render(comparison))
            sys.stdout.flush()  # before the notes on stderr, so that a terminal shows them after the table
        elif target:
            with atomic_path(Path(target).expanduser()) as tmp:
                tmp.write_text(render(comparison))
            comparison.setdefault("files", []).append(target)
    if json_out:
        print_json(comparison)
    elif not to_stdout:
        print_table(comparison)
    _print_notes(notes, comparison)


def print_table(comparison: dict) -> None:
    """The comparison's table, fitted to the terminal; a file or a pipe gets the whole table, never a cropped cell."""
    from rdist.report.render import rich_table

    table, needed = rich_table(comparison, console.width if console.is_terminal else None)
    (console if console.is_terminal else Console(width=max(console.width, needed))).print(table)


def _print_notes(notes: Console, comparison: dict) -> None:
    reused = [r["label"] for r in comparison["models"] if r["reused"]]
    if reused:
        notes.print(f"reused the results recorded in {', '.join(reused)} (--fresh recomputes them)", highlight=False,
                    soft_wrap=True)
    for path in comparison.get("plots", []) + comparison.get("files", []):
        notes.print(f"wrote {path}", highlight=False, soft_wrap=True)
