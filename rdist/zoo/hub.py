"""Students on the Hugging Face Hub: download into the Hub cache, verified by sha256; publish with a model card.
Any Hub repo holding an rdist model.safetensors (`hf-hub:ORG/REPO[@REV]`, or any file of it: huggingface_hub's own
`hf://ORG/REPO[@REV][/FILE]`) downloads the same way.

Every download also asks for the repo's config.json, as transformers does: the Hub counts the downloads of a library
it does not know by the requests for that file, so pulls through rdist are counted (a repo without one is fine).

All traffic goes through huggingface_hub, so its usual settings apply: HF_ENDPOINT, HF_HUB_CACHE /
HF_HOME, HF_HUB_OFFLINE, and the token from HF_TOKEN or `hf auth login`. The token is handed to
huggingface_hub and never formatted into a message.

Downloads go through `rdist.hubget.hub_download`: out of reach, a pull fails at once, in one line, without the
library's retries. huggingface_hub reads HF_ENDPOINT and HF_HUB_CACHE once, when it is imported; rdist reads them
again at each call and passes them on, so a process that imported it early still honours them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rdist.artifact import read_metadata, with_metadata
from rdist.attacks.flags import Flag
from rdist.catalogues import problem
from rdist.errors import RdistError
from rdist.files import sha256_file
from rdist.hubget import HubUnreachable, hub_download
from rdist.utils import first_line, format_eps
from rdist.zoo.card import DEFAULT_LICENSE, config_json, model_card
from rdist.zoo.catalogue import FIELD_PATTERNS, METRICS, ZooEntry
from rdist.zoo.public import public_metadata, public_reproduction, teacher_name

HUB_FILE = "model.safetensors"
HF_HUB_PREFIX = "hf-hub:"  # hf-hub:ORG/REPO[@REV], any repo holding HUB_FILE
HF_URI_PREFIX = "hf://"  # hf://ORG/REPO[@REV][/FILE], huggingface_hub's file-system URI of a model repo's file
CONFIG_FILE = "config.json"  # the file the Hub counts downloads by (see the module docstring)


def pull_student(entry: ZooEntry, *, cache_dir: str | Path | None = None, endpoint: str | None = None) -> Path:
    """The local path of `entry`'s file, downloaded if needed and checked against its sha256 before use."""
    local = _download(entry.repo, entry.file, entry.revision, cache_dir, endpoint,
                      f"zoo model '{entry.name}' ({entry.repo}, {entry.file} at {entry.revision[:12]})")
    actual = sha256_file(local)
    if actual != entry.sha256:
        _remove_from_cache(local)
        raise RdistError(f"zoo model '{entry.name}': the downloaded {entry.file} has sha256 {actual}, but zoo.yaml "
                         f"records {entry.sha256}; rdist deleted it from the cache and will not use it")
    _count_download(entry.repo, entry.revision, cache_dir, endpoint)
    return local


def pull_repo(repo: str, revision: str | None = None, file: str = HUB_FILE, *, cache_dir: str | Path | None = None,
              endpoint: str | None = None, prefix: str = HF_HUB_PREFIX) -> Path:
    """The local path of Hub repo `repo`'s `file` (model.safetensors) at `revision` (default: main), downloaded if
    needed; `prefix` is how the name was written (hf-hub: or hf://), for messages.

    No catalogue vouches for it: huggingface_hub checks the download, `read_metadata` that it is an rdist model.
    """
    pattern, meaning = FIELD_PATTERNS["repo"]
    if not pattern.fullmatch(repo):
        forms = (f"{HF_URI_PREFIX}ORG/REPO[@REV][/FILE]" if prefix == HF_URI_PREFIX
                 else f"{HF_HUB_PREFIX}ORG/REPO or {HF_HUB_PREFIX}ORG/REPO@REV")
        raise RdistError(f"{prefix}{repo} does not name a Hub repo: write {forms} ({meaning})")
    local = _download(repo, file, revision, cache_dir, endpoint, f"{file} of {prefix}{repo} at {revision or 'main'}")
    _count_download(repo, revision, cache_dir, endpoint)
    return local


def _download(repo: str, file: str, revision: str | None, cache_dir: str | Path | None, endpoint: str | None,
              what: str, probe: bool = True) -> Path:
    try:
        return hub_download(repo, file, revision=revision, cache_dir=cache_dir, endpoint=endpoint, probe=probe)
    except HubUnreachable as exc:
        raise RdistError(f"cannot download {what}: {first_line(exc)}; download it where the Hub is reachable and "
                         "copy the Hub cache (HF_HUB_CACHE) here, or give the file's local path") from None
    except _hub_errors() as exc:
        raise RdistError(f"cannot download {what}: {first_line(exc)}") from None


def _count_download(repo: str, revision: str | None, cache_dir: str | Path | None, endpoint: str | None) -> None:
    """Ask for the repo's config.json, by which the Hub counts downloads (see the module docstring), once the model
    itself was downloaded (and verified); rdist needs nothing of it, so a repo without one is no error."""
    try:
        # No probe: the Hub counts each request for the file, and it answered the model's a moment ago.
        _download(repo, CONFIG_FILE, revision, cache_dir, endpoint, CONFIG_FILE, probe=False)
    except RdistError:
        pass


