"""rdist's `dm-wrn-D-W` computes what RobustBench's DMWideResNet computes, with either of its activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rdist.models import create_model
from rdist.teachers.catalogue import CIFAR100_MEAN, CIFAR100_STD
from rdist.teachers.robustbench import import_robustbench
from tests.helpers import randomise_batchnorm


@pytest.mark.parametrize("activation", ["SiLU", "Swish"])
def test_dm_wide_resnet_matches_robustbench(activation):
    import_robustbench()
    from robustbench.model_zoo.architectures.dm_wide_resnet import DMWideResNet, Swish

    torch.manual_seed(0)
    reference = DMWideResNet(num_classes=100, depth=10, width=2, activation_fn=nn.SiLU if activation == "SiLU"
                             else Swish, mean=CIFAR100_MEAN, std=CIFAR100_STD).eval()
    randomise_batchnorm(reference)
    model = create_model("dm-wrn-10-2", num_classes=100, mean=CIFAR100_MEAN, std=CIFAR100_STD).eval()
    model.model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    assert expected.std() > 1e-3, "outputs of substance, not a constant"
