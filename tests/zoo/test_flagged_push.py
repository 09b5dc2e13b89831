"""`rdist zoo push` of a student whose recorded report raised attack-failure flags: refused in one line naming them,
unless --allow-flagged, and then the model card and config.json say so."""

from __future__ import annotations

import json

from rdist.artifact import record_results
from rdist.attacks.flags import Flag
from tests.fixtures.hub import uploaded_files

# What `rdist attack --record` stores for a model whose softmax saturates (tests/attacks/test_flags.py measures it).
FLAG = Flag("zero-gradient", "97 of 97 correctly classified images (100.0%) had a zero input gradient at the attack's "
            "start", "pgd20", {"images": 97, "correct": 97, "share": 1.0})


def flag_student(student) -> None:
    accuracy = {"clean": 0.97, "pgd20": 0.97, "aa": 0.1}
    record_results(student, {"attacks": list(accuracy), "dataset": "digits", "eps": 8 / 255, "n": 400,
                             "accuracy": accuracy, "worst_case": 0.1, "seed": 0, "flags": [FLAG.to_dict()]})


def test_a_flagged_report_is_refused_unless_allowed_and_then_the_card_says_so(cli, hub, student):
    flag_student(student)
    cli.fails(["zoo", "push", student, "--repo", "rdist-zoo/flagged"], "recorded report is flagged",
              "zero-gradient (pgd20): 97 of 97", "--allow-flagged", unchanged=student)
    assert "rdist-zoo/flagged" not in hub.state.repos  # nothing was sent
    cli("zoo", "push", student, "--repo", "rdist-zoo/flagged", "--allow-flagged")
    files = uploaded_files(hub, "rdist-zoo/flagged")
    card = files["README.md"].decode()
    assert "## Flags: read before trusting these numbers" in card and "--allow-flagged" in card
    assert f"- **zero-gradient** (pgd20): {FLAG.message}" in card
    assert json.loads(files["config.json"])["flags"] == [FLAG.to_dict()]
