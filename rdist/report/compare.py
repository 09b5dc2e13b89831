"""Models side by side: size, speed, robustness and provenance of each, plus the data behind the plots
(`rdist.report.render` lays a comparison out as a terminal table, Markdown or CSV).

A robustness report already recorded in an artifact for the same attacks, data, eps and n is reused;
anything else is computed by `robustness_report`, the same code `rdist attack` runs.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from rdist.artifact import check_fits
from rdist.attacks import resolve_attacks
from rdist.attacks.evaluator import Progress
from rdist.data import load_dataset
from rdist.errors import RdistError
from rdist.onnx import graph_precision, is_onnx_path, runs_on_onnx
from rdist.report.config import EvalConfig
from rdist.report.profile import profile_model, profile_onnx
from rdist.report.robustness import Report, robustness_report
from rdist.resolve import ModelSource, model_label, resolve_model
from rdist.runs import EpochRecord, RunDirectory, group_seed_dirs, read_log
from rdist.utils import format_eps, parse_eps


@dataclass
class Entry:
    """One model of a comparison: the name the user typed resolved to a file, and the label it gets in tables."""

    source: ModelSource
    label: str
    meta: dict[str, Any]
    run_dir: Path | None = None

    @property
    def spec(self) -> str:
        return self.source.spec

    @property
    def path(self) -> Path:
        return self.source.path

    @property
    def onnx(self) -> bool:
        return is_onnx_path(self.path)

    @property
    def recordable(self) -> bool:
        # A download is verified by its sha256 on every use, and an ONNX file is never rewritten after
        # `rdist export` checked it: results are recorded into neither.
        return self.source.recordable and not self.onnx


@dataclass
class Member:
    """One training run of a seed group (`rdist compare --runs`)."""

    label: str
    run_dir: str | None
    model: str
    seed: int | None
    accuracy: dict[str, float | None]
    worst_case: float | None


@dataclass
class Row:
    """One model of a comparison (with --runs, one group of runs that differ only by seed: its means)."""

    label: str
    model: str  # the file measured
    run_dir: str | None
    arch: str
    num_classes: int
    runtime: str  # what answered: PyTorch fp32, or ONNX fp32 / int8
    file_bytes: int
    profile: dict[str, Any]  # params, macs, latency_ms, cpu_threads(_all): `rdist.report.profile`'s, as it orders them
    input_shape: list[int]
    accuracy: dict[str, float | None]  # None: an attack an ONNX model cannot take
    worst_case: float | None
    worst_class: dict[str, Any] | None
    per_class: dict[str, Any] | None  # as a Report's
    flags: list[dict[str, Any]]  # as a Report's; a group's carry each run's seed
    reused: bool  # taken from the results the artifact records
    method: str | None
    teacher: str | None
    epochs: int | str | None  # "E/N": a best checkpoint selected at epoch E of N
    # A seed group's (--runs): the sample std of the means (None for one run), the seeds and the runs.
    accuracy_std: dict[str, float | None] | None = None
    worst_case_std: float | None = None
    seeds: list[int | None] | None = None
    members: list[Member] | None = None

    def to_dict(self) -> dict[str, Any]:
        row = {"label": self.label, "model": self.model, "run_dir": self.run_dir, "arch": self.arch,
               "num_classes": self.num_classes, "runtime": self.runtime, "file_bytes": self.file_bytes,
               **self.profile, "input_shape": self.input_shape, "accuracy": self.accuracy,
               "worst_case": self.worst_case, "worst_class": self.worst_class, "per_class": self.per_class,
               "flags": self.flags, "reused": self.reused, "method": self.method, "teacher": self.teacher,
               "epochs": self.epochs}
        if self.members is None:
            return row
        return {**row, "accuracy_std": self.accuracy_std, "worst_case_std": self.worst_case_std, "seeds": self.seeds,
                "members": [asdict(m) for m in self.members]}


@dataclass
class Sweep:
    """Accuracy under one attack at each eps of a sweep, by row label (the robust-accuracy plot's data)."""

    attack: str
    eps: list[float]
    accuracy: dict[str, list[float]]
    std: dict[str, list[float | None]] | None = None  # a seed group's, with --runs

    def to_dict(self) -> dict[str, Any]:
        sweep = {"attack": self.attack, "eps": self.eps, "accuracy": self.accuracy}
        return sweep if self.std is None else {**sweep, "std": self.std}


@dataclass
class Comparison:
    """What `compare_models` measured: the evaluation's settings and a row per model. `to_dict()` is the JSON that
    `rdist compare --json` prints, and what `rdist.report.render` and `rdist.report.plots` lay out."""

    dataset: str
    eps: float
    norm: str
    n: int
    seed: int
    attacks: list[str]
    surrogate: str | None
    edge: bool  # an ONNX model is among them: every row gets its file size and all-thread latency
    models: list[Row]
    sweep: Sweep | None = None

    def to_dict(self) -> dict[str, Any]:
        comparison = {"dataset": self.dataset, "eps": self.eps, "eps_text": format_eps(self.eps), "norm": self.norm,
                      "n": self.n, "seed": self.seed, "attacks": self.attacks, "surrogate": self.surrogate,
                      "edge": self.edge, "models": [r.to_dict() for r in self.models]}
        return comparison if self.sweep is None else {**comparison, "sweep": self.sweep.to_dict()}


def resolve_entries(specs: list[str], runs: bool = False, data: str | None = None) -> list[Entry]:
    """Each model argument as an Entry: any model name `rdist.resolve` takes (a RobustBench name is pulled for
    `data` on first use); with `runs`, the arguments are training run directories."""
    if not specs:
        raise RdistError("no model to compare: pass model files or names, or run directories with --runs")
    duplicates = sorted({s for s in specs if specs.count(s) > 1})
    if duplicates:
        raise RdistError(f"{', '.join(duplicates)} given more than once; give each model once")
    if runs:
        specs = [member for spec in specs for member in _group_members(spec)]
    entries = []
    for spec in specs:
        if runs:
            source = ModelSource(spec, "file", RunDirectory(spec).model())
            entries.append(Entry(source, Path(spec).resolve().name, source.metadata(), run_dir=Path(spec)))
        elif Path(spec).is_dir():
            raise RdistError(f"{spec} is a directory: pass --runs to compare training run directories, "
                             "or name the .safetensors file inside it")
        else:
            source = resolve_model(spec, data)
            entries.append(Entry(source, source.label, source.metadata()))
    if len({e.label for e in entries}) < len(entries):
        for entry in entries:
            entry.label = entry.spec
    return entries


def _group_members(spec: str) -> list[str]:
    """A run directory as given; a group directory of `--seeds` (seed-N runs, no log of its own) as its runs."""
    members = [] if RunDirectory(spec).is_run() else group_seed_dirs(spec)
    return [str(m) for m in members] or [spec]


def _seed_free_identity(meta: dict[str, Any]) -> str:
    """What a training run is, but for its seed: runs equal in this differ only by seed."""
    prov = meta.get("provenance") or {}
    selection = prov.get("selection") or {}
    teachers = {k: v for k, v in prov.items() if k == "teacher" or k.endswith("_teacher")}  # every role's
    return json.dumps({"arch": meta.get("arch"), "dataset": meta.get("dataset"), **teachers,
                       **{k: prov.get(k) for k in ("method_config", "eps", "epochs", "recipe", "schedule")},
                       "selection": {k: selection.get(k) for k in ("on", "metric", "n")}}, sort_keys=True, default=str)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def group_seeds(rows: list[Row], entries: list[Entry]) -> list[Row]:
    """Training runs that differ only by seed as one row: accuracies are means over the runs, with their
    sample std (`accuracy_std`, `worst_case_std`; None for one run), the seeds, and the member runs."""
    groups: dict[str, list[tuple[Row, Entry]]] = {}
    for row, entry in zip(rows, entries):
        groups.setdefault(_seed_free_identity(entry.meta), []).append((row, entry))
    grouped = []
    for members in groups.values():
        first = members[0][0]
        seeds = [(e.meta.get("provenance") or {}).get("seed") for _, e in members]
        accuracy = {a: _mean_std([r.accuracy[a] for r, _ in members]) for a in first.accuracy}
        worst = _mean_std([r.worst_case for r, _ in members])
        parents = {Path(r.run_dir).resolve().parent for r, _ in members}
        label = first.label
        if len(members) > 1:
            label = next(iter(parents)).name if len(parents) == 1 else f"{label} (+{len(members) - 1} seeds)"
        per_class = _mean_per_class([r.per_class for r, _ in members])
        grouped.append(replace(
            first, label=label, accuracy={a: m for a, (m, _) in accuracy.items()},
            accuracy_std={a: sd for a, (_, sd) in accuracy.items()}, worst_case=worst[0], worst_case_std=worst[1],
            seeds=seeds, reused=all(r.reused for r, _ in members), per_class=per_class,
            worst_class=per_class["worst_class"] if per_class else None,
            flags=[{**f, "seed": seed} for (r, _), seed in zip(members, seeds) for f in r.flags]
            if len(members) > 1 else first.flags,
            members=[Member(r.label, r.run_dir, r.model, seed, r.accuracy, r.worst_case)
                     for (r, _), seed in zip(members, seeds)]))
    return grouped


def _mean_per_class(tables: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """A seed group's per-class accuracies (`tables`: each run's): each class's mean over its runs (None unless
    every run has per-class numbers for the same classes), and the class whose mean worst-case accuracy is the
    lowest."""
    if any(t is None for t in tables) or len({t["classes"] for t in tables}) > 1:
        return None

    def mean(lists: list[list[float | None]]) -> list[float | None]:
        return [None if None in column else statistics.fmean(column) for column in zip(*lists)]

    worst = mean([t["worst_case"] for t in tables])
    value, lowest = min((v, k) for k, v in enumerate(worst) if v is not None)
    return {"classes": tables[0]["classes"], "images": tables[0]["images"],
            "accuracy": {a: mean([t["accuracy"][a] for t in tables]) for a in tables[0]["accuracy"]},
            "worst_case": worst, "worst_class": {"class": lowest, "accuracy": value}}


def training_logs(comparison: Comparison) -> dict[str, list[EpochRecord]]:
    """The log.jsonl records of each run directory in the comparison, by label."""
    runs = [m for r in comparison.models for m in (r.members or [r])]
    return {r.label: read_log(RunDirectory(r.run_dir).log) for r in runs if r.run_dir}


def check_same_task(entries: list[Entry]) -> None:
    """Refuse to rank models that do not answer the same question: different class counts."""
    counts = {e.label: e.meta["arch"]["num_classes"] for e in entries}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{label} has {count} classes" for label, count in counts.items())
        raise RdistError(f"cannot compare models with different class counts: {listed}; "
                         "compare models trained on the same classes")


def comparison_data(entries: list[Entry], data: str | None) -> str:
    """The dataset to evaluate every model on: --data, else the one all models record."""
    if data:
        return data
    recorded = {e.label: e.meta.get("dataset") for e in entries}
    missing = [label for label, d in recorded.items() if not d]
    if missing:
        raise RdistError(f"{', '.join(missing)} records no dataset: pass --data")
    if len(set(recorded.values())) > 1:
        listed = ", ".join(f"{label}: {d}" for label, d in recorded.items())
        raise RdistError(f"the models were trained on different data ({listed}); pass --data to compare them "
                         "on the same test images")
    return next(iter(recorded.values()))


class Evaluator:
    """Robustness reports for the entries of one comparison: reused when already recorded, else computed.

    A report is reused when it was made on the same data, n and eps and covers the attacks asked for:
    the recorded results of the artifact (unless `fresh`), and any report computed earlier in this comparison.
    """

    def __init__(self, entries: list[Entry], config: EvalConfig, *, fresh: bool = False, record: bool = False,
                 progress: Progress | None = None):
        self.dataset = load_dataset(config.data, root=config.data_dir, device="cpu")
        for entry in entries:
            check_fits(entry.meta, self.dataset, entry.label)
        self.config = replace(config, n=min(config.n, len(self.dataset.y_test)))
        self.fresh, self.record, self.progress = fresh, record, progress
        self.computed: dict[str, list[Report]] = {e.label: [] for e in entries}

    def report(self, entry: Entry, attacks: list[str], eps: float) -> tuple[Report, bool]:
        """(the report of exactly `attacks` at `eps`, whether it was reused from the artifact)."""
        return self._find_or_run(entry, attacks, eps, lambda r: r.attacks == attacks)

    def accuracy(self, entry: Entry, attack: str, eps: float) -> float:
        """Accuracy under one attack, taken from any report that ran it at `eps` (the others do not change it)."""
        report, _ = self._find_or_run(entry, ["clean", attack], eps, lambda r: attack in r.accuracy)
        return report.accuracy[attack]

    def _find_or_run(self, entry: Entry, attacks: list[str], eps: float,
                     covers: Callable[[Report], bool]) -> tuple[Report, bool]:
        computed = self.computed[entry.label]
        recorded = [] if self.fresh else [Report.from_dict(r) for r in entry.meta.get("results", {}).values()]
        for report in (*computed, *recorded):
            # results_key stores eps to 6 decimals: the same tolerance decides what "the same eps" is.
            if (report.dataset == self.dataset.name and report.n == self.config.n and report.norm == self.config.norm
                    and abs(report.eps - eps) < 5e-7 and covers(report)):
                return report, not any(report is c for c in computed)
        progress = self.progress
        labelled = (lambda name, done, total, note: progress(f"{entry.label} {name}", done, total, note)) \
            if progress else None
        report = robustness_report(str(entry.path), replace(self.config, attacks=attacks, eps=eps),
                                   record=self.record and entry.recordable, progress=labelled)
        computed.append(report)
        return report, False


def _provenance(meta: dict[str, Any]) -> dict[str, Any]:
    """The method, teacher and epochs a row shows."""
    prov = meta.get("provenance") or {}
    teacher = prov.get("teacher")
    epochs = prov.get("epochs")
    if epochs is not None and prov.get("epoch") not in (None, epochs):
        epochs = f"{prov['epoch']}/{epochs}"  # a best checkpoint selected before the last epoch
    # A RobustBench teacher records where it came from rather than how it was trained.
    method = prov.get("method") or prov.get("source") or ("imported" if prov.get("imported_from") else None)
    return {"method": method, "teacher": model_label(teacher) if teacher else None, "epochs": epochs}


def compare_models(models: list[str], config: EvalConfig | None = None, *, runs: bool = False, fresh: bool = False,
                   record: bool = False, sweep: str | list[float] | None = None, sweep_attack: str = "pgd20",
                   progress: Progress | None = None) -> Comparison:
    """Compare `models` (paths, zoo:NAME, RobustBench names, hf-hub:ORG/REPO[@REV], .onnx files, or with `runs`
    training run directories) under the evaluation `config` (its data: by default the dataset all the models
    record); transfer attacks are crafted on `config.surrogate` (an ONNX file's default: the artifact it was
    exported from). Results an artifact records for the same attacks, data, eps and n are reused unless `fresh`;
    `record` writes the new ones into the artifacts (downloads excepted).

    An ONNX file is measured in ONNX Runtime: its size on disk, its latency on one and on all CPU threads, and
    the attacks that need no gradient of it (the others are None, and so is its worst case); with an ONNX file
    in the comparison every row gets its file size and all-thread latency.

    Returns the Comparison, a Row per model; with `sweep` (eps values, or a "start:stop:step" text) also its
    `sweep`: the accuracy under `sweep_attack` at each eps, for the plot.
    """
    config = config or EvalConfig()
    names, eps_value = list(config.attacks), config.eps
    sweep_values = parse_sweep(sweep, config.norm) if sweep is not None else None
    if sweep_values is not None:
        sweep_attack = resolve_attacks(None, [sweep_attack])[-1]
    entries = resolve_entries(models, runs=runs, data=config.data)
    check_same_task(entries)
    onnx_labels = [e.label for e in entries if e.onnx]
    edge = bool(onnx_labels)
    if onnx_labels and not any(runs_on_onnx(a) for a in names):
        raise RdistError(f"{', '.join(names)} need gradients, which {', '.join(onnx_labels)} (ONNX) cannot give: "
                         "add clean, square or transfer-pgd20 to --attacks")
    if sweep_values is not None and onnx_labels and not runs_on_onnx(sweep_attack):
        raise RdistError(f"--plot sweeps {sweep_attack}, which needs gradients that {', '.join(onnx_labels)} (ONNX) "
                         "cannot give: pass --sweep-attack square or transfer-pgd20")
    evaluator = Evaluator(entries, replace(config, data=comparison_data(entries, config.data)), fresh=fresh,
                          record=record, progress=progress)
    rows = []
    for entry in entries:
        applicable = [a for a in names if runs_on_onnx(a)] if entry.onnx else names
        report, reused = evaluator.report(entry, applicable, eps_value)
        shape = entry.meta.get("input_shape") or list(evaluator.dataset.input_shape)
        if entry.onnx:
            profile = profile_onnx(entry.path, entry.meta, shape)
        else:
            profile = profile_model(entry.source.load("cpu"), shape, all_threads=edge)
        rows.append(Row(
            label=entry.label, model=str(entry.path), run_dir=str(entry.run_dir) if entry.run_dir else None,
            arch=entry.meta["arch"]["name"], num_classes=entry.meta["arch"]["num_classes"], runtime=_runtime(entry),
            file_bytes=entry.path.stat().st_size, profile=profile, input_shape=list(shape),
            accuracy={a: report.accuracy.get(a) for a in names},
            worst_case=report.worst_case if applicable == names else None,
            worst_class=(report.per_class or {}).get("worst_class") if applicable == names else None,
            per_class=report.per_class, flags=report.flags, reused=reused, **_provenance(entry.meta)))
    if runs:
        rows = group_seeds(rows, entries)
    comparison = Comparison(dataset=evaluator.dataset.name, eps=eps_value, norm=config.norm, n=evaluator.config.n,
                            seed=config.seed, attacks=names, surrogate=config.surrogate, edge=edge, models=rows)
    if sweep_values is not None:
        accuracy = {e.label: [evaluator.accuracy(e, sweep_attack, v) for v in sweep_values] for e in entries}
        comparison.sweep = Sweep(sweep_attack, sweep_values, accuracy)
        if runs:  # a group's mean and std at each eps
            curves = {r.label: [[accuracy[m.label][i] for m in r.members] for i in range(len(sweep_values))]
                      for r in rows}
            comparison.sweep.accuracy = {k: [_mean_std(v)[0] for v in c] for k, c in curves.items()}
            comparison.sweep.std = {k: [_mean_std(v)[1] for v in c] for k, c in curves.items()}
    return comparison


def _runtime(entry: Entry) -> str:
    return f"ONNX {graph_precision(entry.path)}" if entry.onnx else "PyTorch fp32"


def parse_sweep(text: str | list[float], norm: str = "Linf") -> list[float]:
    """Eps values from "0,4/255,8/255" or "START:STOP:STEP" (STOP included), e.g. "0:16/255:2/255"."""
    if not isinstance(text, str):
        return [parse_eps(v, "--sweep", norm) for v in text]
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise RdistError(f"cannot read the eps sweep '{text}': write START:STOP:STEP like 0:16/255:2/255, "
                             "or a list like 0,4/255,8/255")
        start, stop, step = (parse_eps(p, "--sweep", norm) for p in parts)
        if step <= 0 or stop < start:
            raise RdistError(f"eps sweep '{text}' is empty: STEP must be > 0 and STOP >= START")
        count = int(round((stop - start) / step)) + 1
        return [start + i * step for i in range(count) if start + i * step <= stop + 1e-9]
    values = [parse_eps(v, "--sweep", norm) for v in text.split(",") if v.strip()]
    if not values:
        raise RdistError("the eps sweep is empty: give values like 0,4/255,8/255")
    return sorted(set(values))
