"""`rdist attack`: an honest robustness report for one model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from rdist.attacks.flags import Flag
from rdist.cli import common
from rdist.cli.common import console, print_json, user_errors
from rdist.cli.progress import attack_progress, progress_bar
from rdist.errors import RdistError
from rdist.parallel import ranks_from_env
from rdist.resolve import MODEL_NAMES
from rdist.utils import format_eps


@user_errors
def attack(
    model: str = typer.Argument(None, help=f"the model: {common.MODEL_HELP}; or an .onnx file from `rdist export` "
                                "(clean, square and transfer attacks)", show_default=False),
    suite: str = common.SUITE,
    attacks: str = common.ATTACKS,
    eps: str = common.EPS,
    norm: str = common.NORM,
    data: str = common.DATA,
    data_dir: str = common.DATA_DIR,
    n: int = common.N_IMAGES,
    batch_size: str = common.BATCH_SIZE,
    surrogate: str = typer.Option(None, "--surrogate", help=f"model to craft transfer attacks on: "
                                  f"{common.MODEL_HELP} \\[default for an .onnx file: the artifact it was exported "
                                  "from]"),
    seed: int = typer.Option(0, "--seed", help="seed of the random starts; the same seed gives the same numbers"),
    device: str = common.DEVICE,
    precision: str = typer.Option("fp32", "--precision", help="fp32 (the honest protocol) or bf16: autocast "
                                  "forwards, faster on a GPU but not the protocol papers report; never --record-ed"),
    out: Path = typer.Option(None, "--out", "-o", help="also write the report as JSON to this file"),
    record: bool = typer.Option(False, "--record", help="write the results into the model's metadata"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON instead of a table"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    list_attacks: bool = typer.Option(False, "--list", help="list the attacks, suites and flags, then exit"),
    protocol: str = typer.Option(None, "--protocol", help="robustbench: AutoAttack standard on the first 10,000 test "
                                 "images in fp32 at the board's eps (8/255 Linf, 0.5 L2), as RobustBench's "
                                 "benchmark(); fixes --attacks, --n and --precision"),
) -> None:
    """Evaluate a model's accuracy under attacks (worst case over the suite), in eval mode, eps-checked.

    An .onnx file (from `rdist export`) runs in ONNX Runtime, which gives no gradients: clean, square, and
    transfer attacks crafted on --surrogate (default: the artifact it was exported from). The report shows the
    accuracy per class and flags the signs of gradient masking or a failed attack (`--list` explains them).

    Example: rdist attack --suite autoattack --data cifar10 --n 1000 student.safetensors
    """
    from rdist.attacks import resolve_attacks
    from rdist.report.config import EvalConfig
    from rdist.report.robustness import robustness_report

    if list_attacks:
        _print_attack_list()
        return
    if model is None:
        raise RdistError(f"give the MODEL to attack ({MODEL_NAMES}), or --list")
    config = EvalConfig(attacks=resolve_attacks(suite, attacks), eps=eps, data=data, data_dir=data_dir, n=n,
                        batch_size=batch_size, seed=seed, precision=precision, surrogate=surrogate, device=device,
                        norm=norm, protocol=protocol)
    main = ranks_from_env().is_main  # under torchrun only rank 0 shows progress and the report
    with progress_bar(quiet or json_out or not main) as bar:
        report = robustness_report(model, config, record=record, out=out, progress=attack_progress(bar)).to_dict()
    if not main:
        return
    if json_out:
        print_json(report)
        return
    _print_report(report)


def _print_report(report: dict) -> None:
    norm = "" if report.get("norm", "Linf") == "Linf" else f" ({report['norm']})"
    protocol = f", protocol {report['protocol']}" if report.get("protocol") else ""
    console.print(f"[bold]{report['model']}[/]  {report['dataset']}, n={report['n']}, "
                  f"eps={format_eps(report['eps'])}{norm}, seed={report['seed']}{protocol}, answered by "
                  f"{report['runtime']}"
                  + (f", transfer crafted on {report['surrogate']}" if report.get("surrogate") else ""),
                  highlight=False, soft_wrap=True)
    marked = {f["attack"] for f in report.get("flags", [])}
    table = Table()
    table.add_column("attack")
    table.add_column("accuracy", justify="right")
    for name, acc in report["accuracy"].items():
        table.add_row(name + (" [red]![/]" if name in marked else ""), f"{100 * acc:.2f}%")
    table.add_row("[bold]worst case[/]", f"[bold]{100 * report['worst_case']:.2f}%[/]")
    console.print(table)
    worst = (report.get("per_class") or {}).get("worst_class")
    if worst:
        console.print(f"worst class: {worst['class']} ({100 * worst['accuracy']:.2f}% in the worst case; "
                      "every class's accuracy in --json)", highlight=False)
    for flag in report.get("flags", []):
        console.print(f"[red]flag[/] {escape(Flag.from_dict(flag).line())}", highlight=False, soft_wrap=True)
    if report.get("flags"):
        console.print("what each flag means and what to do: `rdist attack --list`", highlight=False)
    if report.get("recorded"):
        console.print(f"results recorded in {report['model']}")


def _print_attack_list() -> None:
    from rdist.attacks import ATTACK_HELP, SUITES
    from rdist.attacks.flags import FLAG_HELP

    table = Table(title="attacks")
    table.add_column("name")
    table.add_column("what it does")
    for name, text in ATTACK_HELP.items():
        table.add_row(name, text)
    console.print(table)
    suites = Table(title="suites")
    suites.add_column("suite")
    suites.add_column("attacks")
    for name, names in SUITES.items():
        suites.add_row(name, ", ".join(names))
    console.print(suites)
    flags = Table(title="flags (signs of gradient masking or a failed attack)")
    flags.add_column("flag", no_wrap=True)
    flags.add_column("raised when")
    flags.add_column("what to do")
    for name, (meaning, remedy) in FLAG_HELP.items():
        flags.add_row(name, meaning, remedy)
    console.print(flags)
