"""What every command shares: consoles, one-line errors, JSON output, common options (progress: cli/progress.py)."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from rdist.attacks import SUITES
from rdist.data import list_datasets
from rdist.errors import RdistError
from rdist.resolve import MODEL_NAMES
from rdist.utils import first_line

try:  # newer Typer vendors Click as typer._click
    from typer._click import exceptions as click_errors
except ImportError:  # older Typer runs on Click itself
    from click import exceptions as click_errors

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on one line to stderr and return the Exit to raise."""
    # Escaped: a message quoting [brackets] (hf-hub:ORG/REPO[@REV], a path) would otherwise lose them to markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _rank_prefix() -> str:
    """'rank N: ' in the processes torchrun starts after the first, whose lines share one terminal."""
    rank, world_size = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    return f"rank {rank}: " if rank not in ("", "0") and world_size not in ("", "1") else ""


def unexpected_error(exc: Exception) -> typer.Exit:
    """The one line a bug gets instead of a traceback; with RDIST_DEBUG=1 the exception propagates instead."""
    if os.environ.get("RDIST_DEBUG", "") not in ("", "0"):
        raise exc
    return fail(f"unexpected {type(exc).__name__}: {first_line(exc)}; this is a bug in rdist: please report it with "
                "the command you ran (RDIST_DEBUG=1 shows the traceback)")


def user_errors(fn: Callable) -> Callable:
    """Turn RdistError into a one-line message and exit code 1, and any other exception into the one line of
    `unexpected_error`: no traceback reaches a user."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RdistError as exc:
            raise fail(_rank_prefix() + str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except (typer.Exit, typer.Abort, click_errors.ClickException, BrokenPipeError):
            raise  # Click's own control flow, and a closed pipe, which Typer ends quietly
        except Exception as exc:
            raise unexpected_error(exc) from None

    return wrapper


class OneLineErrors(typer.core.TyperGroup):
    """The top-level command group: usage errors as one `error:` line (exit 2, as Click's), and any exception
    that escaped a command (raised while parsing, say) as the one line of `unexpected_error`."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # a caller that handles Click's exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:
            code = exc.exit_code  # Typer has printed the help while raising it
        except click_errors.ClickException as exc:
            code = usage_error(exc)
        except typer.Abort:
            code = fail("aborted").exit_code
        except Exception as exc:
            code = unexpected_error(exc).exit_code
        sys.exit(code if isinstance(code, int) else 0)


def usage_error(exc: click_errors.ClickException) -> int:
    """Print a Click error as one line with a pointer to the command's --help; return its exit code."""
    message = " ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    fail(f"{message}{hint}", exc.exit_code)
    return exc.exit_code


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


# What every argument and option that takes a model accepts (see rdist.resolve).
MODEL_HELP = escape(MODEL_NAMES)

def suite_summary() -> str:
    """The suites of the attack registry with their attacks, each as what it adds to the largest suite before it
    that it contains: quick (clean,fgsm,pgd20), standard (+cw,aa), ..."""
    parts, seen = [], []
    for name, attacks in SUITES.items():
        base = max((s for s in seen if set(s) <= set(attacks)), key=len, default=None)
        listed = ",".join(attacks) if base is None else "+" + ",".join(a for a in attacks if a not in base)
        parts.append(f"{name} ({listed})")
        seen.append(attacks)
    return ", ".join(parts)


def data_option(default: str | None, panel: str | None = None, what: str = "") -> Any:
    """--data, whose help lists the datasets of the data registry (`rdist.data.list_datasets`) after `what`, then
    `default` (None: the option is required); `panel` is the group of options --help shows it in."""
    *names, last = list_datasets()
    tail = "(required)" if default is None else f"\\[default: {default}]"
    return typer.Option(None, "--data", "-d", help=f"{what}{', '.join(names)} or {last} {tail}", rich_help_panel=panel)


def data_dir_option(panel: str | None = None) -> Any:
    """--data-dir, the folder named datasets are read from and downloaded to (`rdist.data.data_root`): one option
    for every command that loads a dataset, training's and evaluation's."""
    return typer.Option(None, "--data-dir", metavar="DIR", rich_help_panel=panel,
                        help="a shared folder of datasets: each in DIR/NAME, where a download puts it, or where "
                        "torchvision's root puts it (DIR/cifar-10-batches-py, as timm's --data-dir) "
                        "\\[default: $RDIST_DATA_DIR, else ~/.cache/rdist/data]")


# Options that `rdist attack` and `rdist compare` share, with the same meaning and defaults.
SUITE = typer.Option("standard", "--suite", "-s", help=f"named suite: {suite_summary()}")
ATTACKS = typer.Option(None, "--attacks", "-a", help="comma-separated attacks instead of a suite, e.g. "
                       "clean,pgd20,cw,aa:apgd-ce+apgd-t; `rdist attack --list` shows them all")
EPS = typer.Option(None, "--eps", help="the budget in [0,1] pixel units: 8/255 or 0.031 (L-inf), 0.5 (L2) "
                   "\\[default: 8/255 for Linf, 0.5 for L2]", show_default=False)
NORM = typer.Option("Linf", "--norm", help="the distance eps bounds: Linf or L2")
# --n-images because torchrun's own parser refuses `--n` (an abbreviation of several of its options).
N_IMAGES = typer.Option(1000, "--n", "--n-images", help="number of test images (the first n); under torchrun "
                        "write --n-images")
BATCH_SIZE = typer.Option("256", "--batch-size", help="images per attack batch, or auto: the largest the GPU's "
                          "memory allows (256 on the CPU); the random starts, hence the numbers, depend on it")
# The data a model is put on (attack, compare, export); training's --data has its own default.
DATA = data_option("the dataset recorded in the model")
DATA_DIR = data_dir_option()
DEVICE = typer.Option(None, "--device", help="device the attacks run on: cpu, cuda, cuda:1 "
                      "\\[default: cuda if available]")
