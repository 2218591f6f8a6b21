"""Steady-state and policy probes over Prometheus, in the target's metric dialect.

Referenced from experiments as ``{"type": "python", "module": "chaosmesh_qa.probes.prometheus",
"func": ...}``.  Queries come from the SLI catalog (``chaosmesh_qa/sli/<dialect>.yaml``);
each probe checks its arguments before contacting the target (``InvalidArgument``, one line),
returns a number for a tolerance and raises only when the measurement itself
fails (``MeasurementFailed``: Prometheus unreachable), so a bad mesh deviates, it never
"errors".  ``source`` narrows a service SLI to one caller→callee edge ("ingress" is the
gateway).  A window that holds no request has no ratio or quantile: those probes answer 0.
"""

import time
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument, MeasurementFailed
from chaosmesh_qa.probes.context import MeasureContext, check_since, span, window

__all__ = ["circuit_breaker_overflows", "error_ratio", "healthy_endpoints", "latency_quantile",
           "outlier_ejections", "policy_engaged", "request_rate", "retries"]

# policy -> (SLI counting its actions, whether that SLI is a per-second rate)
POLICY_SLIS = {"outlier_ejection": ("outlier_ejections", False), "circuit_breaker": ("circuit_breaker_overflows", True),
               "retries": ("retries", True)}
MAX_MINIMUM = 1_000_000_000

Configuration = dict[str, Any]


def error_ratio(service: str, window_s: float = 10, source: str | None = None,
                configuration: Configuration | None = None) -> float:
    """Share of requests into ``service`` (or over the edge ``source`` → ``service``) answered 5xx."""
    service, source, span_ = _edge_args(service, source, window_s)
    ctx = MeasureContext.from_configuration(configuration)
    params = _edge(ctx, service, source)
    value = ctx.query("edge_error_ratio" if source else "error_ratio", window=span_, **params)
    return value or 0.0


def latency_quantile(service: str, quantile: float = 0.99, window_s: float = 10, source: str | None = None,
                     configuration: Configuration | None = None) -> float:
    """Latency quantile (milliseconds) of requests into ``service`` (or over one edge)."""
    service, source, span_ = _edge_args(service, source, window_s)
    q = checks.number("quantile", quantile, 0, 1, low_open=True, high_open=True)
    ctx = MeasureContext.from_configuration(configuration)
    params = _edge(ctx, service, source)
    sli = "edge_latency_quantile" if source else "latency_quantile"
    return ctx.query(sli, quantile=str(q), window=span_, **params) or 0.0


def request_rate(service: str, window_s: float = 10, source: str | None = None,
                 configuration: Configuration | None = None) -> float:
    """Requests per second into ``service`` (or over one edge)."""
    service, source, span_ = _edge_args(service, source, window_s)
    ctx = MeasureContext.from_configuration(configuration)
    params = _edge(ctx, service, source)
    return ctx.query("edge_request_rate" if source else "request_rate", window=span_, **params) or 0.0


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
    return _count(ctx, policy, service, span(time.time() - min(float(f["started_at"]) for f in faults) + 1)) >= least


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
    return ctx, span(time.time() - ctx.reference_time(since) + 1)


def _seconds(span_: str) -> int:
    return int(span_.removesuffix("s"))
