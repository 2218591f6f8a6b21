"""Recovery-budget probe: how long after a fault (or its heal) the SLO held again.

``recovered_within`` is referenced from experiments as ``{"type": "python", "module":
"chaosmesh_qa.probes.recovery", "func": "recovered_within"}``, usually as a method probe
after the fault action, with a tolerance of ``{"type": "range", "range": [0, <budget>]}``.
It evaluates the SLO second by second from the reference time — on Prometheus's raw
scrapes (the front door by default: the ingress → front-service edge; see
``metrics.per_second``) or on the client-side Locust timeline —
until it has held for ``stable_s`` (whole one-second samples, the one it recovered in
counted), and returns the time to recover in seconds.  When the budget runs out first it
returns the time it waited, which fails the tolerance.  Each evaluation leaves its timeline
(fault start, first breach, detection, recovery, heal) in ``RECOVERIES``; the safety control
copies it into the journal, and every experiment run starts with ``reset()``
(``chaosmesh_qa.controls.start_of_run``), so a journal holds only its own run's.
Arguments are checked before the target is contacted; the wait is bounded (budget at most an hour).
"""

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.metrics import per_second
from chaosmesh_qa.probes.context import MeasureContext, check_since

__all__ = ["recovered_within"]

log = logging.getLogger("chaostoolkit")
SLO_KEYS = {"max_error_ratio": "error ratio", "max_p50_ms": "p50", "max_p95_ms": "p95", "max_p99_ms": "p99"}
MEASURES = ("prometheus", "client")
MAX_BUDGET_S = 3600.0  # the probe blocks for up to budget + stable time: keep it bounded
MAX_LATENCY_MS = 3_600_000.0
# how often the verdict is taken again: a tenth of a sample for the timeline (a file read), a quarter for
# Prometheus (three range queries each time, to a server others query too)
POLL_S = {"client": 0.1, "prometheus": 0.25}
RECOVERIES: list[dict[str, Any]] = []
Samples = list[tuple[float, bool]]  # (second, SLO held)


def recovered_within(budget_s: float, slo: dict[str, float], since: str = "fault_start", measure: str = "prometheus",
                     service: str | None = None, source: str | None = None, stable_s: float = 3.0,
                     configuration: dict[str, Any] | None = None) -> float:
    """Seconds from ``since`` (this run's latest fault start, or its last heal) until ``slo`` held again.

    ``slo`` keys: ``max_error_ratio``, ``max_p50_ms``, ``max_p95_ms``, ``max_p99_ms``.  A second
    with no completed request counts as a breach (an outage that hangs requests is no recovery).
    ``measure``: ``prometheus`` (``service``, default the ingress's front service over the
    ingress edge, or ``source`` → ``service``) or ``client`` (the Locust timeline).  Before the
    run has injected any fault (a hypothesis checked before the method) it answers 0.
    """
    budget_s = checks.seconds("budget_s", budget_s, MAX_BUDGET_S)
    stable_s = checks.seconds("stable_s", stable_s, MAX_BUDGET_S)
    objectives = _slo(slo)
    check_since(since)
    measure = checks.choice("measure", measure, MEASURES)
    service, source = checks.optional_name("service", service), checks.optional_name("source", source)
    ctx = MeasureContext.from_configuration(configuration)
    if not ctx.run_faults():
        return 0.0  # a steady-state hypothesis checked before the method: nothing to recover from yet
    reference = ctx.reference_time(since)
    evaluate, granularity = (_client_samples(objectives, configuration) if measure == "client"
                             else _prometheus_samples(ctx, objectives, service, source))
    warnings = _resolution_warnings(ctx, objectives) if measure == "prometheus" else []
    for warning in warnings:
        log.warning("recovered_within: %s", warning)

    deadline = reference + budget_s + stable_s + granularity + 2
    while True:
        now = time.time()
        samples = evaluate(reference, now)
        recovered_at, first_breach = _recovery(samples, reference, granularity)
        stable = recovered_at is not None and _held_for(samples, recovered_at, granularity) >= stable_s
        if stable or now >= deadline:
            break
        time.sleep(POLL_S[measure])
    elapsed = (recovered_at - reference) if stable and recovered_at is not None else now - reference
    faults = ctx.run_faults()
    RECOVERIES.append({
        "measure": measure, "slo": objectives, "since": since, "budget_s": budget_s,
        "time_to_recover_s": round(elapsed, 3), "within_budget": bool(stable) and elapsed <= budget_s,
        "timeline": {
            "reference": reference,
            "fault_start": max((f["started_at"] for f in faults), default=None),
            "first_breach": first_breach,
            "detection": _detection(ctx, faults, reference, now),
            "recovered": recovered_at if stable else None,
            "heal": max((f["ended_at"] for f in faults if "ended_at" in f), default=None),
        },
        "warnings": warnings,
    })
    return round(elapsed, 3)


def _recovery(samples: Samples, reference: float, granularity: float) -> tuple[float | None, float | None]:
    """(when the SLO started holding for good, first breach) from per-second samples.

    A sample at ``t`` summarises ``(t - granularity, t]``; after the last breached sample ``b``
    the first clean window ends at ``b + 1``, so the trouble ended by ``b + 1 - granularity``.
    """
    breaches = [t for t, held in samples if not held]
    if not samples:
        return None, None
    if not breaches:
        return reference, None
    last = max(breaches)
    if last >= samples[-1][0]:
        return None, min(breaches)
    return max(reference, last + 1 - granularity), min(breaches)


