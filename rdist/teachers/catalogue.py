"""The RobustBench teachers rdist can pull by name, with their leaderboard numbers.

Every number is copied from RobustBench's own record of the model (model_info/<dataset>/Linf/<name>.json
in github.com/RobustBench/robustbench): `clean_acc` and `autoattack_acc`, in percent, on the full
test set at the budget `eps`. Nothing here is measured by rdist; `rdist attack` measures.

`arch` is the rdist architecture that holds the weights exactly (same keys, same forward);
`mean`/`std` is the normalisation the RobustBench model applies to its [0,1] input itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdist.data import num_classes
from rdist.errors import RdistError
from rdist.utils import suggest

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

DATASET_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


@dataclass(frozen=True)
class TeacherEntry:
    name: str                         # RobustBench model ID
    dataset: str                      # cifar10 | cifar100
    arch: str                         # rdist architecture
    clean: float                      # leaderboard clean accuracy, %
    autoattack: float                 # leaderboard AutoAttack accuracy, %
    paper: str                        # short description shown by `rdist teacher list`
    link: str
    eps: str = "8/255"                # the leaderboard's evaluation budget
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    threat_model: str = "Linf"

    @property
    def num_classes(self) -> int:
        return num_classes(self.dataset)

    def leaderboard(self) -> dict:
        """What an artifact records about where the numbers come from."""
        return {"source": "RobustBench", "model": self.name, "dataset": self.dataset,
                "threat_model": self.threat_model, "eps": self.eps, "clean": self.clean,
                "autoattack": self.autoattack, "link": self.link}


_TRADES = "https://arxiv.org/abs/1901.08573"
_LTD = "https://arxiv.org/abs/2111.02331"
_BETTER_DM = "https://arxiv.org/abs/2302.04638"
_DKL = "https://arxiv.org/abs/2305.13948"
_GOWAL = "https://arxiv.org/abs/2010.03593"
_ROBUSTBENCH = "https://github.com/RobustBench/robustbench"

_ENTRIES = [
    # TRADES was evaluated at 0.031 (~7.9/255), the budget it was trained for.
    # Not robust: the naturally trained teacher (Tstd) of AKD2 and IAD-II. RobustBench has none for CIFAR-100.
    TeacherEntry("Standard", "cifar10", "wrn-28-10", 94.78, 0.0, "standard (natural) training, WRN-28-10",
                 _ROBUSTBENCH),
    TeacherEntry("Zhang2019Theoretically", "cifar10", "wrn-34-10", 84.92, 53.08, "TRADES, WRN-34-10", _TRADES,
                 eps="0.031"),
    TeacherEntry("Chen2021LTD_WRN34_10", "cifar10", "wrn-34-10", 85.21, 56.94, "LTD, WRN-34-10", _LTD),
    TeacherEntry("Chen2021LTD_WRN34_20", "cifar10", "wrn-34-20", 86.03, 57.71, "LTD, WRN-34-20", _LTD),
    TeacherEntry("Wang2023Better_WRN-28-10", "cifar10", "dm-wrn-28-10", 92.44, 67.31,
                 "better diffusion models (20M synthetic), WRN-28-10", _BETTER_DM,
                 mean=CIFAR10_MEAN, std=CIFAR10_STD),
    TeacherEntry("Cui2023Decoupled_WRN-28-10", "cifar10", "dm-wrn-28-10", 92.16, 67.73,
                 "decoupled KL (20M synthetic), WRN-28-10", _DKL, mean=CIFAR10_MEAN, std=CIFAR10_STD),
    TeacherEntry("Chen2021LTD_WRN34_10", "cifar100", "wrn-34-10", 64.07, 30.59, "LTD, WRN-34-10", _LTD),
    TeacherEntry("Wang2023Better_WRN-28-10", "cifar100", "dm-wrn-28-10", 72.58, 38.83,
                 "better diffusion models (50M synthetic), WRN-28-10", _BETTER_DM,
                 mean=CIFAR100_MEAN, std=CIFAR100_STD),
    TeacherEntry("Cui2023Decoupled_WRN-28-10", "cifar100", "dm-wrn-28-10", 73.85, 39.18,
                 "decoupled KL (50M synthetic), WRN-28-10", _DKL, mean=CIFAR100_MEAN, std=CIFAR100_STD),
    # The CIFAR-100 teacher of the RSLAD paper.
    TeacherEntry("Gowal2020Uncovering_extra", "cifar100", "dm-wrn-70-16", 69.15, 36.88,
                 "Gowal et al. (extra data), WRN-70-16", _GOWAL, mean=CIFAR100_MEAN, std=CIFAR100_STD),
]

Catalogue = dict[tuple[str, str], TeacherEntry]
TEACHERS: Catalogue = {(e.name, e.dataset): e for e in _ENTRIES}


def find_teacher(name: str, dataset: str, catalogue: Catalogue = TEACHERS) -> TeacherEntry:
    """The entry for `name` on `dataset`; an error that suggests close names or names the right dataset."""
    if (name, dataset) in catalogue:
        return catalogue[(name, dataset)]
    if dataset not in {d for _, d in catalogue}:
        raise RdistError(f"rdist has no RobustBench teachers for dataset '{dataset}' (it has "
                         f"{', '.join(sorted({d for _, d in catalogue}))}); train one with `rdist teacher train`")
    datasets = sorted(d for n, d in catalogue if n == name)
    if datasets:
        others = ", ".join(f"--data {d}" for d in datasets)
        label = " and ".join(DATASET_LABELS.get(d, d) for d in datasets)
        raise RdistError(f"teacher '{name}' is a {label} model, not a {DATASET_LABELS.get(dataset, dataset)} one: "
                         f"pass {others}, or pick a {dataset} teacher from `rdist teacher list --data {dataset}`")
    raise RdistError(f"unknown teacher '{name}'{suggest(name, {n for n, _ in catalogue})}; "
                     "`rdist teacher list` shows the RobustBench teachers rdist can pull")


def teacher_dataset(name: str, dataset: str | None) -> str:
    """Which catalogue dataset a RobustBench name means when training on (or attacking with) `dataset`.

    A named dataset means itself (svhn then finds no teacher rather than a CIFAR one). With none, or
    an npz file (a CIFAR subset, say), the name decides: its only dataset, else cifar10.
    """
    if dataset and not dataset.startswith("npz:"):
        return dataset
    datasets = sorted(d for n, d in TEACHERS if n == name)
    return datasets[0] if len(datasets) == 1 else "cifar10"
