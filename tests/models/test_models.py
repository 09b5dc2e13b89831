"""rdist.models: registry, parameter counts of the paper architectures, checkpoint key compatibility."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rdist.errors import RdistError
from rdist.models import NormalizedModel, create_model, list_models
from rdist.models.wide_resnet import drop_unused_keys


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=None)
def built(name: str) -> nn.Module:
    """One eval-mode instance per name for the whole file: WRN-34-10 alone takes seconds to build."""
    torch.manual_seed(0)
    return create_model(name).eval()


# ---------------------------------------------------------------- registry


def test_list_models_has_every_family():
    names = list_models()
    assert names == sorted(names)
    for name in ("resnet18", "resnet34", "resnet50", "preactresnet18", "mobilenetv2", "smallcnn", "tinycnn",
                 "wrn-34-10"):
        assert name in names


def test_unknown_name_suggests_close_names():
    with pytest.raises(RdistError, match="unknown architecture 'resnet19'.*resnet18"):
        create_model("resnet19")
    with pytest.raises(RdistError, match="wrn-34-10"):
        create_model("wrn-34")


@pytest.mark.parametrize("name", ["wrn-33-10", "wrn-4-10"])
def test_bad_wrn_depth_explains_the_rule(name):
    with pytest.raises(RdistError, match=r"\(D-4\) must be divisible by 6"):
        create_model(name)


def test_wrn_pattern_builds_any_valid_depth_and_width():
    model = create_model("wrn-16-2", num_classes=7)
    assert len(model.block1.layer) == 2  # (16 - 4) / 6 blocks per group
    assert model.block3.layer[0].conv1.out_channels == 64 * 2
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_bad_normalisation_arguments():
    with pytest.raises(RdistError, match="both mean and std"):
        create_model("tinycnn", mean=[0.5, 0.5, 0.5])
    with pytest.raises(RdistError, match="3 input channels"):
        create_model("tinycnn", mean=[0.5], std=[0.2])
    with pytest.raises(RdistError, match="positive"):
        create_model("tinycnn", mean=[0.5] * 3, std=[0.2, 0.0, 0.2])


# ---------------------------------------------------------------- parameter counts (the papers' numbers)


@pytest.mark.parametrize("name, expected", [
    ("resnet18", 11_173_962),
    ("mobilenetv2", 2_296_922),
    ("wrn-34-10", 46_160_474),
])
def test_parameter_counts(name, expected):
    assert n_params(built(name)) == expected


def test_small_models_have_teacher_and_student_sizes():
    assert 100_000 <= n_params(create_model("smallcnn", in_channels=1)) <= 300_000
    assert 10_000 <= n_params(create_model("tinycnn", in_channels=1)) <= 50_000


# ---------------------------------------------------------------- forward shapes


@pytest.mark.parametrize("name", list_models())
def test_forward_cifar_shape(name):
    with torch.no_grad():
        out = built(name)(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


# The WRN families stand in through small members (wrn-16-2, dm-wrn-16-2), to keep the file fast.
SMALL_MEMBER = {"wrn-": "wrn-16-2", "dm-wrn-": "dm-wrn-16-2"}


@pytest.mark.parametrize("name", [next((small for prefix, small in SMALL_MEMBER.items() if n.startswith(prefix)), n)
                                  for n in list_models()])
def test_every_family_accepts_in_channels_and_num_classes(name):
    model = create_model(name, num_classes=7, in_channels=1)
    # 16x16 keeps the backward cheap; train mode plus a backward pass catches in-place ops that break autograd.
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet18", "preactresnet18", "mobilenetv2", "wrn-16-2"])
def test_students_take_tiny_imagenet_64x64_with_200_classes(name):
    # The CIFAR stems keep stride 1, so a 64x64 image reaches the head as a feature map twice as wide as at 32x32
    # (8x8 for resnet18, 16x16 for wrn): the global average pooling must adapt to it rather than assume the
    # reference's fixed window (avg_pool2d(4), avg_pool2d(8)).
    model = create_model(name, num_classes=200)
    out = model(torch.rand(2, 3, 64, 64))  # train mode, as training sees it
    assert out.shape == (2, 200)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["smallcnn", "tinycnn"])
def test_small_models_on_8x8_digits(name):
    model = create_model(name, num_classes=10, in_channels=1)
    out = model(torch.rand(4, 1, 8, 8))  # train mode: batch statistics must work at 8x8 too
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------- normalisation and rebuild metadata


def test_normalized_model_normalises():
    mean, std = [0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]
    torch.manual_seed(0)
    model = create_model("tinycnn", mean=mean, std=std).eval()
    assert isinstance(model, NormalizedModel)
    assert model.mean.shape == model.std.shape == (1, 3, 1, 1)
    assert {"mean", "std"} <= set(model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), model.model(manual), atol=1e-6)
        assert not torch.allclose(model(x), model.model(x), atol=1e-3)


def test_normalisation_gradient_reaches_pixels():
    model = create_model("tinycnn", mean=[0.5] * 3, std=[0.25] * 3).eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [
    {"name": "tinycnn"},
    {"name": "smallcnn", "num_classes": 100, "in_channels": 1, "mean": [0.5], "std": [0.25]},
    {"name": "wrn-16-2", "num_classes": 100, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]},
])
def test_rdist_arch_rebuilds_the_same_model(kwargs):
    model = create_model(**kwargs)
    arch = json.loads(json.dumps(model.rdist_arch))  # the artifact stores it as JSON
    assert arch == {"num_classes": 10, "in_channels": 3, "mean": None, "std": None, **kwargs}
    rebuilt = create_model(**arch)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert type(rebuilt) is type(model)


def test_bare_model_without_normalisation():
    model = create_model("resnet18")
    assert not isinstance(model, NormalizedModel)
    assert model.rdist_arch["mean"] is None


# ---------------------------------------------------------------- real checkpoints and reference code


def _pyautoattack_example(filename: str) -> Path:
    pyautoattack = pytest.importorskip("pyautoattack", reason="pyautoattack is not installed")
    path = Path(pyautoattack.__file__).parent / "examples" / filename
    if not path.is_file():
        pytest.skip(f"this pyautoattack install does not ship examples/{filename}")
    return path


def test_pyautoattack_resnet18_checkpoint_loads_strict_and_matches_reference():
    weights = _pyautoattack_example("model_test.pt")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    ours = create_model("resnet18").eval()
    ours.load_state_dict(state, strict=True)  # same key names, no mapping needed

    # The file's own architecture must compute the same function with these weights.
    spec = importlib.util.spec_from_file_location("pyautoattack_example_resnet", _pyautoattack_example("resnet.py"))
    reference_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference_module)
    reference = reference_module.ResNet18().eval()
    reference.load_state_dict(state, strict=True)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)


class _TradesBlock(nn.Module):
    """The TRADES/RobustBench WideResNet block, verbatim in behaviour, to check keys and outputs."""

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(in_planes, out_planes, 1, stride, 0,
                                                                bias=False) or None

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class _TradesGroup(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[_TradesBlock(i == 0 and in_planes or out_planes, out_planes,
                                                  i == 0 and stride or 1) for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class _TradesWideResNet(nn.Module):
    """TRADES models/wideresnet.py, including its never-called `sub_block1` group."""

    def __init__(self, depth, widen_factor, num_classes=10):
        super().__init__()
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = _TradesGroup(n, ch[0], ch[1], 1)
        self.sub_block1 = _TradesGroup(n, ch[0], ch[1], 1)
        self.block2 = _TradesGroup(n, ch[1], ch[2], 2)
        self.block3 = _TradesGroup(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch[3], num_classes)
        self.nChannels = ch[3]

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return self.fc(F.avg_pool2d(out, 8).view(-1, self.nChannels))


def _randomise_bn_statistics(model: nn.Module) -> None:
    """Non-trivial running statistics, so that an eval-mode comparison exercises every BN."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            nn.init.normal_(m.weight, 1.0, 0.1)
            nn.init.normal_(m.bias, 0.0, 0.1)


def test_trades_checkpoint_with_sub_block1_loads_and_matches_reference():
    torch.manual_seed(0)
    reference = _TradesWideResNet(16, 2)
    with torch.no_grad():
        _randomise_bn_statistics(reference)
    reference.eval()
    state = reference.state_dict()
    assert any(k.startswith("sub_block1.") for k in state)

    ours = create_model("wrn-16-2").eval()
    with pytest.raises(RuntimeError, match="sub_block1"):
        ours.load_state_dict(state, strict=True)
    ours.load_state_dict(drop_unused_keys(state), strict=True)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)


def test_wrn_34_10_has_the_trades_key_layout():
    keys = set(built("wrn-34-10").state_dict())
    reference_keys = set(drop_unused_keys(_TradesWideResNet(34, 10).state_dict()))
    assert keys == reference_keys
    assert not any(k.startswith("sub_block1.") for k in keys)