def _held_for(samples: Samples, recovered_at: float, granularity: float) -> float:
    """Seconds of samples since ``recovered_at``, the sample holding it counted whole.

    A sample covers a whole second, so a stable window is counted in whole samples: with no breach
    (``recovered_at`` the fault's start, mid-second) the second the fault began in is the window's
    first, as a breached sample's successor is after a breach.  Counting only the part after the
    fault would make the probe wait for one more sample past the window every time: the up-to-a-second
    wait of whole-second lines, not of the mesh.
    """
    first_window_start = math.floor(recovered_at / granularity) * granularity
    return samples[-1][0] - first_window_start if samples else 0.0


def _prometheus_samples(ctx: MeasureContext, objectives: dict[str, float], service: str | None,
                        source: str | None) -> tuple[Callable[[float, float], Samples], float]:
    """Per-second SLO verdicts from the raw scrapes (``metrics.per_second``), stamped with each second's end."""
    callee = ctx.service(service) if service else ctx.front_service()
    caller = ctx.service(source, "source") if source else ("ingress" if service is None else None)
    edge, prefix = ({"source": caller}, "edge_") if caller else ({}, "")
    selectors = {name: ctx.catalog.render(f"{prefix}{name}", service=callee, **edge)
                 for name in ("responses", "error_responses", "latency_buckets")}
    quantiles = {key: q for key, q in (("max_p50_ms", 0.5), ("max_p95_ms", 0.95), ("max_p99_ms", 0.99))
                 if key in objectives}

    def evaluate(start: float, end: float) -> Samples:
        first, last = math.floor(start), math.floor(end) - 1  # the last whole second is still being scraped
        fetch_from = first - 2  # a sample before the range, to measure the first increase
        responses = ctx.prometheus.raw(selectors["responses"], fetch_from, end)
        newest = max((float(t) for item in responses for t, _ in item["values"]), default=None)
        if newest is not None:  # seconds after the newest sample are not known yet (scrape interval, or the
            last = min(last, math.floor(newest))  # recording rules of a dialect such as the emulation's Istio names)
        requests = per_second.totals(per_second.spread_increases(responses, first, last))
        errors = per_second.totals(per_second.spread_increases(
            ctx.prometheus.raw(selectors["error_responses"], fetch_from, end), first, last))
        latency = {}
        if quantiles:
            buckets = per_second.spread_increases(ctx.prometheus.raw(selectors["latency_buckets"], fetch_from, end),
                                                  first, last, key="le")
            latency = {key: per_second.quantiles_per_second(buckets, q) for key, q in quantiles.items()}
        samples = []
        for second in range(first, last):
            total = requests.get(second, 0.0)
            held = total >= 0.5  # at least one request completed in this second
            if held and "max_error_ratio" in objectives:
                held = errors.get(second, 0.0) / total <= objectives["max_error_ratio"]
            for key, values in latency.items():
                value = values.get(second)
                held = held and value is not None and value <= objectives[key]
            samples.append((float(second + 1), held))
        return samples

    return evaluate, 1.0


def _client_samples(objectives: dict[str, float],
                    configuration: dict[str, Any] | None) -> tuple[Callable[[float, float], Samples], float]:
    from chaosmesh_qa.traffic.actions import timeline_path
    from chaosmesh_qa.traffic.timeline import slo_samples

    timeline_path(configuration)  # a malformed configuration.chaosmesh_qa_timeline is an InvalidArgument
    return (lambda start, end: slo_samples(configuration, objectives, start, end)), 1.0


def _detection(ctx: MeasureContext, faults: Sequence[Mapping[str, Any]], start: float, end: float) -> float | None:
    """First moment a resilience policy visibly engaged (ejection or breaker overflow) for a faulted service."""
    services = {f["target"].get("service") or f["target"].get("b") for f in faults} - {None}
    # a ServiceEntry's host (a dot in it): its fault is injected before the callers' router, where no ejection or
    # breaker overflow of its own can show (mesh/serviceentries; targets.local.envoy.external)
    services = {s for s in services if "." not in s}
    seen: list[float] = []
    for service in services:
        for sli in ("outlier_ejections_active", "circuit_breaker_overflows"):
            params = {"service": service} if sli == "outlier_ejections_active" else {"service": service,
                                                                                      "window": "2s"}
            points = ctx.prometheus.series(ctx.catalog.render(sli, **params), math.floor(start), end)
            seen.extend(t for t, value in points if value > 0)
    return min(seen, default=None)


def _resolution_warnings(ctx: MeasureContext, objectives: dict[str, float]) -> list[str]:
    """Latency thresholds that fall far between two histogram buckets of the target's dialect."""
    found = []
    for key, limit in objectives.items():
        gap = ctx.catalog.bucket_gap(limit) if key.endswith("_ms") else None
        if gap is not None:
            found.append(f"slo.{key}={limit:g} ms lies between histogram buckets {gap[0]:g} and {gap[1]:g} ms: "
                         "the quantile there is interpolated, not measured")
    return found


def reset() -> None:
    """Forget the recovery timelines of earlier runs (called at the start of every experiment run)."""
    RECOVERIES.clear()


def _slo(slo: Any) -> dict[str, float]:
    if not isinstance(slo, dict) or not slo:
        checks.fail("slo", "a non-empty mapping such as {'max_error_ratio': 0.01}", slo)
    objectives = {}
    for key, value in slo.items():
        if key not in SLO_KEYS:
            checks.fail("slo", f"keys among {', '.join(SLO_KEYS)}", key)
        high = 1.0 if key == "max_error_ratio" else MAX_LATENCY_MS
        objectives[key] = checks.non_negative(f"slo.{key}", value, high)
    return objectives
