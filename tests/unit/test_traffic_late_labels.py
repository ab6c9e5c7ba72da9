"""Late labels in the traffic generator (``foundry.demo.traffic.LateLabels``): what makes the monitor's
late-label paths testable end to end."""

from __future__ import annotations

import time

from foundry.demo.traffic import LateLabels


def test_labels_wait_for_the_configured_rows_then_go_in_order_and_flush_sends_the_rest():
    """Catches: labels posted at once (the delay ignored), out of order, or lost at the end of a run."""
    posted: list[list[dict]] = []
    late = LateLabels(posted.append, delay_rows=100)
    for i in range(5):  # 5 requests of 40 rows: request i's labels are due once 40 * (i + 1) + 100 rows are answered
        late.add(40, [{"request_id": f"r{i}", "label": "1"}])
    assert [p[0]["request_id"] for p in posted] == ["r0", "r1"]  # 200 rows answered: due at 140 and 180
    late.flush()
    assert [p[0]["request_id"] for p in posted] == ["r0", "r1", "r2", "r3", "r4"]


def test_labels_can_wait_for_time_too():
    posted: list[list[dict]] = []
    late = LateLabels(posted.append, delay_s=0.3)
    late.add(10, [{"request_id": "a", "label": "0"}])
    assert posted == []
    deadline = time.monotonic() + 5
    while not posted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert posted == [[{"request_id": "a", "label": "0"}]]
    late.flush()
