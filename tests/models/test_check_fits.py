"""The one "does this model fit this dataset" check: every command that puts a model on data refuses a misfit
with one message naming the model, the mismatch and the fix."""

from __future__ import annotations

import pytest

import rdist
from rdist.artifact import check_fits
from rdist.errors import RdistError


def meta(classes=10, channels=1, size=8, dataset="digits", shape=True) -> dict:
    return {"arch": {"name": "tinycnn", "num_classes": classes, "in_channels": channels}, "dataset": dataset,
            **({"input_shape": [channels, size, size]} if shape else {})}


def refusal(model: dict, dataset, what="m.safetensors", **options) -> str:
    with pytest.raises(RdistError) as error:
        check_fits(model, dataset, what, **options)
    return str(error.value)


def test_a_model_that_fits_passes_by_name_and_loaded(digits):
    check_fits(meta(), "digits", "m")
    check_fits(meta(), digits, "m")
    check_fits(meta(shape=False), "digits", "m")


def test_classes_then_shape_each_named_with_the_fix(digits):
    assert refusal(meta(classes=100, dataset="cifar100"), "digits") == (
        "m.safetensors has 100 classes but dataset digits has 10; pass --data cifar100 or a model trained on digits")
    assert refusal(meta(channels=3, size=32, dataset="cifar10"), digits) == (
        "m.safetensors takes inputs of shape (3, 32, 32) but dataset digits has (1, 8, 8); pass --data cifar10 or "
        "a model trained on digits")
    # Without a recorded input shape, the channels the architecture takes are still checked.
    assert "inputs of shape (3, 8, 8)" in refusal(meta(channels=3, shape=False), "digits")
    # A model that records no dataset, or the very dataset it does not fit, gets no pointless --data.
    assert refusal(meta(classes=5, dataset=None), "digits").endswith(
        "; pass the --data it was trained on or a model trained on digits")
    assert refusal(meta(classes=5), "digits").endswith("; pass a model trained on digits")
    assert refusal(meta(classes=5), "digits", "--surrogate s", instead="a surrogate", data_option=False) == (
        "--surrogate s has 5 classes but dataset digits has 10; pass a surrogate trained on digits")


def test_every_command_gives_the_same_message(cli, tmp_path):
    five = rdist.save_model(rdist.create_model("tinycnn", num_classes=5, in_channels=1), tmp_path / "five.safetensors",
                            dataset="digits", input_shape=[1, 8, 8])
    expected = "has 5 classes but dataset digits has 10; pass a model trained on digits"
    runs = [(f"{five} ", ["attack", five, "--attacks", "clean", "--quiet"]),
            ("five ", ["compare", five, "--attacks", "clean", "--quiet"]),  # compare names models by their labels
            (f"{five} ", ["export", five, "-o", tmp_path / "five.onnx"])]
    for name, args in runs:
        cli.fails(args, f"error: {name}{expected}")
    cli.fails(["distill", "--method", "ard", "--student", "tinycnn", "--teacher", five, "--data", "digits", "--epochs",
               "1", "--out", tmp_path / "run"], f"teacher {five} {expected.replace('a model', 'a teacher')}")
