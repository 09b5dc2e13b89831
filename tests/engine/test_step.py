"""The BN modes of one training step, seen from inside the student's forward passes, the teacher kept
frozen by a whole run, the channels-last layout every convolution runs in, and a step that never makes the host
wait for the device.

The spec's "BN mode" is the mode of the student's BN layers while the inner attack runs (eval for RSLAD,
train for ARD); the outer loss always runs in train mode. The teacher is never trained: eval mode, no
gradients, unchanged weights.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import rdist
from rdist.data import Batches
from rdist.engine import Callback, TrainConfig
from rdist.engine.build import build_run
from rdist.engine.step import attack_phase, update_phase
from rdist.engine import trainer as trainer_module
from rdist.engine.trainer import Trainer
from rdist.methods import Step, create_method, list_methods, method_class, register_method, registry
from tests.methods.test_new_companion import Tutor


class ModeRecorder:
    """A forward pre-hook that notes `module.training` at every call."""

    def __init__(self, module: nn.Module):
        self.modes: list[bool] = []
        self.handle = module.register_forward_pre_hook(lambda m, args: self.modes.append(m.training))

    def take(self) -> list[bool]:
        modes, self.modes = self.modes, []
        return modes


def _batch(teacher: nn.Module) -> Step:
    digits = rdist.load_dataset("digits")
    x, y = next(iter(Batches(digits.x_train, digits.y_train, 32, shuffle=True, seed=0)))
    return Step(x, y, epoch=1, epochs=10, teachers={"robust": teacher}, generator=torch.Generator().manual_seed(0))


def _frozen_teacher() -> nn.Module:
    torch.manual_seed(1)
    teacher = rdist.create_model("smallcnn", num_classes=10, in_channels=1).eval()
    return teacher.requires_grad_(False)


@pytest.mark.parametrize("method_name, attack_in_train_mode", [("rslad", False), ("ard", True)])
def test_student_bn_mode_in_attack_and_update(method_name, attack_in_train_mode):
    method = create_method(method_name, attack_steps=3)
    assert method.bn_mode == ("train" if attack_in_train_mode else "eval")
    torch.manual_seed(0)
    student = rdist.create_model("tinycnn", num_classes=10, in_channels=1)
    bn = student.features[0][1]
    assert isinstance(bn, nn.BatchNorm2d)
    recorder = ModeRecorder(bn)
    batch = _batch(_frozen_teacher())
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)

    # Start from the opposite mode, so that only the phase itself can have set the one recorded.
    student.train(not attack_in_train_mode)
    running_mean = bn.running_mean.clone()
    xa = attack_phase(student, method, batch)
    attack_modes = recorder.take()
    assert len(attack_modes) >= method.attack_steps  # one forward per PGD step at least
    assert set(attack_modes) == {attack_in_train_mode}
    # Eval-mode BN leaves the running statistics alone during the attack; train mode moves them.
    assert torch.equal(bn.running_mean, running_mean) != attack_in_train_mode

    student.eval()
    loss = update_phase(student, method, batch, xa, optimizer).loss
    update_modes = recorder.take()
    assert update_modes and set(update_modes) == {True}
    assert loss > 0


class TeacherWatch(Callback):
    """Checks at every step that each teacher is in eval mode with no parameter requiring a gradient."""

    def __init__(self, teachers: list[nn.Module]):
        self.teachers, self.steps, self.forward_modes = teachers, 0, []
        for teacher in teachers:
            teacher.register_forward_pre_hook(lambda m, args: self.forward_modes.append(m.training))

    def on_step(self, info) -> None:
        self.steps += len(info.losses)
        for teacher in self.teachers:
            assert not teacher.training
            assert not any(p.requires_grad for p in teacher.parameters())
            assert all(p.grad is None for p in teacher.parameters())


def test_teachers_stay_frozen_through_a_run(tmp_path):
    paths = []
    for name, seed in (("robust", 1), ("natural", 2)):
        torch.manual_seed(seed)
        model = rdist.create_model("smallcnn", num_classes=10, in_channels=1)
        paths.append(rdist.save_model(model, tmp_path / f"{name}.safetensors", dataset="digits",
                                      input_shape=[1, 8, 8]))
    # AKD2: both teachers run on the adversarial inputs, with the student's BN in train mode during the attack.
    run = build_run(TrainConfig(method="akd2", student="tinycnn", data="digits",
                                teachers={"robust": str(paths[0]), "natural": str(paths[1])}, epochs=1, max_steps=3,
                                batch_size=64, attack_steps=2, eval_n=16, out=str(tmp_path / "run")).with_absolute_paths())
    teachers = [run.teachers["robust"], run.teachers["natural"]]
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    watch = TeacherWatch(teachers)

    Trainer(run, watch).fit()

    assert watch.steps == 3
    assert watch.forward_modes and not any(watch.forward_modes)
    for teacher, state in zip(teachers, before):
        assert all(torch.equal(v, state[k]) for k, v in teacher.state_dict().items())


def _channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def test_student_and_teacher_run_channels_last_on_the_cpu(tmp_path):
    """oneDNN's CPU convolutions, like cuDNN's, are faster channels-last: the engine converts the models and
    feeds its batches so. Every convolution past the first (whose one input channel makes the two layouts one)
    must see a channels-last input, in the attack, the update and the evaluation alike."""
    torch.manual_seed(1)
    teacher = rdist.save_model(rdist.create_model("smallcnn", num_classes=10, in_channels=1),
                               tmp_path / "teacher.safetensors", dataset="digits", input_shape=[1, 8, 8])
    run = build_run(TrainConfig(method="rslad", student="tinycnn", data="digits", teachers={"robust": str(teacher)},
                                epochs=1, batch_size=64, attack_steps=2, eval_n=16,
                                out=str(tmp_path / "run")).with_absolute_paths())
    inputs: dict[str, list[bool]] = {"student": [], "teacher": []}
    modes: list[bool] = []  # the student's training flag at each forward: the evaluation runs in eval mode
    run.student.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    for role, model in (("student", run.student), ("teacher", run.teachers["robust"])):
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1]
        assert convs and all(_channels_last(conv.weight) for conv in convs), role
        for conv in convs:
            conv.register_forward_pre_hook(lambda m, args, seen=inputs[role]: seen.append(_channels_last(args[0])))

    Trainer(run, Callback()).fit()

    assert inputs["student"] and all(inputs["student"])
    assert inputs["teacher"] and all(inputs["teacher"])
    assert True in modes and modes[-1] is False, "the run must end with an evaluation for this test to mean it"


def test_compile_trains_on_one_batch_shape(tmp_path):
    """Under --compile the last partial batch of an epoch is dropped: a second shape would be compiled again."""
    run = build_run(TrainConfig(method="natural", student="tinycnn", data="digits", epochs=1, batch_size=64,
                                compile=True, out=str(tmp_path)).with_absolute_paths())
    assert len(run.train_y) % 64, "the split must leave a partial batch for this test to mean anything"
    batches = Trainer(run, Callback()).batches
    assert len(batches) == len(run.train_y) // 64
    assert {len(y) for _, y in batches} == {64}


# What makes the host wait for a CUDA device: a tensor's value read into Python (.item(), bool(), int(), float() all
# dispatch _local_scalar_dense; .tolist() and .numpy() do not, and are watched as methods), and the operations whose
# output size depends on the values (boolean-mask indexing, nonzero, masked_select, unique).
SYNCING = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2", "aten::unique_dim",
           "aten::unique_consecutive"}


class HostSyncs(TorchDispatchMode):
    """Notes every operation inside the block that would make the host wait for the device on CUDA (the same
    operations dispatch on the CPU, where this test runs), backward passes included."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []
        self.inside = 0  # how deep in `with` blocks: .tolist() and .numpy() count only there

    def __enter__(self):
        self.inside += 1
        return super().__enter__()

    def __exit__(self, *exc):
        self.inside -= 1
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        masks = name == "aten::index" and any(i is not None and i.dtype == torch.bool for i in args[1])
        if name in SYNCING or masks:
            self.seen.append("boolean-mask indexing" if masks else name)
        return func(*args, **(kwargs or {}))

    def watching(self, monkeypatch):
        for method in ("tolist", "numpy"):
            original = getattr(torch.Tensor, method)

            def noted(tensor, *args, _name=method, _original=original, **kwargs):
                if self.inside:
                    self.seen.append(f"Tensor.{_name}")
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, method, noted)
        return self


