"""--sync-bn: BatchNorm statistics of the global batch under torchrun, on GPUs (torch's SyncBatchNorm) and on CPU
processes (`CpuSyncBatchNorm`: torch's refuses CPU tensors, and DDP refuses it in a CPU module)."""

from __future__ import annotations

import torch
from torch import nn

from rdist.parallel import distributed, sum_over_ranks


def sync_bn_note(world_size: int) -> str | None:
    """What to tell a user who asked for --sync-bn, or None when it takes effect."""
    if world_size > 1:
        return None
    return ("--sync-bn has no effect in a single process: it synchronises BatchNorm statistics across the "
            "processes torchrun starts (torchrun --nproc-per-node N -m rdist ...)")


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with BatchNorm layers that normalise with the global batch's statistics."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return convert_batchnorm(model, CpuSyncBatchNorm)


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """SyncBatchNorm for CPU processes (gloo).

    In training mode under torch.distributed: the mean, then the variance of the centred inputs (two passes, as
    accurate as one process's BN), summed over all ranks with autograd-aware all_reduce, so that the backward
    pass carries every rank's gradient terms; running statistics updated as BatchNorm does (unbiased variance).
    Otherwise it is plain BatchNorm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = sum_over_ranks(torch.tensor(float(x.numel() // x.shape[1]), dtype=torch.float64)).item()
        mean = sum_over_ranks(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = sum_over_ranks(centred.square().sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * (count / (count - 1)), factor)
        return out


def convert_batchnorm(module: nn.Module, cls: type[nn.modules.batchnorm._BatchNorm]) -> nn.Module:
    """`module` with every BatchNorm layer replaced by `cls`, sharing its parameters and buffers (so the
    optimiser, checkpoints and artifacts see the same tensors under the same names)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, cls)):
        converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child, cls))
    return module
