"""Per-second aggregation and the timeline writer, without Locust: merging sources, completeness, partial seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chaosmesh_qa.traffic import timeline as tl
from chaosmesh_qa.traffic.aggregate import (
    AFTER_BOUNDARY_S,
    PENDING_POLL_S,
    Aggregator,
    Bucket,
    TimelineWriter,
    wake_delay,
)


def bucket(t: int, times: list[float], failures: int = 0) -> dict[str, object]:
    b = Bucket(t)
    b.times.extend(times)
    b.statuses.update({200: len(times) - failures, 502: failures} if failures else {200: len(times)})
    b.fail = failures
    if failures:
        b.kinds["http"] = failures
    return b.to_message()


def test_a_second_is_complete_only_when_nothing_sent_in_it_is_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.2]
    monkeypatch.setattr(time, "time", lambda: now[0])
    aggregator = Aggregator()
    slow = aggregator.begin()
    fast = aggregator.begin()
    aggregator.end(fast, 3.0, 200, None)
    now[0] = 1001.5  # second 1000 is over, but a request sent in it is still out
    assert aggregator.closed_through(now[0]) == 999
    assert aggregator.take(aggregator.closed_through(now[0])) == []
    aggregator.end(slow, 1300.0, 0, "timeout")
    assert aggregator.closed_through(now[0]) == 1000
    [taken] = aggregator.take(1000)
    assert taken.t == 1000 and sorted(taken.times) == [3.0, 1300.0] and taken.kinds == {"timeout": 1}
    cancelled = aggregator.begin()
    aggregator.cancel(cancelled)  # abandoned by a stop: not counted, no longer holding the second
    assert aggregator.closed_through(1003.0) == 1002 and aggregator.buckets == {}


def test_the_loops_wake_just_after_each_second_and_poll_while_one_is_still_out(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert wake_delay(1000.25, pending=False) == pytest.approx(0.75 + AFTER_BOUNDARY_S)
    assert wake_delay(1000.999, pending=False) == pytest.approx(0.001 + AFTER_BOUNDARY_S)
    assert wake_delay(1000.25, pending=True) == PENDING_POLL_S
    now = [1000.2]
    monkeypatch.setattr(time, "time", lambda: now[0])
    aggregator = Aggregator()
    second = aggregator.begin()
    assert not aggregator.pending(1000.9), "a request of the current second: nothing has ended yet"
    assert aggregator.pending(1001.01), "second 1000 has ended with a request still out"
    aggregator.end(second, 5.0, 200, None)
    assert not aggregator.pending(1001.02)
    writer = TimelineWriter(tmp_path / "timeline.jsonl", lambda: 1, timeout_s=5.0)
    assert not writer.pending(1001.02), "nothing to write before the first second"
    writer.add("local", [b.to_message() for b in aggregator.take(999)], 999, done=False)
    writer.next_t = 1000
    assert writer.pending(1001.02), "second 1000 has ended and is not written"
    writer.add("local", [b.to_message() for b in aggregator.take(1000)], 1000, done=False)
    now[0] = 1001.02
    writer.write()
    assert not writer.pending(1001.02)


def test_writer_merges_sources_and_waits_for_the_slowest(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    now = int(time.time())
    writer = TimelineWriter(path, lambda: 50, timeout_s=30)
    writer.add("worker-a", [bucket(now - 3, [1.0] * 10), bucket(now - 2, [2.0] * 10, failures=2)], now - 2, False)
    writer.add("worker-b", [bucket(now - 3, [3.0] * 10)], now - 3, False)
    writer.write()
    lines = tl.read_timeline(path)
    assert [x["t"] for x in lines] == [now - 3]  # worker-b has not completed now - 2 yet
    assert lines[0]["requests"] == 20 and lines[0]["sources"] == 2 and lines[0]["partial"]  # the first second
    assert lines[0]["p50"] == 1.0 and lines[0]["p99"] == 3.0 and lines[0]["users"] == 50
    writer.add("worker-b", [bucket(now - 2, [4.0] * 10)], now - 1, False)
    writer.add("worker-a", [], now - 1, False)
    writer.write()
    lines = tl.read_timeline(path)
    assert [x["t"] for x in lines] == [now - 3, now - 2, now - 1]  # an empty second is written too
    second = lines[1]
    assert second["requests"] == 20 and second["failures"] == 2 and second["statuses"] == {"200": 18, "502": 2}
    assert second["failures_by_kind"] == {"http": 2} and not second["partial"]
    assert lines[2]["requests"] == 0 and lines[2]["p99"] is None
    writer.add("worker-a", [bucket(now - 3, [9.0])], now - 1, False)  # too late for a written second
    writer.add("worker-a", [bucket(now, [5.0] * 3)], now - 1, True)
    writer.close()
    lines = tl.read_timeline(path)
    assert lines[-1]["t"] == now and lines[-1]["partial"] and lines[-1]["late"] == 1  # cut short by the stop


def test_a_silent_source_stops_holding_the_others_after_a_while(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    now = int(time.time())
    writer = TimelineWriter(path, lambda: 1, timeout_s=0.5)
    writer.add("alive", [bucket(t, [1.0]) for t in range(now - 8, now)], now - 1, False)
    writer.add("stuck", [], now - 9, False)
    writer.write()
    written = [x["t"] for x in tl.read_timeline(path)]
    assert written and written[-1] >= now - 5  # held at most timeout_s + 3 s behind, not forever


def test_seconds_begun_before_every_user_ran_are_marked_ramp(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"
    now = int(time.time())
    writer = TimelineWriter(path, lambda: 20, timeout_s=30)
    writer.add("local", [bucket(now - 4, [1.0]), bucket(now - 3, [1.0])], now - 3, False)
    writer.write()  # the spawn has not completed yet: both seconds began before it
    writer.spawned_at = now - 2.5  # completed during second now - 3 ... (Locust's spawning_complete)
    writer.add("local", [bucket(now - 2, [1.0]), bucket(now - 1, [1.0])], now - 1, False)
    writer.close()
    lines = tl.read_timeline(path)
    assert [(x["t"] - now, x.get("ramp", False)) for x in lines] == [(-4, True), (-3, True), (-2, False),
                                                                     (-1, False)]
