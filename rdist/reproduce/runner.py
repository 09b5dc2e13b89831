"""`rdist reproduce NAME`: every stage of a reproduction, skipped when done and resumed when cut.

The stages, in the output directory (default reproductions/NAME):

    reproduction.json     what this directory reproduces: a different reproduction is refused
    teacher/              a teacher trained as a stage (a RobustBench teacher is pulled into the cache instead)
    seed-N/               the student of seed N: a training run directory (`rdist distill --seeds` layout)
    seed-N/eval.json      its clean, PGD-20 and AutoAttack report on the test images

A stage's output is its proof of completion: a training run is finished when its checkpoint has all its
epochs (an unfinished one is resumed by the engine's exact resume), an evaluation when its eval.json exists.
The teacher is trained once, with seed 0, and shared by every student seed: the students are what is measured.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rdist.engine import BEST, Callback, TrainConfig
from rdist.engine.seeds import train_in, train_seed
from rdist.errors import RdistError
from rdist.methods import NATURAL, ROBUST
from rdist.reproduce.catalogue import METRICS, Reproduction, TeacherStage
from rdist.report.config import EvalConfig
from rdist.report.robustness import Report, robustness_report
from rdist.runs import seed_dir
from rdist.files import atomic_path

REPRODUCTION_FILE = "reproduction.json"
EVAL_FILE = "eval.json"
TEACHER_DIR = "teacher"
TEACHER_SEED = 0
ATTACK_SEED = 0  # every seed's student is attacked with the same random starts


def default_out(entry: Reproduction, select_on: str) -> Path:
    suffix = "" if select_on == entry.select_on else f"-select-{select_on}"
    return Path("reproductions") / f"{entry.name}{suffix}"


def student_config(entry: Reproduction, *, select_on: str, device: str | None, teacher: str | None,
                   natural_teacher: str | None = None, data_dir: str | None = None) -> TrainConfig:
    teachers = {role: path for role, path in ((ROBUST, teacher), (NATURAL, natural_teacher)) if path is not None}
    return TrainConfig(method=entry.method, student=entry.student, data=entry.dataset, data_dir=data_dir,
                       teachers=teachers,
                       recipe=entry.recipe, select_on=select_on, device=device, **entry.options)


def teacher_config(entry: Reproduction, *, select_on: str, device: str | None,
                   data_dir: str | None = None) -> TrainConfig | None:
    stage = entry.teacher
    if not isinstance(stage, TeacherStage):
        return None
    # The entry's options reach the teacher stage too (eps, batch size, ...), but not its method's hyper-parameters.
    shared = {k: v for k, v in entry.options.items() if k != "method_args"}
    return TrainConfig(method=stage.method, student=stage.arch, data=entry.dataset, data_dir=data_dir,
                       select_on=select_on, device=device, seed=TEACHER_SEED, **{**shared, **stage.options})


@dataclass
class SeedResult:
    seed: int
    run_dir: Path
    model: Path
    accuracy: dict[str, float]  # clean, pgd20, aa in percent

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "run_dir": str(self.run_dir), "model": str(self.model), "accuracy": self.accuracy}


@dataclass
class ReproductionResult:
    entry: Reproduction
    select_on: str
    out: Path
    seeds: list[SeedResult] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per metric: published, measured mean and sample std over the seeds (None for one seed), each seed,
        and the gap mean - published in points (None where nothing was published)."""
        rows = {}
        for metric in METRICS:
            values = [s.accuracy[metric] for s in self.seeds]
            mean = statistics.fmean(values)
            published = self.entry.published[metric]
            rows[metric] = {"published": published, "mean": mean,
                            "std": statistics.stdev(values) if len(values) > 1 else None,
                            "seeds": {s.seed: s.accuracy[metric] for s in self.seeds},
                            "gap": mean - published if published is not None else None}
        return rows

    def best_seed(self) -> SeedResult:
        """The seed with the highest AutoAttack accuracy (then PGD-20, then the lowest seed)."""
        return max(self.seeds, key=lambda s: (s.accuracy["aa"], s.accuracy["pgd20"], -s.seed))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.entry.name, "select_on": self.select_on, "out": str(self.out),
                "evaluation": {"n": self.entry.evaluation.n, "eps": self.entry.evaluation.eps_text,
                               "attacks": self.entry.evaluation.attacks},
                "source": self.entry.source, "seeds": [s.to_dict() for s in self.seeds],
                "summary": {m: {**row, "seeds": {str(k): v for k, v in row["seeds"].items()}}
                            for m, row in self.summary().items()}}


