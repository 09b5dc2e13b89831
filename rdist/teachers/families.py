"""Which rdist architecture holds a RobustBench model exactly, read from the module RobustBench builds for it.

`describe(module)` looks at the class of the module and at its layers (depths, widths, block kinds,
activation, classifier, input normalisation) and names the rdist architecture with the same keys and the
same forward, or raises `Unbuildable` with the reason. It reads structure only, so it works on a module
built on the meta device (see `rdist.teachers.leaderboard`): a WRN-94-16 costs no memory.

Classes are recognised by their qualified name, never by their short name alone: RobustBench has two
`PreActResNet`s and two `DMWideResNet`s, and only one of each is the architecture rdist implements.
A subclass that normalises its input is accepted only if it is listed below, after reading its code:
its forward must be the base forward of `(x - mean) / std`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from rdist.models.wide_resnet import drop_unused_keys

_ZOO = "robustbench.model_zoo"
_ARCH = f"{_ZOO}.architectures"
WIDE_RESNET = f"{_ARCH}.wide_resnet.WideResNet"
DM_WIDE_RESNET = f"{_ARCH}.dm_wide_resnet.DMWideResNet"
DM_PREACT_RESNET = f"{_ARCH}.dm_wide_resnet.DMPreActResNet"
RESNET = f"{_ARCH}.resnet.ResNet"
PREACT_RESNET = f"{_ARCH}.resnet.PreActResNet"

# Subclasses whose only change is `forward(x) = base.forward((x - mu) / sigma)` with buffers `mu`, `sigma`
# (robustbench 1.1.1, read). `None`: the statistics are the module's buffers; a pair: constants of the code.
_NORMALISING: dict[str, tuple[str, tuple[float, float] | None]] = {
    f"{_ZOO}.cifar10.Rice2020OverfittingNet": (WIDE_RESNET, None),
    f"{_ZOO}.cifar10.Chen2020EfficientNet": (WIDE_RESNET, None),
    # Its forward is `2x - 1`, which is (x - 0.5) / 0.5.
    f"{_ZOO}.cifar10.Hendrycks2019UsingNet": (WIDE_RESNET, (0.5, 0.5)),
    f"{_ZOO}.cifar10.Engstrom2019RobustnessNet": (RESNET, None),
    f"{_ZOO}.cifar10.Wong2020FastNet": (PREACT_RESNET, None),
    f"{_ZOO}.cifar100.Chen2020EfficientNet": (WIDE_RESNET, None),
    f"{_ZOO}.cifar100.Wu2020AdversarialNet": (WIDE_RESNET, None),
    f"{_ZOO}.cifar100.Hendrycks2019UsingNet": (WIDE_RESNET, (0.5, 0.5)),
    f"{_ZOO}.cifar100.Rice2020OverfittingNet": (PREACT_RESNET, None),
}

# Why the classes (or builder functions) rdist meets in the zoo and does not implement cannot be built; any
# other class gets a generic reason naming it.
REASONS = {
    f"{_ZOO}.cifar10.Ding2020MMANet": "normalises each image by its own mean and standard deviation (MMA)",
    f"{_ARCH}.boosting_wide_resnet.BoostingWideResNet":
        "a cosine classifier: L2-normalised features and classifier weights (HE), not a plain WideResNet",
    f"{_ARCH}.resnest.ResNest": "ResNeSt-152 (split-attention blocks): not an rdist architecture",
    f"{_ARCH}.robust_wide_resnet.RobustWideResNet":
        "RobustWideResNet (per-stage depths and widths of Huang et al. 2021): not an rdist architecture",
    f"{_ARCH}.paf_wide_resnet.PAF_WideResNet": "WideResNet with learnable parametric activations (PSSiLU)",
    f"{_ARCH}.robust_resnet.PreActResNet":
        "RobustResNet (Huang et al. 2022: its own block design), not the PreActResNet rdist implements",
    f"{_ARCH}.robustarch_wide_resnet.NormalizedWideResNet":
        "RobustArch WideResNet (squeeze-and-excitation blocks): not an rdist architecture",
    f"{_ARCH}.Meansparse_ra_wrn_70_16.NormalizedWideResNet":
        "RobustArch WideResNet with MeanSparse layers: not an rdist architecture",
    f"{_ARCH}.Meansparse_wrn_94_16.MeanSparse_DMWideResNet":
        "DeepMind WideResNet with MeanSparse layers (a post-training sparsification) rdist does not have",
    f"{_ARCH}.Meansparse_wrn_70_16.DMWideResNet":
        "DeepMind WideResNet with MeanSparse layers (a post-training sparsification) rdist does not have",
    f"{_ARCH}.sodef_layers.rebuffi_sodef":
        "a WideResNet-70-16 followed by a neural ODE block (SODEF, geotorch layers): not an rdist architecture",
}

# RobustBench's DeepMind models use its own `Swish` or nn.SiLU: the same function, x * sigmoid(x).
_SILU = {f"{_ARCH}.dm_wide_resnet.Swish", "torch.nn.modules.activation.SiLU"}


# The factories that allocate a module's parameters and buffers: under `_MetaParameters` they allocate on the
# meta device. torch.tensor(data) is not among them, so the few constants a constructor writes (the input
# mean and std) keep their values and can be read.
_ALLOCATORS = (torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
               torch.empty_strided, torch.eye)
# In-place initialisers: on a meta tensor they have nothing to write, and torch's meta path for the random
# ones is a slow Python decomposition (a millisecond per call, thousands of calls per zoo scan).
_INITIALISERS = (torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.fill_, torch.Tensor.zero_)


class _MetaParameters(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _INITIALISERS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        if func in _ALLOCATORS and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def build_on_meta(builder: Callable[[], nn.Module]) -> nn.Module:
    """The module `builder` returns, its weights on the meta device (no memory, no values), its constants
    (torch.tensor(data)) real."""
    with _MetaParameters():
        return builder()


class Unbuildable(Exception):
    """The module is not one rdist can hold exactly; the message says why."""


@dataclass(frozen=True)
class Layout:
    arch: str                                # rdist architecture name
    mean: tuple[float, ...] | None = None    # the input normalisation the module applies itself
    std: tuple[float, ...] | None = None


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(module: nn.Module) -> Layout:
    """The rdist architecture and normalisation that reproduce `module` exactly; `Unbuildable` otherwise."""
    name = qualified_name(type(module))
    base, stats = _NORMALISING.get(name, (name, None))
    family = _FAMILIES.get(base)
    if family is None:
        raise Unbuildable(REASONS.get(name) or f"architecture {type(module).__name__} ({type(module).__module__}) "
                          "is not one rdist implements")
    if _channels_in(module) != 3:
        raise Unbuildable(f"takes {_channels_in(module)} input channels, not 3")
    arch = family(module)
    if base in (DM_WIDE_RESNET, DM_PREACT_RESNET):
        if module.padding:
            raise Unbuildable(f"pads its input by {module.padding} pixels before the network")
        return Layout(arch, _stats(module.mean), _stats(module.std))
    if name == base:
        return Layout(arch)
    if stats is not None:
        return Layout(arch, (stats[0],) * 3, (stats[1],) * 3)
    return Layout(arch, _stats(module.mu), _stats(module.sigma))


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module`'s weights under the keys of its rdist architecture (see `describe`).

    The keys are the same by design; dropped are the TRADES-style `sub_block1` (never called by the forward)
    and a subclass's `mu`/`sigma`, which rdist keeps in `NormalizedModel` instead.
    """
    return {k: v for k, v in drop_unused_keys(module.state_dict()).items() if k not in ("mu", "sigma")}


