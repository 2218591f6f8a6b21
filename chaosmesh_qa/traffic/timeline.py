"""The client-side timeline: one JSON line per second of traffic, and what can be computed from it.

Written by the Locust master (or the single local Locust process) through
``chaosmesh_qa/traffic/locustfile.py``; read by the traffic control (per-phase summary in the
journal), the client probes (``chaosmesh_qa.probes.client``), the runner's readiness check and
the tests.  This module is plain Python (no Locust, no gevent) so that both sides can use it.

A line describes the requests *sent* during the second ``[t, t+1)`` (epoch seconds), written once
all of them have completed::

    {"t": 1764158400, "time": "2026-11-26T12:00:00Z", "requests": 200, "failures": 3,
     "failures_by_kind": {"http": 3}, "statuses": {"200": 197, "502": 3},
     "p50": 8.1, "p95": 14.3, "p99": 20.2, "max": 25.0, "mean": 9.0,
     "hist": {"210": 3, ...}, "users": 50, "sources": 2, "missed": 0, "partial": false}

Latencies are milliseconds; p50/p95/p99/max/mean come from the raw response times of that second
(nearest-rank quantiles).  ``hist`` keeps every response time in log buckets 1 % wide (bucket k holds
``[1.01**k, 1.01**(k+1))`` ms) so that quantiles over a window of many seconds can be merged,
within 0.5 %.  ``partial`` marks seconds cut short by the stop; ``missed`` counts pacing slots the
users could not take because they were all busy (the target rate was not held); ``ramp: true`` (absent
otherwise) marks seconds that began before every user was running.

Phases come from fault records (``started_at``, ``ended_at`` or ``expires_at``): *before* the first
fault's start, *during* from the first start to the last end, *after* the last end.  A second that
straddles a boundary belongs to no phase.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chaosmesh_qa.errors import InvalidArgument, TimelineError
from chaosmesh_qa.traffic.profile import DEFAULT_TIMELINE, TIMELINE_KEY

Line = dict[str, Any]
PHASES = ("before", "during", "after")
HIST_BASE = 1.01
_LOG_BASE = math.log(HIST_BASE)
MIN_MS = 0.001


# --------------------------------------------------------------------------- latency helpers (both sides)


def hist_key(ms: float) -> int:
    return math.floor(math.log(max(ms, MIN_MS)) / _LOG_BASE)


def hist_value(key: int) -> float:
    """The representative latency of a bucket: its geometric middle."""
    return float(HIST_BASE ** (key + 0.5))


def exact_quantile(sorted_ms: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted raw values (an observed value, never interpolated)."""
    if not sorted_ms:
        raise ValueError("no values")
    rank = max(1, math.ceil(q * len(sorted_ms)))
    return float(sorted_ms[min(rank, len(sorted_ms)) - 1])


def hist_quantile(hist: Mapping[int, int], q: float) -> float:
    total = sum(hist.values())
    if total <= 0:
        raise ValueError("empty histogram")
    rank, seen = max(1, math.ceil(q * total)), 0
    for key in sorted(hist):
        seen += hist[key]
        if seen >= rank:
            return hist_value(key)
    return hist_value(max(hist))


# --------------------------------------------------------------------------- reading


def timeline_path(configuration: Mapping[str, Any] | None) -> Path:
    """This experiment's timeline: ``configuration.chaosmesh_qa_timeline``, else ``./chaosmesh-qa-timeline.jsonl``."""
    value = (configuration or {}).get(TIMELINE_KEY) or DEFAULT_TIMELINE
    return Path(str(value)).absolute()


