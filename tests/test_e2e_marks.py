"""`pytest -m "not e2e"` is the fast loop: no test that took more than a few seconds in the suite's stored
measurement runs in it, because every such test carries the e2e marker.

Not a timing test: nothing is timed here. The list of slow tests is the committed table of a full run,
bench/results/test-durations.txt (written by bench/test_durations.sh, which says how it was measured); a test
whose call took over SLOW_S seconds there must be marked `@pytest.mark.e2e`. The setup of a session fixture that
fast tests share (the digits models trained in seconds, the report's artifacts) stays in the loop by design and is
not checked. A new slow test is caught once the table is measured again.
"""

from __future__ import annotations

import re
from pathlib import Path

DURATIONS = Path(__file__).resolve().parents[1] / "bench" / "results" / "test-durations.txt"
SLOW_S = 3.0


def measured_calls() -> dict[str, float]:
    """{test node id: seconds its call took} from the stored table."""
    calls = {}
    for line in DURATIONS.read_text().splitlines():
        match = re.fullmatch(r"([\d.]+)s call\s+(\S+)", line.strip())
        if match:
            calls[match.group(2)] = float(match.group(1))
    return calls


def test_every_test_measured_slow_carries_the_e2e_marker(request):
    calls = measured_calls()
    assert len(calls) > 100, f"{DURATIONS} holds no --durations=0 table: run bash bench/test_durations.sh"
    slow = {node: seconds for node, seconds in calls.items() if seconds > SLOW_S}
    unmarked = [f"{item.nodeid} ({slow[item.nodeid]:.1f} s)" for item in request.session.items
                if item.nodeid in slow and item.get_closest_marker("e2e") is None]
    assert not unmarked, f"mark these @pytest.mark.e2e (over {SLOW_S:.0f} s in {DURATIONS.name}): {unmarked}"
