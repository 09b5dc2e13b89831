"""Attack names of the evaluation protocol, the suites built from them, and how to build each."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from rdist.attacks.autoattack import AA_COMPONENTS, AutoAttack, Square
from rdist.attacks.base import Attack, check_norm
from rdist.attacks.cw import CW
from rdist.attacks.pgd import FGSM, PGD
from rdist.attacks.transfer import Transfer
from rdist.device import model_device
from rdist.errors import RdistError
from rdist.utils import unknown


def _aa(version: str):
    return lambda model, eps, seed, on_stage, generator, norm: AutoAttack(
        model, eps, version=version, seed=seed, on_stage=on_stage, name=f"aa-{version}", norm=norm)


def _step(norm: str, eps: float) -> float:
    """pgd20's and cw's step: 2/255 in L-inf (the protocol's, whatever eps), eps/4 in L2 (2/255 is a quarter
    of L-inf's 8/255)."""
    return 2 / 255 if norm == "Linf" else eps / 4


# Each builder takes (model, eps, seed, on_stage, generator, norm) and returns an Attack.
_WHITE_BOX: dict[str, Callable[..., Attack]] = {
    "fgsm": lambda model, eps, seed, on_stage, generator, norm: FGSM(model, eps, generator=generator, norm=norm),
    "pgd20": lambda model, eps, seed, on_stage, generator, norm: PGD(model, eps, step_size=_step(norm, eps),
                                                                     generator=generator, norm=norm),
    "pgd20-trades": lambda model, eps, seed, on_stage, generator, norm: PGD(model, eps, step_size=0.003,
                                                                            generator=generator, norm=norm),
    "cw": lambda model, eps, seed, on_stage, generator, norm: CW(model, eps, step_size=_step(norm, eps),
                                                                 generator=generator, norm=norm),
    "aa": lambda model, eps, seed, on_stage, generator, norm: AutoAttack(model, eps, seed=seed, on_stage=on_stage,
                                                                         norm=norm),
    "aa-plus": _aa("plus"),
    "aa-rand": _aa("rand"),
    "square": lambda model, eps, seed, on_stage, generator, norm: Square(model, eps, seed=seed, on_stage=on_stage,
                                                                         norm=norm),
}
LINF_ONLY = {"pgd20-trades": "the TRADES papers' L-inf protocol (steps of 0.003)"}
# Not an attack: accuracy on the common corruptions of the test images (CIFAR-10-C, CIFAR-100-C), which the
# evaluator reads from `rdist.data.corruptions`; outside the worst case, which is over the eps-ball.
CORRUPTIONS = "corruptions"
TRANSFERABLE = ("pgd20", "cw")

ATTACK_HELP = {
    "clean": "accuracy on unperturbed inputs",
    "fgsm": "one step of size eps on cross-entropy, no random start",
    "pgd20": "20 steps of 2/255 on cross-entropy, uniform random start (Madry)",
    "pgd20-trades": "20 steps of 0.003 on cross-entropy, uniform random start (TRADES protocol)",
    "cw": "30 steps of 2/255 on the CW margin loss (kappa 50), uniform start",
    "aa": "AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square (pyautoattack)",
    "aa-plus": "AutoAttack plus: all six components with restarts",
    "aa-rand": "AutoAttack rand: APGD-CE and APGD-DLR with EOT, for randomised defences",
    "aa:C1+C2": f"AutoAttack with a custom subset of {', '.join(AA_COMPONENTS)}",
    "square": "Square attack, 5000 queries, black-box",
    "transfer-pgd20": "pgd20 examples crafted on --surrogate, evaluated on the model",
    "transfer-cw": "cw examples crafted on --surrogate, evaluated on the model",
    "transfer": "both transfer-pgd20 and transfer-cw",
    "corruptions": "common corruptions (CIFAR-10-C, CIFAR-100-C): 15 corruptions x 5 severities, their mean "
                   "accuracy as RobustBench; not in the worst case",
}

SUITES: dict[str, list[str]] = {
    "quick": ["clean", "fgsm", "pgd20"],
    "standard": ["clean", "fgsm", "pgd20", "cw", "aa"],
    "autoattack": ["clean", "aa"],
    "papers": ["clean", "fgsm", "pgd20", "pgd20-trades", "cw", "aa"],
    "full": ["clean", "fgsm", "pgd20", "pgd20-trades", "cw", "aa", "square"],
}


def attack_names() -> list[str]:
    return ["clean", *_WHITE_BOX, *(f"transfer-{a}" for a in TRANSFERABLE), "transfer", CORRUPTIONS]


def resolve_attacks(suite: str | None = None, attacks: str | list[str] | None = None) -> list[str]:
    """The attack names to run: an explicit list wins over a suite; `transfer` expands; `clean` comes first."""
    if attacks:
        names = [a.strip() for a in attacks.split(",")] if isinstance(attacks, str) else list(attacks)
    else:
        suite = suite or "standard"
        if suite not in SUITES:
            raise unknown("suite", suite, SUITES)
        names = list(SUITES[suite])
    expanded: list[str] = []
    for name in names:
        parts = [f"transfer-{a}" for a in TRANSFERABLE] if name == "transfer" else [name]
        for part in parts:
            _validate(part)
            if part not in expanded:
                expanded.append(part)
    if not expanded:
        raise RdistError("no attack given: use --attacks clean,pgd20 or --suite standard")
    if CORRUPTIONS in expanded and "clean" not in expanded:
        expanded.append("clean")  # the accuracy corruptions lower, beside them as RobustBench shows it
    return sorted(expanded, key=lambda n: n != "clean")


def _validate(name: str) -> None:
    if name.startswith("aa:"):
        parts = name[3:].split("+")
        bad = [p for p in parts if p not in AA_COMPONENTS]
        if bad or not name[3:]:
            raise RdistError(f"unknown AutoAttack component(s) {bad or [name[3:]]} in '{name}'; "
                             f"choose from {', '.join(AA_COMPONENTS)} joined by '+', e.g. aa:apgd-ce+apgd-t")
    elif name != "clean" and name not in attack_names():
        raise unknown("attack", name, attack_names())


def check_norm_support(names: list[str], norm: str) -> None:
    """Refuse, in one line, the attacks that exist in L-inf only when `norm` is another."""
    check_norm(norm)
    refused = [n for n in names if norm != "Linf" and n.removeprefix("transfer-") in LINF_ONLY]
    if refused:
        why = "; ".join(f"{n} is {LINF_ONLY[n.removeprefix('transfer-')]}" for n in refused)
        raise RdistError(f"{why}: with --norm {norm} use pgd20, cw, aa or square instead")


def create_attack(name: str, model: nn.Module, eps: float, *, seed: int = 0, surrogate: nn.Module | None = None,
                  on_stage: Callable[[str], None] | None = None, norm: str = "Linf") -> Attack:
    """Build attack `name` against `model` in `norm` ("Linf" or "L2"); transfer attacks are crafted on
    `surrogate`."""
    _validate(name)
    check_norm_support([name], norm)
    generator = torch.Generator(device=model_device(model)).manual_seed(seed)
    if name.startswith("aa:"):
        return AutoAttack(model, eps, components=name[3:].split("+"), seed=seed, on_stage=on_stage, name=name,
                          norm=norm)
    if name.startswith("transfer-"):
        if surrogate is None:
            raise RdistError(f"attack '{name}' crafts examples on a surrogate model: pass --surrogate MODEL")
        source = _WHITE_BOX[name.removeprefix("transfer-")](surrogate, eps, seed, on_stage, generator, norm)
        return Transfer(model, eps, source, name=name)
    if name not in _WHITE_BOX:
        raise (RdistError(f"'{name}' is not an attack the evaluator builds: it measures accuracy on corrupted "
                          "test images (rdist.attacks.evaluate runs it)") if name == CORRUPTIONS
               else unknown("attack", name, attack_names()))
    attack = _WHITE_BOX[name](model, eps, seed, on_stage, generator, norm)
    attack.name = name
    return attack
