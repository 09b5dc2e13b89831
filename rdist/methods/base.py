"""What every training method is: an inner attack (`perturb`) and an outer loss (`loss`).

The engine calls, for each batch:
    student.train(method.bn_mode == "train"); xa = method.perturb(student, batch)
    student.train();                            loss = method.loss(student, batch, xa)
and knows nothing else about the method. Hyper-parameters are fields of `defaults` (the paper's values);
`recipe` is the paper's full training recipe, applied by `--recipe paper` through `paper_preset`, which also
gives the hyper-parameters a paper sets per dataset or architecture. A distillation method also says what it is
(`about`, for `rdist distill --list`) and which teachers its paper distils from (`teachers`, RobustBench names
per dataset, the default of `--teacher`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rdist.attacks.pgd import Noise, pgd
from rdist.errors import RdistError

# The training attack everywhere but where a paper recipe sets its own (`--recipe paper`): 10 steps of 2/255
# within 8/255, which is also the budget checkpoints are evaluated at.
DEFAULT_EPS, DEFAULT_STEP_SIZE, DEFAULT_ATTACK_STEPS = 8 / 255, 2 / 255, 10


@dataclass(frozen=True)
class Recipe:
    """A paper's training recipe: SGD(momentum 0.9) with lr x0.1 at each milestone epoch, and the training
    attack's settings, which only `--recipe paper` applies (a short run keeps the defaults above)."""

    epochs: int
    milestones: tuple[int, ...]
    weight_decay: float
    lr: float = 0.1
    batch_size: int = 128
    swa_start: int | None = None  # epoch from which weights are averaged (AKD2)
    eps: float = DEFAULT_EPS
    step_size: float = DEFAULT_STEP_SIZE
    attack_steps: int = DEFAULT_ATTACK_STEPS


@dataclass(frozen=True)
class About:
    """One row of `rdist distill --list`: where the method comes from and what it does, in a few words."""

    paper: str
    attack: str
    loss: str


@dataclass
class Batch:
    """One training batch and what a method may need to know about where training stands."""

    x: torch.Tensor  # clean inputs in [0, 1]
    y: torch.Tensor
    epoch: int  # 1-based epoch now running
    epochs: int  # total epochs E of the run
    teacher: nn.Module | None = None  # frozen, eval mode
    natural_teacher: nn.Module | None = None  # frozen, eval mode (AKD2, IAD-II)
    generator: Noise = None  # random starts of the inner attack (a ShardNoise in data-parallel training)


class Method:
    name: ClassVar[str]
    kind: ClassVar[str] = "distill"  # "teacher" for methods that train without a teacher
    bn_mode: ClassVar[str] = "eval"  # student BN mode while the inner attack runs
    # The validation accuracy best.safetensors is selected on: robustness, except for methods that do not
    # aim at it (a natural teacher for AKD2 and IAD-II should be its most accurate epoch).
    select_metric: ClassVar[str] = "pgd20"
    needs_teacher: ClassVar[bool] = False
    needs_natural_teacher: ClassVar[bool] = False
    supports_igdm: ClassVar[bool] = False
    defaults: ClassVar[dict[str, float]] = {}
    recipe: ClassVar[Recipe]
    about: ClassVar[About | None] = None
    # The paper's robust (and, for two-teacher methods, natural) teacher per dataset: RobustBench names.
    teachers: ClassVar[dict[str, str]] = {}
    natural_teachers: ClassVar[dict[str, str]] = {}

    def __init__(self, *, eps: float = DEFAULT_EPS, step_size: float = DEFAULT_STEP_SIZE,
                 steps: int = DEFAULT_ATTACK_STEPS, **hparams: float):
        unknown = set(hparams) - set(self.defaults)
        if unknown:
            raise RdistError(f"method {self.name} has no hyper-parameter(s) {sorted(unknown)}; "
                             f"it takes {sorted(self.defaults) or 'none'}")
        self.eps, self.step_size, self.steps = eps, step_size, steps
        self.hparams = {**self.defaults, **{k: float(v) for k, v in hparams.items() if v is not None}}
        for key, value in self.hparams.items():
            setattr(self, key, value)

    @classmethod
    def paper_preset(cls, dataset: str, arch: str) -> tuple[Recipe, dict[str, float]]:
        """The paper's recipe and hyper-parameter values for training `arch` on `dataset` (`--recipe paper`).

        `defaults` and `recipe` hold one setting of the paper; a method whose paper changes them with the
        dataset or the architecture overrides this to return that setting's values.
        """
        return cls.recipe, {}

    def perturb(self, student: nn.Module, batch: Batch) -> torch.Tensor | None:
        """The inner maximisation; None for methods that train on clean inputs only."""
        return None

    def ce_pgd(self, student: nn.Module, batch: Batch, start: str, clamp_start: bool = False) -> torch.Tensor:
        """xa = argmax CE(S(xa), y) by this method's PGD (eps, step size, steps): Madry's inner attack,
        shared by SAT, MART, ARD, AKD2 and IAD. It starts unclamped, as those official codes do
        (`random_start`), unless `clamp_start` (SAT: IAD's AT.py clamps, as Madry's code)."""
        return pgd(lambda xa: F.cross_entropy(student(xa), batch.y, reduction="sum"), batch.x, eps=self.eps,
                   step_size=self.step_size, steps=self.steps, start=start, generator=batch.generator,
                   clamp_start=clamp_start)

    def loss(self, student: nn.Module, batch: Batch, xa: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Everything that defines this run's method, for provenance and for refusing a mismatched resume."""
        return {"method": self.name, "eps": self.eps, "step_size": self.step_size, "steps": self.steps,
                **self.hparams}
