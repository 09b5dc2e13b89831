"""Pull a RobustBench teacher into an rdist artifact, without ever unpickling code from the internet.

robustbench supplies what it is good at: the model zoo (the architecture builder and the Google
Drive id of each model) and the cache layout `<model_dir>/<dataset>/Linf/<name>.pt`; the download
goes through gdown, as robustbench's own does. rdist's cache dir is robustbench's `model_dir` (`$RDIST_CACHE/robustbench`), so a
checkpoint placed there by hand, or by robustbench itself, is used without a download.

The file is loaded here, not by `robustbench.utils.load_model`: that calls `torch.load` with the
library default, a full unpickle on torch < 2.6 or with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set.
rdist reads it with `weights_only=True`, loads it into the module robustbench builds (strictly, but
for the keys robustbench's own loader ignores too, see `rdist.teachers.leaderboard`), copies those
weights into the rdist architecture, and checks that both give the same logits before it writes the
artifact. Before any download it checks that the installed robustbench still builds the architecture
the catalogue names.

robustbench 1.1.1 imports `autoattack` (published on PyPI as `pyautoattack`) and `pkg_resources`
(setuptools < 81). `import_robustbench` (rdist.teachers.robustbench_import) is the one place that makes the
import work.
"""

from __future__ import annotations

import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from rdist.artifact import load_weights, save_model
from rdist.errors import RdistError
from rdist.models import create_model
from rdist.teachers.catalogue import DATASET_LABELS, SOURCE, TEACHERS, Catalogue, TeacherEntry, find_teacher
from rdist.teachers.convert import read_state_dict
from rdist.teachers.families import Layout, Unbuildable, build_on_meta, describe, weights
from rdist.teachers.robustbench_import import import_robustbench
from rdist.files import cache_dir, sha256_file
from rdist.utils import first_line

Log = Callable[[str], None]

# Prefixes RobustBench strips from checkpoint keys: DataParallel's, and the `model.` of some wrappers.
_KEY_PREFIXES = ("module.", "model.")
# Buffers a RobustBench subclass sets in its constructor (its input normalisation): not weights, and absent
# from many of its checkpoints, which RobustBench then loads with strict=False.
_CLASS_CONSTANTS = ("mu", "sigma")

__all__ = ["artifact_path", "checkpoint_path", "drive_url", "import_robustbench", "model_dir", "pull_teacher"]


def model_dir() -> Path:
    """robustbench's `model_dir`: where it keeps (and looks for) downloaded checkpoints."""
    return cache_dir() / "robustbench"


def checkpoint_path(entry: TeacherEntry, directory: str | Path | None = None) -> Path:
    """Where robustbench expects the checkpoint, under its `model_dir` (`directory`, default `model_dir()`); a
    manually downloaded file goes exactly here."""
    return Path(directory or model_dir()).expanduser() / entry.dataset / entry.threat_model / f"{entry.name}.pt"


def artifact_path(entry: TeacherEntry) -> Path:
    return cache_dir() / "teachers" / entry.dataset / f"{entry.name}.safetensors"


def pull_teacher(name: str, dataset: str = "cifar10", *, catalogue: Catalogue = TEACHERS, log: Log | None = None,
                 checkpoints: str | Path | None = None) -> Path:
    """The artifact of RobustBench teacher `name`: converted on first use, then reused from the cache.

    `checkpoints` is robustbench's `model_dir` to read the checkpoint from (and download it into), as its own
    `load_model(model_dir=...)` does [default: `model_dir()`, in rdist's cache]."""
    entry = find_teacher(name, dataset, catalogue)
    out = artifact_path(entry)
    if out.is_file():
        return out
    zoo = import_robustbench()
    spec = _zoo_entry(zoo, entry)
    _check_layout(spec, entry)
    checkpoint = _ensure_checkpoint(entry, spec["gdrive_id"], log, checkpoints)
    if log:
        log(f"converting {checkpoint} to {out}")
    reference = spec["model"]()
    ignored = _load_reference(reference, checkpoint, entry)
    model = _convert(reference, entry)
    del reference
    provenance = {"source": "robustbench", "robustbench_model": entry.name, "threat_model": entry.threat_model,
                  "checkpoint": checkpoint.name, "checkpoint_sha256": sha256_file(checkpoint)}
    if ignored:
        provenance["ignored_checkpoint_keys"] = ignored
    save_model(model, out, dataset=entry.dataset, input_shape=[3, 32, 32], provenance=provenance,
               leaderboard=entry.leaderboard(), results={})
    return out


def drive_url(gdrive_id: str) -> str:
    return f"https://drive.google.com/uc?id={gdrive_id}"


def _zoo_entry(zoo: Any, entry: TeacherEntry) -> dict:
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    models = zoo.model_dicts[BenchmarkDataset(entry.dataset)][ThreatModel(entry.threat_model)]
    if entry.name not in models:
        raise RdistError(f"the installed robustbench has no {entry.threat_model} {entry.dataset} model "
                         f"'{entry.name}'; pip install -U robustbench")
    spec = models[entry.name]
    if not isinstance(spec.get("gdrive_id"), str):
        raise RdistError(f"RobustBench's '{entry.name}' is not a single checkpoint; rdist pulls single models only")
    return spec


