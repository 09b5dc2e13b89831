"""Method names to methods. A method registers itself with `@register_method`, a term with `@register_term`:
adding either is one file (and its import in rdist/methods/__init__.py, which registers it).

A name is a method (`rslad`), a composition `base+term` (`rslad+igdm`), or an alias of either (`iad`, `igdm`).
`method_class(name)` gives, for either, the object that answers what the method is before it is built (its name,
kind, teachers, recipe, paper preset and teachers, about, hyper-parameters) and builds it when called.
"""

from __future__ import annotations

from typing import Any, TypeVar, Union

from rdist.errors import RdistError
from rdist.methods.base import ATTACK_FIELDS, Method
from rdist.methods.term import Composition, Term
from rdist.utils import unknown

METHODS: dict[str, type[Method]] = {}  # in registration order, which is the order lists show them in
TERMS: dict[str, type[Term]] = {}
MethodType = Union[type[Method], Composition]
C = TypeVar("C", bound=type)


def register_method(cls: C) -> C:
    """Class decorator: make method `cls` known by its `name` (and its `aliases`)."""
    if cls.name in METHODS or cls.name in TERMS:
        raise ValueError(f"method '{cls.name}' is registered twice")
    METHODS[cls.name] = cls
    return cls


def register_term(cls: C) -> C:
    """Class decorator: make term `cls` known by its `term` name, composable as `base+term`."""
    if cls.term in TERMS or cls.term in METHODS:
        raise ValueError(f"term '{cls.term}' is registered twice")
    TERMS[cls.term] = cls
    return cls


def aliases() -> dict[str, str]:
    """alias -> the name it stands for: the methods' own aliases, and each term's bare name for its default base
    (`igdm` = adaad+igdm). Runs and artifacts record the name, not the alias."""
    return {**{alias: cls.name for cls in METHODS.values() for alias in cls.aliases},
            **{term: f"{cls.default_base}+{term}" for term, cls in TERMS.items() if cls.default_base}}


def canonical_method(name: str) -> str:
    """The registered name `name` stands for: itself, or what its alias means."""
    return aliases().get(name, name)


def parse(name: str) -> tuple[type[Method], type[Term] | None]:
    """The method and the term (None for a plain method) that `name` (or its alias) names; unknown parts are
    refused with suggestions, and a composition the term does not take."""
    base_name, _, term_name = canonical_method(name).partition("+")
    if base_name not in METHODS or (term_name and term_name not in TERMS):
        raise unknown("method", name, [*list_methods(), *aliases()])
    base, term = METHODS[base_name], TERMS[term_name] if term_name else None
    if term is not None:
        term.check_base(base)
    return base, term


def method_class(name: str) -> MethodType:
    """What method `name` is: its class, or for base+term the composition (`term.over(base)`), which answers the
    same questions (kind, teachers, about, paper_preset, paper_teachers, defaults, ...) and builds it when called."""
    base, term = parse(name)
    return base if term is None else term.over(base)


def list_methods(kind: str | None = None) -> list[str]:
    """Method names in registration order, optionally only those of `kind` ("teacher" or "distill"), then their
    compositions with the terms."""
    names = [name for name, cls in METHODS.items() if kind is None or cls.kind == kind]
    return names + [f"{name}+{term}" for name in names for term, cls in TERMS.items() if cls.accepts(METHODS[name])]


def list_aliases(kind: str | None = None) -> list[str]:
    """'iad = iad-i', ...: the aliases of methods of `kind`."""
    return [f"{alias} = {name}" for alias, name in aliases().items()
            if kind is None or method_class(name).kind == kind]


def methods_taking(role: str) -> list[str]:
    """The methods (and compositions) that distil from a model of `role`."""
    return [name for name in list_methods() if role in method_class(name).teachers]


def check_kind(name: str, kind: str, resume: str | None = None) -> None:
    """Refuse method `name` where a method of `kind` ("teacher", "distill") is wanted, pointing to the command that
    trains it (`resume`: the run directory being continued); unknown names get suggestions."""
    if canonical_method(name).partition("+")[0] not in METHODS:
        raise unknown("method", name, [*list_methods(kind), *aliases()])
    cls = method_class(name)
    if cls.kind != kind:
        command = "rdist teacher train" if cls.kind == "teacher" else "rdist distill"
        what = "distillation" if kind == "distill" else "teacher training"
        if resume is not None:
            raise RdistError(f"{resume} is a run of {cls.name}, not a {what} run: use `{command} --resume {resume}`")
        raise RdistError(f"{cls.name} is not a {what} method: use `{command} --method {cls.name}` "
                         f"(methods here: {', '.join(list_methods(kind))})")


def create_method(name: str, **values: Any) -> Method:
    """Build method `name` (e.g. "rslad", "rslad+igdm"); unset (None) hyper-parameters keep the paper's values.

    The attack settings (eps, step_size, attack_steps) go to the method (to the base of a composition), a term's
    hyper-parameters (igdm_*) to the term.
    """
    cls = method_class(name)
    values = {k: v for k, v in values.items() if v is not None}
    extra = sorted(set(values) - set(cls.defaults()) - set(ATTACK_FIELDS))
    terms = [term for term, term_cls in TERMS.items()
             if set(extra) & set(term_cls.defaults()) and isinstance(cls, type) and term_cls.accepts(cls)]
    if terms:
        raise RdistError(f"{extra} only apply to +{terms[0]} methods; use --method {cls.name}+{terms[0]}")
    if extra:
        raise RdistError(f"method {cls.name} has no hyper-parameter(s) {extra}; "
                         f"it takes {sorted(cls.defaults()) or 'none'}")
    return cls(**values)
