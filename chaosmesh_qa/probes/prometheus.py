"""Steady-state and policy probes over Prometheus, in the target's metric dialect.

Referenced from experiments as ``{"type": "python", "module": "chaosmesh_qa.probes.prometheus",
"func": ...}``.  Queries come from the SLI catalog (``chaosmesh_qa/sli/<dialect>.yaml``);
each probe checks its arguments before contacting the target (``InvalidArgument``, one line),
returns a number for a tolerance and raises only when the measurement itself
fails (``MeasurementFailed``: Prometheus unreachable), so a bad mesh deviates, it never
"errors".  ``source`` narrows a service SLI to one caller→callee edge ("ingress" is the
gateway).  A window that holds no request has no ratio or quantile: those probes answer 0.

``phase`` (``error_ratio``, ``latency_quantile``, ``request_rate``) reads a phase of this run instead of
the last ``window_s`` seconds: ``during`` is the run's faults' own window (first fault start to last fault
end, from the target's fault records: ``traffic.timeline.phase_bounds``, the phases of the client
timeline), extended by the time the requests sent in it take to complete and reach Prometheus; ``after``
from there to now; ``before`` the ``window_s`` seconds before the first fault.  A probe that judges
behaviour under a fault must read ``during``: "the last N seconds" relative to when the probe runs stops
covering the fault as soon as the steps before it take longer (recovery took 4.8 s on the Kubernetes
target, 1.5 s locally).  Before the run's first fault (a steady-state hypothesis is
also checked before the method) every phase reads the last ``window_s`` seconds.
"""

import time
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument, MeasurementFailed
from chaosmesh_qa.probes.context import MeasureContext, check_since, span, window
from chaosmesh_qa.traffic.timeline import phase_bounds

__all__ = ["circuit_breaker_overflows", "error_ratio", "healthy_endpoints", "latency_quantile",
           "outlier_ejections", "policy_engaged", "request_rate", "retries"]

# policy -> (SLI counting its actions, whether that SLI is a per-second rate)
POLICY_SLIS = {"outlier_ejection": ("outlier_ejections", False), "circuit_breaker": ("circuit_breaker_overflows", True),
               "retries": ("retries", True)}
MAX_MINIMUM = 1_000_000_000
PHASES = ("before", "during", "after")
POLICY_POLL_S = 0.5

Configuration = dict[str, Any]


def error_ratio(service: str, window_s: float = 10, source: str | None = None, phase: str | None = None,
                configuration: Configuration | None = None) -> float:
    """Share of requests into ``service`` (or over the edge ``source`` → ``service``) answered 5xx, over the
    last ``window_s`` seconds or this run's ``phase`` (``during``: its faults' window)."""
    service, source, span_ = _edge_args(service, source, window_s)
    chosen = _phase(phase)
    ctx = MeasureContext.from_configuration(configuration)
    params = _edge(ctx, service, source)
    span_, at = _window(ctx, span_, chosen)
    value = ctx.prometheus.value(ctx.catalog.render("edge_error_ratio" if source else "error_ratio", window=span_,
                                                    **params), at)
    return value or 0.0


def latency_quantile(service: str, quantile: float = 0.99, window_s: float = 10, source: str | None = None,
                     phase: str | None = None, configuration: Configuration | None = None) -> float:
    """Latency quantile (milliseconds) of requests into ``service`` (or over one edge), over the last
    ``window_s`` seconds or this run's ``phase`` (``during``: its faults' window)."""
    service, source, span_ = _edge_args(service, source, window_s)
    q = checks.number("quantile", quantile, 0, 1, low_open=True, high_open=True)
    chosen = _phase(phase)
    ctx = MeasureContext.from_configuration(configuration)
    params = _edge(ctx, service, source)
    span_, at = _window(ctx, span_, chosen)
    sli = "edge_latency_quantile" if source else "latency_quantile"
    return ctx.prometheus.value(ctx.catalog.render(sli, quantile=str(q), window=span_, **params), at) or 0.0


def request_rate(service: str, window_s: float = 10, source: str | None = None, phase: str | None = None,
                 configuration: Configuration | None = None) -> float:
    """Requests per second into ``service`` (or over one edge), over the last ``window_s`` seconds or this
    run's ``phase`` (``during``: its faults' window)."""
    service, source, span_ = _edge_args(service, source, window_s)
    chosen = _phase(phase)
    ctx = MeasureContext.from_configuration(configuration)
    params = _edge(ctx, service, source)
    span_, at = _window(ctx, span_, chosen)
    value = ctx.prometheus.value(ctx.catalog.render("edge_request_rate" if source else "request_rate", window=span_,
                                                    **params), at)
    return value or 0.0


def healthy_endpoints(service: str, version: str | None = None, configuration: Configuration | None = None) -> int:
    """Endpoints of ``service`` its callers see as healthy (fewest over the callers); ``version`` names a subset."""
    service, version = checks.name("service", service), checks.optional_name("version", version)
    ctx = MeasureContext.from_configuration(configuration)
    ctx.service(service)
    if version is not None and version not in ctx.description["services"][service]["subsets"]:
        raise InvalidArgument(f"version: {service!r} has no DestinationRule subset {version!r}")
    return int(ctx.query("healthy_endpoints", service=service, subset=version or "") or 0)


def outlier_ejections(service: str, since: Any = "fault_start", configuration: Configuration | None = None) -> int:
    """Outlier-detection ejections of ``service``'s endpoints by its callers since ``since``: the policy engaged."""
    ctx, span_ = _since(service, since, configuration)
    return _count(ctx, "outlier_ejection", service, span_)


