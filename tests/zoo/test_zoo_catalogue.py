"""zoo.yaml: the project's catalogue is honest (empty until something is published), entries are checked field
by field with errors that name entry and field, and `rdist zoo list` filters them."""

from __future__ import annotations

import json

import pytest

from rdist.errors import RdistError
from rdist.catalogues import catalogue_path
from rdist.zoo import ZOO

PROJECT_ZOO = catalogue_path("zoo.yaml")  # the project's own catalogue


def entry(**changes) -> dict:
    base = {"name": "rslad-resnet18-cifar10", "repo": "rdist-zoo/rslad-resnet18-cifar10", "file": "model.safetensors",
            "revision": "0123456789abcdef0123456789abcdef01234567", "sha256": "ab" * 32, "arch": "resnet18",
            "dataset": "cifar10", "method": "rslad", "teacher": "Zhang2019Theoretically",
            "results": {"clean": 83.1, "pgd20": 55.02, "aa": 51.2},
            "command": "rdist attack zoo:rslad-resnet18-cifar10 --attacks clean,pgd20,aa --n 10000"}
    return {**base, **changes}


def test_the_project_zoo_lists_nothing_unpublished():
    assert PROJECT_ZOO.is_file()
    assert ZOO.load(PROJECT_ZOO) == []


def test_a_complete_entry_loads(write_zoo):
    (loaded,) = ZOO.load(write_zoo([entry()]))
    assert loaded.repo == "rdist-zoo/rslad-resnet18-cifar10" and loaded.results == {"clean": 83.1, "pgd20": 55.02,
                                                                                    "aa": 51.2}


@pytest.mark.parametrize("field", ["name", "repo", "file", "revision", "sha256", "arch", "dataset", "method",
                                   "teacher", "results", "command"])
def test_a_missing_field_is_named_with_its_entry(write_zoo, field):
    broken = entry(name="second")
    del broken[field]
    path = write_zoo([entry(), broken])
    label = "entry 2 ('second')" if field != "name" else "entry 2"
    with pytest.raises(RdistError, match=rf"entry 2.* is missing field '{field}'") as error:
        ZOO.load(path)
    assert label in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("changes, fragment", [
    ({"results": {"clean": 83.1, "pgd20": 55.0}}, "missing field 'results.aa'"),
    ({"results": {"clean": 0.83, "pgd20": 55.0, "aa": 151}}, "'results.aa' must be an accuracy in percent"),
    ({"revision": "main"}, "'revision' must be a full 40-character commit hash"),
    ({"sha256": "abc"}, "'sha256' must be 64 lowercase hex"),
    ({"repo": "no-org"}, "'repo' must be a Hub repo id ORG/NAME"),
    ({"sha": "ab" * 32}, "unknown field 'sha'"),
    ({"name": "rslad resnet18"}, "'name' must be one word"),
])
def test_malformed_fields_are_refused(write_zoo, changes, fragment):
    with pytest.raises(RdistError, match="entry 1 \\('") as error:
        ZOO.load(write_zoo([entry(**changes)]))
    assert fragment in str(error.value)


def test_broken_files_and_duplicates_are_refused(write_zoo, tmp_path):
    with pytest.raises(RdistError, match="repeats the name"):
        ZOO.load(write_zoo([entry(), entry()]))
    bad = tmp_path / "bad.yaml"
    bad.write_text("students:\n  - name: [unclosed\n")
    with pytest.raises(RdistError, match="not valid YAML at line"):
        ZOO.load(bad)
    with pytest.raises(RdistError, match="zoo catalogue not found"):
        ZOO.load(tmp_path / "absent.yaml")


def test_list_filters_by_dataset_arch_and_method(cli, write_zoo, monkeypatch):
    path = write_zoo([entry(),
                      entry(name="ard-mobilenetv2-cifar10", arch="mobilenetv2", method="ard",
                            results={"clean": 82.0, "pgd20": 50.1, "aa": 48.34}),
                      entry(name="rslad-resnet18-cifar100", dataset="cifar100", teacher="Chen2021LTD_WRN34_10",
                            results={"clean": 57.0, "pgd20": 30.5, "aa": 26.7})])
    result = cli("zoo", "list", "--zoo", path, "--data", "cifar10", "--method", "rslad", "--json")
    assert [e["name"] for e in json.loads(result.stdout)] == ["rslad-resnet18-cifar10"]

    monkeypatch.setenv("RDIST_ZOO", str(path))  # the catalogue can also come from the environment
    table = cli("zoo", "list", "--arch", "resnet18")
    assert "26.70" in table.output and "51.20" in table.output, "both resnet18 students are listed"
    assert "48.34" not in table.output, "the mobilenetv2 student is filtered out"
    none = cli("zoo", "list", "--method", "adaad")
    assert "no student" in none.output


def test_list_of_the_empty_project_zoo_says_so(cli):
    result = cli("zoo", "list", "--zoo", PROJECT_ZOO)
    assert "no published students yet" in result.output


def test_list_reports_a_broken_catalogue_on_one_line(cli, write_zoo):
    broken = entry()
    del broken["sha256"]
    cli.fails(["zoo", "list", "--zoo", write_zoo([broken])], "missing field 'sha256'")
