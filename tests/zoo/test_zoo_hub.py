"""`rdist zoo push|pull` and `rdist attack zoo:NAME` through huggingface_hub's real client, against the Hub
stand-in on 127.0.0.1: verified downloads, a model card with model-index results, and a token never shown."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rdist.artifact import read_metadata
from rdist.errors import RdistError
from rdist.resolve import resolve_model, resolve_teacher
from rdist.files import sha256_file
from rdist.zoo import ZOO, pull_model
from tests.helpers import rdist_offline, refusing_endpoint
from tests.fixtures.hub import TOKEN, uploaded_files


def push(student: Path, repo: str, *extra: str) -> list:
    """`rdist zoo push STUDENT --repo REPO EXTRA`; whatever it prints must not hold the token (checked below)."""
    return ["zoo", "push", student, "--repo", repo, *extra]


def cached_files(hub_cache: Path) -> list[Path]:
    return sorted(p for p in hub_cache.rglob("*") if p.is_file() or p.is_symlink()) if hub_cache.exists() else []


def test_push_then_pull_round_trip(cli, hub, student, tmp_path, monkeypatch):
    local = sha256_file(student)
    result = cli(*push(student, "rdist-zoo/tinycnn-digits"))
    assert TOKEN not in result.output
    (entry,) = yaml.safe_load(result.stdout)
    assert entry["repo"] == "rdist-zoo/tinycnn-digits" and entry["name"] == "tinycnn-digits"
    # The student records its teacher's path: the Hub gets a copy with the public metadata, which the entry pins.
    uploaded = uploaded_files(hub, entry["repo"])["model.safetensors"]
    assert entry["sha256"] == hashlib.sha256(uploaded).hexdigest() != local and len(entry["revision"]) == 40
    assert sha256_file(student) == local, "the local artifact is left as it was"
    assert (entry["arch"], entry["dataset"], entry["method"]) == ("tinycnn", "digits", "rslad")
    assert entry["teacher"] == "smallcnn", "a local teacher path is published as a name only"
    assert entry["results"] == {"clean": 88.12, "pgd20": 44.23, "aa": 42.01}, "the largest recorded n wins"
    assert entry["command"] == ("rdist attack zoo:tinycnn-digits --attacks clean,fgsm,pgd20,cw,aa --data digits "
                                "--n 360 --eps 8/255 --seed 0")
    writes = [(method, path) for method, path, authorised in hub.state.requests if method == "POST"]
    assert all(authorised for method, _, authorised in hub.state.requests if method == "POST"), writes
    assert any(path.endswith("/commit/main") for _, path in writes)

    # What the Hub holds, read back with huggingface_hub itself: three files, one commit, a parseable card.
    from huggingface_hub import HfApi, ModelCard, hf_hub_download

    api = HfApi(endpoint=hub.url)
    assert api.model_info(entry["repo"]).sha == entry["revision"]
    assert {f.path for f in api.list_repo_tree(entry["repo"], revision=entry["revision"])} >= {
        "model.safetensors", "config.json", "README.md"}
    # A cache of the test's own, named explicitly: huggingface_hub read HF_HUB_CACHE when it was imported, before the
    # fixture set it, and the stand-in's commits are the same in every run, so the user's cache could answer with a
    # stale copy; and the pull below must find rdist's cache empty.
    cache = tmp_path / "test-reads"
    card = ModelCard.load(hf_hub_download(entry["repo"], "README.md", revision=entry["revision"], endpoint=hub.url,
                                          cache_dir=cache))
    metrics = {r.metric_config: (r.metric_value, r.dataset_type, r.metric_args) for r in card.data.eval_results}
    assert metrics == {"clean": (88.12, "digits", None), "pgd20": (44.23, "digits", {"norm": "Linf", "eps": "8/255"}),
                       "autoattack": (42.01, "digits", {"norm": "Linf", "eps": "8/255"})}
    config = json.loads(Path(hf_hub_download(entry["repo"], "config.json", revision=entry["revision"],
                                             endpoint=hub.url, cache_dir=cache)).read_text())
    assert config["arch"]["name"] == "tinycnn" and config["provenance"]["teacher"] == "smallcnn"
    # Filed on the Hub as an image classifier of the rdist library, under a licence; the teacher is no base_model:
    # the Hub would show the student as a fine-tune of it.
    assert (card.data.license, card.data.pipeline_tag, card.data.library_name) == ("mit", "image-classification",
                                                                                   "rdist")
    assert card.data.base_model is None and "base_model" not in card.content.split("---")[1]

    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"students": [entry]}, sort_keys=False))
    (listed,) = ZOO.load(zoo)
    before = len(hub.state.requests)
    pulled = cli("zoo", "pull", "tinycnn-digits", "--zoo", zoo)
    local = Path(pulled.stdout.strip())
    assert local.is_file() and str(local).startswith(os.environ["HF_HUB_CACHE"])
    assert sha256_file(local) == listed.sha256 and read_metadata(local)["arch"]["name"] == "tinycnn"
    # The Hub counts downloads of a library it does not know by the requests for config.json: the pull makes one.
    asked = [path for _, path, _ in hub.state.requests[before:]]
    assert f"/{entry['repo']}/resolve/{entry['revision']}/config.json" in asked, asked

    monkeypatch.setenv("RDIST_ZOO", str(zoo))
    assert resolve_model("zoo:tinycnn-digits").path == local
    assert resolve_model("plain/file.safetensors").path == Path("plain/file.safetensors")
    teacher = resolve_teacher("zoo:tinycnn-digits")
    assert teacher.rdist_meta["dataset"] == "digits" and not any(p.requires_grad for p in teacher.parameters())

    attacked = cli("attack", "zoo:tinycnn-digits", "--attacks", "clean", "--n", "40", "--json")
    report = json.loads(attacked.stdout)
    assert report["model"] == str(local) and report["n"] == 40 and 0 <= report["accuracy"]["clean"] <= 1


def test_zoo_pull_takes_hub_names_and_asks_for_config_json_as_the_hub_counts_downloads(cli, hub, student, write_zoo,
                                                                                       tmp_path, monkeypatch):
    content = student.read_bytes()
    revision = hub.publish("someone/student", {"model.safetensors": content, "config.json": b"{}",
                                               "student.onnx": b"an exported copy"})
    zoo = write_zoo([{"name": "student", "repo": "someone/student", "file": "model.safetensors",
                      "revision": revision, "sha256": hashlib.sha256(content).hexdigest(), "arch": "tinycnn",
                      "dataset": "digits", "method": "rslad", "teacher": "smallcnn",
                      "results": {"clean": 88.12, "pgd20": 44.23, "aa": 42.01}, "command": "rdist attack zoo:student"}])
    for name, file in (("hf://someone/student", "model.safetensors"),
                       (f"hf://someone/student@{revision}/student.onnx", "student.onnx"),
                       ("hf-hub:someone/student", "model.safetensors"), ("zoo:student", "model.safetensors"),
                       ("student", "model.safetensors")):
        # Each into an empty cache: a file cached at a pinned commit is not asked for again, config.json neither.
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / f"cache-{len(hub.state.requests)}"))
        before = len(hub.state.requests)
        pulled = cli("zoo", "pull", name, "--zoo", zoo)
        local = Path(pulled.stdout.strip())
        assert local.name == file and str(local).startswith(os.environ["HF_HUB_CACHE"]), name
        asked = [(method, path) for method, path, _ in hub.state.requests[before:]]
        assert any(path.startswith("/someone/student/resolve/") and path.endswith("/config.json")
                   for _, path in asked), (name, asked)
    cli.fails(["zoo", "pull", "hf://someone/ghost"], "cannot download model.safetensors of hf://someone/ghost")


def test_a_card_carries_the_licence_it_is_given(cli, hub, student):
    from huggingface_hub import ModelCard

    result = cli(*push(student, "rdist-zoo/licensed", "--license", "apache-2.0"))
    assert TOKEN not in result.output
    card = ModelCard(uploaded_files(hub, "rdist-zoo/licensed")["README.md"].decode())
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "image-classification"


def test_a_download_whose_sha256_differs_is_deleted_and_refused(cli, hub, write_zoo, tmp_path):
    content = b"not the file zoo.yaml promised"
    revision = hub.publish("someone/student", {"model.safetensors": content})
    zoo = write_zoo([{"name": "student", "repo": "someone/student", "file": "model.safetensors", "revision": revision,
                      "sha256": "0" * 64, "arch": "resnet18", "dataset": "cifar10", "method": "rslad",
                      "teacher": "Zhang2019Theoretically", "results": {"clean": 80, "pgd20": 50, "aa": 45},
                      "command": "rdist attack zoo:student"}])
    cli.fails(["zoo", "pull", "student", "--zoo", zoo], "sha256", "0" * 64, "deleted it")
    cache = Path(os.environ["HF_HUB_CACHE"])
    assert not [p for p in cached_files(cache) if p.name == "model.safetensors" or p.read_bytes() == content]
    with pytest.raises(RdistError, match="will not use it"):
        pull_model("student", zoo)  # a second try downloads again and refuses again


def test_pull_of_a_missing_repo_or_name_fails_on_one_line(cli, hub, write_zoo):
    zoo = write_zoo([{"name": "ghost", "repo": "nobody/ghost", "file": "model.safetensors", "revision": "a" * 40,
                      "sha256": "b" * 64, "arch": "resnet18", "dataset": "cifar10", "method": "rslad",
                      "teacher": "Zhang2019Theoretically", "results": {"clean": 80, "pgd20": 50, "aa": 45},
                      "command": "rdist attack zoo:ghost"}])
    cli.fails(["zoo", "pull", "ghost", "--zoo", zoo], "cannot download zoo model 'ghost'", "nobody/ghost")
    cli.fails(["zoo", "pull", "ghots", "--zoo", zoo], "unknown zoo model 'ghots'", "did you mean: ghost")


def test_push_without_a_token_sends_nothing(cli, hub, student, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    assert TOKEN not in cli.fails(push(student, "rdist-zoo/tinycnn-digits"), "no Hugging Face token", "HF_TOKEN").output
    assert not [r for r in hub.state.requests if r[0] == "POST"] and hub.state.repos == {}


def test_push_refuses_what_is_not_a_measured_rdist_artifact(cli, hub, student, tmp_path):
    not_artifact = tmp_path / "weights.safetensors"
    not_artifact.write_bytes(b"\x00" * 64)
    assert TOKEN not in cli.fails(push(not_artifact, "rdist-zoo/x"), "not a readable safetensors file").output

    import torch
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    assert TOKEN not in cli.fails(push(plain, "rdist-zoo/x"), "without rdist metadata").output

    import rdist

    unmeasured = tmp_path / "unmeasured.safetensors"
    rdist.save_model(rdist.create_model("tinycnn", in_channels=1), unmeasured, dataset="digits",
                     input_shape=[1, 8, 8], provenance={"method": "rslad"})
    assert TOKEN not in cli.fails(push(unmeasured, "rdist-zoo/x"), "records no measured clean, pgd20, aa",
                                  "--record").output
    assert TOKEN not in cli.fails(push(student, "no-org-name"), "--repo must be a Hub repo id ORG/NAME").output
    assert TOKEN not in cli.fails(push(student, "org/ok", "--name", "two words"), "--name must be one word").output
    assert hub.state.repos == {} and not [r for r in hub.state.requests if r[0] == "POST"]


@pytest.mark.e2e
def test_push_in_a_fresh_process_reads_the_hub_settings_from_the_environment(hub, student):
    """The way a user runs it: huggingface_hub imported after HF_ENDPOINT is set; the token is in no output."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "HF_HUB_VERBOSITY": "debug"}
    rdist = [sys.executable, "-c", "from rdist.cli.app import main; main()"]
    done = subprocess.run([*rdist, "zoo", "push", str(student), "--repo", "rdist-zoo/fresh", "--name", "fresh-student",
                           "--private"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    (entry,) = yaml.safe_load(done.stdout)
    assert entry["name"] == "fresh-student" and hub.state.repos["rdist-zoo/fresh"].private
    assert hub.state.repos["rdist-zoo/fresh"].main == entry["revision"]


def test_hub_models_out_of_reach_fail_at_once_in_one_line(cli, tmp_path, monkeypatch):
    """As `--extra-data hf://datasets/...` (tests/data/test_extra.py): no HF_HUB_OFFLINE, a refusing endpoint, one
    request and one line, for `zoo pull` in a fresh process and for hf-hub:/hf:// names wherever a model is named."""
    endpoint = refusing_endpoint()
    done = rdist_offline("zoo", "pull", "hf://someone/student", endpoint=endpoint, cache=tmp_path / "cache")
    assert done.returncode == 1 and done.stdout == "", done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    for fragment in ("error: cannot download model.safetensors of hf://someone/student at main",
                     f"the Hub at {endpoint} is out of reach", "copy the Hub cache (HF_HUB_CACHE) here"):
        assert fragment in line, line
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    cli.fails(["attack", "hf-hub:someone/student", "--attacks", "clean", "--n", "10"],
              "cannot download model.safetensors of hf-hub:someone/student at main", "is out of reach")
