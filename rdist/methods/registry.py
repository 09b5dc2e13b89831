"""Method names to classes. Adding a method: one file in rdist/methods and one line here."""

from __future__ import annotations

from typing import Any

from rdist.errors import RdistError
from rdist.methods.adaad import AdaAD
from rdist.methods.akd2 import AKD2
from rdist.methods.ard import ARD
from rdist.methods.base import ATTACK_FIELDS, ROBUST, About, Method, Recipe
from rdist.methods.iad_i import IADI
from rdist.methods.iad_ii import IADII
from rdist.methods.igdm import IGDM
from rdist.methods.kd import KD
from rdist.methods.mart import MART
from rdist.methods.natural import Natural
from rdist.methods.rslad import RSLAD
from rdist.methods.sat import SAT
from rdist.methods.trades import TRADES
from rdist.utils import unknown

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    Natural, SAT, TRADES, MART,  # teacher training
    KD, ARD, AKD2, IADI, IADII, RSLAD, AdaAD,  # distillation
)}
IGDM_SUFFIX = "+igdm"
IGDM_HPARAMS = tuple(IGDM.hyperparameters())
# Names as the papers say them: the IAD paper's method is IAD-I (IAD-II stays explicit), and the IGDM
# authors recommend IGDM on AdaAD (their `adaad_IGDM` script). Runs and artifacts record the canonical name.
ALIASES = {"iad": "iad-i", "igdm": "adaad" + IGDM_SUFFIX}


def canonical_method(name: str) -> str:
    """The registered name `name` stands for: itself, or what its alias means."""
    return ALIASES.get(name, name)


def list_methods(kind: str | None = None) -> list[str]:
    """Method names, optionally only those of `kind` ("teacher" or "distill"), with the +igdm compositions."""
    names = [n for n, cls in METHODS.items() if kind is None or cls.kind == kind]
    return names + [f"{n}{IGDM_SUFFIX}" for n in names if METHODS[n].supports_igdm]


def list_aliases(kind: str | None = None) -> list[str]:
    """'iad = iad-i', ...: the aliases of methods of `kind`."""
    return [f"{alias} = {name}" for alias, name in ALIASES.items() if kind is None or method_class(name).kind == kind]


def method_class(name: str) -> type[Method]:
    base = canonical_method(name).removesuffix(IGDM_SUFFIX)
    if base not in METHODS:
        raise unknown("method", name, [*list_methods(), *ALIASES])
    return METHODS[base]


def paper_preset(name: str, dataset: str, arch: str) -> tuple[Recipe, dict[str, Any]]:
    """The recipe and hyper-parameter values of method `name`'s paper for training `arch` on `dataset` (a +igdm
    method's: the IGDM code's for that base)."""
    cls = method_class(name)
    if canonical_method(name).endswith(IGDM_SUFFIX):
        return IGDM.paper_preset_over(cls, dataset, arch)
    return cls.paper_preset(dataset, arch)


def check_kind(name: str, kind: str, resume: str | None = None) -> None:
    """Refuse method `name` where a method of `kind` ("teacher", "distill") is wanted, pointing to the command that
    trains it (`resume`: the run directory being continued); unknown names get suggestions."""
    base = canonical_method(name).removesuffix(IGDM_SUFFIX)
    if base not in METHODS:
        raise unknown("method", name, [*list_methods(kind), *ALIASES])
    if METHODS[base].kind != kind:
        command = "rdist teacher train" if METHODS[base].kind == "teacher" else "rdist distill"
        what = "distillation" if kind == "distill" else "teacher training"
        if resume is not None:
            raise RdistError(f"{resume} is a run of {base}, not a {what} run: use `{command} --resume {resume}`")
        raise RdistError(f"{base} is not a {what} method: use `{command} --method {base}` "
                         f"(methods here: {', '.join(list_methods(kind))})")


def paper_teachers(name: str) -> dict[str, dict[str, str]]:
    """The RobustBench teachers that method `name`'s paper distils from: role -> dataset -> name; a +igdm
    composition takes IGDM's robust teacher, as the IGDM code does for every base."""
    cls = method_class(name)
    if canonical_method(name).endswith(IGDM_SUFFIX):
        return {**cls.paper_teachers, ROBUST: IGDM.paper_teachers[ROBUST]}
    return cls.paper_teachers


def describe(name: str) -> About | None:
    """What method `name` is, for `rdist distill --list`; a +igdm composition is its base with IGDM's term."""
    cls = method_class(name)
    if cls.about is None or not canonical_method(name).endswith(IGDM_SUFFIX):
        return cls.about
    return About(f"{IGDM.about.paper} on {cls.name}", cls.about.attack, f"{cls.about.loss} + IGDM term")


def create_method(name: str, **hparams) -> Method:
    """Build method `name` (e.g. "rslad", "rslad+igdm"); unset (None) hyper-parameters keep the paper's values.

    Shared attack settings (eps, step_size, steps) go to the base method; igdm_* to the IGDM term (igdm_code_ard:
    the IGDM code's own ARD, which `--recipe paper` of ard+igdm sets).
    """
    cls, name = method_class(name), canonical_method(name)
    hparams = {k: v for k, v in hparams.items() if v is not None}
    igdm = {k: hparams.pop(k) for k in IGDM_HPARAMS if k in hparams}
    if igdm and not name.endswith(IGDM_SUFFIX):
        raise RdistError(f"{sorted(igdm)} only apply to +igdm methods; use --method {name}{IGDM_SUFFIX}")
    unknown_names = sorted(set(hparams) - set(cls.hyperparameters()) - set(ATTACK_FIELDS))
    if unknown_names:
        raise RdistError(f"method {cls.name} has no hyper-parameter(s) {unknown_names}; "
                         f"it takes {sorted(cls.hyperparameters()) or 'none'}")
    if not name.endswith(IGDM_SUFFIX):
        return cls(**hparams)
    if not cls.supports_igdm:
        raise RdistError(f"+igdm does not work on {cls.name}; it composes with "
                         f"{', '.join(n for n, c in METHODS.items() if c.supports_igdm)}")
    return IGDM(cls(**hparams), **igdm)
