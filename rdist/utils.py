"""Small helpers shared by every layer: name suggestions, error text, eps parsing, the comments of dataclass fields.

Files (atomic writes, the cache) are in `rdist.files`, the YAML catalogues in `rdist.catalogues`, devices in
`rdist.device`."""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import io
import re
import textwrap
import tokenize
from fractions import Fraction
from typing import Iterable

from rdist.errors import RdistError


def suggest(name: str, choices: Iterable[str], *, list_all: bool = True, cutoff: float = 0.5) -> str:
    """' (did you mean: a, b?)' for the closest choices (difflib's ratio >= `cutoff`); when none is close, a list
    of all choices, or '' with `list_all=False` (for choices too many to list, such as every model name)."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=cutoff)
    if close:
        return f" (did you mean: {', '.join(close)}?)"
    return f" (choose from: {', '.join(choices)})" if list_all else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> RdistError:
    return RdistError(f"unknown {kind} '{name}'{suggest(name, choices)}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type's name when it has none), for one-line errors;
    terminal colour codes (torch puts some in its messages) are dropped."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_eps(text: str | float, option: str = "--eps", norm: str = "Linf") -> float:
    """Parse a budget given as '8/255' or '0.031' in [0,1] pixel units; errors name `option`. An L-inf budget is
    below 1 (a pixel's whole range); an L2 one (the perturbation's Euclidean length) may exceed it."""
    try:
        value = float(Fraction(text)) if isinstance(text, str) else float(text)
    except (ValueError, ZeroDivisionError):
        raise RdistError(f"cannot read {option} '{text}': write it as a fraction like 8/255 "
                         "or a number like 0.031") from None
    if value < 0:
        raise RdistError(f"{option} must be >= 0, got {text}")
    if value >= 1 and norm == "Linf":
        raise RdistError(
            f"{option} {text} is not in [0,1] pixel units: did you mean {text}/255? (write {option} {text}/255)"
        )
    return value


def format_eps(eps: float) -> str:
    """8/255 for budgets that are whole multiples of 1/255, else the plain number."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.4g}"


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """field name -> the comment at the end of its line, for the fields `cls` itself declares ({} without source)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
    (node,) = ast.parse(source).body
    return {field.target.id: comments[field.end_lineno] for field in node.body
            if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and field.end_lineno in comments}
