"""reproductions.yaml: every entry resolves without a download, and a broken catalogue fails in one line."""

from __future__ import annotations

import pytest
import yaml

from rdist.errors import RdistError
from rdist.methods import method_class
from rdist.reproduce import REPRODUCTIONS, TeacherStage, check_entry
from rdist.teachers.catalogue import TEACHERS
from rdist.catalogues import catalogue_path

PROJECT_REPRODUCTIONS = catalogue_path("reproductions.yaml")  # the project's own catalogue

ENTRIES = REPRODUCTIONS.load(PROJECT_REPRODUCTIONS)
# The rows of the spec's reference results (shared/spec/methods.md), with their AutoAttack accuracy.
SPEC_ROWS = {
    ("rslad", "resnet18", "cifar10"): 51.49, ("rslad", "mobilenetv2", "cifar10"): 50.17,
    ("ard", "resnet18", "cifar10"): 49.19, ("ard", "mobilenetv2", "cifar10"): 48.34,
    ("iad-i", "resnet18", "cifar10"): 49.10, ("iad-i", "mobilenetv2", "cifar10"): 48.40,
    ("trades", "resnet18", "cifar10"): 49.23, ("trades", "mobilenetv2", "cifar10"): 47.17,
    ("sat", "resnet18", "cifar10"): 45.83, ("sat", "mobilenetv2", "cifar10"): 46.32,
    ("rslad", "resnet18", "cifar100"): 26.70, ("rslad", "mobilenetv2", "cifar100"): 26.12,
    ("adaad", "resnet18", "cifar100"): 26.54, ("adaad+igdm", "resnet18", "cifar100"): 27.88,
}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_entry_resolves(entry):
    check_entry(entry)  # method, student and dataset exist; the teacher is in the catalogue or a teacher stage
    if isinstance(entry.teacher, str):
        assert (entry.teacher, entry.dataset) in TEACHERS
    elif isinstance(entry.teacher, TeacherStage):
        assert method_class(entry.teacher.method).kind == "teacher"
    else:
        assert method_class(entry.method).teachers == ()
    assert entry.published["aa"] is not None and 0 < entry.published["aa"] <= 100
    assert entry.source["paper"] and entry.source["table"]
    assert entry.evaluation.attacks[:2] == ["clean", "pgd20"] and entry.evaluation.attacks[2].startswith("aa")


def test_the_spec_reference_rows_are_all_there_with_their_numbers():
    rows = {(e.method, e.student, e.dataset): e for e in ENTRIES}
    for key, aa in SPEC_ROWS.items():
        entry = rows[key]
        assert entry.published["aa"] == pytest.approx(aa), key
        assert (entry.recipe, entry.select_on) == ("paper", "test")
        assert (entry.evaluation.n, entry.evaluation.aa) == (10000, "aa")
        assert entry.evaluation.eps == pytest.approx(8 / 255)
    assert rows[("rslad", "resnet18", "cifar100")].teacher == "Gowal2020Uncovering_extra"
    assert rows[("adaad+igdm", "resnet18", "cifar100")].teacher == "Wang2023Better_WRN-28-10"
    assert rows[("rslad", "resnet18", "cifar10")].teacher == "Zhang2019Theoretically"


def test_the_digits_row_trains_its_teacher_as_a_stage_and_is_small():
    entry = REPRODUCTIONS.find("digits-rslad", ENTRIES)
    assert isinstance(entry.teacher, TeacherStage) and entry.dataset == "digits"
    assert entry.options["epochs"] <= 5 and entry.evaluation.n <= 200


def test_unknown_name_suggests_the_close_ones():
    with pytest.raises(RdistError, match=r"unknown reproduction 'rslad-resnet18-cifar1'.*did you mean"):
        REPRODUCTIONS.find("rslad-resnet18-cifar1", ENTRIES)


def write(tmp_path, entries):
    path = tmp_path / "reproductions.yaml"
    path.write_text(yaml.safe_dump({"reproductions": entries}, sort_keys=False))
    return path


GOOD = {"name": "x", "method": "sat", "student": "tinycnn", "dataset": "digits", "select_on": "val",
        "evaluation": {"n": 10, "eps": "32/255"}, "published": {"aa": 10.0}, "source": {"paper": "p", "table": "t"}}


@pytest.mark.parametrize("change, message", [
    ({"source": None}, "missing field 'source'"),
    ({"published": {"clean": 90}}, "missing field 'published.aa'"),
    ({"published": {"aa": 120}}, "'published.aa' must be an accuracy in percent"),
    ({"source": {"paper": "p"}}, "missing field 'source.table'"),
    ({"options": {"epoch": 3}}, "unknown option 'epoch' (did you mean: epochs"),
    ({"select_on": "train"}, "select_on' must be one of val, test"),
    ({"evaluatoin": {}}, "unknown field 'evaluatoin'"),
])
def test_a_broken_entry_is_named_with_its_field(tmp_path, change, message):
    with pytest.raises(RdistError, match="entry 1 \\('x'\\)") as info:
        REPRODUCTIONS.load(write(tmp_path, [{**GOOD, **change}]))
    assert message in str(info.value)


def test_an_entry_whose_names_do_not_resolve_is_refused(tmp_path):
    (entry,) = REPRODUCTIONS.load(write(tmp_path, [{**GOOD, "method": "rslad", "teacher": "Zhang2019Theoretica",
                                                     "dataset": "cifar10"}]))
    with pytest.raises(RdistError, match="'x': unknown teacher 'Zhang2019Theoretica'.*Zhang2019Theoretically"):
        check_entry(entry)
    (entry,) = REPRODUCTIONS.load(write(tmp_path, [{**GOOD, "method": "rslad"}]))
    with pytest.raises(RdistError, match="reproduction 'x': rslad needs teacher"):
        check_entry(entry)
    (entry,) = REPRODUCTIONS.load(write(tmp_path, [{**GOOD, "student": "resnet19"}]))
    with pytest.raises(RdistError, match="unknown architecture 'resnet19'"):
        check_entry(entry)


def test_list_shows_every_row_with_published_aa_and_gpu_hours(cli):
    result = cli("reproduce", "--list", "--json")
    import json

    listed = json.loads(result.stdout)
    assert listed["assumed_tflops"] > 0
    rows = {r["name"]: r for r in listed["reproductions"]}
    assert set(rows) == {e.name for e in ENTRIES}
    # More work costs more: a WRN-70-16 teacher over a WRN-34-10 one, ResNet-18 over MobileNetV2, AdaAD's teacher
    # gradients at every attack step over RSLAD's single teacher pass.
    assert rows["rslad-resnet18-cifar100"]["gpu_hours"] > rows["rslad-resnet18-cifar10"]["gpu_hours"]
    assert rows["rslad-resnet18-cifar10"]["gpu_hours"] > rows["rslad-mobilenetv2-cifar10"]["gpu_hours"]
    assert rows["adaad-resnet18-cifar100"]["gpu_hours"] > rows["rslad-resnet18-cifar100"]["gpu_hours"]
    assert rows["digits-rslad"]["gpu_hours"] < 0.01
    assert rows["rslad-resnet18-cifar10"]["published_aa"] == 51.49


def test_unknown_name_on_the_command_line_is_one_line(cli):
    cli.fails(["reproduce", "digits-rsald"], "unknown reproduction 'digits-rsald'", "digits-rslad")
