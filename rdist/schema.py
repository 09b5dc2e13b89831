"""Declarative checks of the plain data rdist reads back from files (artifact metadata, checkpoints).

A schema is a tree of validators; `validate` runs one over a value and turns the first problem into an
RdistError that names the file and the field (`arch.num_classes`), so that a tampered or foreign file
fails in one line instead of deep inside the code that uses it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from rdist.errors import RdistError
from rdist.utils import suggest

# validator(value, field) raises Invalid when `value`, found at dotted path `field`, does not fit.
Validator = Callable[[Any, str], None]


class Invalid(Exception):
    def __init__(self, field: str, problem: str, expected: str | None = None):
        super().__init__(f"field '{field}' {problem}")
        self.expected = expected or problem  # what would have fitted: 'an integer >= 1'


def validate(value: Any, schema: Validator, where: str, fix: str) -> None:
    """Check `value` against `schema`; RdistError '<where>: field 'x.y' must be ...; <fix>' on the first problem."""
    try:
        schema(value, "")
    except Invalid as exc:
        raise RdistError(f"{where}: {exc}; {fix}") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__} {text[:30]}..."


def _join(parent: str, key: Any) -> str:
    return f"{parent}.{key}" if parent else str(key)


def kind(test: Callable[[Any], bool], expected: str) -> Validator:
    """A leaf: `test(value)` must hold; `expected` says what it means ('an integer >= 1')."""

    def check(value: Any, field: str) -> None:
        if not test(value):
            raise Invalid(field, f"must be {expected}, got {_shown(value)}", expected)

    return check


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def text() -> Validator:
    return kind(lambda v: isinstance(v, str) and v != "", "non-empty text")


def integer(minimum: int | None = None) -> Validator:
    expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    return kind(lambda v: isinstance(v, int) and not isinstance(v, bool) and (minimum is None or v >= minimum),
                expected)


def number(minimum: float | None = None, maximum: float | None = None) -> Validator:
    bounds = (f" in [{minimum:g}, {maximum:g}]" if minimum is not None and maximum is not None
              else f" >= {minimum:g}" if minimum is not None else "")
    return kind(lambda v: _is_number(v) and (minimum is None or v >= minimum) and (maximum is None or v <= maximum),
                "a number" + bounds)


def anything() -> Validator:
    return lambda value, field: None


def optional(inner: Validator) -> Validator:
    """`inner`, or None (JSON null)."""
    return lambda value, field: None if value is None else inner(value, field)


def any_of(*validators: Validator) -> Validator:
    """A value that fits one of `validators`; a value that fits none is refused naming every alternative."""

    def check(value: Any, field: str) -> None:
        problems = []
        for validator in validators:
            try:
                return validator(value, field)
            except Invalid as exc:
                problems.append(exc.expected)
        raise Invalid(field, f"must be {' or '.join(problems)}, got {_shown(value)}")

    return check


def list_of(item: Validator, length: int | None = None) -> Validator:
    def check(value: Any, field: str) -> None:
        if not isinstance(value, (list, tuple)):
            raise Invalid(field, f"must be a list, got {_shown(value)}")
        if length is not None and len(value) != length:
            raise Invalid(field, f"must have {length} items, got {len(value)}")
        for i, element in enumerate(value):
            item(element, f"{field}[{i}]")

    return check


def mapping(fields: Mapping[str, Validator] | None = None, required: Iterable[str] = (),
            other: Validator | None = None) -> Validator:
    """A dict with `fields` (those in `required` must be present); keys not in `fields` must fit `other`,
    or are refused by name when `other` is None."""
    fields, required = dict(fields or {}), tuple(required)

    def check(value: Any, field: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(field, f"must be a mapping, got {_shown(value)}")
        for key in required:
            if key not in value:
                raise Invalid(_join(field, key), "is missing")
        for key, element in value.items():
            if key in fields:
                fields[key](element, _join(field, key))
            elif other is not None:
                other(element, _join(field, key))
            else:
                raise Invalid(_join(field, key), f"is not known here{suggest(str(key), fields)}")

    return check
