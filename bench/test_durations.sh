#!/usr/bin/env bash
# The whole test suite, once, with the duration of every test: writes bench/results/test-durations.txt, the table
# that tests/test_e2e_marks.py reads (every test whose call took over 3 s there must carry the e2e marker, so that
# `pytest -m "not e2e"` stays a loop of about a minute). The header says when, on which commit, with which command,
# on how many cores and under what load (others' work on a shared machine slows every test).
#
#   bash bench/test_durations.sh [FILE]
#
# $PYTHON picks the interpreter (default: .venv/bin/python). Run it after adding or changing slow tests, on a
# machine as idle as you can find; it takes what the full suite takes (minutes). The exit status is pytest's.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
OUT="${1:-bench/results/test-durations.txt}"
PY="${PYTHON:-.venv/bin/python}"
COMMAND=(-m pytest -q -n 2 -p no:cacheprovider --durations=0)  # as .ci/run runs it, on both cores

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started=$(date +%s)
OMP_NUM_THREADS=1 "$PY" "${COMMAND[@]}" >"$log" 2>&1
status=$?
wall=$(( $(date +%s) - started ))
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$(dirname "$OUT")"
{
    echo "# rdist's test suite, every test phase over 0.005 s, slowest first (tests/test_e2e_marks.py reads it)."
    echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC')   commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "# command: OMP_NUM_THREADS=1 python ${COMMAND[*]}   (bash bench/test_durations.sh)"
    echo "# machine: $(nproc) CPU cores, $("$PY" -c 'import platform, torch; print(f"python {platform.python_version()}, torch {torch.__version__}")' 2>/dev/null)"
    echo "# load average (1, 5, 15 min): before ${load_before}; after ${load_after}"
    echo "# wall: ${wall} s; $(grep -E '(passed|failed|error)' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//;s/ *$//')"
    grep -E '^[0-9.]+s (setup|call|teardown) ' "$log"
} >"$OUT"
# A red run names its failures here: the log itself is removed.
[[ $status -ne 0 ]] && grep -E '^(FAILED|ERROR) ' "$log" >&2
echo "wrote $OUT (pytest exit status $status, ${wall} s)"
exit "$status"
