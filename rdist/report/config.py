"""What an evaluation is: every choice `rdist attack`, `rdist compare`, a reproduction and the quickstart make,
in one dataclass (the twin of `rdist.engine.TrainConfig`), and the protocols that fix those choices."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from rdist.attacks import SUITES, resolve_attacks
from rdist.attacks.base import check_norm
from rdist.attacks.protocol import PROTOCOLS
from rdist.device import PRECISIONS
from rdist.errors import RdistError
from rdist.utils import format_eps, parse_eps

DEFAULT_EPS = {"Linf": 8 / 255, "L2": 0.5}  # the budgets of RobustBench's CIFAR boards


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: which attacks, at what budget, on which images, in what numerics.

    Fields take what the command line takes (attacks as "clean,pgd20", eps as "8/255", batch_size as "auto")
    and are read and checked when the config is made; afterwards `attacks` is a tuple of attack names (checked,
    `transfer` expanded, `clean` first), `eps` a float and `batch_size` a positive int or "auto". A suite's
    attacks: `EvalConfig(attacks=SUITES["quick"])`. A `protocol` (PROTOCOLS) fixes the attacks, n and precision
    (and eps, on its board's dataset): a choice of them that differs is refused.

        EvalConfig(attacks="clean,pgd20,aa", eps="8/255", data="cifar10", n=1000)
        EvalConfig(protocol="robustbench", norm="L2")
    """

    attacks: Sequence[str] | str = tuple(SUITES["standard"])
    eps: float | str | None = None  # the budget in [0, 1] pixel units [default: 8/255 in Linf, 0.5 in L2]
    data: str | None = None  # [default: the dataset the model records]
    data_dir: str | None = None  # the folder of named datasets (--data-dir) [default: $RDIST_DATA_DIR, else the cache]
    n: int = 1000  # the first n test images (at most the test set)
    batch_size: int | str = 256  # or "auto": the largest batch the GPU's memory allows; the numbers depend on it
    seed: int = 0  # of the attacks' random starts: the same seed gives the same numbers
    precision: str = "fp32"  # or "bf16": autocast forwards, faster on a GPU, not the protocol papers report
    surrogate: str | None = None  # the model transfer attacks are crafted on [default for ONNX: its source]
    device: str | None = None  # [default: CUDA when present; under torchrun, each rank's GPU]
    norm: str = "Linf"  # the distance eps bounds: Linf or L2
    protocol: str | None = None  # a name of PROTOCOLS, e.g. "robustbench"

    def __post_init__(self) -> None:
        check_norm(self.norm)
        if self.protocol is not None:
            self._apply_protocol()
        if self.n <= 0:
            raise RdistError(f"--n must be a positive number of test images, got {self.n}")
        batch_size = parse_batch_size(self.batch_size)
        if batch_size != "auto" and batch_size <= 0:
            raise RdistError(f"--batch-size must be positive, got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise RdistError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        object.__setattr__(self, "batch_size", batch_size)
        eps = DEFAULT_EPS[self.norm] if self.eps is None else self.eps
        object.__setattr__(self, "eps", parse_eps(eps, norm=self.norm))
        object.__setattr__(self, "attacks", tuple(resolve_attacks(None, self.attacks)))

    def _apply_protocol(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise RdistError(f"unknown --protocol '{self.protocol}'; choose from {', '.join(PROTOCOLS)}")
        protocol = PROTOCOLS[self.protocol]
        defaults = {f: EvalConfig.__dataclass_fields__[f].default for f in ("attacks", "n", "precision")}
        fixed = {"attacks": protocol.attacks, "n": protocol.n, "precision": protocol.precision}
        for name, value in fixed.items():
            given = tuple(resolve_attacks(None, self.attacks)) if name == "attacks" else getattr(self, name)
            if given not in (defaults[name], value):
                shown = ",".join(given) if name == "attacks" else given
                raise RdistError(f"--protocol {protocol.name} fixes {name.replace('_', '-')} "
                                 f"({','.join(value) if name == 'attacks' else value}); drop --{name} {shown}")
            object.__setattr__(self, name, value)

    def check_protocol(self, dataset: str) -> None:
        """Refuse a protocol run on data or at an eps the protocol's boards do not have (once the data is known)."""
        if self.protocol is None:
            return
        protocol = PROTOCOLS[self.protocol]
        eps = protocol.board_eps(dataset, self.norm)
        if abs(self.eps - eps) > 5e-7:
            raise RdistError(f"--protocol {protocol.name} evaluates {dataset} in {self.norm} at eps "
                             f"{format_eps(eps)}, not {format_eps(self.eps)}; drop --eps")

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

