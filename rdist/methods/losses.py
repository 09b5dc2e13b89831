"""The one KL helper. Every loss in rdist is written in KLbm units (summed over classes, averaged over
the batch); methods scale it explicitly with `kl_scale` instead of hiding a scale in a reduction."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_per_sample(target_logits: torch.Tensor, input_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """KL(p(target/tau) || p(input/tau)) for each example, summed over classes; shape (B,).

    The target comes first, as in the spec's notation. Computed in fp32 whatever the autocast dtype.
    """
    target_log_p = F.log_softmax(target_logits.float() / tau, dim=1)
    input_log_p = F.log_softmax(input_logits.float() / tau, dim=1)
    return (target_log_p.exp() * (target_log_p - input_log_p)).sum(1)


def kl_batchmean(target_logits: torch.Tensor, input_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """KLbm: `kl_per_sample` averaged over the batch (PyTorch's reduction='batchmean')."""
    return kl_per_sample(target_logits, input_logits, tau).mean()
