"""checkpoint.pt: everything a run needs to continue exactly, written atomically at the end of every epoch.

It holds only tensors and plain Python values, so it loads with `torch.load(weights_only=True)`:
model, optimiser, scheduler and weight-average (EMA or SWA) states, the companions' (model, optimiser, scheduler by
role), the method's state tensors, RNG states (as tensors), epoch, global step, best so far, the full config, the
run's identity (what must match for a resume to be the same run) and what the run's callbacks keep to pick up again
(a tracker's run id: `Callback.state_dict`).
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

import rdist.schema as schema
from rdist.engine.config import TrainConfig
from rdist.errors import RdistError
from rdist.files import atomic_path
from rdist.runs import CHECKPOINT, RunDirectory
from rdist.utils import first_line

FORMAT = "rdist-checkpoint"
# 2: TrainConfig.hparams became method_args, the methods' steps attack_steps (in the identity), and a composition's
# identity holds every hyper-parameter of its term. 3: the callbacks' state (a tracker's run id); the identity names the
# initial weights. 4: "swa" became "average" (EMA or SWA), the lr scheduler steps every optimiser step (a LambdaLR),
# the identity holds the extra data; the companions (their weights, optimisers and schedules; in the identity, how
# each is built and trained) and the method's state.
FORMAT_VERSION = 4


def _field_validator(annotation: Any) -> schema.Validator:
    """The validator of a TrainConfig field's type: int, float, str, bool, tuple[int, ...], dict, X | None;
    any other type is left unchecked (TrainConfig.validate still sees the value)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [_field_validator(a) for a in args if a is not type(None)]
        either = inner[0] if len(inner) == 1 else schema.any_of(*inner)
        return schema.optional(either) if type(None) in args else either
    if annotation is bool:
        return schema.kind(lambda v: isinstance(v, bool), "true or false")
    if annotation is int:
        return schema.integer()
    if annotation is float:
        return schema.number()
    if annotation is str:
        return schema.kind(lambda v: isinstance(v, str), "text")
    if typing.get_origin(annotation) in (tuple, list):
        return schema.list_of(_field_validator(args[0]))
    if typing.get_origin(annotation) is dict:
        return schema.mapping(other=_field_validator(args[1]))
    return schema.anything()


_TENSOR = schema.kind(lambda v: isinstance(v, torch.Tensor), "a tensor")
_STATE_DICT = schema.mapping(other=_TENSOR)
_OPTIMIZER = schema.mapping(required=("state", "param_groups"), other=schema.anything())
_CONFIG_TYPES = typing.get_type_hints(TrainConfig)
# Keys a newer rdist adds to the config are ignored by TrainConfig.from_dict, so they are not refused here.
CHECKPOINT_SCHEMA = schema.mapping({
    "config": schema.mapping({f.name: _field_validator(_CONFIG_TYPES[f.name]) for f in fields(TrainConfig)},
                             required=("method", "student"), other=schema.anything()),
    "identity": schema.mapping({"method": schema.mapping({"method": schema.text()}, required=("method",),
                                                         other=schema.anything())},
                               required=("method",), other=schema.anything()),
    "epoch": schema.integer(0), "global_step": schema.integer(0),
    "model": _STATE_DICT, "optimizer": _OPTIMIZER,
    "scheduler": schema.mapping(other=schema.anything()), "average": schema.optional(_STATE_DICT),
    "rng": schema.mapping({"cpu": _TENSOR, "cuda": schema.list_of(_TENSOR)}, required=("cpu", "cuda")),
    "best_epoch": schema.optional(schema.integer(1)), "best_acc": schema.optional(schema.number(0, 1)),
    "callbacks": schema.mapping(other=schema.anything()),
    "companions": schema.mapping(other=schema.mapping({
        "model": _STATE_DICT, "optimizer": _OPTIMIZER, "scheduler": schema.mapping(other=schema.anything())},
        required=("model", "optimizer", "scheduler"))),
    "method_state": _STATE_DICT,
}, required=("config", "identity", "epoch", "global_step", "model", "optimizer", "scheduler", "average", "rng",
             "best_epoch", "best_acc", "callbacks", "companions", "method_state"), other=schema.anything())


