"""Traffic-share statistics for routing verdicts: Wilson intervals, a chi-square test, sample sizes.

``chaosmesh_qa.probes.routing`` calls ``compare_shares`` with the request counts each version
served and the shares the mesh declares.  Everything is exact closed-form arithmetic on the
standard library (``statistics.NormalDist`` for z, the regularized upper incomplete gamma for
half-integer orders by recurrence): no scipy for three formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Share:
    version: str
    count: int
    observed: float
    expected: float
    low: float  # Wilson interval of the observed share at the confidence
    high: float


@dataclass(frozen=True)
class ShareTest:
    requests: int
    min_requests: int
    confidence: float
    p_value: float
    shares: tuple[Share, ...]
    max_deviation: float  # largest |observed - expected| over versions


def z_value(confidence: float) -> float:
    """Two-sided standard normal quantile: 2.576 for 0.99."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson(count: int, total: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (0..1 when ``total`` is 0)."""
    if total <= 0:
        return 0.0, 1.0
    z = z_value(confidence)
    p = count / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def chi_square_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for a chi-square variable with ``dof`` degrees of freedom (exact for any dof)."""
    if dof <= 0:
        return 1.0
    if statistic <= 0:
        return 1.0
    y = statistic / 2
    # Q(a, y): start at a = 1/2 (erfc) or a = 1 (exp), then Q(a+1, y) = Q(a, y) + y^a e^-y / Gamma(a+1)
    a, q = (0.5, math.erfc(math.sqrt(y))) if dof % 2 else (1.0, math.exp(-y))
    while a < dof / 2:
        q += math.exp(a * math.log(y) - y - math.lgamma(a + 1))
        a += 1
    return min(1.0, max(0.0, q))


def min_sample(expected: dict[str, float], confidence: float, tolerance: float) -> int:
    """Requests needed before a share ``tolerance`` away from its expected value is significant.

    The binomial z-test of the share with the largest variance, n = z^2 p(1-p) / tolerance^2;
    with only 0/1 shares (a header route, one destination) any stray request is decisive, so a
    sample that could show one request in ``tolerance`` suffices: ceil(1 / tolerance).
    """
    z = z_value(confidence)
    worst = max((p * (1 - p) for p in expected.values()), default=0.0)
    if worst == 0:
        return math.ceil(1 / tolerance)
    return math.ceil(z * z * worst / (tolerance * tolerance))


def compare_shares(counts: dict[str, int], expected: dict[str, float], confidence: float,
                   tolerance: float, min_requests: int | None = None) -> ShareTest:
    """Observed shares with intervals against ``expected`` (chi-square goodness of fit)."""
    versions = sorted(set(counts) | set(expected))
    total = sum(counts.get(v, 0) for v in versions)
    statistic, impossible = 0.0, False
    for version in versions:
        observed, wanted = counts.get(version, 0), expected.get(version, 0.0) * total
        if wanted > 0:
            statistic += (observed - wanted) ** 2 / wanted
        elif observed > 0:
            impossible = True  # requests where the declaration sends none: decisive
    categories = sum(1 for v in versions if expected.get(v, 0.0) > 0)
    p_value = 0.0 if impossible else chi_square_sf(statistic, categories - 1) if total else 1.0
    shares = tuple(
        Share(v, counts.get(v, 0), counts.get(v, 0) / total if total else 0.0, expected.get(v, 0.0),
              *wilson(counts.get(v, 0), total, confidence))
        for v in versions
    )
    needed = min_requests if min_requests is not None else min_sample(expected, confidence, tolerance)
    deviation = max((abs(s.observed - s.expected) for s in shares), default=0.0)
    return ShareTest(total, needed, confidence, p_value, shares, deviation)
