"""RobustBench's Linf CIFAR-10/100 teachers: the ones rdist can pull by name, and the others with the reason.

The entries come from leaderboard.json, which `python -m rdist.teachers.leaderboard` writes from
RobustBench's own sources (see there): the installed robustbench's model zoo says which models exist and
rdist reads from each module which rdist architecture holds it exactly; RobustBench's published
model_info records give `clean` and `autoattack`, in percent, on the full test set at the budget `eps`.
Nothing here is measured by rdist; `rdist attack` measures.

`arch` is the rdist architecture that holds the weights exactly (same keys, same forward);
`mean`/`std` is the normalisation the RobustBench model applies to its [0,1] input itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rdist.data import dataset_shape
from rdist.errors import RdistError
from rdist.teachers.leaderboard import DATA_FILE, FORMAT
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
    arch: str | None                  # rdist architecture; None: rdist cannot build it (see `reason`)
    clean: float | None               # leaderboard clean accuracy, %; None: RobustBench published no model_info
    autoattack: float | None          # leaderboard AutoAttack accuracy, %
    paper: str                        # the paper's title
    link: str
    eps: str = "8/255"                # the leaderboard's evaluation budget
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    threat_model: str = "Linf"
    params: int | None = None         # parameters of `arch` (of RobustBench's module when unbuildable)
    reason: str | None = None         # why rdist cannot build it
    architecture: str = ""            # RobustBench's own description, e.g. "WideResNet-70-16"
    additional_data: bool | None = None
    venue: str = ""
    footnote: str = ""
    external: float | None = None     # a lower robust accuracy a stronger attack found (model_info `external`)
    unreliable: bool = False          # RobustBench flags the evaluation as unreliable
    containers: tuple[str, ...] = ("state_dict",)  # wrappers of the weights in the checkpoint, outermost first
    strict: bool = True               # False: RobustBench itself ignores keys the class does not have
    model_info_commit: str | None = None

    @property
    def num_classes(self) -> int:
        return dataset_shape(self.dataset)[1]

    @property
    def buildable(self) -> bool:
        return self.arch is not None

    def leaderboard(self) -> dict:
        """What an artifact records about where the numbers come from."""
        return {"source": "RobustBench", "model": self.name, "dataset": self.dataset,
                "threat_model": self.threat_model, "eps": self.eps, "clean": self.clean,
                "autoattack": self.autoattack, "link": self.link, "model_info_commit": self.model_info_commit}


Catalogue = dict[tuple[str, str], TeacherEntry]


def load_entries(path: Path = DATA_FILE) -> tuple[dict, list[TeacherEntry]]:
    """(the file's header: source, robustbench_version, model_info_commit; its entries) of leaderboard.json."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RdistError(f"cannot read rdist's teacher catalogue {path} ({exc}); reinstall rdist") from None
    if data.get("format") != FORMAT:
        raise RdistError(f"{path} has format {data.get('format')}, this rdist reads {FORMAT}; reinstall rdist or "
                         "regenerate it with `python -m rdist.teachers.leaderboard`")
    header = {k: v for k, v in data.items() if k != "teachers"}
    return header, [entry_from_record(record, header["model_info_commit"]) for record in data["teachers"]]


def entry_from_record(record: dict, commit: str) -> TeacherEntry:
    """The entry of one record of leaderboard.json (see `rdist.teachers.leaderboard`); `commit`: its model_info."""
    board = record["leaderboard"] or {}
    checkpoint = record.get("checkpoint") or {}
    return TeacherEntry(
        record["name"], record["dataset"], record["arch"], board.get("clean_acc"), board.get("autoattack_acc"),
        board.get("paper", ""), board.get("link", ""), eps=board.get("eps") or "8/255",
        mean=tuple(record["mean"]) if record["mean"] else None, std=tuple(record["std"]) if record["std"] else None,
        threat_model=record["threat_model"], params=record["params"], reason=record["reason"],
        architecture=board.get("architecture", ""), additional_data=board.get("additional_data"),
        venue=board.get("venue", ""), footnote=board.get("footnote", ""), external=board.get("external_acc"),
        unreliable=board.get("unreliable", False), containers=tuple(checkpoint.get("containers", ("state_dict",))),
        strict=checkpoint.get("strict", True), model_info_commit=commit if record["leaderboard"] else None)


SOURCE, _ENTRIES = load_entries()
# Every Linf CIFAR entry of RobustBench's zoo, in the zoo's order.
ROBUSTBENCH: Catalogue = {(e.name, e.dataset): e for e in _ENTRIES}
# The ones rdist can pull: `--teacher NAME`, `rdist teacher pull NAME`.
TEACHERS: Catalogue = {key: e for key, e in ROBUSTBENCH.items() if e.buildable}


def is_teacher_name(name: str) -> bool:
    """Whether `name` is a RobustBench model of the catalogue, buildable or not (a refused one then says why)."""
    return bool(_datasets_of(name))


def _datasets_of(name: str) -> list[str]:
    return sorted({d for n, d in [*TEACHERS, *ROBUSTBENCH] if n == name})


def find_teacher(name: str, dataset: str, catalogue: Catalogue = TEACHERS) -> TeacherEntry:
    """The entry for `name` on `dataset`; an error that suggests close names, names the right dataset, or says
    why rdist cannot build it."""
    if (name, dataset) in catalogue:
        return catalogue[(name, dataset)]
    refused = ROBUSTBENCH.get((name, dataset))
    if refused is not None and not refused.buildable:
        raise RdistError(f"RobustBench's {name} ({DATASET_LABELS.get(dataset, dataset)}) is not a teacher rdist can "
                         f"build: {refused.reason}; pick another from `rdist teacher list --data {dataset}`")
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
    datasets = _datasets_of(name)
    return datasets[0] if len(datasets) == 1 else "cifar10"
