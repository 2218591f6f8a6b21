"""Per-second views of raw Prometheus samples: request counts, error counts, latency buckets.

``probes.recovery`` uses these to evaluate an SLO second by second.  A windowed ``rate()``
smears the end of an outage over its window; here each counter's increase between two
scrapes is spread evenly over the time between them, and summed over series into 1-second
bins, so the bins stay exact to within a scrape interval.  A series that first appears
inside the range (``?usedonly`` hides counters until their first event) counts from 0.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

Series = dict[str, Any]  # {"metric": {labels}, "values": [[t, "v"], ...]} as Prometheus returns a matrix


def spread_increases(series: Iterable[Series], start: float, end: float,
                     key: str | None = None) -> dict[tuple[int, str], float]:
    """``{(second, label value of key): increase}`` over ``[start, end)``, summed over series."""
    bins: dict[tuple[int, str], float] = defaultdict(float)
    for item in series:
        label = item["metric"].get(key, "") if key else ""
        points = [(float(t), float(v)) for t, v in item["values"]]
        if not points:
            continue
        if points[0][0] > start + 1.5:  # appeared inside the range: it was hidden at 0
            points.insert(0, (points[0][0] - 1.0, 0.0))
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            increase = v1 - v0 if v1 >= v0 else v1  # a reset: the counter restarted from 0
            if increase > 0:
                _spread(bins, label, t0, t1, increase, start, end)
    return dict(bins)


def _spread(bins: dict[tuple[int, str], float], label: str, t0: float, t1: float, amount: float,
            start: float, end: float) -> None:
    span = max(t1 - t0, 1e-9)
    second = math.floor(t0)
    while second < t1:
        overlap = min(t1, second + 1) - max(t0, second)
        if overlap > 0 and start <= second < end:
            bins[(second, label)] += amount * overlap / span
        second += 1


def totals(bins: dict[tuple[int, str], float]) -> dict[int, float]:
    out: dict[int, float] = defaultdict(float)
    for (second, _), value in bins.items():
        out[second] += value
    return dict(out)


def quantile(buckets: dict[str, float], q: float) -> float | None:
    """Like PromQL's histogram_quantile over cumulative bucket counts keyed by ``le``."""
    bounds = sorted((math.inf if le == "+Inf" else float(le), count) for le, count in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            inside = count - previous_count
            return previous_bound + (bound - previous_bound) * ((rank - previous_count) / inside if inside else 1.0)
        previous_bound, previous_count = bound, count
    return previous_bound


def quantiles_per_second(bins: dict[tuple[int, str], float], q: float) -> dict[int, float | None]:
    """Per-second latency quantile from spread bucket increases keyed by (second, le)."""
    per_second: dict[int, dict[str, float]] = defaultdict(dict)
    for (second, le), value in bins.items():
        per_second[second][le] = value
    return {second: quantile(buckets, q) for second, buckets in per_second.items()}
