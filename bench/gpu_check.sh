#!/usr/bin/env bash
# The prepared GPU check: on a machine with one CUDA GPU, in under 8 minutes, it runs
#   1. the CUDA tests without --compile          (pytest -m cuda)
#   2. the training benchmark, compile off        (RSLAD and AdaAD, ResNet-18 <- WRN-34-10, batch 128,
#                                                  rdist against the official codes' way, s per 50k-image epoch)
#   3. the evaluation benchmark                   (pgd20 and AutoAttack: rdist fp32 and bf16 against the direct
#                                                  way, on pyautoattack's natural ResNet-18: throughput and the
#                                                  fp32/bf16 fidelity check)
#   4. the CUDA tests with --compile
#   5. the training benchmark, compile on
# and writes one JSON file of figures, gpu_check-<gpu>-<date>.json, into the results directory.
#
#   bash bench/gpu_check.sh [--dry-run] [--out DIR]
#
# --dry-run walks every stage on the CPU, with tiny models, a 2-step attack, AutoAttack's APGD-CE alone, a subset
# of the tests (RDIST_CUDA_TESTS_ON_CPU=1: the CUDA tests' code runs on the CPU) and torch.compile's eager backend
# (dynamo traces the step, no code is generated), in under two minutes on an idle 2-core machine, and writes
# gpu_check-dry-run-<date>.json: the script is known to work before a GPU is at hand. Its figures mean nothing.
# DIR defaults to $RDIST_BENCH_RESULTS, else bench/results. $PYTHON picks the interpreter (default: python3).
# A stage that fails or runs out of time is recorded as such and the next one still runs; the exit status is 1
# if any stage failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${RDIST_BENCH_RESULTS:-$ROOT/bench/results}"
DRY_RUN=0
BUDGET_S=470  # the whole check stays under 8 minutes: each stage gets at most what is left of this
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --out) OUT="${2:?--out needs a directory}"; shift ;;
        --out=*) OUT="${1#--out=}" ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "error: unknown option '$1'; use --dry-run and/or --out DIR" >&2; exit 2 ;;
    esac
    shift
done
PY="${PYTHON:-python3}"
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT" || { echo "error: cannot create the results directory $OUT" >&2; exit 1; }
STARTED=$(date +%s)

if [ "$DRY_RUN" = 1 ]; then
    export RDIST_CUDA_TESTS_ON_CPU=1 CUDA_VISIBLE_DEVICES=""
    DEVICE="cpu ($(uname -m))" CUDA_VERSION=""
    TESTS_EAGER=(-k "not compile and (rslad-eager or agree[rslad] or resume or pgd20 or auto_batch)")
    TESTS_COMPILE=(-k "rslad-compile")
    TRAIN=(--device cpu --student tinycnn --teacher tinycnn --batch 8 --steps 1 --rounds 1 --warmup 1
           --attack-steps 2)
    TRAIN_COMPILE=(--compile-backend eager)
    ATTACK=(--device cpu --arch tinycnn --n 8 --batch-size 8 --aa apgd-ce --precisions fp32,bf16)
    NAME="dry-run"
else
    # One interpreter start for the GPU's name and CUDA version (the gathering step below does not import torch).
    GPU="$("$PY" -c "import sys, torch; torch.cuda.is_available() or sys.exit(1); print(torch.version.cuda, torch.cuda.get_device_name())")" \
        || { echo "error: no CUDA GPU visible to torch; run with --dry-run to walk the script on the CPU" >&2; exit 1; }
    CUDA_VERSION="${GPU%% *}" DEVICE="${GPU#* }"
    TESTS_EAGER=(-k "not compile")
    TESTS_COMPILE=(-k "compile")
    TRAIN=(--device cuda --student resnet18 --teacher wrn-34-10 --batch 128 --steps 10 --rounds 2 --warmup 2)
    TRAIN_COMPILE=()
    ATTACK=(--device cuda --n 1000 --batch-size auto --aa standard --precisions fp32,bf16)
    NAME="$(echo "$DEVICE" | sed -E 's/[^A-Za-z0-9]+/-/g; s/^-+|-+$//g')"
fi

