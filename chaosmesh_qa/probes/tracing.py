"""Tracing verdict: does every request's trace span every hop of the call graph, from the ingress on?

Referenced from experiments as ``{"module": "chaosmesh_qa.probes.tracing", "func": "traces_complete"}``.
The spans come from a Zipkin v2 query API (``GET /api/v2/traces``) whose address the target gives
(``MeshTarget.trace_query_url``: the sandbox's own receiver, or ``configuration.chaosmesh_qa_tracing_url``
on a cluster).  The expected tree comes from the declared mesh: the ingress calls a service of the
mesh (the ingress service, or what a Gateway's routes name), each service calls its demo app's
callees, and a ``command`` service (its calls are its own code's business) is expected to call what
its sidecar was seen calling in the window.

A trace is *complete* when, below the ingress's span, every expected hop ``S -> C`` shows as S's
CLIENT span with C's SERVER span as its child, recursively.  A hop whose call failed before it
reached C (an error answer and no SERVER span) is counted in ``failed_hops``, not as lost context.
A trace that starts at a service's outbound call instead of the ingress is an *orphan*: that
service dropped the trace context (it did not copy the trace headers), and the request's trace
broke there.  Traces that enter a sidecar from outside the mesh (not through the ingress) are
left out (``outside_traces``).

Like ``probes.routing`` it returns ``{"status": "pass" | "violated" | "not-enough-traces", "summary", ...}``
for a list tolerance ``["pass"]``; fewer than ``min_traces`` traces is never a pass.  An unreachable
query API is a ``MeasurementFailed`` line.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from chaosmesh_qa import checks
from chaosmesh_qa.errors import MeasurementFailed
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.factory import get_target

__all__ = ["TraceVerdict", "judge_traces", "traces_complete"]

log = logging.getLogger("chaostoolkit")
INGRESS = "ingress"
# how the ingress gateway names itself in spans: the sandbox's node cluster, Istio's gateway workload
INGRESS_SPAN_NAMES = ("ingress", "istio-ingressgateway")
URL_KEY, URL_ENV = "chaosmesh_qa_tracing_url", "CHAOSMESH_QA_TRACING_URL"
MAX_WINDOW_S = 3600.0
MAX_TRACES = 50_000
QUERY_TIMEOUT_S = 10.0
DEFAULT_SETTLE_S = 1.5  # Envoy flushes spans every 0.5 s in the sandbox; a cluster's may be slower
EXAMPLES = 5

Configuration = dict[str, Any]
Span = dict[str, Any]


def traces_complete(min_ratio: float = 0.99, window_s: float = 10, min_traces: int = 100,
                    settle_s: float = DEFAULT_SETTLE_S, configuration: Configuration | None = None) -> dict[str, Any]:
    """Is at least ``min_ratio`` of the traces of the last ``window_s`` seconds complete?

    ``min_traces``: fewer traces in the window is ``not-enough-traces``, never a pass;
    ``settle_s``: the newest seconds left out (their spans may still be in the proxies' buffers).
    Returns ``{"status", "summary", "ratio", "traces", "complete", "context_lost", "orphan_spans", ...}``.
    """
    ratio = checks.number("min_ratio", min_ratio, 0, 1, low_open=True)
    window = checks.seconds("window_s", window_s, MAX_WINDOW_S)
    least = checks.whole("min_traces", min_traces, 1, MAX_TRACES)
    settle = checks.non_negative("settle_s", settle_s, 600)
    configured = _configured_url(configuration)
    target = get_target(configuration)
    url = target.trace_query_url(configured)
    model = target.declared_mesh()
    end = time.time() - settle
    traces = _fetch(url, end, window)
    verdict = judge_traces(traces, model, (end - window) * 1e6, end * 1e6)
    status = "pass" if verdict.traces >= least and verdict.ratio >= ratio else (
        "not-enough-traces" if verdict.traces < least else "violated")
    record = verdict.record()
    summary = f"{status}: {verdict.describe()}"
    if status == "not-enough-traces":
        summary += f" (at least {least} needed: is traffic flowing through the ingress?)"
    elif status == "violated":
        summary += f" (at least {ratio:.2%} needed)"
    log.info("traces_complete: %s", summary)
    return {"status": status, "summary": summary, **record, "min_ratio": ratio, "min_traces": least,
            "window_s": window, "query_url": url}


@dataclass
class TraceVerdict:
    traces: int = 0  # ingress-rooted traces + orphan traces
    complete: int = 0
    context_lost: Counter[str] = field(default_factory=Counter)  # service -> traces broken there
    orphan_traces: int = 0
    orphan_spans: int = 0
    orphan_examples: list[dict[str, Any]] = field(default_factory=list)
    failed_hops: int = 0
    outside_traces: int = 0
    expected: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.complete / self.traces if self.traces else 0.0

    def describe(self) -> str:
        text = f"{self.complete} of {self.traces} traces complete ({self.ratio:.2%})"
        if self.context_lost:
            text += "; trace context lost at " + ", ".join(f"{s} ({n})" for s, n in self.context_lost.most_common())
        if self.orphan_spans:
            text += f"; {self.orphan_spans} orphan spans in {self.orphan_traces} traces not started at the ingress"
        if self.failed_hops:
            text += f"; {self.failed_hops} calls failed before reaching their callee"
        return text

    def record(self) -> dict[str, Any]:
        return {"ratio": round(self.ratio, 6), "traces": self.traces, "complete": self.complete,
                "incomplete": self.traces - self.complete, "context_lost": dict(self.context_lost.most_common()),
                "orphan_traces": self.orphan_traces, "orphan_spans": self.orphan_spans,
                "orphan_examples": self.orphan_examples, "failed_hops": self.failed_hops,
                "outside_traces": self.outside_traces, "expected": self.expected}


def judge_traces(traces: list[list[Span]], model: MeshModel, start_us: float, end_us: float) -> TraceVerdict:
    """Judge the traces whose first span started and ended within ``[start_us, end_us]`` (epoch µs)."""
    graph = _Graph(model, traces)
    verdict = TraceVerdict(expected={k: sorted(v) for k, v in graph.callees.items()})
    for spans in traces:
        tree = _Tree(spans, graph)
        root = tree.root()
        if root is None or not start_us <= root.get("timestamp", 0) <= end_us - root.get("duration", 0):
            continue
        where, kind = graph.service(root), root.get("kind")
        if where == INGRESS:
            verdict.traces += 1
            lost, failed = tree.check_client(root, None)  # whichever service the ingress routed it to
            verdict.failed_hops += failed
            if lost:
                verdict.context_lost[lost[0]] += 1
            else:
                verdict.complete += 1
        elif kind == "CLIENT":  # a service's outbound call with no incoming context: the trace broke there
            verdict.traces += 1
            verdict.orphan_traces += 1
            verdict.orphan_spans += len(spans)
            verdict.context_lost[where] += 1
            if len(verdict.orphan_examples) < EXAMPLES:
                verdict.orphan_examples.append({"trace_id": root.get("traceId"), "service": where,
                                                "spans": len(spans), "root": root.get("name")})
        else:
            verdict.outside_traces += 1
    return verdict


class _Graph:
    """Who is expected to call whom: the demo apps' declared calls, a command service's observed ones."""

    def __init__(self, model: MeshModel, traces: list[list[Span]]) -> None:
        self.model = model
        self.callees: dict[str, set[str]] = {
            name: set(model.callees(name)) for name, svc in model.services.items() if svc.command is None}
        observed: dict[str, set[str]] = {name: set() for name, svc in model.services.items() if svc.command}
        for spans in traces:
            by_id = {s.get("id"): s for s in spans}
            for span in spans:
                caller = self.service(by_id.get(span.get("parentId"), {}))
                if span.get("kind") == "SERVER" and caller in observed and by_id[span["parentId"]].get("kind") == \
                        "CLIENT":
                    observed[caller].add(self.service(span))
                elif span.get("kind") == "CLIENT" and self.service(span) in observed:
                    destination = _cluster_service(span)
                    if destination in model.services:
                        observed[self.service(span)].add(destination)
        self.callees.update(observed)

    def service(self, span: Mapping[str, Any]) -> str:
        endpoint = span.get("localEndpoint")
        name = endpoint.get("serviceName") if isinstance(endpoint, dict) else None
        if not isinstance(name, str):
            return ""
        short = name.split(".", 1)[0]  # Istio: "<service>.<namespace>"
        if name in self.model.services or short in self.model.services:
            return name if name in self.model.services else short
        return INGRESS if short in INGRESS_SPAN_NAMES else name


class _Tree:
    def __init__(self, spans: list[Span], graph: _Graph) -> None:
        self.graph = graph
        self.spans = [s for s in spans if isinstance(s, dict)]
        ids = {s.get("id") for s in self.spans}
        self.children: dict[Any, list[Span]] = {}
        self.roots: list[Span] = []
        for span in self.spans:
            parent = span.get("parentId")
            if parent in ids and parent != span.get("id"):
                self.children.setdefault(parent, []).append(span)
            else:
                self.roots.append(span)

    def root(self) -> Span | None:
        return min(self.roots, key=lambda s: s.get("timestamp", 0), default=None)

    def check_client(self, client: Span, callee: str | None) -> tuple[list[str], int]:
        """Below a CLIENT span toward ``callee`` (``None``: any service of the mesh): where context was
        lost, and how many calls failed."""
        servers = [s for s in self.children.get(client.get("id"), []) if s.get("kind") == "SERVER" and (
            self.graph.service(s) == callee if callee else self.graph.service(s) in self.graph.model.services)]
        if not servers:
            return ([], 1) if _failed(client) else ([self.graph.service(client)], 0)
        results = [self.check_server(s, self.graph.service(s)) for s in servers]  # retries: the best attempt counts
        return min(results, key=lambda r: (len(r[0]), r[1]))

    def check_server(self, server: Span, service: str) -> tuple[list[str], int]:
        clients = [c for c in self.children.get(server.get("id"), []) if c.get("kind") == "CLIENT"]
        lost: list[str] = []
        failed = 0
        for callee in sorted(self.graph.callees.get(service, ())):
            toward = [c for c in clients if self._destination(c) == callee]
            if not toward:
                lost.append(service)  # the app's call to callee is not in this trace
                continue
            results = [self.check_client(c, callee) for c in toward]
            best = min(results, key=lambda r: (len(r[0]), r[1]))
            lost += best[0]
            failed += best[1]
        return lost, failed

    def _destination(self, client: Span) -> str:
        for child in self.children.get(client.get("id"), []):
            if child.get("kind") == "SERVER":
                return self.graph.service(child)
        return _cluster_service(client)


def _cluster_service(span: Mapping[str, Any]) -> str:
    """The service of a CLIENT span's upstream cluster: ``reviews_v1`` (sandbox), ``outbound|9080|v1|reviews.ns...``."""
    tags = span.get("tags")
    cluster = tags.get("upstream_cluster") if isinstance(tags, dict) else None
    if not isinstance(cluster, str):
        return ""
    if "|" in cluster:
        host = cluster.split("|")[-1]
        return host.split(".", 1)[0]
    return cluster.split("_", 1)[0]


def _failed(client: Mapping[str, Any]) -> bool:
    """Did this call fail before reaching its callee (an error answer from the caller's proxy)?"""
    tags = client.get("tags")
    if not isinstance(tags, dict):
        return True
    status = str(tags.get("http.status_code", ""))
    return "error" in tags or not status.isdigit() or int(status) >= 400


def _configured_url(configuration: Configuration | None) -> str | None:
    raw = (configuration or {}).get(URL_KEY) or os.environ.get(URL_ENV) or None
    if raw is None:
        return None
    what = "an http:// or https:// URL of a Zipkin v2 query API (without /api/v2)"
    if not isinstance(raw, str) or not raw.startswith(("http://", "https://")) or any(
            c.isspace() for c in raw) or "?" in raw or "#" in raw or len(raw) > 300:
        checks.fail(f"configuration.{URL_KEY}", what, raw)
    return raw.rstrip("/")


def _fetch(url: str, end_s: float, window_s: float) -> list[list[Span]]:
    params = {"endTs": int(end_s * 1000), "lookback": int(window_s * 1000), "limit": MAX_TRACES}
    try:
        response = httpx.get(f"{url}/api/v2/traces", params=params, timeout=QUERY_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise MeasurementFailed(f"trace query API at {url} unreachable: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise MeasurementFailed(f"trace query API at {url} answered {response.status_code} to GET /api/v2/traces: "
                                f"{response.text[:200]}")
    try:
        traces = response.json()
    except ValueError:
        raise MeasurementFailed(f"trace query API at {url}: GET /api/v2/traces did not answer JSON") from None
    if not isinstance(traces, list) or not all(isinstance(t, list) for t in traces):
        raise MeasurementFailed(f"trace query API at {url}: GET /api/v2/traces did not answer a list of traces")
    return traces