def test_the_host_sync_watch_sees_what_it_looks_for(monkeypatch):
    x = torch.arange(4.0, requires_grad=True)
    with HostSyncs() as watch:
        (x * 2).sum().backward()
    assert watch.seen == []
    with monkeypatch.context() as patch:
        watch = HostSyncs().watching(patch)
        x.detach().tolist()  # outside the block: not counted
        with watch:
            x.sum().item(), bool(x.detach()[0] > 1), x.detach()[x.detach() > 1], x.detach().tolist()
    assert watch.seen == ["aten::_local_scalar_dense", "aten::_local_scalar_dense", "boolean-mask indexing",
                          "Tensor.tolist"]


@pytest.mark.parametrize("method", [*list_methods(), Tutor.name])
def test_a_training_step_never_waits_for_the_device(method, teacher_files, tmp_path, monkeypatch):
    """The attack, the update (loss, backward, every optimiser's step) and the method's state updates of every method,
    and of a method with a companion, state and step.batch statistics: no host sync. The trainer reads the device
    only at its reports (`EpochTotals.read`), outside the step."""
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    register_method(Tutor)
    watch = HostSyncs()
    for phase in ("attack_phase", "update_phase"):
        def watched(*args, _phase=getattr(trainer_module, phase), **kwargs):
            with watch:
                return _phase(*args, **kwargs)
        monkeypatch.setattr(trainer_module, phase, watched)
    cls = method_class(method)
    teachers = {role: teacher_files[role] for role in cls.teachers}
    run = build_run(TrainConfig(method=method, student="tinycnn", data="digits", epochs=1, max_steps=3, batch_size=32,
                                attack_steps=2, eval_n=16, teachers=teachers, out=str(tmp_path)).with_absolute_paths())
    watch.watching(monkeypatch)

    result = Trainer(run, Callback()).fit()

    assert result.global_step == 3 and watch.seen == []
