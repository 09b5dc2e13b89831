"""`rdist teacher import` of the TRADES WRN layout, whose checkpoint carries an unused `sub_block1` group."""

import torch

import rdist
from rdist.teachers.robustbench import import_robustbench


def test_trades_wrn_checkpoint_with_sub_block1_imports_and_computes_the_same_logits(cli, tmp_path):
    import_robustbench()
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    torch.manual_seed(0)
    reference = WideResNet(depth=10, widen_factor=1, sub_block1=True).eval()
    assert any(k.startswith("sub_block1.") for k in reference.state_dict())
    checkpoint = tmp_path / "trades.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, checkpoint)
    out = tmp_path / "trades.safetensors"
    cli("teacher", "import", checkpoint, "--arch", "wrn-10-1", "--dataset", "cifar10", "-o", out)
    imported = rdist.load_model(out)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(imported(x), reference(x), atol=1e-5)
    assert imported.rdist_meta["provenance"]["imported_from"] == "trades.pt"
