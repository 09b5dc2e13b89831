"""Architecture names -> builders.

Exact names come from `register_model`; parametric families such as `wrn-D-W` come from
`register_pattern`, whose builder receives the integers captured by the pattern. Every builder
takes `num_classes` and `in_channels` so that one call site serves CIFAR, CIFAR-100 and the
one-channel digits.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from torch import nn

from rdist.errors import RdistError
from rdist.models.normalize import NormalizedModel
from rdist.utils import unknown

Builder = Callable[..., nn.Module]

_MODELS: dict[str, Builder] = {}
# (compiled pattern, builder, example name shown by list_models)
_PATTERNS: list[tuple[re.Pattern[str], Builder, str]] = []


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register `fn(num_classes, in_channels) -> nn.Module` under the exact `name`."""

    def decorator(fn: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"architecture '{name}' is registered twice")
        _MODELS[name] = fn
        return fn

    return decorator


def register_pattern(pattern: str, example: str) -> Callable[[Builder], Builder]:
    """Decorator: register `fn(*ints, num_classes, in_channels)` for every name matching `pattern`.

    The pattern's groups must be digit runs; they reach the builder as ints, in order.
    `example` is the name `list_models` shows for the family, since the family itself is unbounded.
    """

    def decorator(fn: Builder) -> Builder:
        _PATTERNS.append((re.compile(pattern), fn, example))
        return fn

    return decorator


def list_models() -> list[str]:
    """Every exact name plus one example per pattern family (e.g. 'wrn-34-10' for wrn-D-W)."""
    return sorted(set(_MODELS) | {example for _, _, example in _PATTERNS})


def known_architecture(name: str) -> bool:
    """Whether `name` is a registered architecture or matches a registered family."""
    return name in _MODELS or any(pattern.fullmatch(name) for pattern, _, _ in _PATTERNS)


def _builder(name: str) -> Builder:
    if name in _MODELS:
        return _MODELS[name]
    for pattern, fn, _ in _PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            args = [int(g) for g in match.groups()]
            return lambda **kwargs: fn(*args, **kwargs)
    raise unknown("architecture", name, list_models())


def _channel_stats(label: str, values: Sequence[float], in_channels: int) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != in_channels:
        raise RdistError(f"{label} has {len(values)} values but the model has {in_channels} input channels; "
                         f"give one value per channel")
    return values


def create_model(name: str, num_classes: int = 10, in_channels: int = 3,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> nn.Module:
    """Build architecture `name`; with `mean`/`std` the model normalises its [0,1] input itself.

    The returned module carries `rdist_arch`, the JSON-able arguments of this call, so that an
    artifact can rebuild the same module from its metadata alone.
    """
    builder = _builder(name)
    if num_classes < 1 or in_channels < 1:
        raise RdistError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}")
    if (mean is None) != (std is None):
        raise RdistError("give both mean and std for input normalisation, or neither")
    model = builder(num_classes=num_classes, in_channels=in_channels)
    if mean is not None:
        mean = _channel_stats("mean", mean, in_channels)
        std = _channel_stats("std", std, in_channels)
        if any(s <= 0 for s in std):
            raise RdistError(f"std must be positive in every channel, got {std}")
        model = NormalizedModel(model, mean, std)
    model.rdist_arch = {"name": name, "num_classes": int(num_classes), "in_channels": int(in_channels),
                        "mean": mean, "std": std}
    return model
