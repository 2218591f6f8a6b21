"""Per-second aggregation of client requests with raw response times, and the timeline writer.

Used inside the Locust processes by ``chaosmesh_qa/traffic/locustfile.py`` (and by the unit tests):
plain Python, no Locust and no gevent.  Each process keeps ``Bucket``\\ s per *send* second in an
``Aggregator``, which knows a second is complete once nothing sent in it is still in flight.  The
``TimelineWriter`` (master or single local process) merges the completed buckets of every source
(``add``) and writes one line per second, in order, once every live source has completed it; the
line format is described in ``chaosmesh_qa.traffic.timeline``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from chaosmesh_qa.traffic import timeline as tl

STALE_SOURCE_S = 5.0
AFTER_BOUNDARY_S = 0.01  # a second's last requests have usually been answered this long after it ends
PENDING_POLL_S = 0.05  # while a second that has ended still has requests in flight


def wake_delay(now: float, pending: bool) -> float:
    """How long the write (or report) loop sleeps: to just after the next second boundary, or briefly while
    a second that has ended is still incomplete.

    A second's line can be written only once it has ended and its requests are answered, so waking on the
    boundary (instead of on a fixed period) hands every line over a few milliseconds after it can exist;
    readers such as the traffic warm-up and the recovery probe see each second that much sooner.
    """
    if pending:
        return PENDING_POLL_S
    return math.floor(now) + 1 + AFTER_BOUNDARY_S - now


class Bucket:
    """What one process saw of the requests sent during one second."""

    __slots__ = ("fail", "kinds", "missed", "sources", "statuses", "t", "times")

    def __init__(self, t: int) -> None:
        self.t, self.fail, self.missed, self.sources = t, 0, 0, 0
        self.times: list[float] = []
        self.kinds: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()

    def to_message(self) -> dict[str, Any]:
        return {"t": self.t, "times": self.times, "fail": self.fail, "kinds": dict(self.kinds),
                "statuses": dict(self.statuses), "missed": self.missed}

    def merge_message(self, data: dict[str, Any]) -> None:
        self.times.extend(data["times"])
        self.fail += data["fail"]
        self.kinds.update(data["kinds"])
        self.statuses.update({int(k): v for k, v in data["statuses"].items()})
        self.missed += data["missed"]
        self.sources += 1

    def to_line(self, users: int, partial: bool) -> dict[str, Any]:
        times = sorted(self.times)
        line: dict[str, Any] = {
            "t": self.t, "time": datetime.fromtimestamp(self.t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "requests": len(times), "failures": self.fail, "failures_by_kind": dict(self.kinds),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50": None, "p95": None, "p99": None, "max": None, "mean": None,
            "hist": {}, "users": users, "sources": self.sources,
            "missed": self.missed, "partial": partial,
        }
        if times:
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                line[name] = round(tl.exact_quantile(times, q), 3)
            line["max"] = round(times[-1], 3)
            line["mean"] = round(sum(times) / len(times), 3)
            hist: Counter[int] = Counter(tl.hist_key(ms) for ms in times)
            line["hist"] = {str(k): v for k, v in sorted(hist.items())}
        return line


class Aggregator:
    """Per-process buckets keyed by send second, with the count of requests still in flight."""

    def __init__(self) -> None:
        self.buckets: dict[int, Bucket] = {}
        self.inflight: Counter[int] = Counter()

    def _bucket(self, t: int) -> Bucket:
        bucket = self.buckets.get(t)
        if bucket is None:
            bucket = self.buckets[t] = Bucket(t)
        return bucket

    def begin(self) -> int:
        second = int(time.time())
        self.inflight[second] += 1
        return second

    def end(self, second: int, elapsed_ms: float, status: int, kind: str | None) -> None:
        bucket = self._bucket(second)
        bucket.times.append(elapsed_ms)
        bucket.statuses[status] += 1
        if kind is not None:
            bucket.fail += 1
            bucket.kinds[kind] += 1
        self._done(second)

    def cancel(self, second: int) -> None:
        """A request abandoned by a stop: not counted, no longer in flight."""
        self._done(second)

    def _done(self, second: int) -> None:
        self.inflight[second] -= 1
        if self.inflight[second] <= 0:
            del self.inflight[second]

    def add_missed(self, count: int) -> None:
        self._bucket(int(time.time())).missed += count

    def closed_through(self, now: float) -> int:
        """The newest second such that it and every earlier one are complete."""
        closed = int(now) - 1
        if self.inflight:
            closed = min(closed, min(self.inflight) - 1)
        return closed

    def pending(self, now: float) -> bool:
        """Whether a second that has ended still has requests in flight."""
        return bool(self.inflight) and min(self.inflight) < math.floor(now)

    def take(self, through: int | None) -> list[Bucket]:
        """Remove and return the buckets up to ``through`` (all of them with ``None``)."""
        taken = [b for t, b in sorted(self.buckets.items()) if through is None or t <= through]
        for bucket in taken:
            del self.buckets[bucket.t]
        return taken


class TimelineWriter:
    """Master / local side: merges every source's buckets and writes complete seconds in order."""

    def __init__(self, path: Path, users: Callable[[], int], timeout_s: float) -> None:
        self.users = users
        self.spawned_at: float | None = None  # when every user had been started (Locust's spawning_complete)
        self.max_wait_s = timeout_s + 3.0  # a source's second is never held longer than this
        self.merged: dict[int, Bucket] = {}
        self.sources: dict[str, dict[str, Any]] = {}
        self.next_t: int | None = None
        self.late = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: IO[str] = path.open("w", encoding="utf-8")

    def add(self, source: str, buckets: list[dict[str, Any]], closed: int | None, done: bool) -> None:
        self.sources[source] = {"closed": closed, "seen": time.monotonic(), "done": done}
        for data in buckets:
            t = data["t"]
            if self.next_t is not None and t < self.next_t:
                self.late += len(data["times"])
                continue
            bucket = self.merged.get(t)
            if bucket is None:
                bucket = self.merged[t] = Bucket(t)
            bucket.merge_message(data)

    def _bound(self, now: float) -> int | None:
        """The newest second every source has completed; a source silent for 5 s no longer holds the others."""
        closed = [s["closed"] for s in self.sources.values()
                  if (s["done"] or now - s["seen"] < STALE_SOURCE_S) and s["closed"] is not None]
        if not closed and not self.merged:
            return None
        bound = min(closed) if closed else -1
        return max(bound, int(time.time() - self.max_wait_s) - 1)

    def write(self, final: bool = False) -> None:
        """Write every second all live sources have completed (with ``final``: every second there is)."""
        bound = self._bound(time.monotonic())
        if final and self.merged:
            bound = max(self.merged) if bound is None else max(bound, max(self.merged))
        if bound is None or (self.next_t is None and not self.merged):
            return
        first = self.next_t is None
        next_t = min(self.merged) if self.next_t is None else self.next_t
        complete = self._complete_through() if final else bound
        users = self.users()
        out = []
        while next_t <= bound:
            bucket = self.merged.pop(next_t, None) or Bucket(next_t)
            line = bucket.to_line(users, partial=first or complete is None or next_t > complete)
            if self.spawned_at is None or next_t < self.spawned_at:
                line["ramp"] = True  # the second began before every user was running
            if self.late:
                line["late"], self.late = self.late, 0
            out.append(json.dumps(line, separators=(",", ":")))
            next_t, first = next_t + 1, False
        self.next_t = next_t
        if out:
            self.file.write("\n".join(out) + "\n")
            self.file.flush()

    def pending(self, now: float) -> bool:
        """Whether a second that has ended is not written yet (a source still has requests of it in flight)."""
        return self.next_t is not None and self.next_t < math.floor(now)

    def _complete_through(self) -> int | None:
        """At the stop: the newest second every source had completed (later ones were cut short)."""
        closed = [s["closed"] for s in self.sources.values() if s["closed"] is not None]
        return min(closed) if closed else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.write(final=True)
        self.file.close()
