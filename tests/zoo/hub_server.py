"""A small stand-in for the Hugging Face Hub HTTP API on 127.0.0.1, for testing huggingface_hub's real client.

It implements what rdist's pull and push use, as the Hub answers them: repo creation, preupload
(always `uploadMode: regular`, so file content comes inline in the commit and no LFS or Xet
protocol is needed), README metadata validation, NDJSON commits, file resolution in model and
dataset repos (HEAD/GET with X-Repo-Commit and ETag), revision info and tree listing. Writes need
`Authorization: Bearer <token>`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
_ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), "create_repo"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate_yaml"),
    ("POST", re.compile(rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)"), "commit"),
    ("GET", re.compile(rf"/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?"), "revision_info"),
    ("GET", re.compile(rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), "tree"),
    ("GET", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
    ("HEAD", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
    # Dataset repos (hf_hub_download(repo_type="dataset")): kept in `repos` as "datasets/ORG/NAME".
    ("GET", re.compile(rf"/datasets/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve_dataset"),
    ("HEAD", re.compile(rf"/datasets/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve_dataset"),
]


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # oid -> {path: content}
    main: str = ""


class HubState:
    """The repos, and every request's method, path and whether it carried the right token."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()

    def commit(self, repo_id: str, files: dict[str, bytes], message: str) -> str:
        repo = self.repos[repo_id]
        snapshot = {**repo.commits.get(repo.main, {}), **files}
        oid = hashlib.sha1(f"{repo.main}\n{message}\n{sorted(files)}\n{len(repo.commits)}".encode()).hexdigest()
        repo.commits[oid] = snapshot
        repo.main = oid
        return oid

    def files(self, repo_id: str, rev: str) -> tuple[str, dict[str, bytes]] | None:
        repo = self.repos[repo_id]
        oid = repo.main if rev == "main" else rev
        return (oid, repo.commits[oid]) if oid in repo.commits else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet: pytest shows failures, not access logs
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- plumbing ------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        state = self.server.state
        path = unquote(urlsplit(self.path).path)
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        authorised = self.headers.get("Authorization") == f"Bearer {state.token}"
        with state.lock:
            state.requests.append((method, path, authorised))
            for verb, pattern, name in _ROUTES:
                match = pattern.fullmatch(path)
                if verb == method and match:
                    getattr(self, name)(authorised, **match.groupdict())
                    return
        self._error(404, "EndpointNotFound", f"no route for {method} {path}")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str, message: str) -> None:
        self._json({"error": message}, status, {"X-Error-Code": code, "X-Error-Message": message})

    def _repo_or_error(self, repo: str) -> Repo | None:
        if repo not in self.server.state.repos:
            self._error(404, "RepoNotFound", f"Repository not found: {repo}")
            return None
        return self.server.state.repos[repo]

    def _files_or_error(self, repo: str, rev: str) -> tuple[str, dict[str, bytes]] | None:
        """(commit oid, files) of `repo` at `rev`, or None after answering 404 for the repo or the revision."""
        if not self._repo_or_error(repo):
            return None
        found = self.server.state.files(repo, rev)
        if found is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return found

    # -- endpoints -----------------------------------------------------------------------------
    def create_repo(self, authorised: bool) -> None:
        if not authorised:
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return
        payload = json.loads(self.body)
        repo_id = f"{payload['organization']}/{payload['name']}"
        state = self.server.state
        if repo_id in state.repos:
            self._json({"error": "You already created this model repo", "url": f"{self.server.url}/{repo_id}"}, 409)
            return
        state.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
        state.commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                     "initial commit")
        self._json({"url": f"{self.server.url}/{repo_id}"})

    def validate_yaml(self, authorised: bool) -> None:
        content = json.loads(self.body)["content"]
        match = re.match(r"---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as exc:
            self._json({"errors": [{"message": str(exc)}], "warnings": []}, 400)
            return
        if not isinstance(meta, dict):
            self._json({"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, 400)
            return
        self._json({"errors": [], "warnings": []})

    def preupload(self, authorised: bool, repo: str, rev: str) -> None:
        if not authorised:
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return
        if self._repo_or_error(repo):
            files = json.loads(self.body)["files"]
            self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                  for f in files], "commitOid": self.server.state.repos[repo].main})

    def commit(self, authorised: bool, repo: str, rev: str) -> None:
        if not authorised:
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return
        if not self._repo_or_error(repo):
            return
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files = {}
        for line in lines:
            if line["key"] == "file":
                assert line["value"]["encoding"] == "base64"
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] != "header":
                self._error(400, "BadRequest", f"the stand-in Hub only accepts inline files, got {line['key']}")
                return
        oid = self.server.state.commit(repo, files, header["summary"])
        self._json({"commitUrl": f"{self.server.url}/{repo}/commit/{oid}", "commitOid": oid,
                    "pullRequestUrl": None})

    def revision_info(self, authorised: bool, repo: str, rev: str | None) -> None:
        found = self._files_or_error(repo, rev or "main")
        if found is None:
            return
        oid, files = found
        self._json({"id": repo, "modelId": repo, "sha": oid, "private": self.server.state.repos[repo].private,
                    "siblings": [{"rfilename": p} for p in sorted(files)]})

    def tree(self, authorised: bool, repo: str, rev: str, path: str | None) -> None:
        found = self._files_or_error(repo, rev)
        if found is None:
            return
        _, files = found
        self._json([{"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                    for p, c in sorted(files.items()) if not path or p.startswith(path.rstrip("/") + "/")])

    def resolve(self, authorised: bool, repo: str, rev: str, path: str) -> None:
        found = self._files_or_error(repo, rev)
        if found is None:
            return
        oid, files = found
        if path not in files:
            self._error(404, "EntryNotFound", f"{path} does not exist at revision {oid}")
            return
        content = files[path]
        self._send(200, content, {"X-Repo-Commit": oid, "ETag": f'"{hashlib.sha256(content).hexdigest()}"'},
                   content_type="application/octet-stream")


    def resolve_dataset(self, authorised: bool, repo: str, rev: str, path: str) -> None:
        self.resolve(authorised, f"datasets/{repo}", rev, path)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    url: str


class HubServer:
    """`with HubServer(token) as hub:` serves on an ephemeral port of 127.0.0.1 until the block ends."""

    def __init__(self, token: str):
        self.state = HubState(token)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.url = self._server.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def publish(self, repo_id: str, files: dict[str, bytes]) -> str:
        """Put `files` into `repo_id` directly (as another publisher would); returns the commit. A dataset repo is
        `datasets/ORG/NAME`."""
        with self.state.lock:
            self.state.repos.setdefault(repo_id, Repo(private=False))
            return self.state.commit(repo_id, files, "published by the test")