def rng_state() -> dict[str, Any]:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    path = RunDirectory(run_dir).checkpoint
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, tmp)
    return path


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The checkpoint of run directory `run_dir` on the CPU; RdistError when `run_dir` is not a run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RdistError(f"cannot resume {run_dir}: no such directory")
    path = RunDirectory(run_dir).checkpoint
    if not path.is_file():
        raise RdistError(f"cannot resume {run_dir}: it is not a run directory (no {CHECKPOINT}; a run writes one at "
                         "the end of its first epoch); pass the --out directory of an earlier run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file raises anything from UnpicklingError to KeyError or EOFError
        raise RdistError(f"cannot resume {run_dir}: {CHECKPOINT} is unreadable ({first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RdistError(f"cannot resume {run_dir}: {CHECKPOINT} is not an rdist training checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise RdistError(f"cannot resume {run_dir}: checkpoint format version {state.get('format_version')} is not "
                         f"the version {FORMAT_VERSION} this rdist writes; start a new run")
    schema.validate(state, CHECKPOINT_SCHEMA, f"cannot resume {run_dir}: {CHECKPOINT}",
                    "the file was altered or written by another program; start a new run")
    return state


def resume_config(run_dir: str | Path, **given: Any) -> TrainConfig:
    """The config of the run in `run_dir`, set to resume it; `given` values (None = not given) override it,
    and the resume refuses them if they change what the run is."""
    stored = TrainConfig.from_dict(load_checkpoint(run_dir)["config"])
    if given.get("method") not in (None, stored.method):
        raise _other_method(run_dir, stored.method, given["method"])
    # max_steps bounds one invocation, not the run: a run stopped by it continues unless it is given again.
    values = {**stored.to_dict(), "max_steps": None, **{k: v for k, v in given.items() if v is not None}}
    method_args = {**stored.method_args,
                   **{k: v for k, v in (given.get("method_args") or {}).items() if v is not None}}
    teachers = {**stored.teachers, **(given.get("teachers") or {})}
    companions = {**stored.companions, **(given.get("companions") or {})}
    return TrainConfig.from_dict({**values, "method_args": method_args, "teachers": teachers,
                                  "companions": companions, "resume": str(run_dir), "out": None})


def check_same_run(run_dir: Path, stored: dict[str, Any], current: dict[str, Any], *, asked: bool = True) -> None:
    """Refuse to continue a run whose identity (method config, models, data, schedule, seed) differs.

    `asked`: --resume asked for this run; otherwise a new run was given the run directory of an earlier one (the
    same command again, as a cluster's requeue or torchrun's restart runs it), which is continued only when it is
    the same run, and any other run there is refused.
    """
    stored_method, current_method = stored["method"]["method"], current["method"]["method"]
    differences = [f"{key} {stored_value!r} (run) vs {current_value!r} (now)"
                   for key, stored_value, current_value in _differences(stored, current)]
    if not asked and differences:
        raise RdistError(f"{run_dir} already holds a run of another configuration ({'; '.join(differences)}); "
                         f"continue that run with --resume {run_dir} alone (it keeps the run's own settings), or "
                         "pass another --out for this one")
    if stored_method != current_method:
        raise _other_method(run_dir, stored_method, current_method)
    if differences:
        raise RdistError(f"cannot resume {run_dir}: its configuration differs: {'; '.join(differences)}; resume with "
                         "the run's own settings (give only --resume) or start a new run")


def _other_method(run_dir: str | Path, stored: str, current: str) -> RdistError:
    return RdistError(f"cannot resume {run_dir}: it is a run of method {stored}, not {current}; resume it with "
                      f"--method {stored} (or leave --method out), or start a new run")


def _differences(stored: dict[str, Any], current: dict[str, Any], prefix: str = ""):
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            yield f"{prefix}{key}", a, b
