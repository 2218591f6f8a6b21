"""traces_complete against real Envoys and the sandbox's trace receiver: the default mesh's traces are whole,
the broken twin's (a command service dropping the trace headers) break at that service; bad input is one line."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaosmesh_qa.errors import InvalidArgument, MeasurementFailed, TargetUnavailable
from chaosmesh_qa.probes import tracing
from chaosmesh_qa.probes.tracing import traces_complete
from chaosmesh_qa.targets.kubernetes.settings import KubeSettings
from chaosmesh_qa.targets.kubernetes.target import KubernetesTarget
from tests.support.client import get_many
from tests.support.sandbox import Sandbox

TWIN = Path(__file__).resolve().parents[2] / "experiments" / "meshes" / "drops-trace-headers"
REQUESTS = 60
SPANS_PER_REQUEST = 8  # default mesh: ingress, frontend in + 2 out, catalog in + out, inventory in, reviews in


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("tracing-twin") / "state")
    box.up("--mesh", str(TWIN))
    try:
        yield box
    finally:
        box.down()


def _traffic(box: Sandbox, spans: int) -> tuple[dict[str, Any], float]:
    """Send REQUESTS through the ingress, wait (bounded) until the receiver holds their ``spans`` spans."""
    status = box.status()
    started = time.time()
    answers = get_many(status["ingress_url"] + "/", REQUESTS)
    assert [code for code, _ in answers] == [200] * REQUESTS
    url = status["tracing"]["url"] + "/api/v2/traces"
    deadline = time.monotonic() + 15
    while True:
        lookback = int((time.time() - started) * 1000) + 100
        held = httpx.get(url, params={"lookback": lookback, "limit": 10_000}, timeout=5).json()
        if sum(len(t) for t in held) >= spans:
            break
        assert time.monotonic() < deadline, f"the receiver holds {sum(len(t) for t in held)} of {spans} spans"
        time.sleep(0.05)  # polling the receiver for the Envoys' span batches (bounded)
    return {"chaosmesh_qa_state_dir": str(box.state_dir)}, time.time() - started + 0.2


def test_default_mesh_traces_span_every_hop(sandbox: Sandbox) -> None:
    cfg, window = _traffic(sandbox, REQUESTS * SPANS_PER_REQUEST)
    result = traces_complete(window_s=window, min_traces=REQUESTS, settle_s=0, configuration=cfg)
    assert result["status"] == "pass", result["summary"]
    assert REQUESTS <= result["traces"] <= REQUESTS + 5, "the window holds this test's requests"
    assert result["ratio"] >= 0.99 and result["context_lost"] == {} and result["orphan_spans"] == 0
    assert result["expected"] == {"frontend": ["catalog", "reviews"], "catalog": ["inventory"],
                                  "inventory": [], "reviews": []}
    # the tree itself, as Zipkin clients read it: one trace per request, every Envoy hop a span
    trace = httpx.get(f"{result['query_url']}/api/v2/traces", params={"limit": 1}, timeout=5).json()[0]
    assert sorted((s["localEndpoint"]["serviceName"], s["kind"]) for s in trace) == sorted([
        ("ingress", "CLIENT"), ("frontend", "SERVER"), ("frontend", "CLIENT"), ("frontend", "CLIENT"),
        ("catalog", "SERVER"), ("catalog", "CLIENT"), ("inventory", "SERVER"), ("reviews", "SERVER")])
    # too few traces is never a pass
    scarce = traces_complete(window_s=window, min_traces=10 * REQUESTS, settle_s=0, configuration=cfg)
    assert scarce["status"] == "not-enough-traces" and scarce["ratio"] >= 0.99, scarce["summary"]


@pytest.mark.processes
def test_twin_that_drops_trace_headers_breaks_every_trace_at_that_service(twin: Sandbox) -> None:
    # per request: ingress + relay's inbound (trace 1); relay's call and frontend's subtree (trace 2)
    cfg, window = _traffic(twin, REQUESTS * (2 + SPANS_PER_REQUEST))
    result = traces_complete(window_s=window, min_traces=REQUESTS, settle_s=0, configuration=cfg)
    assert result["status"] == "violated", result["summary"]
    assert result["ratio"] <= 0.02, result["summary"]
    assert 2 * REQUESTS <= result["traces"] <= 2 * REQUESTS + 5, "each request left two broken traces"
    assert list(result["context_lost"]) == ["relay"], result["context_lost"]
    assert result["context_lost"]["relay"] >= 0.98 * result["traces"]
    assert REQUESTS <= result["orphan_traces"] <= REQUESTS + 3
    assert result["orphan_spans"] >= REQUESTS * SPANS_PER_REQUEST
    assert result["expected"]["relay"] == ["frontend"], "a command service's calls are learnt from its sidecar"
    assert "context lost at relay" in result["summary"]
    assert {e["service"] for e in result["orphan_examples"]} == {"relay"}


def test_unreachable_query_api_is_one_failed_line() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(MeasurementFailed) as raised:
        tracing._fetch(url, time.time(), 10)
    assert str(raised.value).startswith(f"trace query API at {url} unreachable") and "\n" not in str(raised.value)


def test_cluster_target_without_a_query_url_refuses_in_one_line() -> None:
    with pytest.raises(TargetUnavailable) as raised:
        KubernetesTarget(KubeSettings()).trace_query_url(None)
    assert str(raised.value).startswith("configuration.chaosmesh_qa_tracing_url: not set")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"min_ratio": 0}, "min_ratio: expected a number in (0, 1]"),
    ({"min_ratio": 1.5}, "min_ratio: expected a number in (0, 1]"),
    ({"window_s": 0}, "window_s:"),
    ({"window_s": "10"}, "window_s:"),
    ({"min_traces": 0}, "min_traces:"),
    ({"settle_s": -1}, "settle_s:"),
    ({"configuration": {"chaosmesh_qa_tracing_url": "ftp://zipkin:9411"}}, "configuration.chaosmesh_qa_tracing_url:"),
], ids=["ratio-zero", "ratio-above-one", "window-zero", "window-string", "min-traces", "settle", "url"])
def test_bad_input_is_one_line_before_any_contact(kwargs: dict[str, Any], fragment: str, tmp_path: Path) -> None:
    # no sandbox runs in tmp_path: an argument check that came after contacting the target would fail differently
    kwargs.setdefault("configuration", {})
    kwargs["configuration"]["chaosmesh_qa_state_dir"] = str(tmp_path / "none")
    with pytest.raises(InvalidArgument) as raised:
        traces_complete(**kwargs)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


# --------------------------------------------------------------------------- the judgement on built span trees


def _tree(*spans: tuple[str, str | None, str, str, int]) -> list[dict[str, Any]]:
    """Spans of one trace: (id, parent id, service, kind, status), started at 1 s after the epoch."""
    return [{"traceId": "t1", "id": i, **({"parentId": p} if p else {}), "localEndpoint": {"serviceName": svc},
             "kind": kind, "timestamp": 1_000_000, "duration": 10, "tags": {"http.status_code": str(code)}}
            for i, p, svc, kind, code in spans]


WHOLE = [("i", None, "ingress", "CLIENT", 200), ("f", "i", "frontend", "SERVER", 200),
         ("fc", "f", "frontend", "CLIENT", 200), ("c", "fc", "catalog", "SERVER", 200),
         ("cc", "c", "catalog", "CLIENT", 200), ("n", "cc", "inventory", "SERVER", 200),
         ("fr", "f", "frontend", "CLIENT", 200), ("r", "fr", "reviews", "SERVER", 200)]


def _judge(*traces: list[dict[str, Any]]) -> tracing.TraceVerdict:
    from chaosmesh_qa.mesh import load_mesh
    from chaosmesh_qa.targets.local.sandbox import default_mesh_dir

    return tracing.judge_traces(list(traces), load_mesh(default_mesh_dir()).model, 0, 2_000_000)


def test_judgement_of_retries_failures_lost_hops_and_istio_names() -> None:
    retried = _tree(*WHOLE[:3], ("c0", "fc", "catalog", "SERVER", 503), *WHOLE[3:])  # first attempt failed
    failed = _tree(*WHOLE[:2], ("fc", "f", "frontend", "CLIENT", 503), *WHOLE[6:])  # catalog unreachable
    failed[2]["tags"]["upstream_cluster"] = "catalog"
    lost = _tree(*WHOLE[:4], *WHOLE[6:])  # catalog called nobody in this trace: its context went missing there
    istio = _tree(*WHOLE)
    for span in istio:
        span["localEndpoint"]["serviceName"] += ".istio-system" if span["id"] == "i" else ".default"
    outside = _tree(("x", None, "reviews", "SERVER", 200))  # a request straight to a pod, not via the ingress
    late = _tree(*WHOLE)
    for span in late:
        span["timestamp"] = 3_000_000  # after the window
    verdict = _judge(retried, failed, lost, istio, outside, late)
    assert (verdict.traces, verdict.complete, verdict.failed_hops) == (4, 3, 1)
    assert dict(verdict.context_lost) == {"catalog": 1} and verdict.outside_traces == 1
