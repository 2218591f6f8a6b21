"""Progress state and views, from a run directory written line by line as `chaos` and Locust do."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from chaosmesh_qa.report.progress import Monitor, PlainView, RunState, render_state


def _append(path: Path, *records: dict[str, object]) -> None:
    with path.open("a") as stream:
        stream.write("".join(json.dumps(r) + "\n" for r in records))


def test_monitor_follows_phases_faults_and_traffic(tmp_path: Path) -> None:
    now = time.time()
    state = RunState("pod-kill", 1, 2)
    monitor = Monitor(tmp_path, state)
    assert monitor.poll() == [] and state.phase == "starting chaos"  # nothing written yet
    events, timeline = tmp_path / "events.ndjson", tmp_path / "timeline.jsonl"
    _append(events, {"type": "run-started"}, {"type": "hypothesis-started", "phase": "before"})
    _append(timeline, {"t": int(now) - 2, "requests": 100, "failures": 3, "p99": 41.5})
    _append(timeline, {"t": int(now) - 1, "requests": 5, "failures": 0, "p99": 9.0, "partial": True})
    assert len(monitor.poll()) == 2
    assert state.phase == "steady state before the method" and state.last_second is not None
    assert state.traffic_text() == "100 req/s  error ratio 0.030  p99 41.5 ms"  # the partial second is ignored
    fault = {"fault_id": "pod-kill-1", "kind": "pod-kill", "target": {"service": "catalog", "version": None},
             "expires_at": now + 10}
    _append(events, {"type": "method-started"}, {"type": "activity-started", "name": "kill", "activity_type": "action"})
    _append(events, {"type": "activity-completed", "name": "kill", "activity_type": "action", "status": "succeeded",
                     "output": fault})
    with events.open("a") as stream:
        stream.write('{"type": "activity-started", "name": "half"')  # a line still being written
    monitor.poll()
    assert state.phase == "method"
    [(fault_id, what, ttl)] = state.active_faults(now)
    assert (fault_id, what) == ("pod-kill-1", "pod-kill service=catalog") and abs(ttl - 10) < 1e-6
    assert state.active_faults(now + 11) == []  # the lease ran out
    console = Console(record=True, width=100)
    console.print(render_state(state, now))
    screen = console.export_text()
    assert "[1/2] pod-kill" in screen and "method" in screen and "TTL 10.0 s" in screen and "p99 41.5 ms" in screen
    with events.open("a") as stream:
        stream.write("}\n")
    _append(events, {"type": "activity-completed", "name": "heal", "output": {"healed": [{"fault_id": "pod-kill-1"}]}})
    monitor.poll()
    assert state.active_faults(now) == [] and state.activity == "half"  # the completed line was read


def test_plain_view_prints_timestamped_event_lines(tmp_path: Path) -> None:
    console = Console(record=True, width=200, force_terminal=False)
    view, state = PlainView(console), RunState("exp", 1, 1)
    monitor = Monitor(tmp_path, state)
    _append(tmp_path / "events.ndjson", {"type": "hypothesis-completed", "phase": "after", "met": False,
                                         "probes": [{"name": "p99", "tolerance_met": False, "output": 512.5}]},
            {"type": "run-finished", "status": "completed", "deviated": True})
    view.update(monitor, monitor.poll())
    lines = console.export_text().splitlines()
    assert lines[0].endswith("[1/1] exp: steady state after the method: NOT met (p99 got 512.5)")
    assert lines[1].endswith("[1/1] exp: chaos finished: completed, deviated")
    assert all(line[:4].isdigit() and line[19] == "Z" for line in lines)
