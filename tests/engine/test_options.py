"""What the CLI's repeatable options become (teachers by role, hyper-parameters by name), and the help of the
hyper-parameters' options, made from the methods."""

from __future__ import annotations

import pytest

from rdist.cli.options import hparam_help, parse_hparams, parse_teachers
from rdist.errors import RdistError


def test_teacher_options_become_roles():
    assert parse_teachers(["t.safetensors"]) == {"robust": "t.safetensors"}
    assert parse_teachers(["zoo:a", "peer=hf-hub:org/b@v1"], natural="Standard") == {
        "robust": "zoo:a", "peer": "hf-hub:org/b@v1", "natural": "Standard"}
    assert parse_teachers(None) == {}
    with pytest.raises(RdistError, match=r"two models given for the natural teacher \(a and b\)"):
        parse_teachers(["natural=a"], natural="b")


def test_hparam_options_are_typed_values_and_given_once():
    assert parse_hparams(["kl_scale=0.5", "warmup_epoch=3", "igdm_code_ard=true"], {"tau": None, "beta": 2.0}) == {
        "beta": 2.0, "kl_scale": 0.5, "warmup_epoch": 3, "igdm_code_ard": True}
    with pytest.raises(RdistError, match=r"kl_scale is given twice \(--kl-scale 0.2 and --hparam kl_scale=0.3\)"):
        parse_hparams(["kl_scale=0.3"], {"kl_scale": 0.2})
    with pytest.raises(RdistError, match=r"cannot read --hparam 'tau': write NAME=VALUE"):
        parse_hparams(["tau"])
    with pytest.raises(RdistError, match=r"'tau=high': the value must be a number, true or false"):
        parse_hparams(["tau=high"])



def test_hyper_parameter_help_is_made_from_each_methods_field_comment_and_presets():
    alpha = hparam_help("alpha")
    assert alpha.startswith("kd, ard: weight of the distillation term; adaad: weight of the adversarial term against "
                            "the clean one \\[default: the method's paper value: kd 0.9, ard 1, adaad 1]")
    kl_scale = hparam_help("kl_scale")
    assert "ard 1/C, iad-i 1" in kl_scale
    assert "with --recipe paper: adaad 1 on cifar100, dgad 0.5 on mobilenetv2, ard+igdm 1" in kl_scale
    # SAAD has an IGDM weight of its own (a field, not the +igdm term), with its per-dataset paper value.
    assert hparam_help("igdm_alpha").endswith("\\[default: the method's paper value: saad 1, +igdm 20; "
                                              "with --recipe paper: saad 10 on cifar100]")
    assert hparam_help("beta", "teacher").endswith("trades 6, mart 6; with --recipe paper: mart 5 except on wrn-34-10]")