# stage NAME TIMEOUT_S COMMAND...: run with what is left of the budget, note rc and seconds in stages.jsonl.
stage() {
    local name="$1" limit="$2"; shift 2
    local left=$((BUDGET_S - ($(date +%s) - STARTED)))
    [ "$left" -lt "$limit" ] && limit="$left"
    if [ "$limit" -le 5 ]; then
        echo "== $name: skipped, the ${BUDGET_S} s budget is spent"
        echo "{\"stage\": \"$name\", \"status\": \"no time left\"}" >> "$WORK/stages.jsonl"
        return
    fi
    echo "== $name (at most ${limit} s): $*"
    local begin=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$WORK/$name.log"
    local rc=${PIPESTATUS[0]} status=ok
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && status="timed out"
    [ "$rc" != 0 ] && [ "$status" = ok ] && status="failed"
    echo "{\"stage\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $(($(date +%s) - begin))}" \
        >> "$WORK/stages.jsonl"
}

stage cuda_tests 150 "$PY" -m pytest tests/engine/test_cuda.py -m cuda "${TESTS_EAGER[@]}" -q -p no:cacheprovider \
    --junitxml="$WORK/cuda_tests.xml"
stage train_eager 120 "$PY" bench/train_throughput.py "${TRAIN[@]}" --json "$WORK/train_eager.json"
stage attack 90 "$PY" bench/attack_throughput.py "${ATTACK[@]}" --json "$WORK/attack.json"
stage cuda_tests_compile 120 "$PY" -m pytest tests/engine/test_cuda.py -m cuda "${TESTS_COMPILE[@]}" -q \
    -p no:cacheprovider --junitxml="$WORK/cuda_tests_compile.xml"
stage train_compile 180 "$PY" bench/train_throughput.py "${TRAIN[@]}" --methods rslad --compile \
    "${TRAIN_COMPILE[@]}" --json "$WORK/train_compile.json"

RESULT="$OUT/gpu_check-$NAME-$(date +%Y%m%d-%H%M%S).json"
"$PY" - "$WORK" "$RESULT" "$DEVICE" "$CUDA_VERSION" "$DRY_RUN" "$(($(date +%s) - STARTED))" <<'EOF'
"""Gather the stages' figures into one JSON file, with the issue's goals checked against them (no torch import:
its version comes from the package metadata)."""
import json
import platform
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

work, result, device, cuda, dry_run, seconds = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] or None,
                                                sys.argv[5] == "1", int(sys.argv[6]))


def read(name):
    path = work / name
    return json.loads(path.read_text()) if path.is_file() else None


def tests(name):
    path = work / name
    if not path.is_file():
        return None
    suite = ET.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": failed}


stages = [json.loads(line) for line in (work / "stages.jsonl").read_text().splitlines()]
train_eager, train_compile, attack = read("train_eager.json"), read("train_compile.json"), read("attack.json")
goals = {}
for label, figures in (("compile off", train_eager), ("compile on", train_compile)):
    if figures and "rslad" in figures:
        rslad = figures["rslad"]
        goals[f"rslad epoch <= 15 s ({label})"] = {"value_s": rslad["rdist_epoch_s"], "met": rslad["rdist_epoch_s"] <= 15}
        goals[f"rslad >= 3x the reference ({label})"] = {"value": rslad["ratio"], "met": rslad["ratio"] >= 3}
figures = {
    "dry_run": dry_run,
    "note": "a dry run on the CPU with tiny models: the figures say nothing about any GPU" if dry_run else None,
    "device": device, "torch": version("torch"), "cuda": cuda, "python": platform.python_version(),
    "seconds": seconds, "stages": stages,
    "cuda_tests": tests("cuda_tests.xml"), "cuda_tests_compile": tests("cuda_tests_compile.xml"),
    "train_compile_off": train_eager, "train_compile_on": train_compile,
    "attack": attack, "goals": goals,
}
result.write_text(json.dumps(figures, indent=2) + "\n")
print(f"wrote {result}")
failed = [s["stage"] for s in stages if s["status"] != "ok"]
print(f"all {len(stages)} stages ok in {seconds} s" if not failed else f"stages not ok: {', '.join(failed)}")
sys.exit(1 if failed else 0)
EOF