def circuit_breaker_overflows(service: str, since: Any = "fault_start",
                              configuration: Configuration | None = None) -> int:
    """Requests toward ``service`` refused by a caller's circuit breaker (pending overflow) since ``since``."""
    ctx, span_ = _since(service, since, configuration)
    return _count(ctx, "circuit_breaker", service, span_)


def retries(service: str, since: Any = "fault_start", configuration: Configuration | None = None) -> int:
    """Retry attempts callers made toward ``service`` since ``since``: retries engaged."""
    ctx, span_ = _since(service, since, configuration)
    return _count(ctx, "retries", service, span_)


def policy_engaged(policy: str, service: str, minimum: int = 1,
                   configuration: Configuration | None = None) -> bool:
    """Did ``policy`` act on traffic to ``service`` at least ``minimum`` times since this run's first fault?

    For a steady-state hypothesis, which Chaos Toolkit checks before *and* after the method:
    before the run has injected any fault there is nothing to prove yet, and the answer is
    ``true``; after it, ``false`` means the mesh survived (or not) without the policy it
    claims to rely on.  ``policy``: ``outlier_ejection``, ``circuit_breaker`` or ``retries``;
    ``minimum``: a whole number >= 1.
    """
    policy = checks.choice("policy", policy, POLICY_SLIS)
    service = checks.name("service", service)
    least = checks.whole("minimum", minimum, 1, MAX_MINIMUM)
    ctx = MeasureContext.from_configuration(configuration)
    ctx.service(service)
    faults = ctx.run_faults()
    if not faults:
        return True
    # What the policy did just now is in Prometheus only a recording lag later (a scrape interval and a little):
    # a count short of ``minimum`` is asked again until that lag has passed, then it is the answer.
    deadline = time.monotonic() + ctx.record_lag_s()
    while True:
        since_first = ctx.readable(span(time.time() - min(float(f["started_at"]) for f in faults) + 1), "since")
        engaged = _count(ctx, policy, service, since_first) >= least
        if engaged or time.monotonic() >= deadline:
            return engaged
        time.sleep(POLICY_POLL_S)


def _count(ctx: MeasureContext, policy: str, service: str, span_: str) -> int:
    """How many times ``policy`` acted toward ``service`` over ``span_`` (rate SLIs times the span's seconds)."""
    sli, per_second = POLICY_SLIS[policy]
    value = ctx.query(sli, service=service, window=span_)
    absent = ctx.catalog.slis[sli].when_absent  # the dialect's catalog says when no series is no measurement
    if value is None and absent:
        raise MeasurementFailed(f"{policy} on {service!r}: {absent}")
    value = value or 0
    return round(value * _seconds(span_) if per_second else value)


def _edge_args(service: Any, source: Any, window_s: Any) -> tuple[str, str | None, str]:
    """``service``, ``source`` and the window, checked before anything is contacted."""
    return checks.name("service", service), checks.optional_name("source", source), window(window_s)


def _phase(phase: Any) -> str | None:
    return None if phase is None else checks.choice("phase", phase, PHASES)


def _window(ctx: MeasureContext, last: str, phase: str | None) -> tuple[str, float | None]:
    """The Prometheus range and the time to evaluate at (``None``: now) that ``phase`` names in this run.

    ``last`` (the ``window_s`` range) is read now when no phase is given or the run has no fault yet, and
    ending at the first fault's start for ``before``.  ``during`` is what Prometheus recorded of the requests
    sent while the run's faults were active: from the first fault's start to the last fault's end plus
    ``_tail`` (a request is recorded when it completes, so one the fault held is recorded up to the delay
    later, and it reaches Prometheus a recording lag after that); ``after`` starts where ``during`` ends and
    ends now.  Both are read whatever the time the probe runs at; a phase not begun yet is a
    ``MeasurementFailed``.
    """
    last = ctx.readable(last)
    if phase is None:
        return last, None
    faults = ctx.run_faults()
    if not faults:
        return last, None  # nothing injected yet: the steady state before the method, the last window_s
    now = time.time()
    start, end = phase_bounds(faults)[phase]
    if phase == "before":
        return last, end  # the window_s seconds before the first fault started
    tail = _tail(faults, ctx.record_lag_s())
    if phase == "during":
        assert start is not None and end is not None
        end += tail
    else:
        assert start is not None
        start, end = start + tail, now
    end = min(end, now)
    if start >= end:
        raise MeasurementFailed(f"phase={phase}: has not begun yet (it starts at {start:.3f}, now is {now:.3f})")
    return ctx.readable(span(end - start), f"phase={phase}"), end


def _tail(faults: list[Any], record_lag_s: float) -> float:
    """Seconds after the last fault's end until Prometheus holds every request sent during the faults: the
    longest delay the run injected (a request held when the fault ended completes that much later) plus the
    recording lag (``MeasureContext.record_lag_s``: a scrape interval and a little)."""
    delays = [float((f.get("parameters") or {}).get("delay_ms") or 0) / 1000 for f in faults]
    return max(delays, default=0.0) + record_lag_s


def _edge(ctx: MeasureContext, service: str, source: str | None) -> dict[str, str]:
    params = {"service": ctx.service(service)}
    if source is not None:
        params["source"] = ctx.service(source, "source")
    return params


def _since(service: Any, since: Any, configuration: Configuration | None) -> tuple[MeasureContext, str]:
    service = checks.name("service", service)
    check_since(since)
    ctx = MeasureContext.from_configuration(configuration)
    ctx.service(service)
    return ctx, ctx.readable(span(time.time() - ctx.reference_time(since) + 1), "since")


def _seconds(span_: str) -> int:
    return int(span_.removesuffix("s"))
