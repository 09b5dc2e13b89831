"""What an evaluation is: every choice `rdist attack`, `rdist compare`, a reproduction and the quickstart make,
in one dataclass (the twin of `rdist.engine.TrainConfig`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from rdist.attacks import SUITES, resolve_attacks
from rdist.device import PRECISIONS
from rdist.errors import RdistError
from rdist.utils import format_eps, parse_eps


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: which attacks, at what budget, on which images, in what numerics.

    Fields take what the command line takes (attacks as "clean,pgd20", eps as "8/255", batch_size as "auto")
    and are read and checked when the config is made; afterwards `attacks` is a tuple of attack names (checked,
    `transfer` expanded, `clean` first), `eps` a float and `batch_size` a positive int or "auto". A suite's
    attacks: `EvalConfig(attacks=SUITES["quick"])`.

        EvalConfig(attacks="clean,pgd20,aa", eps="8/255", data="cifar10", n=1000)
    """

    attacks: Sequence[str] | str = tuple(SUITES["standard"])
    eps: float | str = 8 / 255  # L-inf budget in [0, 1] pixel units
    data: str | None = None  # [default: the dataset the model records]
    n: int = 1000  # the first n test images (at most the test set)
    batch_size: int | str = 256  # or "auto": the largest batch the GPU's memory allows; the numbers depend on it
    seed: int = 0  # of the attacks' random starts: the same seed gives the same numbers
    precision: str = "fp32"  # or "bf16": autocast forwards, faster on a GPU, not the protocol papers report
    surrogate: str | None = None  # the model transfer attacks are crafted on [default for ONNX: its source]
    device: str | None = None  # [default: CUDA when present; under torchrun, each rank's GPU]

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise RdistError(f"--n must be a positive number of test images, got {self.n}")
        batch_size = parse_batch_size(self.batch_size)
        if batch_size != "auto" and batch_size <= 0:
            raise RdistError(f"--batch-size must be positive, got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise RdistError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        object.__setattr__(self, "batch_size", batch_size)
        object.__setattr__(self, "eps", parse_eps(self.eps))
        object.__setattr__(self, "attacks", tuple(resolve_attacks(None, self.attacks)))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "attacks": list(self.attacks), "eps_text": format_eps(self.eps)}


def parse_batch_size(text: str | int) -> int | str:
    """--batch-size: a number of images, or "auto" (the largest batch the GPU's memory allows)."""
    if text == "auto" or isinstance(text, int):
        return text
    try:
        return int(text)
    except ValueError:
        raise RdistError(f"--batch-size must be a positive integer or auto, got '{text}'") from None