def _stats(values: torch.Tensor) -> tuple[float, ...]:
    """Per-channel statistics as the shortest decimals that give the same float32 (0.4914, not 0.49140000343)."""
    return tuple(float(np.format_float_positional(np.float32(v), unique=True))
                 for v in values.detach().cpu().flatten().tolist())


def _channels_in(module: nn.Module) -> int:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d)).in_channels


def _wide_resnet(module: nn.Module) -> str:
    blocks = [block for group in (module.block1, module.block2, module.block3) for block in group.layer]
    if module.fc.bias is None:
        raise Unbuildable("its classifier has no bias (bias_last=False)")
    if any(block.droprate for block in blocks):
        raise Unbuildable("uses dropout inside its blocks")
    depth = 6 * len(module.block1.layer) + 4
    return f"wrn-{depth}-{module.block1.layer[0].conv1.out_channels // 16}"


def _check_silu(module: nn.Module) -> None:
    activation = qualified_name(type(module.relu))
    if activation not in _SILU:
        raise Unbuildable(f"activation {type(module.relu).__name__}: rdist's DeepMind models use SiLU (Swish)")


def _dm_wide_resnet(module: nn.Module) -> str:
    _check_silu(module)
    first = module.layer[0].block[0]
    return f"dm-wrn-{6 * len(module.layer[0].block) + 4}-{first.conv_0.out_channels // 16}"