def _check_layout(spec: dict, entry: TeacherEntry) -> None:
    """The installed robustbench must still build what the catalogue was made from; checked on the meta
    device, before a download."""
    expected = Layout(entry.arch, entry.mean, entry.std)
    try:
        found = describe(build_on_meta(spec["model"]))
    except Unbuildable as exc:
        found = f"an architecture rdist cannot build ({exc})"
    if found != expected:
        raise RdistError(f"the installed robustbench {version('robustbench')} builds {entry.name} as {_text(found)}, "
                         f"but rdist's catalogue (made from robustbench {SOURCE['robustbench_version']}) says "
                         f"{_text(expected)}; install robustbench {SOURCE['robustbench_version']}, or regenerate the "
                         "catalogue with `python -m rdist.teachers.leaderboard`")


def _text(layout: Layout | str) -> str:
    if isinstance(layout, str) or layout.mean is None:
        return getattr(layout, "arch", layout)
    return f"{layout.arch} normalising with mean {list(layout.mean)}, std {list(layout.std)}"


def _ensure_checkpoint(entry: TeacherEntry, gdrive_id: str, log: Log | None, directory: str | Path | None) -> Path:
    """The checkpoint file in robustbench's cache (`model_dir` `directory`), downloaded if absent; never an HTML
    page."""
    path = checkpoint_path(entry, directory)
    manual = f"download {drive_url(gdrive_id)} in a browser, save it as {path}, and run the command again"
    if path.is_file():
        if _is_html(path):
            path.unlink()
            raise RdistError(f"{path} was an HTML page, not a checkpoint (a failed Google Drive download), "
                             f"so rdist deleted it; {manual}")
        return path
    import gdown
    from gdown.exceptions import FileURLRetrievalError

    if log:
        log(f"downloading {entry.name} ({DATASET_LABELS[entry.dataset]}) from Google Drive to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Download into a private folder and move the file in only once it is checked: an interrupted
    # or failed download leaves nothing in the cache.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
        part = Path(tmp) / path.name
        try:
            # gdown, as robustbench's own downloader uses, minus its print of this temporary path on stdout.
            gdown.download(id=gdrive_id, output=str(part), quiet=log is None)
        except (OSError, FileURLRetrievalError) as exc:  # requests' errors are OSErrors
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            reason = reason if len(reason) <= 160 else reason[:157] + "..."
            raise RdistError(f"cannot download the checkpoint of {entry.name} ({reason}); if this machine is "
                             f"offline, {manual}") from None
        if not part.is_file():
            raise RdistError(f"the download of {entry.name} produced no file; {manual}")
        if _is_html(part):
            raise RdistError(f"Google Drive sent an HTML page instead of the checkpoint of {entry.name} (usually its "
                             f"download quota or a confirmation page); nothing was saved; {manual}")
        os.replace(part, path)
    return path


def _is_html(path: Path) -> bool:
    """True for a web page: checkpoints start with a zip ('PK') or pickle header, never with '<'."""
    with open(path, "rb") as f:
        head = f.read(1024)
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<") and b"html" in head


def _load_reference(reference: nn.Module, checkpoint: Path, entry: TeacherEntry) -> list[str]:
    """Load the checkpoint into RobustBench's module as robustbench does; returns the keys it ignored."""
    # Unwrapped as robustbench does: the entry's containers (usually only "state_dict"), its own key prefixes.
    state = read_state_dict(checkpoint, containers=entry.containers, prefixes=_KEY_PREFIXES,
                            fix="if it is a broken download, delete it and pull again")
    own = reference.state_dict()
    missing = [k for k in own if k not in state and k not in _CLASS_CONSTANTS]
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in state and state[k].shape != v.shape]
    if missing or mismatched or (unexpected and entry.strict):
        parts = [f"{label} {len(keys)}: {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
                 if keys]
        raise RdistError(f"{checkpoint} does not fit RobustBench's architecture of {entry.name} "
                         f"({'; '.join(parts)}); delete it and pull again")
    reference.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    reference.eval()
    return unexpected


def _convert(reference: nn.Module, entry: TeacherEntry) -> nn.Module:
    """The rdist model holding `reference`'s weights, checked to compute the same logits."""
    model = create_model(entry.arch, num_classes=entry.num_classes, in_channels=3, mean=entry.mean, std=entry.std)
    target = model.model if entry.mean is not None else model
    load_weights(target, weights(reference), source=f"RobustBench's {entry.name}")
    model.eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = reference(x), model(x)
    gap = (expected - got).abs().max().item()
    if gap > 1e-4 * (1 + expected.abs().max().item()):
        raise RdistError(f"rdist's {entry.arch} does not reproduce RobustBench's {entry.name} (logits differ by "
                         f"{gap:.2e}); this is a bug in rdist, please report it")
    return model
