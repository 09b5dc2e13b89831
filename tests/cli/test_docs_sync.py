"""The generated files (completions/, docs/cli.md) must equal what the current CLI generates, and work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from rdist.cli.app import app
from rdist.cli.docs import ROOT, cli_markdown, generated_files

FIX = "run `python -m rdist.cli.docs` and commit the result"


@pytest.mark.parametrize("relative", sorted(generated_files(), key=str), ids=str)
def test_generated_file_is_up_to_date(relative: Path):
    path = ROOT / relative
    assert path.is_file(), f"{relative} is missing: {FIX}"
    assert path.read_text() == generated_files()[relative], f"{relative} is out of date with the CLI: {FIX}"


def _commands(command, path: str):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from _commands(sub, f"{path} {name}")


def test_cli_doc_has_every_command_and_every_option():
    doc = cli_markdown()
    for path, command in _commands(typer.main.get_command(app), "rdist"):
        section = doc.split(f"\n## {path}\n", 1)
        assert len(section) == 2, f"no section for `{path}`"
        body = section[1].split("\n## ", 1)[0]
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                for opt in param.opts + param.secondary_opts:
                    assert opt in body, f"`{path}` section lacks {opt}"


def test_generation_does_not_depend_on_the_terminal(monkeypatch):
    wide = generated_files()
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setenv("TERM", "dumb")
    assert generated_files() == wide


def _rdist_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment with an `rdist` on PATH that runs this checkout, as the installed entry point would."""
    shim = tmp_path / "rdist"
    shim.write_text(f"#!{sys.executable}\nfrom rdist.cli.app import main\nmain()\n")
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_script_completes_commands_and_options(tmp_path):
    script = ROOT / "completions" / "rdist.bash"
    probe = (f"source {script}; "
             "COMP_WORDS=(rdist comp); COMP_CWORD=1; _rdist_completion rdist; echo \"${COMPREPLY[*]}\"; "
             "COMP_WORDS=(rdist compare --sw); COMP_CWORD=2; _rdist_completion rdist; echo \"${COMPREPLY[*]}\"")
    out = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, env=_rdist_on_path(tmp_path),
                         timeout=120)
    assert out.stdout.splitlines() == ["compare", "--sweep --sweep-attack"], out.stderr


@pytest.mark.parametrize("shell, extra", [("zsh", {}), ("fish", {"_TYPER_COMPLETE_FISH_ACTION": "get-args"})])
def test_zsh_and_fish_scripts_ask_rdist_in_a_way_it_answers(cli, shell, extra):
    # zsh and fish are rarely installed on test machines: check the request their script makes instead, answered
    # in this process (the bash test above runs the `rdist` executable itself).
    script = (ROOT / "completions" / f"rdist.{shell}").read_text()
    assert f"_RDIST_COMPLETE=complete_{shell}" in script
    env = {"_RDIST_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": "rdist comp", **extra}
    out = cli(env=env)
    assert "compare" in out.stdout, out.output


def test_the_doc_groups_options_in_the_panels_of_help():
    """`rdist distill --help` groups its options in panels (Typer's rich_help_panel); docs/cli.md shows the same
    groups, each with the same options in the same order."""
    doc = cli_markdown()
    for path in (("distill",), ("teacher", "train")):
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]
        section = doc.split(f"\n## rdist {' '.join(path)}\n", 1)[1].split("\n## ", 1)[0]
        panels: dict[str, list[str]] = {}
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                panels.setdefault(param.rich_help_panel or "Options", []).append(param.opts[-1])
        assert len(panels) >= 7, panels
        groups = re.findall(r"\*\*(.+?)\*\*\n\n\| Option \| Description \|\n\| --- \| --- \|\n((?:\|.*\n)+)", section)
        assert [title for title, _ in groups] == list(panels)
        for (title, table), (_, flags) in zip(groups, panels.items()):
            rows = table.splitlines()
            assert len(rows) == len(flags) and all(flag in row for flag, row in zip(flags, rows)), title
