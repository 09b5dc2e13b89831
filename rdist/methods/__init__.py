"""Training methods: each an inner attack and an outer loss, one file per method; terms added to them (`base+term`).

The package's API is what the engine and the CLI use, and what a new method or term is written against. Importing
a method's module registers it, so every method and term module is imported here, in the order lists show them.
"""

from rdist.methods import natural, sat, trades, mart  # noqa: F401 (registration: teacher training)
from rdist.methods import kd, ard, akd2, iad_i, iad_ii, rslad, adaad  # noqa: F401 (registration: distillation)
from rdist.methods import dgad, saad  # noqa: F401 (registration: distillation)
from rdist.methods import bmtard  # noqa: F401 (registration: distillation, B-MTARD and MTARD)
from rdist.methods import peeraid  # noqa: F401 (registration: distillation without a teacher)
from rdist.methods import igdm  # noqa: F401 (registration: terms)
from rdist.methods.base import About, Companion, Method, Recipe, Step
from rdist.methods.papers import Default, method_rows, missing_teacher_hint, paper_defaults, preset_notes
from rdist.methods.registry import (aliases, canonical_method, check_kind, create_method, list_aliases, list_methods,
                                    method_class, methods_taking, register_method, register_term)
from rdist.methods.roles import NATURAL, ROBUST, Role, register_role, role
from rdist.methods.term import Term

__all__ = ["NATURAL", "ROBUST", "About", "Companion", "Default", "Method", "Recipe", "Role", "Step", "Term", "aliases",
           "canonical_method", "check_kind", "create_method", "list_aliases", "list_methods", "method_class",
           "method_rows", "methods_taking", "missing_teacher_hint", "paper_defaults", "preset_notes",
           "register_method", "register_role", "register_term", "role"]
