"""--seeds: parsed strictly, one run directory per seed, and refused with --seed or --resume."""

from __future__ import annotations

import pytest

from rdist.engine import parse_seeds
from rdist.errors import RdistError


def test_parse_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds(" 3 , 7") == [3, 7]
    for bad in ("", "0,,1", "a", "1.5", "-1"):
        with pytest.raises(RdistError, match="cannot read --seeds"):
            parse_seeds(bad)
    with pytest.raises(RdistError, match="repeats seed 2"):
        parse_seeds("2,0,2")


@pytest.mark.parametrize("extra, message", [(["--seed", "3"], "give --seed or --seeds, not both"),
                                            (["--resume", "somewhere"], "not --resume"),
                                            (["--seeds", "0,0"], "repeats seed 0")])
def test_bad_seed_options_are_one_line(cli, extra, message, tmp_path):
    args = ["distill", "--method", "rslad", "--student", "tinycnn", "--data", "digits", "--epochs", "1",
            "--out", str(tmp_path / "g")]
    if "--seeds" not in extra:
        args += ["--seeds", "0,1"]
    cli.fails([*args, *extra], message)
    assert not (tmp_path / "g").exists()
