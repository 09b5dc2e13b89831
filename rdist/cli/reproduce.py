"""`rdist reproduce`: a paper's table row in one command, over several seeds, with the published number beside it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from rdist.cli import common
from rdist.cli.common import console, err_console, print_json, user_errors
from rdist.errors import RdistError


@user_errors
def reproduce(
    name: str = typer.Argument(None, help="a reproduction of `rdist reproduce --list`, e.g. rslad-resnet18-cifar10",
                               show_default=False),
    seeds: str = typer.Option("0", "--seeds", help="comma-separated seeds of the students, e.g. 0,1,2"),
    out: Path = typer.Option(None, "--out", "-o", help="directory of every stage; running the command again "
                             "skips what is done and resumes what was cut \\[default: reproductions/NAME]"),
    select_on: str = typer.Option(None, "--select-on", help="checkpoint selection: 'test' mimics the papers (it "
                                  "leaks the test set), 'val' is rdist's held-out split \\[default: the entry's]"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 \\[default: cuda if available]"),
    data_dir: str = common.DATA_DIR,
    push: str = typer.Option(None, "--push", help="then publish the best seed to this Hub repo ORG/REPO through "
                             "`rdist zoo push` and print its zoo.yaml entry (needs a token: checked first)"),
    private: bool = typer.Option(False, "--private", help="with --push: create the repo as private"),
    catalogue: Path = typer.Option(None, "--catalogue", help="the reproductions to read \\[default: "
                                   "$RDIST_REPRODUCTIONS, else the project's reproductions.yaml]"),
    list_: bool = typer.Option(False, "--list", help="list the reproductions with their published AutoAttack "
                               "accuracy and estimated GPU hours, then exit"),
    json_out: bool = typer.Option(False, "--json", help="print the result (or the list) as JSON"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars or stage messages"),
) -> None:
    """Train and measure a paper's table row: teacher (pulled or trained), one student per seed, attacks; then
    the published numbers beside the measured mean +- std.

    Example: rdist reproduce digits-rslad --seeds 0,1,2   (on a CPU, in minutes)
    """
    from rdist.engine import parse_seeds
    from rdist.reproduce import REPRODUCTIONS, check_entry

    entries = REPRODUCTIONS.load(catalogue)
    if list_:
        _print_list(entries, json_out)
        return
    if name is None:
        raise RdistError("give the NAME of a reproduction (`rdist reproduce --list` shows them), or --list")
    entry = REPRODUCTIONS.find(name, entries)
    check_entry(entry)
    seed_list = parse_seeds(seeds)
    if select_on is not None and select_on not in ("val", "test"):
        raise RdistError(f"--select-on must be val or test, got '{select_on}'")
    from rdist.reproduce.runner import check_push, push_best, reproduce as run

    if push is not None:
        check_push(entry, push)
    show = not (quiet or json_out)
    from rdist.cli.run_progress import EpochProgress

    result = run(entry, seed_list, out, select_on=select_on, device=device, data_dir=data_dir,
                 callback=EpochProgress() if show else None,
                 on_stage=(lambda m: err_console.print(m, highlight=False, soft_wrap=True)) if show
                 else (lambda m: None))
    pushed = push_best(result, push, private=private) if push is not None else None
    if json_out:
        print_json({**result.to_dict(), **({"zoo_entry": pushed.to_dict()} if pushed else {})})
    else:
        print_result(result)
    if pushed is not None:
        import yaml

        err_console.print(f"pushed seed {result.best_seed().seed} ({result.best_seed().model}) to {push} at commit "
                          f"{pushed.revision}; add this entry under `students:` in zoo.yaml:", highlight=False,
                          soft_wrap=True)
        if not json_out:
            sys.stdout.write(yaml.safe_dump([pushed.to_dict()], sort_keys=False, width=1000))


def print_result(result) -> None:
    """Published vs measured for clean, pgd20 and AutoAttack: mean +- std over the seeds, each seed, the gap."""
    from rich import box
    from rich.table import Table

    entry, summary = result.entry, result.summary()
    seeds = [s.seed for s in result.seeds]
    evaluation = entry.evaluation
    table = Table(title=f"{entry.name}: accuracy (%), first {evaluation.n} test images of {entry.dataset}, eps "
                  f"{evaluation.eps_text}, checkpoint selected on {result.select_on}", box=box.SIMPLE_HEAD,
                  caption=f"published: {entry.source['paper']}, {entry.source['table']}. measured: mean ± sample "
                  f"std over {len(seeds)} seed{'s' * (len(seeds) != 1)}; gap: measured mean - published, in points",
                  caption_justify="left")
    for column in ("metric", "published", "measured", *(f"seed {s}" for s in seeds), "gap"):
        table.add_column(column, justify="left" if column == "metric" else "right", no_wrap=True)
    names = {"clean": "clean", "pgd20": "pgd20", "aa": evaluation.aa}
    for metric, row in summary.items():
        std = f" ± {row['std']:.2f}" if row["std"] is not None else ""
        table.add_row(names[metric], f"{row['published']:.2f}" if row["published"] is not None else "-",
                      f"{row['mean']:.2f}{std}", *(f"{row['seeds'][s]:.2f}" for s in seeds),
                      f"{round(row['gap'], 2) or 0.0:+.2f}" if row["gap"] is not None else "-")
    _print_whole(table)
    console.print(f"stages in {result.out}", highlight=False, soft_wrap=True)


def _print_whole(table) -> None:
    """A file or a pipe gets the whole table, as wide as it needs; a terminal its own width."""
    from rich.console import Console

    console.print(table) if console.is_terminal else Console(width=200).print(table)


def _print_list(entries, json_out: bool) -> None:
    from rich import box
    from rich.table import Table

    from rdist.engine.cost import ASSUMED_TFLOPS
    from rdist.reproduce.runner import estimated_gpu_hours

    rows = [{"name": e.name, "teacher": e.teacher_label, "method": e.method, "student": e.student,
             "data": e.dataset, "published_aa": e.published["aa"], "gpu_hours": estimated_gpu_hours(e),
             "source": e.source} for e in entries]
    if json_out:
        print_json({"assumed_tflops": ASSUMED_TFLOPS, "reproductions": rows})
        return
    table = Table(title="reproductions: published AutoAttack accuracy (%) and estimated GPU hours per seed",
                  caption=f"GPU hours: training and evaluation FLOPs of one seed (and a trained teacher) at an "
                  f"assumed {ASSUMED_TFLOPS:g} TFLOP/s sustained (an A100-class GPU in bf16); an estimate, not a "
                  "measurement", caption_justify="left", box=box.SIMPLE, pad_edge=False)
    for column in ("name", "teacher", "method", "student", "data"):
        table.add_column(column, no_wrap=True)
    for column in ("published AA", "GPU h"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in rows:
        hours = r["gpu_hours"]
        table.add_row(r["name"], r["teacher"], r["method"], r["student"], r["data"], f"{r['published_aa']:.2f}",
                      f"{hours:.1f}" if hours >= 0.1 else "< 0.1")
    _print_whole(table)
