"""`rdist zoo push` of a student whose recorded report raised attack-failure flags: refused in one line naming them,
unless --allow-flagged, and then the model card and config.json say so."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rdist.artifact import record_results
from rdist.attacks.flags import Flag
from rdist.cli.app import app
from tests.helpers import assert_one_line_error
from tests.zoo.conftest import uploaded_files

runner = CliRunner()
# What `rdist attack --record` stores for a model whose softmax saturates (tests/attacks/test_flags.py measures it).
FLAG = Flag("zero-gradient", "97 of 97 correctly classified images (100.0%) had a zero input gradient at the attack's "
            "start", "pgd20", {"images": 97, "correct": 97, "share": 1.0})


def flag_student(student) -> None:
    accuracy = {"clean": 0.97, "pgd20": 0.97, "aa": 0.1}
    record_results(student, {"attacks": list(accuracy), "dataset": "digits", "eps": 8 / 255, "n": 400,
                             "accuracy": accuracy, "worst_case": 0.1, "seed": 0, "flags": [FLAG.to_dict()]})


def test_a_flagged_report_is_refused_unless_allowed_and_then_the_card_says_so(hub, student):
    flag_student(student)
    refused = runner.invoke(app, ["zoo", "push", str(student), "--repo", "rdist-zoo/flagged"])
    assert_one_line_error(refused, "recorded report is flagged", "zero-gradient (pgd20): 97 of 97", "--allow-flagged")
    assert "rdist-zoo/flagged" not in hub.state.repos  # nothing was sent
    pushed = runner.invoke(app, ["zoo", "push", str(student), "--repo", "rdist-zoo/flagged", "--allow-flagged"])
    assert pushed.exit_code == 0, pushed.output
    files = uploaded_files(hub, "rdist-zoo/flagged")
    card = files["README.md"].decode()
    assert "## Flags: read before trusting these numbers" in card and "--allow-flagged" in card
    assert f"- **zero-gradient** (pgd20): {FLAG.message}" in card
    assert json.loads(files["config.json"])["flags"] == [FLAG.to_dict()]
