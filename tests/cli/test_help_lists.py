"""Help texts that list what a registry holds are built from the registry, so that they cannot drift from it."""

from __future__ import annotations

import typer.main

from rdist.cli import common
from rdist.cli.app import app
from rdist.data import DATASETS, DatasetFacts, list_datasets


def _option_help(command_path: tuple[str, ...], flag: str) -> str:
    command = typer.main.get_command(app)
    for name in command_path:
        command = command.commands[name]
    (option,) = [p for p in command.params if flag in getattr(p, "opts", ())]
    return option.help


def test_every_data_option_lists_the_data_registry():
    for path in (("attack",), ("compare",), ("export",), ("distill",), ("teacher", "train"),
                 ("teacher", "import")):
        help_text = _option_help(path, "--data")
        assert all(name in help_text for name in list_datasets()), (path, help_text)


def test_a_dataset_added_to_the_registry_shows_in_the_help(monkeypatch):
    monkeypatch.setitem(DATASETS, "tiny", DatasetFacts(3, 200, 64, 100_000, lambda root, classes: None))
    assert common.data_option("cifar10").help == \
        "cifar10, cifar100, svhn, tiny-imagenet, digits, tiny or npz:PATH \\[default: cifar10]"
    assert common.data_option(None, what="trained on: ").help == \
        "trained on: cifar10, cifar100, svhn, tiny-imagenet, digits, tiny or npz:PATH (required)"


def test_the_suite_help_is_the_registry_s_suites(monkeypatch):
    monkeypatch.setattr(common, "SUITES", {"a": ["clean", "fgsm"], "b": ["clean", "fgsm", "cw"], "c": ["clean", "aa"],
                                           "d": ["clean", "aa", "fgsm", "cw", "square"]})
    assert common.suite_summary() == "a (clean,fgsm), b (+cw), c (clean,aa), d (+aa,square)"  # d adds to b, the larger
    monkeypatch.undo()
    assert _option_help(("attack",), "--suite") == f"named suite: {common.suite_summary()}"