def read_timeline(path: Path) -> list[Line]:
    """Every complete line, oldest first (a half-written last line is skipped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TimelineError(f"no traffic timeline at {path} (is traffic running? see the traffic control)") from None
    except OSError as exc:
        raise TimelineError(f"cannot read the traffic timeline {path}: {exc.strerror}") from None
    lines = []
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and "t" in line:
            lines.append(line)
    return lines


def measured(lines: Iterable[Line], ready_at: float | None = None) -> list[Line]:
    """The lines that count for measurements: complete seconds, after the warm-up (``ready_at``)."""
    return [line for line in lines if not line.get("partial") and (ready_at is None or line["t"] >= ready_at)]


def between(lines: Iterable[Line], start: float | None, end: float | None) -> list[Line]:
    """Lines whose whole second lies in ``[start, end)`` (``None``: unbounded)."""
    return [line for line in lines
            if (start is None or line["t"] >= start) and (end is None or line["t"] + 1 <= end)]


def last_seconds(lines: Sequence[Line], window_s: float) -> list[Line]:
    """The lines of the newest ``window_s`` seconds of the timeline."""
    if not lines:
        return []
    newest = lines[-1]["t"]
    return [line for line in lines if line["t"] > newest - window_s]


# --------------------------------------------------------------------------- phases


def fault_end(record: Mapping[str, Any]) -> float:
    ended = record.get("ended_at")
    return float(ended if ended is not None else record.get("expires_at") or time.time())


def phase_bounds(faults: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float | None, float | None]]:
    """``{phase: (start, end)}`` from fault records; with no fault everything is *before*."""
    starts = [float(f["started_at"]) for f in faults if f.get("started_at") is not None]
    if not starts:
        return {"before": (None, None), "during": (0.0, 0.0), "after": (0.0, 0.0)}
    first = min(starts)
    last = max(fault_end(f) for f in faults if f.get("started_at") is not None)
    return {"before": (None, first), "during": (first, last), "after": (last, None)}


def phase_lines(lines: Sequence[Line], faults: Sequence[Mapping[str, Any]], phase: str) -> list[Line]:
    if phase not in PHASES:
        raise InvalidArgument(f"phase: expected one of {', '.join(PHASES)}, got {phase!r}")
    start, end = phase_bounds(faults)[phase]
    return between(lines, start, end)


# --------------------------------------------------------------------------- summaries


def error_ratio(lines: Sequence[Line]) -> float:
    requests = sum(line["requests"] for line in lines)
    if not requests:
        raise TimelineError("no requests in the selected seconds of the traffic timeline")
    return sum(line["failures"] for line in lines) / requests


def latency(lines: Sequence[Line], quantile: float) -> float:
    """The ``quantile`` of every response time in ``lines``, in ms (exact for one second, else ±0.5 %)."""
    if not 0 < quantile <= 1:
        raise InvalidArgument(f"quantile: expected a number in (0, 1], got {quantile!r}")
    with_requests = [line for line in lines if line["requests"]]
    if not with_requests:
        raise TimelineError("no response times in the selected seconds of the traffic timeline")
    if len(with_requests) == 1 and (key := _exact_key(quantile)):
        return float(with_requests[0][key])
    return hist_quantile(merged_hist(with_requests), quantile)


def throughput(lines: Sequence[Line]) -> float:
    """Requests sent per second over the selected seconds (0.0 when none)."""
    return sum(line["requests"] for line in lines) / len(lines) if lines else 0.0


def merged_hist(lines: Iterable[Line]) -> Counter[int]:
    merged: Counter[int] = Counter()
    for line in lines:
        for key, count in line.get("hist", {}).items():
            merged[int(key)] += count
    return merged


def summarize(lines: Sequence[Line]) -> dict[str, Any]:
    """Requests, failures (by kind and status), error ratio, throughput and latency quantiles of ``lines``."""
    requests = sum(line["requests"] for line in lines)
    kinds: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for line in lines:
        kinds.update(line.get("failures_by_kind", {}))
        statuses.update(line.get("statuses", {}))
    summary: dict[str, Any] = {
        "seconds": len(lines),
        "start": lines[0]["t"] if lines else None,
        "end": lines[-1]["t"] + 1 if lines else None,
        "requests": requests,
        "failures": sum(line["failures"] for line in lines),
        "failures_by_kind": dict(kinds),
        "statuses": dict(statuses),
        "error_ratio": error_ratio(lines) if requests else None,
        "throughput_rps": round(throughput(lines), 2),
        "missed": sum(line.get("missed", 0) for line in lines),
    }
    for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        summary[name] = round(latency(lines, q), 2) if requests else None
    return summary


def phase_summary(lines: Sequence[Line], faults: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{before, during, after}`` summaries plus the bounds used, for the journal."""
    bounds = phase_bounds(faults)
    result: dict[str, Any] = {phase: summarize(between(lines, *bounds[phase])) for phase in PHASES}
    if not faults:
        result["during"] = result["after"] = None
    result["bounds"] = {phase: list(bounds[phase]) for phase in PHASES} if faults else None
    return result


def _exact_key(quantile: float) -> str | None:
    return {0.5: "p50", 0.95: "p95", 0.99: "p99"}.get(quantile)


def slo_samples(configuration: Mapping[str, Any] | None, objectives: Mapping[str, float], start: float,
                end: float) -> list[tuple[float, bool]]:
    """Per-second SLO verdicts for ``chaosmesh_qa.probes.recovery``: ``[(second end, SLO held), ...]``.

    One sample per complete timeline second ending in ``(start, end]``, stamped with the end of its
    second (the sample covers the requests sent in the second before).  ``objectives`` keys:
    ``max_error_ratio``, ``max_p50_ms``, ``max_p95_ms``, ``max_p99_ms``.  A second without any
    request is a breach.
    """
    samples = []
    for line in measured(read_timeline(timeline_path(configuration))):
        stamp = float(line["t"] + 1)
        if not start < stamp <= end:
            continue
        held = line["requests"] > 0
        if held and "max_error_ratio" in objectives:
            held = line["failures"] / line["requests"] <= objectives["max_error_ratio"]
        for key, field in (("max_p50_ms", "p50"), ("max_p95_ms", "p95"), ("max_p99_ms", "p99")):
            if held and key in objectives:
                held = line.get(field) is not None and line[field] <= objectives[key]
        samples.append((stamp, held))
    return samples
