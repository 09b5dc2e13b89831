"""A term added to another method's loss: `base+term` (rslad+igdm) is a method of its own, built from both.

A term is one file: a `Term` subclass registered with `@register_term`, which names itself (`term`), the methods
it composes with (`bases`), its own hyper-parameters (typed fields, as a method's) and its loss, usually the
base's plus its own. Everything else of the composition is its base's: the attack, the BN mode, the teachers, the
kind, the selection metric, the attack settings. Before a composition is built, `Term.over(base)` answers for it
what a method class answers (name, teachers, paper recipe, about, ...), so that the registry treats `rslad+igdm`
as it treats `rslad`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from rdist.errors import RdistError
from rdist.methods.base import (DEFAULT_ATTACK_STEPS, DEFAULT_EPS, DEFAULT_STEP_SIZE, About, Method, Recipe,
                                Step)

BASE = "base."  # the prefix of the base's state in a composition's


def _of_base(name: str) -> property:
    """What a composition answers as its base does (its kind, teachers, companions, ...)."""
    return property(lambda self: getattr(self.base, name), doc=f"the base's {name}")


class Term(Method):
    """`base` with this term added (`create_method("rslad+igdm")` is `IGDM(RSLAD())`)."""

    term: ClassVar[str]  # the name after the + ("igdm")
    bases: ClassVar[tuple[str, ...]]  # the methods it composes with, in the order messages list them
    default_base: ClassVar[str | None] = None  # the base its bare name stands for (`igdm` = adaad+igdm)
    term_recipe: ClassVar[Recipe | None] = None  # the recipe its paper trains base+term with; None: the base's

    base: Method = field(kw_only=False)
    # The composition attacks as its base: its attack settings are the base's, copied when it is built (given to
    # the base, never to the term).
    eps: float = field(init=False, default=DEFAULT_EPS)
    step_size: float = field(init=False, default=DEFAULT_STEP_SIZE)
    attack_steps: int = field(init=False, default=DEFAULT_ATTACK_STEPS)
    norm: str = field(init=False, default="Linf")

    def __post_init__(self) -> None:
        type(self).check_base(type(self.base), built=True)
        self.eps, self.step_size, self.attack_steps = self.base.eps, self.base.step_size, self.base.attack_steps
        self.norm = self.base.norm
        super().__post_init__()

    # What the composition is: its base's, but for the name and the recipe.
    @property
    def name(self) -> str:
        return f"{self.base.name}+{self.term}"

    kind = _of_base("kind")
    bn_mode = _of_base("bn_mode")
    select_metric = _of_base("select_metric")
    teachers = _of_base("teachers")
    companions = _of_base("companions")

    @property
    def recipe(self) -> Recipe:
        return self.term_recipe or self.base.recipe

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor | None:
        return self.base.perturb(student, step)

    # The state of both: the base's under "base.", the term's own (`initial_state`) under its names; the epoch sums
    # of both in one `step.sums`, where each reads its own names.
    def reset_state(self, classes: int, device: torch.device | str | None = None) -> None:
        self.base.reset_state(classes, device)
        super().reset_state(classes, device)

    def state_tensors(self) -> list[torch.Tensor]:
        return [*self.base.state_tensors(), *super().state_tensors()]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"{BASE}{k}": v for k, v in self.base.state_dict().items()}, **super().state_dict()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.base.load_state_dict({k[len(BASE):]: v for k, v in state.items() if k.startswith(BASE)})
        super().load_state_dict({k: v for k, v in state.items() if not k.startswith(BASE)})

    def new_sums(self, classes: int, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        base, own = self.base.new_sums(classes, device), super().new_sums(classes, device)
        if set(base) & set(own):
            raise RdistError(f"+{self.term} and {self.base.name} both name epoch sums {sorted(set(base) & set(own))}")
        return {**base, **own}

    def end_epoch(self, epoch: int, sums: dict[str, torch.Tensor]) -> None:
        self.base.end_epoch(epoch, sums)
        super().end_epoch(epoch, sums)

    def config(self) -> dict[str, Any]:
        return {**self.base.config(), "method": self.name, **self.values()}

    # What base+term is before it is built; a term whose paper changes more than the recipe overrides these.
    @classmethod
    def accepts(cls, base: type[Method]) -> bool:
        return base.name in cls.bases

    @classmethod
    def check_base(cls, base: type[Method], built: bool = False) -> None:
        """Refuse a base the term does not compose with (`built`: the composition is being built directly)."""
        if cls.accepts(base):
            return
        names = ", ".join(cls.bases)
        if built:
            raise RdistError(f"+{cls.term} works on {names}; not on {base.name} "
                             f"(use --method {' or '.join(f'{name}+{cls.term}' for name in cls.bases)})")
        raise RdistError(f"+{cls.term} does not work on {base.name}; it composes with {names}")

    @classmethod
    def over(cls, base: type[Method]) -> Composition:
        cls.check_base(base)
        return Composition(base, cls)

    @classmethod
    def paper_preset_over(cls, base: type[Method], dataset: str, arch: str) -> tuple[Recipe, dict[str, Any]]:
        """`--recipe paper` of base+term: the term paper's recipe (the base's if it has none) over the base's
        paper hyper-parameters for `dataset` and `arch`."""
        recipe, values = base.paper_preset(dataset, arch)
        return cls.term_recipe or recipe, values


@dataclass(frozen=True)
class Composition:
    """`base+term` as the registry sees it before it is built: the questions a method class answers, answered
    from the base and the term; calling it builds the method."""

    base: type[Method]
    term: type[Term]

    @property
    def name(self) -> str:
        return f"{self.base.name}+{self.term.term}"

    kind = _of_base("kind")
    teachers = _of_base("teachers")
    companions = _of_base("companions")

    @property
    def recipe(self) -> Recipe:
        return self.term.term_recipe or self.base.recipe

    @property
    def about(self) -> About | None:
        """The base's row with the term added; where it comes from is the term's paper."""
        base, term = self.base.about, self.term.about
        if base is None or term is None:
            return base
        return About(f"{term.paper} on {self.base.name}", base.attack, f"{base.loss} + {term.loss}", term.url,
                     term.code)

    @property
    def paper_teachers(self) -> dict[str, dict[str, str]]:
        """The base's, but for the roles whose teachers the term's paper names."""
        return {**self.base.paper_teachers, **self.term.paper_teachers}

    def paper_preset(self, dataset: str, arch: str) -> tuple[Recipe, dict[str, Any]]:
        return self.term.paper_preset_over(self.base, dataset, arch)

    def defaults(self) -> dict[str, Any]:
        return {**self.base.defaults(), **self.term.defaults()}

    def described(self) -> dict[str, str]:
        return {**self.base.described(), **self.term.described()}

    def __call__(self, **values: Any) -> Term:
        """The method with `values`: the term's hyper-parameters go to the term, the rest (attack included) to
        the base."""
        own = self.term.defaults()
        return self.term(self.base(**{k: v for k, v in values.items() if k not in own}),
                         **{k: v for k, v in values.items() if k in own})
