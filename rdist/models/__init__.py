"""Architectures by name: `create_model("resnet18")`, `create_model("wrn-34-10", num_classes=100)`.

Importing a family module registers its names, so every family is imported here.
"""

from rdist.models import (dm_preact_resnet, dm_wide_resnet, mobilenetv2, preact_resnet, resnet, small,  # noqa: F401
                          wide_resnet)  # (imported to register their names)
from rdist.models.counting import arch_macs, count_macs, count_parameters
from rdist.models.normalize import NormalizedModel
from rdist.models.registry import create_model, known_architecture, list_models, register_model, register_pattern

__all__ = ["NormalizedModel", "arch_macs", "count_macs", "count_parameters", "create_model", "known_architecture",
           "list_models", "register_model", "register_pattern"]
