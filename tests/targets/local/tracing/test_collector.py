"""The sandbox's Zipkin-v2-compatible receiver over real HTTP: Envoy-style chunked batches in, Zipkin queries out,
malformed spans refused, memory bounded."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from chaosmesh_qa.targets.local.tracing.collector import SpanStore, TraceCollector


def _span(trace: str, span: str, parent: str | None = None, service: str = "frontend",
          at_ms: float = 0) -> dict[str, Any]:
    return {"traceId": trace, "id": span, **({"parentId": parent} if parent else {}), "kind": "SERVER",
            "name": "get", "timestamp": int(at_ms * 1000), "duration": 1500,
            "localEndpoint": {"serviceName": service, "ipv4": "127.0.0.1"},
            "tags": {"http.status_code": "200", "user_agent": "x" * 5000, "node_id": "frontend-v1-abc"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 100):  # Envoy's tracer sends its batches with Transfer-Encoding: chunked
        yield body[i:i + 100]


def test_receives_chunked_batches_and_answers_zipkin_queries() -> None:
    now_ms = time.time() * 1000

    async def scenario() -> dict[str, Any]:
        collector = TraceCollector()
        await collector.start(_free_port())
        try:
            async with aiohttp.ClientSession() as http:
                batch = [_span("a" * 16, "1" * 16, at_ms=now_ms - 60_000),
                         _span("b" * 32, "2" * 16, service="ingress", at_ms=now_ms - 1000),
                         _span("b" * 32, "3" * 16, "2" * 16, at_ms=now_ms - 999),
                         {"traceId": "not-hex", "id": "4" * 16}, "not a span"]
                async with http.post(f"{collector.url}/api/v2/spans", data=_chunks(json.dumps(batch).encode()),
                                     headers={"content-type": "application/json"}) as posted:
                    assert posted.status == 202
                async with http.post(f"{collector.url}/api/v2/spans", data=b"{") as bad:
                    assert bad.status == 400
                answers = {}
                for key, path in [("recent", "/api/v2/traces?lookback=10000&limit=10"),
                                  ("all", "/api/v2/traces?limit=10"),
                                  ("ingress", "/api/v2/traces?serviceName=ingress"),
                                  ("one", f"/api/v2/trace/{'b' * 32}"), ("services", "/api/v2/services")]:
                    async with http.get(collector.url + path) as response:
                        answers[key] = await response.json()
                async with http.get(f"{collector.url}/api/v2/trace/{'c' * 16}") as missing:
                    answers["missing"] = missing.status
                answers["describe"] = collector.describe()
                return answers
        finally:
            await collector.close()

    got = asyncio.run(scenario())
    assert [[s["id"] for s in t] for t in got["recent"]] == [["2" * 16, "3" * 16]]
    assert len(got["all"]) == 2 and got["all"][0][0]["traceId"] == "b" * 32, "newest trace first"
    assert [len(t) for t in got["ingress"]] == [2]
    assert got["one"][1]["parentId"] == "2" * 16 and got["one"][1]["tags"]["node_id"] == "frontend-v1-abc"
    assert "user_agent" not in got["one"][1]["tags"], "only the few tags the probe reads are kept"
    assert got["services"] == ["frontend", "ingress"] and got["missing"] == 404
    assert got["describe"]["spans"] == 3 and got["describe"]["rejected"] == 2


def test_memory_is_bounded_oldest_traces_first() -> None:
    store = SpanStore(max_spans=100)
    for trace in range(60):
        store.add([_span(f"{trace:016x}", f"{i + 1:016x}", at_ms=trace) for i in range(3)])
    assert store.size <= 100 and len(store.traces) == 33
    assert min(int(t, 16) for t in store.traces) == 27, "the oldest traces went"
