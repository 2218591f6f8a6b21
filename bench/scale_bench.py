"""A mesh of real size: the generated 20 services x 3 replicas tree (61 Envoys), through the real CLI.

Prints cold start, teardown, memory (PSS, in all and per pod), partition apply/heal latency
(call -> first request through the ingress that shows it) and throughput through the whole
tree (every request crosses all 20 services).  One run: it takes about a minute on two cores.
"""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import results
from bench.sandbox_bench import _cli, _memory_kib, _process_tree
from chaosmesh_qa.mesh.generate import service_name, write_tree
from chaosmesh_qa.targets.local.sandbox import SandboxClient

SERVICES, REPLICAS = 20, 3
ROUNDS = 10
THROUGHPUT_S, CONCURRENCY = 5.0, 8


def _first_showing(http: httpx.Client, url: str, callee: str, failing: bool, since: float) -> float:
    deadline = time.perf_counter() + 5
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        hops = {u["service"]: u["status"] for u in http.get(url).json()["upstreams"]}
        if (hops[callee] >= 500) == failing:
            return (sent - since) * 1000
    raise RuntimeError(f"partition of {callee} never showed")


def _throughput(url: str) -> tuple[float, float]:
    """(requests per second, p50 ms) of full-tree requests from CONCURRENCY clients for THROUGHPUT_S."""
    deadline = time.monotonic() + THROUGHPUT_S

    def client() -> list[float]:
        latencies = []
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                if http.get(url).status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        latencies = [x for part in pool.map(lambda _: client(), range(CONCURRENCY)) for x in part]
    return len(latencies) / THROUGHPUT_S, statistics.median(latencies) if latencies else float("nan")


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chaosmesh-scale-") as tmp:
        mesh = write_tree(Path(tmp) / "mesh", SERVICES, REPLICAS)
        state = Path(tmp) / "state"
        started = time.monotonic()
        _cli("up", "--mesh", str(mesh), "--state-dir", str(state), "--timeout", "180")
        cold_start = time.monotonic() - started
        try:
            status = json.loads(_cli("status", "--json", "--state-dir", str(state)))
            _rss, pss = _memory_kib(_process_tree(status["pid"]))
            url = status["ingress_url"] + "/"
            apply_ms, heal_ms = [], []
            caller, callee = service_name(0), service_name(2)
            with SandboxClient(state) as client, httpx.Client(timeout=10) as http:
                for _ in range(ROUNDS):
                    since = time.perf_counter()
                    client.inject("partition", {"a": caller, "b": callee, "direction": "to", "mode": "reject"},
                                  "bench", 60)
                    apply_ms.append(_first_showing(http, url, callee, True, since))
                    since = time.perf_counter()
                    client.heal(owner="bench")
                    heal_ms.append(_first_showing(http, url, callee, False, since))
            rps, p50 = _throughput(url)
        finally:
            started = time.monotonic()
            _cli("down", "--state-dir", str(state))
            teardown = time.monotonic() - started
    return {"cold_start_s": cold_start, "pods_ready_s": status["timings"]["pods_ready_s"], "teardown_s": teardown,
            "pss_mib": pss / 1024, "pss_per_pod_mib": pss / 1024 / (SERVICES * REPLICAS),
            "apply_ms": statistics.median(apply_ms), "heal_ms": statistics.median(heal_ms),
            "rps": rps, "p50_ms": p50, "pushes": status["xds"]["pushes"] if status.get("xds") else None}


def main() -> None:
    figures = run()
    print(f"scale: generated tree, {SERVICES} services x {REPLICAS} replicas ({SERVICES * REPLICAS} pods, "
          f"{SERVICES * REPLICAS + 1} Envoys), one run:")
    rows = [
        ("cold start: `up` until the mesh serves", f"{figures['cold_start_s']:.1f} s"),
        ("  every pod ready and routed (supervisor clock)", f"{figures['pods_ready_s']:.1f} s"),
        ("teardown: `down` until every process is gone", f"{figures['teardown_s']:.1f} s"),
        ("memory, PSS of every process of the sandbox", f"{figures['pss_mib']:.0f} MiB"),
        ("  per pod (app + sidecar, with the shared part spread)", f"{figures['pss_per_pod_mib']:.1f} MiB"),
        (f"partition apply, call -> first request showing it (median of {ROUNDS}; goal <= 50 ms)",
         f"{figures['apply_ms']:.1f} ms"),
        (f"partition heal, call -> first healthy request (median of {ROUNDS}; goal <= 50 ms)",
         f"{figures['heal_ms']:.1f} ms"),
        (f"throughput through the whole tree ({CONCURRENCY} clients, {THROUGHPUT_S:.0f} s)",
         f"{figures['rps']:.0f} req/s (p50 {figures['p50_ms']:.0f} ms)"),
    ]
    for label, value in rows:
        print(f"  {label:<78} {value}")
    results.record("scale.cold_start_s", figures["cold_start_s"], "s", label="scale: cold start (61 Envoys)")
    results.record("scale.partition_apply_ms", figures["apply_ms"], "ms", 50.0, label="scale: partition apply")
    results.record("scale.partition_heal_ms", figures["heal_ms"], "ms", 50.0, label="scale: partition heal")
    results.record("scale.rps", figures["rps"], "rps", higher_is_better=True, label="scale: full-tree throughput")


if __name__ == "__main__":
    main()
