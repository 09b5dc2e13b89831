"""`rdist.robustness_report` and `rdist.EvalConfig`, the Python twin of `rdist attack`: the config reads and checks
what the command line gives, and the typed report is what the command prints, key for key."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import rdist
from rdist.attacks import SUITES
from rdist.errors import RdistError
from rdist.report.robustness import Report
from tests.report.conftest import EPS, EPS_VALUE

# The keys of `rdist attack --json`, --out and the results an artifact records: files and tools read them.
REPORT_KEYS = ["model", "dataset", "attacks", "n", "eps", "accuracy", "worst_case", "seed", "precision", "batch_size",
               "norm", "per_class", "flags", "corruptions", "eps_text", "surrogate", "runtime", "device", "processes",
               "seconds", "protocol"]


def test_the_config_reads_the_command_lines_text():
    config = rdist.EvalConfig(attacks="pgd20,transfer,clean", eps="8/255", batch_size="auto")
    assert config.attacks == ("clean", "pgd20", "transfer-pgd20", "transfer-cw")
    assert config.eps == 8 / 255 and config.batch_size == "auto"
    assert rdist.EvalConfig().attacks == tuple(SUITES["standard"]) and rdist.EvalConfig(batch_size="64").batch_size == 64
    assert replace(config, eps=0.5).eps == 0.5 and replace(config, n=7).attacks == config.attacks
    assert config.to_dict()["eps_text"] == "8/255" and config.to_dict()["attacks"] == list(config.attacks)


@pytest.mark.parametrize("fields, message", [
    ({"n": 0}, "--n must be a positive number of test images, got 0"),
    ({"batch_size": "lots"}, "--batch-size must be a positive integer or auto, got 'lots'"),
    ({"batch_size": -1}, "--batch-size must be positive"),
    ({"precision": "fp16"}, "--precision must be one of fp32, bf16, got 'fp16'"),
    ({"eps": "8"}, "did you mean 8/255"),
    ({"attacks": "clean,pgd21"}, "unknown attack 'pgd21'"),
])
def test_the_config_refuses_what_no_evaluation_can_use(fields, message):
    with pytest.raises(RdistError, match=message):
        rdist.EvalConfig(**fields)


def test_the_report_is_what_rdist_attack_prints(cli, robust_artifact):
    printed = cli("attack", robust_artifact, "--attacks", "clean,fgsm", "--eps", EPS, "--n", "60", "--json")
    printed = json.loads(printed.output)
    report = rdist.robustness_report(str(robust_artifact), rdist.EvalConfig(attacks="clean,fgsm", eps=EPS, n=60))
    assert isinstance(report, Report) and report.eps == EPS_VALUE and report.attacks == ["clean", "fgsm"]
    assert list(printed) == list(report.to_dict()) == REPORT_KEYS
    assert {**report.to_dict(), "seconds": None} == {**printed, "seconds": None}
    assert Report.from_dict(report.to_dict()) == report
