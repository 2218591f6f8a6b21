"""routing_matches's window (``probes.routing._clean_window``): it waits until the window it reads starts a scrape
interval after the traffic started and after the run's last fault ended, at the sandbox's 1 s scrapes as at a
cluster's 15 s.  In process: a Prometheus known by its interval, a target known by its faults, a timeline file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.probes import routing
from chaosmesh_qa.probes.context import MeasureContext


class Scraping:
    def __init__(self, interval: float | None) -> None:
        self.url, self.interval = "http://127.0.0.1:9", interval

    def scrape_interval_s(self) -> float | None:
        return self.interval


class Faults:
    def __init__(self, faults: list[dict[str, Any]]) -> None:
        self.faults = faults

    def fault_history(self, owner: str) -> list[dict[str, Any]]:
        return self.faults


def _waited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, interval: float | None, window: str,
            traffic_age_s: float | None, faults: list[dict[str, Any]] | None = None) -> tuple[str, float]:
    now = time.time()
    monkeypatch.setattr(routing.time, "time", lambda: now)
    slept: list[float] = []
    monkeypatch.setattr(routing.time, "sleep", slept.append)
    timeline = tmp_path / "timeline.jsonl"
    if traffic_age_s is not None:  # the timeline's first line: the whole second the traffic started in
        timeline.write_text(json.dumps({"t": int(now - traffic_age_s), "requests": 10}) + "\n")
    ctx = MeasureContext(target=Faults(faults or []), description={}, catalog=None,  # type: ignore[arg-type]
                         prometheus=Scraping(interval))  # type: ignore[arg-type]
    read = routing._clean_window(ctx, window, {"chaosmesh_qa_timeline": str(timeline)})
    return read, sum(slept)


def test_a_window_reaching_into_the_traffics_start_waits_at_one_second_scrapes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pod is counted from zero to its own last scrape, up to one interval apart, while the traffic ramps: the
    window must open a scrape interval (and the second the timeline rounds down) after the traffic started."""
    read, waited = _waited(tmp_path, monkeypatch, interval=1, window="5s", traffic_age_s=4)
    started = int(time.time() - 4)
    assert read == "5s" and waited == pytest.approx(started + 1 + 5 + 1 - time.time(), abs=0.01)
    assert 2 < waited <= 3


@pytest.mark.parametrize(("interval", "window", "age", "wait"), [
    (1, "5s", 8, 0),  # the warm-up the generated routing experiments use (7 s) and more: nothing to wait for
    (1, "5s", None, 0),  # no traffic timeline (a probe outside an experiment's traffic): nothing known to wait for
    (None, "5s", 2, 0),  # the scrape interval cannot be read: no wait can be worked out
    (15, "5s", 2, 30 + 15 + 1 - 2),  # a cluster's scrapes: the widened 30 s window after one interval
])
def test_when_nothing_is_waited_for_and_a_clusters_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        interval: float | None, window: str, age: float | None,
                                                        wait: float) -> None:
    read, waited = _waited(tmp_path, monkeypatch, interval=interval, window=window, traffic_age_s=age)
    assert read == ("30s" if interval == 15 else window)
    assert waited == pytest.approx(wait, abs=1.01)  # the timeline's start is the whole second it fell in


def test_a_fault_that_ended_moves_the_window_and_one_in_force_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ended = [{"id": "a", "ended_at": time.time() - 2}]
    _, waited = _waited(tmp_path, monkeypatch, interval=1, window="5s", traffic_age_s=60, faults=ended)
    assert waited == pytest.approx(1 + 5 + 1 - 2, abs=0.01)
    in_force = [*ended, {"id": "b"}]  # during a fault the window is what there is
    assert _waited(tmp_path, monkeypatch, interval=1, window="5s", traffic_age_s=60, faults=in_force)[1] == 0
