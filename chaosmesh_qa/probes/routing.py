"""Routing verdict: do a service's versions serve the shares its VirtualService declares?

Referenced from experiments as ``{"module": "chaosmesh_qa.probes.routing", "func": "routing_matches"}``.
The expected shares come from the declared mesh (``MeshTarget.declared_mesh`` resolved by
``chaosmesh_qa.mesh.routing``: the route that takes requests with ``headers``, its weights, the
subsets' labels) or from ``expected``, the team's intent; the observed ones from the requests each
version actually served in the last ``window_s`` (SLI ``version_requests`` of the target's
catalog; a window shorter than two scrapes of a coarse Prometheus is widened to two, and the probe waits until
that window lies after the traffic's start and the run's last fault).  A chi-square goodness-of-fit test
(``chaosmesh_qa.metrics.shares``) decides.

The result is a mapping whose ``status`` Chaos Toolkit compares with a list tolerance
(``"tolerance": ["pass"]``): ``pass``; ``deviates`` (the deviation is significant at
``confidence`` *and* some share is more than ``tolerance`` off, or a version the declaration
sends nothing to served requests, or the declaration cannot be served); ``not-enough-traffic``
(no decisive deviation, but fewer requests than needed to see a ``tolerance``-sized one:
never a pass).  ``summary``
says it in one line (also logged), with every share, its interval and the p-value.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument, TimelineError
from chaosmesh_qa.mesh.routing import expected_shares
from chaosmesh_qa.metrics.shares import ShareTest, compare_shares
from chaosmesh_qa.probes.context import MeasureContext, window
from chaosmesh_qa.traffic.timeline import read_timeline, timeline_path

__all__ = ["routing_matches"]

log = logging.getLogger("chaostoolkit")
SUM_SLACK = 1e-6
MAX_REQUESTS = 1_000_000_000
MAX_CLEAN_WAIT_S = 300.0  # two scrapes of a 60 s interval, its lag, and a margin

Configuration = dict[str, Any]


def routing_matches(service: str, expected: dict[str, float] | None = None, min_requests: int | None = None,
                    confidence: float = 0.99, window_s: float = 30, headers: dict[str, str] | None = None,
                    tolerance: float = 0.05, path: str | None = None,
                    configuration: Configuration | None = None) -> dict[str, Any]:
    """Do ``service``'s versions serve the declared (or ``expected``) shares of its requests?

    ``expected``: ``{version: share}`` summing to 1 (default: from the VirtualService and
    DestinationRule); ``headers``/``path``: what the traffic in the window carries, to pick the
    declared route (a header route expects all of it on its subset); ``min_requests``: the sample
    below which the answer is ``not-enough-traffic`` (default: computed from ``confidence`` and
    ``tolerance``).  Returns ``{"status", "summary", ...}``; use ``"tolerance": ["pass"]``.
    """
    service = checks.name("service", service)
    level = checks.number("confidence", confidence, 0, 1, low_open=True, high_open=True)
    slack = checks.number("tolerance", tolerance, 0, 1, low_open=True, high_open=True)
    span = window(window_s)
    least = None if min_requests is None else checks.whole("min_requests", min_requests, 1, MAX_REQUESTS)
    request_headers = _headers(headers)
    request_path = None if path is None else checks.text("path", path, 2048)
    intent = None if expected is None else _expected(expected)

    ctx = MeasureContext.from_configuration(configuration)
    ctx.service(service)
    versions = [str(v) for v in ctx.description["services"][service]["versions"]]
    problems: tuple[str, ...] = ()
    if intent is None:
        declared = expected_shares(ctx.target.declared_mesh(), service, request_headers, request_path)
        intent, problems = declared.shares, declared.problems
    unknown = sorted(set(intent) - set(versions))
    if unknown:
        raise InvalidArgument(f"expected: {', '.join(map(repr, unknown))} is not a version of {service!r} "
                              f"(versions: {', '.join(versions)})")
    span = _clean_window(ctx, span, configuration)
    raw = ctx.prometheus.by_label(ctx.catalog.render("version_requests", service=service, window=span), "version")
    counts = {version: round(value) for version, value in raw.items() if round(value) > 0}
    test = compare_shares(counts, intent, level, slack, least)
    result = _result(service, span, test, slack, problems, request_headers)
    log.info("routing_matches: %s", result["summary"])
    return result


def _clean_window(ctx: MeasureContext, asked: str, configuration: Configuration | None) -> str:
    """``asked`` widened to two scrapes of the target's Prometheus (``MeasureContext.readable``), and a wait until
    that window lies wholly after the run's last change: the traffic's start and the end of its last fault.

    A version's count is its pods' counters at their last scrapes in the window less those at their last scrapes
    before it, and each pod is scraped at its own fixed moment of the interval: over steady traffic every pod's
    count spans the same length of it and the shares are the traffic's, but a window reaching into the traffic's
    first seconds (or a fault) counts each pod from the same zero to its own last scrape, up to one interval
    apart.  Measured on the sandbox (1 s scrapes, 5 s window opened 4 s after the traffic started): the v2
    pod's last scrape 0.5 s before the v1 pods' read v2 at 16.5 % of a 20 % split, and once, on a loaded
    machine, 11.8 % (p = 3e-5).  So the wait applies at every scrape interval, not only a cluster's 15 s.
    During a fault the widened window is what there is."""
    readable = ctx.readable(asked)
    interval = ctx.prometheus.scrape_interval_s()
    if interval is None:
        return readable
    faults = ctx.run_faults()
    if any("ended_at" not in f for f in faults):
        return readable
    changes = [float(f["ended_at"]) for f in faults]
    with contextlib.suppress(TimelineError):
        lines = read_timeline(timeline_path(configuration))
        changes += [float(lines[0]["t"])] if lines else []
    if not changes:
        return readable
    wait_s = min(max(changes) + interval + int(readable.removesuffix("s")) + 1 - time.time(), MAX_CLEAN_WAIT_S)
    if wait_s > 0:
        log.warning("chaosmesh-qa: routing_matches waits %.0f s so that its %s window starts a scrape interval "
                    "(%g s) after the traffic's start or the last fault's end", wait_s, readable, interval)
        time.sleep(wait_s)
    return readable


def _result(service: str, span: str, test: ShareTest, tolerance: float, problems: tuple[str, ...],
            headers: dict[str, str]) -> dict[str, Any]:
    alpha = 1 - test.confidence
    if problems or (test.p_value < alpha and (test.max_deviation > tolerance
                                              or any(s.expected == 0 and s.count for s in test.shares))):
        status = "deviates"  # decisive whatever the sample size
    elif test.requests < test.min_requests:
        status = "not-enough-traffic"  # would pass, but too few requests to see a tolerance-sized deviation
    else:
        status = "pass"
    level = f"{test.confidence * 100:g}%"
    recorded = {s.version: {"count": s.count, "observed": round(s.observed, 4), "expected": round(s.expected, 4),
                            "low": round(s.low, 4), "high": round(s.high, 4)} for s in test.shares}
    # the summary says the recorded (rounded) figures: 0.23345 is "23.4%" in both, never "23.3%" in one
    shares = ", ".join(f"{version} {r['observed']:.1%} [{r['low']:.1%}, {r['high']:.1%}] (expected {r['expected']:.1%})"
                       for version, r in recorded.items())
    scope = f" with {headers}" if headers else ""
    summary = (f"{status}: {service}{scope}: {shares or 'no version served a request'}; {test.requests} requests "
               f"in {span}, chi-square p={test.p_value:.3g} ({level} intervals, tolerance {tolerance:g})")
    if status == "not-enough-traffic":
        summary += f"; need at least {test.min_requests} requests to tell a {tolerance:g} deviation"
    if problems:
        summary += "; " + "; ".join(problems)
    return {
        "status": status, "summary": summary, "service": service, "window": span, "requests": test.requests,
        "min_requests": test.min_requests, "p_value": test.p_value, "confidence": test.confidence,
        "shares": recorded,
        "problems": list(problems),
    }


def _expected(expected: Any) -> dict[str, float]:
    shares = checks.mapping("expected", expected, "a mapping of version to share, e.g. {\"v1\": 0.9, \"v2\": 0.1}")
    if not shares:
        checks.fail("expected", "at least one version", expected)
    result = {checks.name(checks.field("expected", k), k): checks.number(checks.field("expected", k), v, 0, 1)
              for k, v in shares.items()}
    total = sum(result.values())
    if abs(total - 1) > SUM_SLACK:
        raise InvalidArgument(f"expected: shares sum to {total:g}, not 1")
    return result


def _headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    given = checks.mapping("headers", headers, "a mapping of header name to value")
    result = {}
    for key, value in given.items():
        where = checks.field("headers", key)
        result[checks.text(where, key, 256).lower()] = checks.text(where, value, 4096) if value != "" else ""
    return result
