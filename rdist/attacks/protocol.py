"""Published evaluation protocols: what each fixes (attacks, images, numerics) and the boards it has (datasets and
the eps of each norm). `rdist attack --protocol NAME` runs one (`rdist.report.config.EvalConfig`); `rdist export
--format robustbench` reads the report it recorded."""

from __future__ import annotations

from dataclasses import dataclass, field

from rdist.errors import RdistError


@dataclass(frozen=True)
class Protocol:
    """A published evaluation protocol: the attacks, images and numerics it fixes, and its boards (the datasets it
    covers, each with the eps of each norm)."""

    name: str
    attacks: tuple[str, ...]
    n: int
    precision: str
    boards: dict[str, dict[str, float]]  # rdist dataset -> norm -> eps
    # rdist dataset -> the protocol's name for it (RobustBench's BenchmarkDataset values)
    datasets: dict[str, str] = field(default_factory=dict)
    about: str = ""

    def board_eps(self, dataset: str, norm: str) -> float:
        """The eps of the protocol's board for `dataset` in `norm`; refuses data or a norm it has no board for."""
        if dataset not in self.boards:
            raise RdistError(f"--protocol {self.name} evaluates {' and '.join(self.boards)} only, not '{dataset}'; "
                             f"pass --data {next(iter(self.boards))}, or drop --protocol")
        if norm not in self.boards[dataset]:
            raise RdistError(f"--protocol {self.name} has no {norm} board for {dataset} (only "
                             f"{', '.join(self.boards[dataset])}); pass --norm {next(iter(self.boards[dataset]))}")
        return self.boards[dataset][norm]


# RobustBench's `benchmark()` (robustbench/eval.py, 1.1.1): AutoAttack standard on the first 10,000 test images, in
# fp32; its clean accuracy on the same images; an example robust when AutoAttack's output is still classified
# correctly (clean misclassifications return the input itself, so they count as broken, as in rdist).
PROTOCOLS = {
    "robustbench": Protocol("robustbench", ("clean", "aa"), 10_000, "fp32",
                            {"cifar10": {"Linf": 8 / 255, "L2": 0.5}, "cifar100": {"Linf": 8 / 255}},
                            {"cifar10": "cifar10", "cifar100": "cifar100"},
                            "AutoAttack standard on the first 10,000 test images in fp32, as RobustBench's benchmark()"),
}
