"""What every training method is: an inner attack (`perturb`) and an outer loss (`loss`).

The engine calls, for each batch:
    student.train(method.bn_mode == "train"); xa = method.perturb(student, step)
    student.train();                            loss = method.loss(student, step, xa)
and knows nothing else about the method. A method declares what it needs:
- `teachers`, the roles of the frozen models it distils from (`rdist.methods.roles`); the run loads one model per
  role and hands them over in `step.teachers[role]`. A method with a new kind of model (a peer network, a third
  teacher) names a new role: nothing in the engine changes.
- its hyper-parameters, as typed dataclass fields whose defaults are the paper's values, each with a comment that
  says what it does (the CLI's help is made from it): every Method subclass is a keyword-only dataclass;
  `defaults()` lists them, `values()` gives an instance's;
- `recipe`, the paper's full training recipe, applied by `--recipe paper` through `paper_preset`, which also
  gives the hyper-parameters a paper sets per dataset or architecture;
- for a distillation method, what it is and where it comes from (`about`, for `rdist distill --list`) and which
  RobustBench teachers its paper distils from, per role and dataset (`paper_teachers`, the default of `--teacher`).
A method registers itself with `@register_method` (`rdist.methods.registry`): adding one is one file.

What a method may also declare, for methods that train more than the student or learn as they go:
- `companions`, role -> `Companion`: networks trained beside the student (PeerAiD's peer). The engine builds each
  (the student's architecture unless the Companion or `--companion ROLE=ARCH|MODEL` names another, or a model to
  start from), converts it as the student (channels-last, --sync-bn, DDP under torchrun), gives it its own SGD and
  lr schedule, and hands it over in `step.companions[role]`: in eval mode during `perturb` (a method that wants
  another mode sets it), in train mode in `loss`. `loss` returns ONE total; the engine runs one backward of it and
  steps every optimiser, so a companion's loss is part of that total, and every companion must take part in every
  step's loss (DDP needs a gradient for each of its parameters). Its weights, optimiser and schedule are in the
  checkpoint, and each epoch writes it beside last.safetensors as <role>.safetensors.
- state: `initial_state(classes)` returns the tensors the method carries from step to step (B-MTARD's weights and
  temperatures, per-class weights); the engine puts them on the device as `self.state`, saves them in the
  checkpoint and restores them on resume, and broadcasts rank 0's after every step so that every rank holds the
  same. Update them without host syncs, by replacing a tensor (`self.state["w"] = new`) rather than writing into
  it: the step's graph may still hold the old one. Anything that depends on the batch comes from `step.batch`.
- `epoch_sums(classes)`: zeros the engine hands over each epoch as `step.sums`, which the method adds to (detached);
  at the end of every whole epoch `on_epoch_end(epoch, sums)` gets them summed over the epoch's steps and the
  ranks (Fair-ARD's and ABSLD's per-class statistics).

Statistics of the whole batch come from `step.batch` (`rdist.parallel.GlobalBatch`: `size`, `sum`, `mean`,
`gather`, `max`, `min`), which is the plain tensor operation in one process and a collective under torchrun. The
rule that keeps N processes equal to one: `loss` returns the mean over this process's rows of per-example terms
(which may use `step.batch` statistics), or a value that is the same on every rank because it is built from
`step.batch` (`step.batch.mean(terms)`), or a sum of both; never a sum over the rows divided by anything but their
number. The engine weights each rank's loss by its share of the batch, and `step.batch`'s results carry gradients,
so either form gives the one-process gradient (`tests/engine/test_global_batch.py`).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rdist.attacks.pgd import Noise, pgd
from rdist.errors import RdistError
from rdist.parallel import GlobalBatch
from rdist.utils import field_comments

# The inner attack's settings, every method's first fields.
ATTACK_FIELDS = ("eps", "step_size", "attack_steps", "norm")

# The training attack everywhere but where a paper recipe sets its own (`--recipe paper`): 10 steps of 2/255
# within 8/255, which is also the budget checkpoints are evaluated at.
DEFAULT_EPS, DEFAULT_STEP_SIZE, DEFAULT_ATTACK_STEPS = 8 / 255, 2 / 255, 10


@dataclass(frozen=True)
class Recipe:
    """A paper's training recipe: SGD(momentum 0.9) with lr x0.1 at each milestone epoch (or a cosine decay), the
    weight average, and the training attack's settings, which only `--recipe paper` applies (a short run keeps the
    defaults above)."""

    epochs: int
    milestones: tuple[int, ...]
    weight_decay: float
    lr: float = 0.1
    batch_size: int = 128
    swa_start: int | None = None  # epoch from which weights are averaged (AKD2)
    ema: float | None = None  # decay of a moving average of the weights, updated every step (the generated-data recipes)
    lr_schedule: str = "step"  # "step": lr x0.1 after each milestone epoch; "cosine": to 0 over the run
    warmup_epochs: int = 0  # epochs of linear lr warm-up from 0, step by step
    nesterov: bool = False
    label_smoothing: float = 0.0  # of the cross-entropy terms of the method's loss
    eps: float = DEFAULT_EPS
    step_size: float = DEFAULT_STEP_SIZE
    attack_steps: int = DEFAULT_ATTACK_STEPS


@dataclass(frozen=True)
class About:
    """One row of `rdist distill --list`: where the method comes from and what it does, in a few words."""

    paper: str  # "Zi et al., ICCV 2021"
    attack: str
    loss: str
    url: str | None = None  # the paper
    code: str | None = None  # the official code's repository; None where there is none
    note: str | None = None  # what a user must know before a run (a paper's teacher RobustBench does not hold)


@dataclass(frozen=True)
class Companion:
    """A network a method trains beside the student (PeerAiD's peer), and how: SGD with momentum and its lr x0.1 at
    milestone epochs, as the student. Every None is the student's value."""

    model: str | None = None  # an architecture to train from scratch, or a model name to start from
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    milestones: tuple[int, ...] | None = None  # epochs of the method's recipe, scaled as the student's are


@dataclass
class Step:
    """What a method gets for one training step: the batch, and where training stands."""

    x: torch.Tensor  # clean inputs in [0, 1]: this process's rows of the global batch
    y: torch.Tensor
    epoch: int  # 1-based epoch now running
    epochs: int  # total epochs E of the run
    teachers: dict[str, nn.Module] = field(default_factory=dict)  # by role (Method.teachers); frozen, eval mode
    generator: Noise = None  # random starts of the inner attack (a ShardNoise in data-parallel training)
    companions: dict[str, nn.Module] = field(default_factory=dict)  # by role (Method.companions); trained
    batch: GlobalBatch | None = None  # statistics over the global batch [default: x is the whole batch]
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # this epoch's sums so far (Method.epoch_sums)
    lr_scale: float = 1.0  # the student's learning rate now over its initial one (0.1 after the first milestone)
    label_smoothing: float = 0.0  # the run's (`--label-smoothing`), for the cross-entropy terms of the loss

    def __post_init__(self) -> None:
        if self.batch is None:
            self.batch = GlobalBatch(len(self.y))

    def cross_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """CE(logits, y), the mean over the batch, with the run's label smoothing: what a method's outer loss calls
        for its cross-entropy terms, so that `--label-smoothing` reaches them with no method naming it. Inner
        attacks (`Method.ce_pgd`) and KL terms keep the hard labels and the teachers' distributions."""
        return F.cross_entropy(logits, self.y, label_smoothing=self.label_smoothing)


@typing.dataclass_transform(kw_only_default=True, eq_default=False)
@dataclass(kw_only=True, eq=False)
class Method:
    """A training method; each subclass is a keyword-only dataclass of its hyper-parameters (see the module)."""

    name: ClassVar[str]
    kind: ClassVar[str] = "distill"  # "teacher" for methods that train without a teacher
    bn_mode: ClassVar[str] = "eval"  # student BN mode while the inner attack runs
    # The validation accuracy best.safetensors is selected on: robustness, except for methods that do not
    # aim at it (a natural teacher for AKD2 and IAD-II should be its most accurate epoch).
    select_metric: ClassVar[str] = "pgd20"
    teachers: ClassVar[tuple[str, ...]] = ()  # the roles of the frozen models it distils from
    companions: ClassVar[dict[str, Companion]] = {}  # the networks it trains beside the student, by role
    aliases: ClassVar[tuple[str, ...]] = ()  # other names it goes by (the name its paper gives it)
    recipe: ClassVar[Recipe]
    about: ClassVar[About | None] = None
    # The paper's teachers: role -> dataset -> RobustBench name.
    paper_teachers: ClassVar[dict[str, dict[str, str]]] = {}
    # The distances its inner attack may bound: those its official code attacks in (sign steps are L-inf only).
    norms: ClassVar[tuple[str, ...]] = ("Linf",)

    eps: float = DEFAULT_EPS
    step_size: float = DEFAULT_STEP_SIZE
    attack_steps: int = DEFAULT_ATTACK_STEPS
    norm: str = "Linf"  # the distance of the inner attack's ball: Linf or L2 (where the method has it)
    # What it carries from step to step (`initial_state`), on the training device once the engine has reset it.
    state: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __init_subclass__(cls, **kwargs: Any):
        # Every method a keyword-only dataclass, without a decorator in each file; eq=False keeps identity
        # semantics (a method is one run's object, not a value).
        super().__init_subclass__(**kwargs)
        dataclass(cls, kw_only=True, eq=False)

    def __post_init__(self) -> None:
        if self.norm not in type(self).norms:
            with_l2 = ", ".join(n for n in _methods_with(self.norm))
            raise RdistError(f"method {self.name} attacks in {' and '.join(type(self).norms)} only, as its official "
                             f"code does; train it with --norm Linf{f' (with --norm {self.norm}: {with_l2})' if with_l2 else ''}")
        # Values arrive from the CLI, JSON and YAML: an int where a float is declared becomes a float (so that a
        # run's recorded config does not depend on how a value was typed); any other mismatch is refused.
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            value, allowed = getattr(self, f.name), _allowed_types(hints[f.name])
            if allowed is None:
                continue
            if float in allowed and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))
            elif not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise RdistError(f"method {self.name}: {f.name} must be "
                                 f"{' or '.join(_TYPE_WORDS.get(t, t.__name__) for t in allowed)}, got {value!r}")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The method's own hyper-parameters (the attack settings aside) and their paper values."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.init and f.name not in ATTACK_FIELDS
                and f.default is not dataclasses.MISSING}

    @classmethod
    def described(cls) -> dict[str, str]:
        """What each hyper-parameter does, from the comment beside its field (a subclass's comment wins)."""
        comments = {}
        for klass in reversed(cls.__mro__):
            if isinstance(klass, type) and issubclass(klass, Method):
                comments.update(field_comments(klass))
        return {name: comments.get(name, "") for name in cls.defaults()}

    def values(self) -> dict[str, Any]:
        """This method's hyper-parameter values."""
        return {key: getattr(self, key) for key in self.defaults()}

    @classmethod
    def paper_preset(cls, dataset: str, arch: str) -> tuple[Recipe, dict[str, float]]:
        """The paper's recipe and hyper-parameter values for training `arch` on `dataset` (`--recipe paper`).

        The fields' defaults and `recipe` hold one setting of the paper; a method whose paper changes them with the
        dataset or the architecture overrides this to return that setting's values.
        """
        return cls.recipe, {}

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor | None:
        """The inner maximisation; None for methods that train on clean inputs only."""
        return None

    def ce_pgd(self, student: nn.Module, step: Step, start: str, clamp_start: bool = False) -> torch.Tensor:
        """xa = argmax CE(S(xa), y) by this method's PGD (eps, step size, steps): Madry's inner attack,
        shared by SAT, MART, ARD, AKD2 and IAD. It starts unclamped, as those official codes do
        (`random_start`), unless `clamp_start` (SAT: IAD's AT.py clamps, as Madry's code)."""
        return pgd(lambda xa: F.cross_entropy(student(xa), step.y, reduction="sum"), step.x, eps=self.eps,
                   step_size=self.step_size, steps=self.attack_steps, start=start, generator=step.generator,
                   clamp_start=clamp_start, norm=self.norm)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    # -- what a stateful method overrides (see the module docstring) --

    def initial_state(self, classes: int) -> dict[str, torch.Tensor]:
        """The tensors this method carries from step to step, as they are before the first one; {}: none."""
        return {}

    def epoch_sums(self, classes: int) -> dict[str, torch.Tensor]:
        """The zeros each epoch's `step.sums` starts from; {}: none."""
        return {}

    def on_epoch_end(self, epoch: int, sums: dict[str, torch.Tensor]) -> None:
        """After whole epoch `epoch`, before its checkpoint: `sums` summed over its steps and over the ranks."""

    # -- what the engine calls (a composition adds its base's) --

    def reset_state(self, classes: int, device: torch.device | str | None = None) -> None:
        """`self.state` as it starts, on `device`, for a dataset of `classes` classes."""
        self.state = {name: tensor.to(device) for name, tensor in self.initial_state(classes).items()}

    def state_tensors(self) -> list[torch.Tensor]:
        """The state's tensors themselves, on the device (which the engine keeps equal over the ranks)."""
        return list(self.state.values())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state, by name, as CPU copies (what the checkpoint stores)."""
        return {name: tensor.detach().to("cpu", copy=True) for name, tensor in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `state_dict()`'s tensors onto the device of the reset state; refused when they do not fit."""
        own = self.state
        if set(state) != set(own):
            raise RdistError(f"method {self.name} keeps state {sorted(own) or 'none'}, the checkpoint holds "
                             f"{sorted(state) or 'none'}")
        for name, tensor in state.items():
            if tensor.shape != own[name].shape or tensor.dtype != own[name].dtype:
                raise RdistError(f"method {self.name}'s state {name} is {own[name].dtype} {tuple(own[name].shape)}, "
                                 f"the checkpoint's {tensor.dtype} {tuple(tensor.shape)}")
        self.state = {name: tensor.to(own[name].device, copy=True) for name, tensor in state.items()}

    def new_sums(self, classes: int, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """A fresh epoch's `step.sums`, on `device`."""
        return {name: tensor.to(device) for name, tensor in self.epoch_sums(classes).items()}

    def end_epoch(self, epoch: int, sums: dict[str, torch.Tensor]) -> None:
        """`on_epoch_end` of the method (and of its base, for a composition)."""
        self.on_epoch_end(epoch, sums)

    def config(self) -> dict[str, Any]:
        """Everything that defines this run's method, for provenance and for refusing a mismatched resume."""
        return {"method": self.name, "eps": self.eps, "step_size": self.step_size, "attack_steps": self.attack_steps,
                **({} if self.norm == "Linf" else {"norm": self.norm}), **self.values()}


def _methods_with(norm: str) -> list[str]:
    """The registered methods whose inner attack bounds `norm`."""
    from rdist.methods.registry import METHODS

    return [name for name, cls in METHODS.items() if isinstance(cls, type) and norm in cls.norms]


_TYPE_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "text", type(None): "unset (None)"}


def _allowed_types(annotation: Any) -> tuple[type, ...] | None:
    """The classes a field annotated `annotation` accepts (`float | None`: float and NoneType); None when the
    annotation is no plain class or union of them (such a field is not checked)."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    return tuple(args) if all(isinstance(a, type) for a in args) else None