def push_student(model: str | Path, repo: str, *, name: str | None = None, method: str | None = None,
                 teacher: str | None = None, private: bool = False, endpoint: str | None = None,
                 reproduction: dict | None = None, license: str = DEFAULT_LICENSE,
                 allow_flagged: bool = False) -> ZooEntry:
    """Publish artifact `model` to Hub repo `repo` in one commit; returns the zoo.yaml entry that lists it.

    `reproduction` (`rdist reproduce`'s result as a dict) adds its seeds and the published numbers to the card;
    `license` is the weights' licence as the Hub names licences (mit, apache-2.0, cc-by-4.0, other, ...).
    A report with attack-failure flags (rdist.attacks.flags) is refused unless `allow_flagged`; the card then lists
    them.
    Nothing uploaded names a path of this machine (`rdist.zoo.public`): where the artifact's metadata does, the
    file uploaded is a copy with the public metadata (the same weights), and the entry records that copy's sha256.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    model = Path(model)
    local = read_metadata(model)
    meta = public_metadata(local)
    name = name or repo.split("/")[-1]
    for option, field, value in (("--repo", "repo", repo), ("--name", "name", name)):
        pattern, meaning = FIELD_PATTERNS[field]
        if not pattern.fullmatch(value):
            raise RdistError(f"{option} must be {meaning}, got '{value}'")
    report = measured_report(meta, model)
    flags = [Flag.from_dict(f) for f in report.get("flags") or []]
    if flags and not allow_flagged:
        listed = "; ".join(f.line() for f in flags[:3]) + ("; ..." if len(flags) > 3 else "")
        raise RdistError(f"{model}'s recorded report is flagged ({listed}): its numbers may be gradient masking or a "
                         "failed attack, not robustness; investigate (`rdist attack --list` says what each flag "
                         "means), or publish it anyway with --allow-flagged, and the card will say so")
    provenance = meta.get("provenance") or {}
    method = method or provenance.get("method")
    if not method:
        raise RdistError(f"{model} records no training method; pass --method (e.g. rslad)")
    teacher = teacher_name(teacher or provenance.get("teacher"))
    eps_text = format_eps(report["eps"])
    content = model.read_bytes() if meta == local else with_metadata(model, meta)
    # The revision is known only once the commit exists (a placeholder until then); the card and config do not
    # show it. Checked as zoo.yaml will check it, before anything is uploaded.
    try:
        entry = ZooEntry.model_validate({
            "name": name, "repo": repo, "file": HUB_FILE, "revision": "0" * 40,
            "sha256": hashlib.sha256(content).hexdigest(), "arch": meta["arch"]["name"],
            "dataset": meta.get("dataset") or report["dataset"], "method": method, "teacher": teacher,
            "results": {m: round(100 * report["accuracy"][m], 2) for m in METRICS},
            "command": _attack_command(name, report)})
    except ValidationError as exc:
        raise RdistError(problem(exc, ZooEntry, f"the zoo.yaml entry of {model}")) from None
    token = get_token()
    if not token:
        raise RdistError("no Hugging Face token found: run `hf auth login` or set HF_TOKEN to a token with write "
                         "access, then push again")
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT"), token=token)
    if reproduction is not None:
        reproduction = public_reproduction(reproduction)
    operations = [CommitOperationAdd(HUB_FILE, content),
                  CommitOperationAdd("config.json", config_json(entry, meta, eps_text, reproduction, flags)),
                  CommitOperationAdd("README.md", model_card(entry, eps_text, reproduction, flags,
                                                              report.get("norm", "Linf"), license).encode())]
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        commit = api.create_commit(repo, operations, commit_message=f"Publish {name} (rdist)")
    except _hub_errors() as exc:
        raise RdistError(f"cannot push to {repo}: {first_line(exc)}") from None
    return entry.model_copy(update={"revision": commit.oid})


def measured_report(meta: dict, source: Path) -> dict[str, Any]:
    """The recorded `rdist attack` report with clean, pgd20 and aa on the model's dataset, largest n first."""
    reports = [r for r in (meta.get("results") or {}).values()
               if isinstance(r, dict) and all(m in r.get("accuracy", {}) for m in METRICS)
               and r.get("dataset") == meta.get("dataset", r.get("dataset"))]
    if not reports:
        raise RdistError(f"{source} records no measured {', '.join(METRICS)} accuracy; run `rdist attack {source} "
                         "--suite standard --n 10000 --record` first, then push")
    return max(reports, key=lambda r: r.get("n", 0))


def _attack_command(name: str, report: dict) -> str:
    return (f"rdist attack zoo:{name} --attacks {','.join(report['attacks'])} --data {report['dataset']} "
            f"--n {report['n']} --eps {format_eps(report['eps'])} --seed {report.get('seed', 0)}")


def _remove_from_cache(local: Path) -> None:
    """Delete a cached file: the snapshot link and the blob it points to."""
    blob = local.resolve()
    local.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import EntryNotFoundError, HTTPError

    # OSError covers huggingface_hub's HTTP and cache errors, HTTPError its HTTP client's transport
    # errors, ValueError the ids it refuses.
    return (OSError, HTTPError, EntryNotFoundError, ValueError)
