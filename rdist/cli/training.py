"""What `rdist distill` and `rdist teacher train` share: running the training and the summary (their options are in
`rdist.cli.options`, the progress display in `rdist.cli.progress`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from rdist.cli.common import console, err_console, print_json
from rdist.cli.options import parse_milestones
from rdist.cli.progress import plural
from rdist.cli.run_progress import EpochProgress, RunNotes
from rdist.engine import (BEST, CHECKPOINT, LAST, LOG, Callbacks, RunResult, TrainConfig, parse_seeds, resume_config,
                          train, train_seeds)
from rdist.device import default_device
from rdist.engine.config import fill_paper_defaults
from rdist.engine.cost import format_duration, matmul_flops_per_s, run_cost
from rdist.engine.rundir import check_run_dir
from rdist.engine.sync_bn import sync_bn_note
from rdist.engine.trackers import create_tracker
from rdist.errors import RdistError
from rdist.methods import canonical_method, check_kind
from rdist.parallel import ranks_from_env
from rdist.report.profile import format_count
from rdist.utils import parse_eps


def run_training(*, kind: str, resume: Path | None, quiet: bool, json_out: bool, method: str | None,
                 arch: str | None, eps: str | None, step_size: str | None, method_args: dict[str, Any],
                 seeds: str | None = None, log: list[str] | None = None, milestones: str | None = None,
                 **options: Any) -> None:
    """Build the TrainConfig from the given options (or the resumed run's), train, and print the result;
    with `seeds`, one run per seed in a group directory; with `log`, also to those trackers (rank 0's)."""
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if seed_list is not None and options.get("seed") is not None:
        raise RdistError("give --seed or --seeds, not both")
    if seed_list is not None and resume is not None:
        raise RdistError("--seeds trains a group of runs: continue it by running the same command with its --out "
                         "again, not --resume")
    norm = options.get("norm") or "Linf"
    given = {"method": method, "student": arch, "eps": parse_eps(eps, norm=norm) if eps is not None else None,
             "step_size": parse_eps(step_size, "--step-size", norm) if step_size is not None else None,
             "method_args": method_args, "milestones": parse_milestones(milestones), **options}
    if resume is not None:
        config = resume_config(resume, **{**given, "method": canonical_method(method) if method else None})
    else:
        for value, flag in ((method, "--method"), (arch, "--student" if kind == "distill" else "--arch")):
            if value is None:
                raise RdistError(f"{flag} is required (or --resume RUN_DIR to continue a run)")
        config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    check_kind(config.method, kind, str(resume) if resume is not None else None)
    ranks = ranks_from_env()
    # Made first, so that a tracker whose package is missing is refused before anything else happens.
    names = [name.strip() for value in log or [] for name in value.split(",") if name.strip()]
    trackers = [create_tracker(name) for name in dict.fromkeys(names)]
    config, defaults = fill_paper_defaults(config)
    # An output that cannot be written is refused before the header announces (and measures) a long run.
    check_run_dir(config.with_absolute_paths())
    estimate = None
    if defaults and ranks.is_main:
        header = "paper defaults: " + "; ".join(map(str, defaults))
        if any(d.option == "--recipe" for d in defaults):
            estimate = run_cost(config)
            device = default_device(config.device)
            rate = matmul_flops_per_s(device)
            header += (f"; {plural(estimate.steps, 'step')} of {format_count(estimate.flops_per_step)}FLOP: at least "
                       f"{format_duration(estimate.train_flops / rate)} on {device} at its measured "
                       f"{format_count(rate)}FLOP/s")
        err_console.print(header, highlight=False, soft_wrap=True, markup=False)
    note = sync_bn_note(ranks.world_size) if config.sync_bn else None
    if note:
        err_console.print(f"[bold yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    # Under torchrun only rank 0 shows progress and the result: the others would repeat them.
    show_progress = not (quiet or json_out or not ranks.is_main)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--sync-bn has no effect")  # said above, once
        asked = resume is not None
        progress = EpochProgress(estimate, resume_asked=asked) if show_progress else \
            RunNotes(resume_asked=asked) if ranks.is_main else None
        callback = Callbacks([progress, *(trackers if ranks.is_main else [])])
        results = train_seeds(config, seed_list, callback) if seed_list is not None else [train(config, callback)]
    if not ranks.is_main:
        return
    if json_out:
        print_json([r.to_dict() for r in results] if seed_list is not None else results[0].to_dict())
        return
    for result in results:
        print_summary(result)


def print_summary(result: RunResult) -> None:
    how = "finished" if result.stopped_by == "epochs" else f"stopped after --max-steps ({result.global_step} steps)"
    console.print(f"{how}: {result.epochs_done} epochs in {result.run_dir}", highlight=False)
    if result.best_path is not None:
        console.print(f"  {BEST}: epoch {result.best_epoch}, {result.select_metric} {result.best_acc:.2%} on the "
                      "selection split",
                      highlight=False)
    others = [name for name in (LAST, LOG, CHECKPOINT) if (result.run_dir / name).is_file()]
    if others:
        console.print(f"  {', '.join(others)}", highlight=False)
