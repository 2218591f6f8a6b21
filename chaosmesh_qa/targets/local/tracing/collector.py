"""A small Zipkin-v2-compatible trace receiver for the embedded mesh (not Zipkin itself).

No Jaeger, Tempo, Zipkin or OpenTelemetry Collector is packaged in the registries this project
installs from, so the sandbox supervisor serves this one, in its own event loop, on 127.0.0.1
only (``TraceCollector.start``).  It speaks the subset of the Zipkin v2 HTTP API that Envoy's
Zipkin tracer and ``chaosmesh_qa.probes.tracing`` use:

* ``POST /api/v2/spans``: a JSON list of Zipkin v2 spans, or with ``Content-Type: application/x-protobuf``
  a ``zipkin.proto3.ListOfSpans`` (what the sandbox's Envoys send, ``tracing.zipkin_proto``), answered 202;
* ``GET /api/v2/traces?serviceName=&endTs=&lookback=&limit=``: the newest traces with a span in
  ``[endTs - lookback, endTs]`` (milliseconds since the epoch; ``endTs`` defaults to now, ``lookback``
  to a day, ``limit`` to 10), each a list of spans, newest trace first;
* ``GET /api/v2/trace/{traceId}``: one trace's spans (404 when unknown);
* ``GET /api/v2/services``: the service names seen.

Memory is bounded: at most ``max_spans`` spans are kept (the oldest traces go first), each with a
few tags of bounded length, and a POST body may be at most ``MAX_BODY_BYTES``.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web

from chaosmesh_qa.targets.local.tracing.zipkin_proto import spans_from_protobuf

API = "/api/v2"
PROTOBUF = "application/x-protobuf"  # the Content-Type of Envoy's HTTP_PROTO reports
MAX_SPANS = 60_000  # ~8 spans per request of the default mesh: ~75 s of 100 rps
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_LIMIT = 100_000
DEFAULT_LOOKBACK_MS = 86_400_000
KEPT_TAGS = ("http.status_code", "error", "response_flags", "upstream_cluster", "node_id", "guid:x-request-id")
MAX_TAG_CHARS = 256
Span = dict[str, Any]


class SpanStore:
    """Spans by trace id, oldest trace first; at most ``max_spans`` spans in all."""

    def __init__(self, max_spans: int = MAX_SPANS) -> None:
        self.max_spans = max_spans
        self.traces: OrderedDict[str, list[Span]] = OrderedDict()
        self.size = 0
        self.received = 0
        self.rejected = 0

    def add(self, spans: list[Any]) -> int:
        """Keep every well-formed span of ``spans``; returns how many were kept."""
        kept = 0
        for raw in spans:
            span = _clean(raw)
            if span is None:
                self.rejected += 1
                continue
            self.traces.setdefault(span["traceId"], []).append(span)
            self.size += 1
            kept += 1
        self.received += kept
        while self.size > self.max_spans and self.traces:
            _, evicted = self.traces.popitem(last=False)
            self.size -= len(evicted)
        return kept

    def query(self, service: str | None, end_ms: float, lookback_ms: float, limit: int) -> list[list[Span]]:
        """Newest first: traces with a span in ``[end_ms - lookback_ms, end_ms]`` (and of ``service``)."""
        low, high = (end_ms - lookback_ms) * 1000, end_ms * 1000
        found: list[list[Span]] = []
        for spans in reversed(self.traces.values()):
            if len(found) >= limit:
                break
            if any(low <= s.get("timestamp", 0) <= high for s in spans) and (
                    service is None or any(_service(s) == service for s in spans)):
                found.append(list(spans))
        return found

    def services(self) -> list[str]:
        return sorted({name for spans in self.traces.values() for s in spans if (name := _service(s))})


def _service(span: Span) -> str | None:
    endpoint = span.get("localEndpoint")
    return endpoint.get("serviceName") if isinstance(endpoint, dict) else None


def _clean(raw: Any) -> Span | None:
    """The fields of a Zipkin v2 span this receiver keeps, or ``None`` for a malformed one."""
    if not isinstance(raw, dict):
        return None
    trace_id, span_id = raw.get("traceId"), raw.get("id")
    if not (isinstance(trace_id, str) and isinstance(span_id, str) and _is_hex(trace_id, 32)
            and _is_hex(span_id, 16)):
        return None
    span: Span = {"traceId": trace_id.lower().zfill(32 if len(trace_id) > 16 else 16), "id": span_id.lower()}
    parent = raw.get("parentId")
    if isinstance(parent, str) and _is_hex(parent, 16):
        span["parentId"] = parent.lower()
    for key in ("kind", "name"):
        if isinstance(raw.get(key), str):
            span[key] = raw[key][:MAX_TAG_CHARS]
    for key in ("timestamp", "duration"):  # microseconds; some encoders send them as strings
        value = raw.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            span[key] = value
    endpoint = raw.get("localEndpoint")
    if isinstance(endpoint, dict) and isinstance(endpoint.get("serviceName"), str):
        span["localEndpoint"] = {"serviceName": endpoint["serviceName"][:MAX_TAG_CHARS]}
    tags = raw.get("tags")
    if isinstance(tags, dict):
        span["tags"] = {k: str(tags[k])[:MAX_TAG_CHARS] for k in KEPT_TAGS if k in tags}
    return span


def _is_hex(value: Any, max_length: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_length and all(c in "0123456789abcdefABCDEF" for c in value)


class TraceCollector:
    """The receiver as an aiohttp site on 127.0.0.1:``port``, run in the caller's event loop."""

    def __init__(self, max_spans: int = MAX_SPANS) -> None:
        self.store = SpanStore(max_spans)
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(f"{API}/spans", self._post_spans)
        app.router.add_get(f"{API}/traces", self._get_traces)
        app.router.add_get(f"{API}/trace/{{trace_id}}", self._get_trace)
        app.router.add_get(f"{API}/services", self._get_services)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "spans": self.store.size, "traces": len(self.store.traces),
                "received": self.store.received, "rejected": self.store.rejected}

    async def _post_spans(self, request: web.Request) -> web.Response:
        body = await request.read()
        spans: Any
        if request.content_type == PROTOBUF:
            try:
                spans = spans_from_protobuf(body)
            except ValueError:
                return web.json_response({"error": "body: expected a zipkin.proto3.ListOfSpans"}, status=400)
        else:
            try:
                spans = json.loads(body)
            except ValueError:
                spans = None
            if not isinstance(spans, list):
                return web.json_response({"error": "body: expected a JSON list of Zipkin v2 spans"}, status=400)
        self.store.add(spans)
        return web.Response(status=202)

    async def _get_traces(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            end_ms = float(query.get("endTs") or time.time() * 1000)
            lookback_ms = float(query.get("lookback") or DEFAULT_LOOKBACK_MS)
            limit = min(int(query.get("limit") or 10), MAX_LIMIT)
        except ValueError:
            return web.json_response({"error": "endTs, lookback and limit: expected numbers"}, status=400)
        if limit < 1 or lookback_ms < 0:
            return web.json_response({"error": "limit: expected >= 1; lookback: expected >= 0"}, status=400)
        return web.json_response(self.store.query(query.get("serviceName") or None, end_ms, lookback_ms, limit))

    async def _get_trace(self, request: web.Request) -> web.Response:
        trace_id = request.match_info["trace_id"].lower()
        spans = self.store.traces.get(trace_id.zfill(32 if len(trace_id) > 16 else 16))
        if spans is None:
            return web.json_response({"error": f"trace {trace_id} not found"}, status=404)
        return web.json_response(spans)

    async def _get_services(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.services())
