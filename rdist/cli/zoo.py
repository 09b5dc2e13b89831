"""`rdist zoo list|pull|push`: the published students of zoo.yaml, on the Hugging Face Hub."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from rdist.cli.common import MODEL_HELP, console, err_console, print_json, user_errors

app = typer.Typer(help="Published students on the Hugging Face Hub, listed in zoo.yaml.", no_args_is_help=True)

ZOO = typer.Option(None, "--zoo", help="the catalogue to read \\[default: $RDIST_ZOO, else the project's zoo.yaml]")


@app.command("list")
@user_errors
def list_(
    data: str = typer.Option(None, "--data", "-d", help="only students for this dataset, e.g. cifar10"),
    arch: str = typer.Option(None, "--arch", help="only this student architecture, e.g. resnet18"),
    method: str = typer.Option(None, "--method", "-m", help="only this distillation method, e.g. rslad"),
    zoo: Path = ZOO,
    json_out: bool = typer.Option(False, "--json", help="print the matching entries as JSON"),
) -> None:
    """List the published students with their measured accuracies (percent, test set)."""
    from rich import box
    from rich.table import Table

    from rdist.zoo import ZOO

    entries = ZOO.load(zoo)
    chosen = [e for e in entries if data in (None, e.dataset) and arch in (None, e.arch) and method in (None, e.method)]
    if json_out:
        print_json([e.to_dict() for e in chosen])
        return
    if not entries:
        console.print(f"{ZOO.path(zoo)} lists no published students yet; publish one with `rdist zoo push`",
                      highlight=False)
        return
    if not chosen:
        console.print(f"no student in {ZOO.path(zoo)} matches the filters ({len(entries)} listed)", highlight=False)
        return
    table = Table(title="published students: accuracy (%) measured by `rdist attack`", box=box.SIMPLE,
                  pad_edge=False)
    # A narrow terminal folds long names onto more lines rather than cutting them; numbers stay whole.
    for column in ("name", "data", "arch", "method", "teacher"):
        table.add_column(column, overflow="fold")
    for column in ("clean", "pgd20", "aa"):
        table.add_column(column, justify="right", no_wrap=True, min_width=5)
    for e in chosen:
        table.add_row(e.name, e.dataset, e.arch, e.method, e.teacher,
                      *(f"{e.results[m]:.2f}" for m in ("clean", "pgd20", "aa")))
    console.print(table)


@app.command("pull")
@user_errors
def pull(
    name: str = typer.Argument(..., help="a name from `rdist zoo list` (or zoo:NAME), or any Hub repo's model: "
                               "hf://ORG/REPO[@REV][/FILE] or hf-hub:ORG/REPO[@REV]"),
    zoo: Path = ZOO,
) -> None:
    """Download a published student into the Hub cache, check its sha256 against zoo.yaml, print its path.

    A Hub name downloads that repo's file (model.safetensors unless /FILE names another) unchecked: no catalogue
    vouches for it. Either way the repo's config.json is requested too, by which the Hub counts downloads.

    Example: rdist zoo pull NAME, then rdist attack zoo:NAME
    """
    from rdist.resolve import model_kind, resolve_model
    from rdist.zoo import ZOO_PREFIX, pull_model

    if model_kind(name) in ("hf", "hf-hub"):
        path = resolve_model(name).path
    else:
        path = pull_model(name.removeprefix(ZOO_PREFIX), zoo)
    console.print(str(path), highlight=False, soft_wrap=True)


@app.command("push")
@user_errors
def push(
    model: str = typer.Argument(..., help=f"the student ({MODEL_HELP}), with results from `rdist attack "
                                "--record`"),
    repo: str = typer.Option(..., "--repo", help="Hub repo id ORG/NAME (created if missing)"),
    name: str = typer.Option(None, "--name", help="name in zoo.yaml \\[default: the repo's NAME]"),
    method: str = typer.Option(None, "--method", help="distillation method \\[default: recorded in the artifact]"),
    teacher: str = typer.Option(None, "--teacher", help="teacher name \\[default: recorded in the artifact]"),
    private: bool = typer.Option(False, "--private", help="create the repo as private"),
    license: str = typer.Option("mit", "--license", help="the weights' licence on the model card, as the Hub names "
                                "licences: mit, apache-2.0, cc-by-4.0, other, ..."),
    allow_flagged: bool = typer.Option(False, "--allow-flagged", help="publish even if the recorded report raised "
                                       "attack-failure flags (refused otherwise); the model card then lists them"),
) -> None:
    """Publish a student: the safetensors file, config.json and a model card with its results, in one commit.

    The token comes from HF_TOKEN or `hf auth login`. Prints the zoo.yaml entry to add.
    """
    import yaml

    from rdist.resolve import resolve_model
    from rdist.zoo.hub import push_student

    entry = push_student(resolve_model(model).path, repo, name=name, method=method, teacher=teacher,
                         private=private, license=license, allow_flagged=allow_flagged)
    err_console.print(f"pushed {model} to {repo} at commit {entry.revision}; add this entry under `students:` "
                      "in zoo.yaml:", highlight=False, soft_wrap=True)
    sys.stdout.write(yaml.safe_dump([entry.to_dict()], sort_keys=False, width=1000))
