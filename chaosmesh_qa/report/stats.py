"""Noise-aware comparison of two groups of runs: bootstrap confidence bounds on how much a figure got worse.

Used by the regression gate (``report.baseline``).  A *group* is the runs of one experiment recorded
in a baseline, or the repeats of the current ``chaosmesh-qa run``.  Per-phase client figures
(throughput, error ratio, p50/p99) are resampled at two levels — runs with replacement, then the
seconds of each drawn run with replacement (a hierarchical bootstrap) — so that the bound carries
both the second-to-second noise inside a run and the run-to-run noise between repeats.  Figures a
run has only once (time to recover, ejection counts) are resampled over runs only.  Quantiles come
from the timeline's per-second latency histograms (1 % log buckets, ``traffic.timeline``) merged with
the bootstrap weights, exactly like the report's own p99 of many seconds.  numpy does the
arithmetic; the random generator is seeded, so a comparison is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chaosmesh_qa.traffic.timeline import HIST_BASE

PHASE_FIGURES = ("throughput_rps", "error_ratio", "p50_ms", "p99_ms")
QUANTILES = {"p50_ms": 0.5, "p99_ms": 0.99}
SEED = 20261126

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Seconds:
    """The complete seconds of one phase of one run: requests, failures and latency histogram per second."""

    requests: Sequence[int]
    failures: Sequence[int]
    hists: Sequence[Mapping[int, int]]

    def __len__(self) -> int:
        return len(self.requests)


@dataclass(frozen=True)
class Bounds:
    """``worse`` = how much the current group is worse than the baseline (positive: worse), point and bounds."""

    baseline: float
    current: float
    worse: float
    lower: float  # one-sided lower confidence bound of ``worse``
    upper: float  # one-sided upper confidence bound of ``worse``


def phase_figure(figure: str, seconds: Sequence[Seconds]) -> float | None:
    """The figure over every second of every run pooled (the point estimate the bounds are about)."""
    matrix = _Matrix([seconds])
    if not matrix.total_seconds:
        return None
    return float(matrix.statistic(figure, np.ones((1, matrix.total_seconds)))[0])


def compare_phase(figure: str, baseline: Sequence[Seconds], current: Sequence[Seconds], higher_is_worse: bool,
                  confidence: float, resamples: int) -> Bounds | None:
    """Bounds on how much worse ``figure`` is in ``current`` than in ``baseline``; None when a side has no seconds."""
    baseline = [s for s in baseline if len(s)]
    current = [s for s in current if len(s)]
    if not baseline or not current:
        return None
    rng = np.random.default_rng(SEED)
    matrix = _Matrix([baseline, current])
    weights = [_hierarchical_weights(rng, group, resamples) for group in (baseline, current)]
    base_w = np.hstack([weights[0], np.zeros((resamples, matrix.sizes[1]))])
    cur_w = np.hstack([np.zeros((resamples, matrix.sizes[0])), weights[1]])
    only_base = np.concatenate([np.ones(matrix.sizes[0]), np.zeros(matrix.sizes[1])])[None, :]
    point_base = float(matrix.statistic(figure, only_base)[0])
    point_cur = float(matrix.statistic(figure, 1 - only_base)[0])
    deltas = matrix.statistic(figure, cur_w) - matrix.statistic(figure, base_w)
    return _bounds(point_base, point_cur, deltas, higher_is_worse, confidence)


def compare_runs(baseline: Sequence[float], current: Sequence[float], higher_is_worse: bool, confidence: float,
                 resamples: int) -> Bounds | None:
    """Bounds for a figure measured once per run (mean over runs, runs resampled with replacement)."""
    if not baseline or not current:
        return None
    rng = np.random.default_rng(SEED)
    means = []
    for values in (baseline, current):
        array = np.asarray(values, dtype=float)
        draws = rng.multinomial(len(array), np.full(len(array), 1 / len(array)), size=resamples)
        means.append(draws @ array / len(array))
    return _bounds(float(np.mean(baseline)), float(np.mean(current)), means[1] - means[0], higher_is_worse,
                   confidence)


def _bounds(point_base: float, point_cur: float, deltas: Floats, higher_is_worse: bool,
            confidence: float) -> Bounds:
    sign = 1.0 if higher_is_worse else -1.0
    worse = sign * deltas[np.isfinite(deltas)]
    if not worse.size:
        worse = np.array([sign * (point_cur - point_base)])
    return Bounds(point_base, point_cur, sign * (point_cur - point_base),
                  float(np.quantile(worse, 1 - confidence)), float(np.quantile(worse, confidence)))


def _hierarchical_weights(rng: np.random.Generator, runs: Sequence[Seconds], resamples: int) -> Floats:
    """``resamples`` x seconds weights: draw runs with replacement, then each drawn run's seconds.

    Drawing a run ``k`` times and its ``S`` seconds with replacement each time is the same as one
    multinomial draw of ``k * S`` seconds over that run's seconds.
    """
    n = len(runs)
    run_draws = rng.multinomial(n, np.full(n, 1 / n), size=resamples)
    columns = []
    for index, run in enumerate(runs):
        size = len(run)
        columns.append(rng.multinomial(run_draws[:, index] * size, np.full(size, 1 / size)).astype(float))
    return np.hstack(columns)


class _Matrix:
    """Every second of the groups as dense arrays: requests, failures and histogram counts over shared buckets."""

    def __init__(self, groups: Sequence[Sequence[Seconds]]) -> None:
        flat = [s for group in groups for s in group]
        self.sizes = [sum(len(s) for s in group) for group in groups]
        self.total_seconds = sum(self.sizes)
        self.requests = np.array([r for s in flat for r in s.requests], dtype=float)
        self.failures = np.array([f for s in flat for f in s.failures], dtype=float)
        keys = sorted({int(k) for s in flat for h in s.hists for k in h})
        self.keys = np.array(keys, dtype=float)
        column = {key: index for index, key in enumerate(keys)}
        self.hist = np.zeros((self.total_seconds, len(keys)))
        row = 0
        for s in flat:
            for hist in s.hists:
                for key, count in hist.items():
                    self.hist[row, column[int(key)]] += count
                row += 1

    def statistic(self, figure: str, weights: Floats) -> Floats:
        """The figure for each row of ``weights`` (how many times each second counts)."""
        seconds = weights.sum(axis=1)
        requests = weights @ self.requests
        if figure == "throughput_rps":
            return np.divide(requests, seconds, out=np.full(len(seconds), np.nan), where=seconds > 0)
        if figure == "error_ratio":
            return np.divide(weights @ self.failures, requests, out=np.ones(len(seconds)), where=requests > 0)
        if figure not in QUANTILES:
            raise ValueError(f"unknown phase figure {figure!r}")
        merged = weights @ self.hist
        counts = merged.sum(axis=1)
        result = np.full(len(seconds), np.nan)
        if not self.keys.size:
            return result
        ranks = np.maximum(1, np.ceil(QUANTILES[figure] * counts - 1e-9))
        reached = np.cumsum(merged, axis=1) >= ranks[:, None]
        index = np.argmax(reached, axis=1)
        valid = counts > 0
        result[valid] = HIST_BASE ** (self.keys[index[valid]] + 0.5)
        return result


def threshold(relative: float, absolute: float, baseline: float) -> float:
    """How much worse a figure may get before it counts: the larger of the two allowances."""
    return max(absolute, relative * abs(baseline)) if math.isfinite(baseline) else absolute