def _dm_preact_resnet(module: nn.Module) -> str:
    _check_silu(module)
    blocks = tuple(len(getattr(module, f"layer_{i}")) for i in range(4))
    depth = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34}.get(blocks)
    if depth is None:
        raise Unbuildable(f"DMPreActResNet with {blocks} blocks per stage: rdist has depths 18 and 34")
    return f"dm-preactresnet{depth}"


def _resnet(module: nn.Module) -> str:
    blocks = tuple(len(getattr(module, f"layer{i}")) for i in range(1, 5))
    kind = qualified_name(type(module.layer1[0])).rsplit(".", 1)[-1]
    arch = {("BasicBlock", (2, 2, 2, 2)): "resnet18", ("BasicBlock", (3, 4, 6, 3)): "resnet34",
            ("Bottleneck", (3, 4, 6, 3)): "resnet50"}.get((kind, blocks))
    if arch is None or qualified_name(type(module.layer1[0])) != f"{_ARCH}.resnet.{kind}":
        raise Unbuildable(f"ResNet of {kind} x {blocks}: rdist has ResNet-18, -34 and -50")
    return arch


def _preact_resnet(module: nn.Module) -> str:
    blocks = [block for i in range(1, 5) for block in getattr(module, f"layer{i}")]
    kinds = {qualified_name(type(block)) for block in blocks}
    counts = tuple(len(getattr(module, f"layer{i}")) for i in range(1, 5))
    if counts != (2, 2, 2, 2) or not kinds <= {f"{_ARCH}.resnet.PreActBlock", f"{_ARCH}.resnet.PreActBlockV2"}:
        raise Unbuildable(f"PreActResNet of {', '.join(sorted(k.rsplit('.', 1)[-1] for k in kinds))} x {counts}: "
                          "rdist has PreActResNet-18")
    # PreActBlockV2 always projects the pre-activated input; PreActBlock only with out_shortcut.
    activated = {type(b).__name__ == "PreActBlockV2" or bool(getattr(b, "out_shortcut", False)) for b in blocks}
    variants = {(True, True): "preactresnet18", (False, False): "preactresnet18-wong"}
    arch = variants.get((*activated, bool(module.bn_before_fc))) if len(activated) == 1 else None
    if arch is None:
        raise Unbuildable("a PreActResNet-18 variant rdist does not have (shortcut input and final BN differ from "
                          "both preactresnet18 and preactresnet18-wong)")
    return arch


_FAMILIES = {WIDE_RESNET: _wide_resnet, DM_WIDE_RESNET: _dm_wide_resnet, DM_PREACT_RESNET: _dm_preact_resnet,
             RESNET: _resnet, PREACT_RESNET: _preact_resnet}