def claim_out(out: Path, entry: Reproduction, select_on: str) -> None:
    """Make `out` this reproduction's directory, or refuse one that holds anything else."""
    # What is trained and measured; the published numbers and their source may be corrected without a rerun.
    # An unset natural_teacher is left out, so that directories made before the field existed still match.
    definition = {k: v for k, v in entry.to_dict().items() if k not in ("published", "source")
                  and (k != "natural_teacher" or v is not None)}
    identity = json.loads(json.dumps({"name": entry.name, "select_on": select_on, "entry": definition}))
    marker = out / REPRODUCTION_FILE
    if marker.is_file():
        try:
            stored = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            raise RdistError(f"{marker} is unreadable; pass another --out") from None
        if stored.get("name") != entry.name or stored.get("select_on") != select_on:
            raise RdistError(f"--out {out} holds the reproduction {stored.get('name')} (select on "
                             f"{stored.get('select_on')}), not {entry.name} (select on {select_on}); pass another "
                             "--out")
        if stored != identity:
            changed = sorted(k for k in identity["entry"] if stored.get("entry", {}).get(k) != identity["entry"][k])
            raise RdistError(f"--out {out} holds {entry.name} as it was defined before (changed since: "
                             f"{', '.join(changed)}); pass another --out to run the current definition")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RdistError(f"--out {out} exists and is not a reproduction directory (no {REPRODUCTION_FILE}); pass a "
                         "new or empty directory")
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps(identity, indent=2) + "\n")


def reproduce(entry: Reproduction, seeds: list[int], out: str | Path | None = None, *, select_on: str | None = None,
              device: str | None = None, data_dir: str | None = None, callback: Callback | None = None,
              on_stage: Callable[[str], None] = lambda message: None, progress=None) -> ReproductionResult:
    """Run (or continue) every stage of `entry` for `seeds` in `out`, reading the dataset in the folder `data_dir`
    (see `rdist.data.data_root`); returns the measured results.

    `on_stage(message)` is told what each stage does (pull, train, resume, skip); `callback` watches the training
    runs; `progress` the attacks (as `rdist attack`'s).
    """
    select_on = select_on or entry.select_on
    out = Path(out) if out else default_out(entry, select_on)
    claim_out(out, entry, select_on)
    teacher = _teacher_stage(entry, out, select_on=select_on, device=device, data_dir=data_dir, callback=callback,
                             on_stage=on_stage)
    config = student_config(entry, select_on=select_on, device=device, teacher=teacher, data_dir=data_dir,
                            natural_teacher=_pulled(entry.natural_teacher, entry.dataset, "natural teacher", on_stage))
    result = ReproductionResult(entry, select_on, out)
    for seed in seeds:
        run_dir = seed_dir(out, seed)
        report_path = run_dir / EVAL_FILE
        if report_path.is_file():
            on_stage(f"seed {seed}: trained and evaluated already ({report_path})")
            report = Report.from_dict(json.loads(report_path.read_text()))
        else:
            on_stage(f"seed {seed}: {entry.method} {entry.student} in {run_dir}")
            trained = _stage(f"student seed {seed}", lambda: train_seed(config, out, seed, callback))
            if trained.best_path is None:
                raise RdistError(f"stage student seed {seed}: {run_dir} has no {BEST}; its run evaluated no epoch")
            on_stage(f"seed {seed}: attacking {trained.best_path} with {', '.join(entry.evaluation.attacks)} on the "
                     f"first {entry.evaluation.n} test images")
            report = _stage(f"evaluation seed {seed}", lambda: _evaluate(entry, trained.best_path, report_path,
                                                                         device, data_dir, progress))
        attacks = dict(zip(METRICS, entry.evaluation.attacks))
        result.seeds.append(SeedResult(seed, run_dir, Path(report.model),
                                       {m: 100 * report.accuracy[a] for m, a in attacks.items()}))
    return result


def _teacher_stage(entry: Reproduction, out: Path, *, select_on: str, device: str | None, data_dir: str | None,
                   callback: Callback | None, on_stage: Callable[[str], None]) -> str | None:
    """The teacher the students learn from: pulled (RobustBench name) or trained in out/teacher."""
    if entry.teacher is None:
        return None
    if isinstance(entry.teacher, str):
        from rdist.teachers.robustbench import pull_teacher

        on_stage(f"teacher: {entry.teacher} ({entry.dataset}), pulled once into the cache")
        return str(_stage(f"teacher {entry.teacher}", lambda: pull_teacher(entry.teacher, entry.dataset,
                                                                           log=on_stage)))
    config = teacher_config(entry, select_on=select_on, device=device, data_dir=data_dir)
    run_dir = out / TEACHER_DIR
    on_stage(f"teacher: {config.method} {config.student} in {run_dir}")
    trained = _stage("teacher", lambda: train_in(config, run_dir, callback))
    if trained.best_path is None:
        raise RdistError(f"stage teacher: {run_dir} has no {BEST}; its run evaluated no epoch")
    return str(trained.best_path)


