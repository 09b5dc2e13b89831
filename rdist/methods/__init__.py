"""Training methods: each an inner attack and an outer loss, one file per method."""

from rdist.methods.base import NATURAL, ROBUST, About, Step, Method, Recipe
from rdist.methods.losses import kl_batchmean, kl_per_sample
from rdist.methods.registry import (ALIASES, METHODS, canonical_method, check_kind, create_method, describe,
                                    list_aliases, list_methods, method_class, paper_preset, paper_teachers)

__all__ = ["ALIASES", "METHODS", "NATURAL", "ROBUST", "About", "Step", "Method", "Recipe", "canonical_method",
           "check_kind", "create_method", "describe", "kl_batchmean", "kl_per_sample", "list_aliases",
           "list_methods", "method_class", "paper_preset", "paper_teachers"]
