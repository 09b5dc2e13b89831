"""Teacher roles: the kinds of frozen model a method distils from, and how the CLI and its messages name them.

A method lists the roles it needs (`Method.teachers`); a run loads one model per role and hands them over in
`step.teachers[role]`. Every distillation method has the robust teacher; AKD2 and IAD-II add a naturally trained
one. A method with a new kind of model (a peer network, a third teacher) declares its role next to its class:

    PEER = register_role(Role("peer", how_to_get="a model trained with ..."))

A role nobody declared still works, with the generic wording (`role("peer")`: "a peer teacher",
`--teacher peer=MODEL`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """One kind of frozen model, as messages and options name it; the empty fields take the generic wording."""

    name: str
    adjective: str = ""  # what kind of teacher: "robust", "naturally trained" [default: the name]
    noun: str = ""  # how messages name its model: "teacher", "natural teacher" [default: "<name> teacher"]
    option: str = "--teacher"  # the CLI option that names its model
    keyed: bool = True  # whether the option takes ROLE=MODEL (`--teacher peer=MODEL`) rather than MODEL alone
    how_to_get: str = ""  # where such a model comes from, for the error that asks for one; {data}: the dataset
    field: str = ""  # the key of its model in an artifact's provenance [default: <name>_teacher]
    # Whether a method's default model for the role is its paper's own (the robust teacher), rather than the
    # closest model of that kind that RobustBench holds (the natural teacher): it words the missing-model hint.
    papers_own: bool = True

    def __post_init__(self) -> None:
        defaults = {"adjective": self.name, "noun": f"{self.name} teacher", "field": f"{self.name}_teacher"}
        for key, value in defaults.items():
            if not getattr(self, key):
                object.__setattr__(self, key, value)

    def given(self, model: str) -> tuple[str, str]:
        """The option and its value that name `model` as this role's: ("--teacher", "peer=MODEL")."""
        return self.option, f"{self.name}={model}" if self.keyed else model

    @property
    def usage(self) -> str:
        """'--teacher peer=MODEL', '--natural-teacher MODEL': how a user names this role's model."""
        return " ".join(self.given("MODEL"))

    @property
    def wanted(self) -> str:
        """'a robust teacher': what a method that lacks this role's model needs."""
        article = "an" if self.adjective[0] in "aeiou" else "a"
        return f"{article} {self.adjective} teacher"


ROLES: dict[str, Role] = {}


def register_role(role: Role) -> str:
    """Declare `role` (its wording in messages and options); returns its name, the key of `step.teachers`."""
    if role.name in ROLES:
        raise ValueError(f"teacher role '{role.name}' is declared twice")
    ROLES[role.name] = role
    return role.name


def role(name: str) -> Role:
    """The role `name` as declared, or the generic wording of a role no method declared."""
    return ROLES.get(name) or Role(name)


ROBUST = register_role(Role(
    "robust", noun="teacher", keyed=False, field="teacher",
    how_to_get="an .safetensors artifact from `rdist teacher train`, `rdist teacher pull` or `rdist teacher import`, "
               "or a RobustBench name: `rdist teacher list`"))
NATURAL = register_role(Role(
    "natural", adjective="naturally trained", option="--natural-teacher", keyed=False, papers_own=False,
    how_to_get="train one with `rdist teacher train --method natural --data {data}`"))