def _pulled(name: str | None, dataset: str, what: str, on_stage: Callable[[str], None]) -> str | None:
    """RobustBench's `name` for `dataset`, pulled once into the cache (None: none)."""
    if name is None:
        return None
    from rdist.teachers.robustbench import pull_teacher

    on_stage(f"{what}: {name} ({dataset}), pulled once into the cache")
    return str(_stage(f"{what} {name}", lambda: pull_teacher(name, dataset, log=on_stage)))


def _evaluate(entry: Reproduction, model: Path, report_path: Path, device: str | None, data_dir: str | None,
              progress) -> Report:
    evaluation = entry.evaluation
    config = EvalConfig(attacks=evaluation.attacks, eps=evaluation.eps, data=entry.dataset, data_dir=data_dir,
                        n=evaluation.n, seed=ATTACK_SEED, device=device)
    # record: the report goes into the artifact too, where `rdist zoo push` reads the measured numbers; eval.json,
    # the stage's proof of completion, is written last.
    report = robustness_report(str(model), config, record=True, progress=progress)
    with atomic_path(report_path) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _stage(name: str, run: Callable[[], Any]) -> Any:
    """Run one stage; its one-line errors say which stage failed."""
    try:
        return run()
    except RdistError as exc:
        raise RdistError(f"stage {name}: {exc}") from None


def estimated_gpu_hours(entry: Reproduction) -> float:
    """GPU hours of one seed (training and evaluation) plus a trained teacher stage, at the assumed throughput
    (see rdist.engine.cost)."""
    from rdist.engine.cost import evaluation_flops, gpu_hours, run_cost
    from rdist.teachers.catalogue import TEACHERS

    teachers = {}
    flops = 0.0
    if isinstance(entry.teacher, TeacherStage):
        teachers[ROBUST] = entry.teacher.arch
        flops += run_cost(teacher_config(entry, select_on=entry.select_on, device=None)).flops
    elif entry.teacher is not None:
        teachers[ROBUST] = TEACHERS[(entry.teacher, entry.dataset)].arch
    if entry.natural_teacher is not None:
        teachers[NATURAL] = TEACHERS[(entry.natural_teacher, entry.dataset)].arch
    config = student_config(entry, select_on=entry.select_on, device=None, teacher=None)
    flops += run_cost(config, teachers).flops
    evaluation = entry.evaluation
    flops += evaluation_flops(entry.student, entry.dataset, evaluation.n, evaluation.aa, entry.published["aa"] / 100)
    return gpu_hours(flops)


def check_push(entry: Reproduction, repo: str) -> None:
    """Refuse a --push that cannot succeed, before any training: a bad repo id, an evaluation without the full
    AutoAttack the zoo records, or no Hugging Face token."""
    from huggingface_hub import get_token

    from rdist.zoo.catalogue import FIELD_PATTERNS

    pattern, meaning = FIELD_PATTERNS["repo"]
    if not pattern.fullmatch(repo):
        raise RdistError(f"--push must be {meaning}, got '{repo}'")
    if entry.evaluation.aa != "aa":
        raise RdistError(f"--push publishes to the zoo, which records full AutoAttack (aa); {entry.name} is "
                         f"evaluated with {entry.evaluation.aa}: run it without --push")
    if not get_token():
        raise RdistError("--push needs a Hugging Face token: run `hf auth login` or set HF_TOKEN to a token with "
                         "write access, then run the reproduction again (nothing was trained)")


def push_best(result: ReproductionResult, repo: str, *, private: bool = False):
    """Publish the best seed's student through the zoo push, its card naming the reproduction, its seeds and the
    published numbers; returns the zoo.yaml entry."""
    from rdist.zoo.hub import push_student

    best = result.best_seed()
    entry = result.entry
    teacher = entry.teacher if isinstance(entry.teacher, str) else None
    return push_student(best.model, repo, name=entry.name, method=entry.method, teacher=teacher, private=private,
                        reproduction=result.to_dict())
