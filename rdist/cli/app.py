"""The `rdist` command: a thin Typer layer over the library. Each command group lives in its own module."""

from __future__ import annotations

import os

import typer

from rdist.cli import attack, compare, data, distill, env, export, quickstart, reproduce, teacher, zoo
from rdist.cli.common import OneLineErrors, console

app = typer.Typer(
    name="rdist",
    cls=OneLineErrors,
    help="Adversarial robustness distillation: turn a robust teacher into a small robust student, "
    "and measure robustness honestly.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
app.add_typer(teacher.app, name="teacher")
app.command("distill")(distill.distill)
app.command("attack")(attack.attack)
app.command("compare")(compare.compare)
app.command("export")(export.export)
app.add_typer(zoo.app, name="zoo")
app.command("quickstart")(quickstart.quickstart)
app.command("reproduce")(reproduce.reproduce)
app.add_typer(data.app, name="data")
app.command("env")(env.env)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"rdist {version('rdist')}", highlight=False)
        raise typer.Exit()


@app.callback()
def rdist(version: bool = typer.Option(None, "--version", callback=_print_version, is_eager=True,
                                       help="print rdist's version and exit (`rdist env` tells more)")) -> None:
    """Adversarial robustness distillation: turn a robust teacher into a small robust student, and measure
    robustness honestly."""


def main() -> None:
    if os.environ.get("_RDIST_COMPLETE"):
        # Typer wraps option help at 80 columns; fish and zsh would show the wrapped lines as extra candidates.
        import typer.rich_utils

        typer.rich_utils.MAX_WIDTH = 10_000
    app()
