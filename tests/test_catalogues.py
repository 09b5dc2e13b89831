"""The one catalogue mechanism (rdist.catalogues): a pydantic entry type, a YAML file of entries, one-line errors
that name file, entry and field, lookup with suggestions, and the JSON Schema editors check the files with."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
import yaml
from pydantic import Field

from rdist.catalogues import Catalogue, Entry, Percent, catalogue_path, schema_path
from rdist.cli.docs import ROOT, schema_files
from rdist.errors import RdistError
from rdist.reproduce import REPRODUCTIONS
from rdist.zoo import ZOO


class Tool(Entry):
    """A catalogue type written from this file alone: a name and two typed fields."""

    kind: Annotated[str, Field(pattern="^(hammer|saw)$", description="hammer or saw")]
    score: Percent


TOOLS = Catalogue("tools", "tools.yaml", "tools", Tool, env="RDIST_TOOLS", option="--tools", noun="tool",
                  listing="`tools list`")


def write(tmp_path, entries) -> str:
    path = tmp_path / "tools.yaml"
    path.write_text(yaml.safe_dump({"tools": entries}))
    return str(path)


def test_a_new_catalogue_type_loads_finds_and_refuses_in_one_line(tmp_path, monkeypatch):
    path = write(tmp_path, [{"name": "claw", "kind": "hammer", "score": 90}, {"name": "rip", "kind": "saw",
                                                                              "score": 55.5}])
    claw, rip = TOOLS.load(path)
    assert (claw.kind, claw.score, rip.to_dict()) == ("hammer", 90.0, {"name": "rip", "kind": "saw", "score": 55.5})
    monkeypatch.setenv("RDIST_TOOLS", path)  # the file can come from the environment
    assert TOOLS.find("rip") == rip
    with pytest.raises(RdistError, match=r"unknown tool 'clwa' \(did you mean: claw\?\); `tools list` shows them"):
        TOOLS.find("clwa")
    for change, message in (
            ({"kind": "drill"}, "entry 1 ('claw'): field 'kind' must be hammer or saw, got 'drill'"),
            ({"score": "90"}, "entry 1 ('claw'): field 'score' must be an accuracy in percent (0-100), got '90'"),
            ({"score": True}, "got True"),
            ({"kind": None}, "entry 1 ('claw') is missing field 'kind'"),
            ({"sore": 3}, "entry 1 ('claw') has unknown field 'sore' (did you mean: score?)")):
        with pytest.raises(RdistError) as error:
            TOOLS.load(write(tmp_path, [{"name": "claw", "kind": "hammer", "score": 90, **change}]))
        assert str(error.value).startswith(f"{tmp_path / 'tools.yaml'}: entry 1 ('claw')"), str(error.value)
        assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(RdistError, match="entry 2 repeats the name 'claw'"):
        TOOLS.load(write(tmp_path, [{"name": "claw", "kind": "saw", "score": 1}] * 2))
    with pytest.raises(RdistError, match="tools catalogue not found: .*; pass --tools PATH or set RDIST_TOOLS"):
        TOOLS.load(tmp_path / "absent.yaml")


def test_the_schema_describes_the_file_and_every_field():
    schema = TOOLS.json_schema()
    assert schema["required"] == ["tools"] and schema["properties"]["tools"]["items"] == {"$ref": "#/$defs/Tool"}
    tool = schema["$defs"]["Tool"]
    assert tool["additionalProperties"] is False and set(tool["required"]) == {"name", "kind", "score"}
    assert tool["properties"]["score"]["maximum"] == 100 and tool["properties"]["kind"]["description"]


@pytest.mark.parametrize("catalogue", [ZOO, REPRODUCTIONS], ids=lambda c: c.file)
def test_each_project_catalogue_names_its_committed_schema(catalogue):
    path = catalogue_path(catalogue.file)
    first = path.read_text().splitlines()[0]
    relative = schema_path(catalogue.file).relative_to(ROOT)
    assert first == f"# yaml-language-server: $schema={relative.as_posix()}", "editors find the schema by this line"
    assert (path.parent / relative).is_file()
    committed = json.loads((ROOT / relative).read_text())
    assert committed == catalogue.json_schema(), "run `python -m rdist.cli.docs` and commit the result"
    assert relative in schema_files()
