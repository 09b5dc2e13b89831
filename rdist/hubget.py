"""One file of a Hugging Face Hub repo, through huggingface_hub's cache, failing fast and in one line when the Hub is
out of reach (the zoo's pulls, hf:// model names and `--extra-data hf://datasets/...` all download this way).

`hf_hub_download` alone, offline and with nothing cached, asks the Hub once without retries, then again with
exponential back-off (five retries, about 30 s), logging each try. So rdist first asks for the file's metadata once,
without retries (the library's own `get_hf_file_metadata(retry_on_errors=False)`, its fast path): when no HTTP answer
comes back (connection refused, no route or name, a timeout, HF_HUB_OFFLINE), the download is made from the cache
only (`local_files_only=True`), which either returns the cached copy at once or fails at once. When the Hub answers,
even with an error, `hf_hub_download` runs as usual (a 5xx is then retried as the library does: the Hub is there).
huggingface_hub's log records are held back to errors during the call, so a failure prints rdist's line alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Iterator

from rdist.utils import first_line

_COMMIT = re.compile(r"[0-9a-f]{40}")


class HubUnreachable(ConnectionError):
    """The Hub gave no answer and the file is not in the cache; the message says which endpoint and why."""


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """huggingface_hub's warnings (its retries and fallbacks) held back for the block; its errors still show."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def hub_download(repo_id: str, filename: str, *, repo_type: str | None = None, revision: str | None = None,
                 cache_dir: str | os.PathLike | None = None, endpoint: str | None = None, probe: bool = True) -> Path:
    """The local path of `filename` of Hub repo `repo_id` at `revision`, downloaded once into the Hub cache.

    HF_HUB_CACHE and HF_ENDPOINT are read at each call (huggingface_hub reads them once, at import). `probe=False`
    skips the metadata probe, for a request that must be made exactly once (the download counter's config.json,
    asked right after the model came through). Raises huggingface_hub's errors (OSError, its HTTPError, ValueError);
    the caller words them as one RdistError naming the file and its fix.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, LocalEntryNotFoundError

    cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE")
    endpoint = endpoint or os.environ.get("HF_ENDPOINT")
    with quiet_hub():
        if revision and _COMMIT.fullmatch(revision):  # a pinned file once cached is never asked for again
            cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision,
                                            repo_type=repo_type)
            if isinstance(cached, str):
                return Path(cached)
        offline = constants.is_offline_mode()
        reason = "HF_HUB_OFFLINE is set" if offline else ""
        if probe and not offline:
            url = hf_hub_url(repo_id, filename, repo_type=repo_type, revision=revision, endpoint=endpoint)
            try:
                get_hf_file_metadata(url, endpoint=endpoint, retry_on_errors=False)
            except HfHubHTTPError:
                pass  # the Hub answered: hf_hub_download raises or retries as the library means it to
            except (HTTPError, OSError) as exc:  # no answer: refused, unresolvable, timed out, or HF_HUB_OFFLINE
                offline = True
                reason = f"{type(exc).__name__}: {first_line(exc)}"
        try:
            return Path(hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision,
                                        cache_dir=cache_dir, endpoint=endpoint, local_files_only=offline))
        except LocalEntryNotFoundError:
            if not offline:
                raise
            raise HubUnreachable(f"the Hub at {endpoint or constants.ENDPOINT} is out of reach ({reason}) and "
                                 f"{cache_dir or constants.HF_HUB_CACHE} holds no copy") from None
