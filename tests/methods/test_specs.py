"""Every registered method and term is what docs/methods.md ("What each method declares") says it is: its kind,
its teachers, its attack's BatchNorm mode, its hyper-parameters' defaults and its paper recipe.

The tables of docs/methods.md are the one place these constants are written down for the tests: this file holds
none of them. The documentation is the source because it is the promise users read (what `--recipe paper` runs,
what each `--hparam` starts at); a second table here would be one more copy to keep in step. A method or a term
registered without a row fails here, and so does a row that names none.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rdist.methods.base import DEFAULT_ATTACK_STEPS, DEFAULT_EPS, DEFAULT_STEP_SIZE, Recipe
from rdist.methods.registry import METHODS, TERMS, create_method

DOC = Path(__file__).resolve().parents[2] / "docs" / "methods.md"
SECTION = "## What each method declares"


def tables() -> dict[str, dict[str, dict[str, str]]]:
    """The section's tables by their first column's heading ("method", "term"): {name: {column: cell}}."""
    text = DOC.read_text()
    assert SECTION in text, f"docs/methods.md has no section '{SECTION}'"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found: dict[str, dict[str, dict[str, str]]] = {}
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = None
    for line in rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if set("".join(cells)) <= set("-: "):
            continue  # the line under the header
        if header is None or cells[0] in ("method", "term"):
            header = cells
            found[header[0]] = {}
            continue
        assert len(cells) == len(header), f"docs/methods.md: a row of {len(cells)} cells under {header}: {line}"
        assert cells[0] not in found[header[0]], f"docs/methods.md: two rows for {cells[0]}"
        found[header[0]][cells[0]] = dict(zip(header, cells))
    return found


def number(text: str) -> float:
    """'8/255', '2e-4', '0.031'."""
    numerator, _, denominator = text.partition("/")
    return float(numerator) / float(denominator) if denominator else float(text)


def values(cell: str) -> dict[str, object]:
    """`name=value, ...` (numbers, None, True, False); '-' for none."""
    cell = cell.strip("`")
    if cell == "-":
        return {}
    words = {"None": None, "True": True, "False": False}
    pairs = [pair.split("=") for pair in cell.split(", ")]
    return {name: words[value] if value in words else number(value) for name, value in pairs}


def recipe(cell: str, attack: str) -> Recipe:
    """'200 ep, x0.1 at 100/150, lr 0.1, wd 2e-4, batch 128[, SWA from 56]' and '10 × 2/255 in 8/255' (or 'none':
    the recipe keeps the attack settings every method shares)."""
    patterns = {"epochs": r"(\d+) ep", "milestones": r"x0\.1 at ([\d/]+)", "lr": r"lr (\S+)",
                "weight_decay": r"wd (\S+)", "batch_size": r"batch (\d+)", "swa_start": r"SWA from (\d+)"}
    fields: dict[str, object] = {}
    for part in cell.split(", "):
        matched = [(key, re.fullmatch(pattern, part)) for key, pattern in patterns.items()]
        (key, match), = [(key, match) for key, match in matched if match] or [(None, None)]
        assert key is not None and key not in fields, f"docs/methods.md: cannot read '{part}' in the recipe '{cell}'"
        value = match.group(1)
        fields[key] = (tuple(int(m) for m in value.split("/")) if key == "milestones" else
                       int(value) if key in ("epochs", "batch_size", "swa_start") else number(value))
    assert {"epochs", "milestones", "lr", "weight_decay", "batch_size"} <= set(fields), cell
    if attack == "none":
        fields.update(eps=DEFAULT_EPS, step_size=DEFAULT_STEP_SIZE, attack_steps=DEFAULT_ATTACK_STEPS)
    else:
        steps, step_size, eps = re.fullmatch(r"(\d+) × (\S+) in (\S+)", attack).groups()
        fields.update(eps=number(eps), step_size=number(step_size), attack_steps=int(steps))
    return Recipe(**fields)


def same_values(actual: dict[str, object], expected: dict[str, object]) -> bool:
    """Equal, and a flag where the table has a flag (False == 0 in Python)."""
    return actual == expected and all(isinstance(actual[k], bool) == isinstance(expected[k], bool) for k in actual)


TABLES = tables()


def test_every_row_names_a_registered_method_or_term():
    assert set(TABLES["method"]) <= set(METHODS), "rows without a method in docs/methods.md"
    assert set(TABLES["term"]) <= set(TERMS), "rows without a term in docs/methods.md"


@pytest.mark.parametrize("name", list(METHODS))
def test_the_method_is_what_its_row_says(name, student, make_batch):
    assert name in TABLES["method"], f"docs/methods.md has no row for method {name}: add it to '{SECTION}'"
    row, cls = TABLES["method"][name], METHODS[name]
    assert cls.name == name and cls.kind == row["kind"]
    assert cls.teachers == (() if row["teachers"] == "-" else tuple(row["teachers"].split(", ")))
    if row["attack BN"] == "-":  # no inner attack: the method trains on clean inputs
        assert row["recipe's attack"] == "none" and create_method(name).perturb(student, make_batch()) is None
    else:
        assert cls.bn_mode == row["attack BN"]
    assert same_values(cls.defaults(), values(row["hyper-parameters"])), cls.defaults()
    assert cls.recipe == recipe(row["recipe"], row["recipe's attack"])


@pytest.mark.parametrize("term", list(TERMS))
def test_the_term_is_what_its_row_says(term):
    assert term in TABLES["term"], f"docs/methods.md has no row for term {term}: add it to '{SECTION}'"
    row, cls = TABLES["term"][term], TERMS[term]
    bases = tuple(row["bases"].split(", "))
    assert cls.bases == bases and tuple(name for name, method in METHODS.items() if cls.accepts(method)) == bases
    assert f"{cls.default_base}+{term}" == row["bare name"]
    assert same_values(cls.defaults(), values(row["hyper-parameters"])), cls.defaults()
