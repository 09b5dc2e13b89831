"""One model under every kind of name: a file, zoo:NAME, a RobustBench name, hf-hub:ORG/REPO[@REV] and
hf://ORG/REPO[@REV][/FILE], all offline (a pre-filled RobustBench cache, the Hub stand-in on 127.0.0.1)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from rdist.teachers.robustbench import pull_teacher
from rdist.files import sha256_file
from tests.teachers.conftest import offline_cache, tiny_teacher  # noqa: F401  (fixtures used below)
from tests.zoo.conftest import hub  # noqa: F401

REPO = "rdist-test/tiny-wrn"
ZOO_NAME = "tiny-wrn"


@pytest.fixture
def names(tiny_teacher, hub, tmp_path, monkeypatch) -> dict[str, str]:  # noqa: F811
    """{kind: name} of the same bytes: the RobustBench test teacher, converted from its cached checkpoint."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the Hub stand-in only: every other request still fails
    tiny_teacher.place_checkpoint(seed=1)
    converted = pull_teacher(tiny_teacher.entry.name, "cifar10")
    file = tmp_path / "models" / "tiny-wrn.safetensors"
    file.parent.mkdir()
    shutil.copy(converted, file)
    revision = hub.publish(REPO, {"model.safetensors": file.read_bytes()})
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"students": [{
        "name": ZOO_NAME, "repo": REPO, "file": "model.safetensors", "revision": revision,
        "sha256": sha256_file(file), "arch": "wrn-10-1", "dataset": "cifar10", "method": "trades",
        "teacher": "none", "results": {"clean": 10, "pgd20": 0, "aa": 0}, "command": f"rdist attack zoo:{ZOO_NAME}"}]}))
    monkeypatch.setenv("RDIST_ZOO", str(zoo))
    return {"file": str(file), "zoo": f"zoo:{ZOO_NAME}", "robustbench": tiny_teacher.entry.name,
            "hf-hub": f"hf-hub:{REPO}", "hf-hub@rev": f"hf-hub:{REPO}@{revision}",
            "hf": f"hf://{REPO}", "hf@rev/file": f"hf://{REPO}@{revision}/model.safetensors"}
