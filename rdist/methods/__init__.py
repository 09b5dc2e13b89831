"""Training methods: each an inner attack and an outer loss, one file per method."""

from rdist.methods.base import Batch, Method, Recipe
from rdist.methods.losses import kl_bm, kl_per_sample
from rdist.methods.registry import METHODS, create_method, list_methods, method_class, paper_preset

__all__ = ["METHODS", "Batch", "Method", "Recipe", "create_method", "kl_bm", "kl_per_sample", "list_methods",
           "method_class", "paper_preset"]
