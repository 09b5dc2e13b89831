"""The CUDA path: every method's step under bf16 autocast and channels_last, with and without --compile, fp32 and
bf16 losses that agree, a resume on the GPU, auto batches and the eps-ball check under bf16.

Run with `pytest -m cuda` on a machine with a GPU (bench/gpu_check.sh does). Without one every test here is
skipped, saying so. RDIST_CUDA_TESTS_ON_CPU=1 runs them on the CPU instead, as a walk through their code (the
dry run of bench/gpu_check.sh): it proves nothing about CUDA.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from dataclasses import replace

import pytest
import torch
from torch import nn

import rdist
from rdist.attacks import create_attack, evaluate
from rdist.attacks.evaluator import AUTO_MAX_BATCH, auto_batch_size
from rdist.data import Batches
from rdist.engine import LAST, LOG, Callback, TrainConfig, read_log, resume_config, train
from rdist.engine.build import build_run
from rdist.engine.trainer import Trainer
from rdist.engine import trainer as trainer_module
from rdist.methods import Step, create_method, list_methods, method_class, register_method, registry
from tests.methods.test_new_companion import Tutor

ON_CPU = os.environ.get("RDIST_CUDA_TESTS_ON_CPU") == "1"
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not ON_CPU and not torch.cuda.is_available(),
                       reason="needs a CUDA GPU (torch.cuda.is_available() is False); "
                              "RDIST_CUDA_TESTS_ON_CPU=1 walks these tests on the CPU"),
]
DEVICE = "cpu" if ON_CPU else "cuda"
EPS = 32 / 255


def _config(method: str, teachers, out, **overrides) -> TrainConfig:
    cls = method_class(method)
    values = dict(method=method, student="tinycnn", data="digits", epochs=2, batch_size=64, attack_steps=2,
                  eval_n=16, device=DEVICE, teachers={role: teachers[role] for role in cls.teachers}, out=str(out))
    return TrainConfig(**{**values, **overrides})


class Watch(Callback):
    report_every = 1

    def __init__(self):
        self.losses: list[float] = []

    def on_step(self, info) -> None:
        self.losses.extend(info.losses)


@pytest.fixture
def tutor(monkeypatch):
    """Tutor (a companion, state, step.batch statistics; tests/methods/test_new_companion.py), registered."""
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    register_method(Tutor)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compile"])
@pytest.mark.parametrize("method", [*list_methods(), Tutor.name])
def test_every_method_steps_under_autocast_and_channels_last(method, compiled, teacher_files, tmp_path,
                                                             monkeypatch, tutor):
    if ON_CPU and compiled:  # the walk traces the step with dynamo but skips inductor's slow CPU code generation
        monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    run = build_run(_config(method, teacher_files, tmp_path, max_steps=3, compile=compiled)
                    .with_absolute_paths())
    # The first convolution has one input channel, for which the two layouts are the same.
    conv = next(m for m in run.student.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    dtypes = []
    if not compiled:  # a hook inside a compiled graph would be traced, not called
        run.student.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    watch = Watch()

    result = Trainer(run, watch).fit()

    assert result.global_step == 3 and len(watch.losses) == 3
    assert all(math.isfinite(v) for v in watch.losses)
    assert (tmp_path / LAST).is_file()
    if not compiled:
        assert set(dtypes) == {torch.float32 if ON_CPU else torch.bfloat16}


@pytest.mark.parametrize("method", [*list_methods(), Tutor.name])
def test_a_training_step_never_waits_for_the_gpu(method, teacher_files, tmp_path, monkeypatch, tutor):
    """CUDA's own sync check (set_sync_debug_mode "error") around the attack and the update of every method, and of a
    method with a companion, state and step.batch statistics: a host sync there raises. (On the CPU walk it checks
    nothing: tests/engine/test_step.py watches the same phases for the operations that would sync.)"""
    for phase in ("attack_phase", "update_phase"):
        def checked(*args, _phase=getattr(trainer_module, phase), **kwargs):
            if not ON_CPU:
                torch.cuda.set_sync_debug_mode("error")
            try:
                return _phase(*args, **kwargs)
            finally:
                if not ON_CPU:
                    torch.cuda.set_sync_debug_mode("default")
        monkeypatch.setattr(trainer_module, phase, checked)
    result = Trainer(build_run(_config(method, teacher_files, tmp_path, max_steps=3).with_absolute_paths()),
                     Watch()).fit()
    assert result.global_step == 3


def _batch(device: torch.device, teachers) -> Step:
    digits = rdist.load_dataset("digits", device=device)
    x, y = next(iter(Batches(digits.x_train, digits.y_train, 64, shuffle=True, seed=0)))
    return Step(x, y, epoch=5, epochs=10, teachers={role: rdist.load_model(path, device)
                                                     for role, path in teachers.items()},
                 generator=torch.Generator(device=device).manual_seed(0))


@pytest.mark.parametrize("method", list_methods())
def test_fp32_and_bf16_losses_agree(method, teacher_files):
    device = torch.device(DEVICE)
    batch = _batch(device, teacher_files)
    torch.manual_seed(0)
    student = rdist.create_model("tinycnn", num_classes=10, in_channels=1).to(device)
    method_ = create_method(method, attack_steps=2)
    method_.reset_state(10, device)
    # A method's companions (PeerAiD's peer): the student's architecture, in eval mode for the attack.
    companions = {role: rdist.create_model("tinycnn", num_classes=10, in_channels=1).to(device)
                  for role in method_.companions}
    batch.companions = {role: companion.eval() for role, companion in companions.items()}
    student.train(method_.bn_mode == "train")
    xa = method_.perturb(copy.deepcopy(student), batch)  # fp32: both losses see the same inputs
    losses = {}
    for precision in ("fp32", "bf16"):
        model = copy.deepcopy(student).train()  # train-mode BN moves its statistics: each loss gets its own copy
        batch.companions = {role: copy.deepcopy(companion).train() for role, companion in companions.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            losses[precision] = method_.loss(model, batch, xa).item()
    # bf16 keeps 8 bits of mantissa: logits carry relative errors of about 0.4%, and so do the losses.
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.03, abs=0.01), losses


def test_resume_on_the_device(teacher_files, tmp_path):
    config = _config("rslad", teacher_files, tmp_path / "run")
    steps_per_epoch = -(-len(build_run(config.with_absolute_paths()).train_y) // 64)
    first = train(replace(config, max_steps=steps_per_epoch))
    assert first.epochs_done == 1
    resumed = train(resume_config(tmp_path / "run"))
    assert resumed.epochs_done == 2 and resumed.global_step == 2 * steps_per_epoch
    assert [r.epoch for r in read_log(tmp_path / "run" / LOG)] == [1, 2]
    state = rdist.load_model(tmp_path / "run" / LAST).state_dict()
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def _digits_model(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return rdist.create_model("smallcnn", num_classes=10, in_channels=1).to(device).eval()


@pytest.mark.parametrize("name", ["pgd20", "cw", "aa:apgd-ce+apgd-t"])
def test_attacks_stay_in_the_eps_ball_under_bf16(name):
    device = torch.device(DEVICE)
    digits = rdist.load_dataset("digits", device=device)
    n = 16 if ON_CPU else 128  # bf16 on a CPU is emulated, and slow: the walk takes fewer images
    x, y = digits.x_test[:n].float() / 255, digits.y_test[:n]
    model = _digits_model(device).to(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        x_adv = create_attack(name, model, EPS, seed=0)(x.contiguous(memory_format=torch.channels_last), y)
    assert x_adv.dtype == torch.float32 and (x_adv - x).abs().max() <= EPS + 1e-6
    # bf16 inputs are evaluated in fp32: the check holds them to the same 1e-6.
    result = evaluate(model, x.bfloat16(), y, ["clean", name], eps=EPS, precision="bf16")
    assert 0 <= result.accuracy[name] <= result.accuracy["clean"] <= 1


def test_auto_batch_size_fills_memory_in_multiples_of_256():
    device = torch.device(DEVICE)
    model = _digits_model(device)
    x = torch.rand(8192, 1, 8, 8, device=device)
    y = torch.randint(0, 10, (8192,), device=device)
    size = auto_batch_size(model, x, y, "bf16")
    if ON_CPU:
        assert size == 256
    else:
        assert 256 <= size <= AUTO_MAX_BATCH and size % 256 == 0
