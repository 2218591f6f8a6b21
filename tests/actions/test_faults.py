"""Fault actions against the real sandbox: each fault's effect measured through the ingress."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa import actions
from chaosmesh_qa.targets.local.sandbox import SandboxClient
from tests.support.client import admin_json, get_many, hops, mesh_tls_get
from tests.support.latency import assert_delay_effect, assert_fails_fast
from tests.support.sandbox import Sandbox

DELAY_MS = 200
CONNECT_TIMEOUT_S = 1.0  # the default mesh's connectTimeout for reviews (mesh/traffic.yaml)

pytestmark = pytest.mark.processes


@pytest.fixture
def cfg(sandbox: Sandbox) -> Iterator[dict[str, Any]]:
    configuration = {"chaosmesh_qa_state_dir": str(sandbox.state_dir)}
    yield configuration
    actions.get_target(configuration).heal(None, None)  # leave no fault behind, whatever the test did


def _hop(tree: dict[str, Any], service: str) -> dict[str, Any]:
    return next(h for h in hops(tree) if h["service"] == service)


def _pods(sandbox: Sandbox) -> list[dict[str, Any]]:
    with SandboxClient(sandbox.state_dir) as client:
        return list(client.status()["pods"])


def _timed(url: str, count: int, headers: dict[str, str] | None = None) -> list[tuple[float, int, Any]]:
    results = []
    for _ in range(count):
        started = time.monotonic()
        (code, tree), = get_many(url, 1, headers, concurrency=1)
        results.append((time.monotonic() - started, code, tree))
    return results


def test_latency_on_one_edge_adds_the_delay_there_only(sandbox: Sandbox, cfg: dict[str, Any]) -> None:
    url = sandbox.ingress_url + "/"
    pki = Path(sandbox.state_dir) / "pki"
    reviews = next(p for p in sandbox.status()["pods"] if p["service"] == "reviews")

    def other_edge() -> float:
        """The fastest of 3 calls to reviews from a caller that names no mesh service (another edge)."""
        times = []
        for _ in range(3):
            started = time.monotonic()
            assert mesh_tls_get(reviews["ports"]["inbound"], pki, "default-sa-frontend", "/reviews") == 200
            times.append(time.monotonic() - started)
        return min(times)

    baseline, other_before = [t for t, _, _ in _timed(url, 20)], other_edge()
    record = actions.inject_latency("reviews", delay_ms=DELAY_MS, duration_s=30, source="frontend",
                                    configuration=cfg)
    assert record["changes"]["confirmed"] is True
    assert record["target"] == {"service": "reviews", "source": "frontend"}
    faulted = [t for t, _, _ in _timed(url, 20)]
    # the same callee reached over another edge is not held: nearer its own baseline than baseline + delay
    other_during = other_edge()
    assert other_during < other_before + DELAY_MS / 1000 / 2, (other_before, other_during)
    actions.heal(record["fault_id"], configuration=cfg)
    assert_delay_effect(baseline, faulted, [t for t, _, _ in _timed(url, 20)], DELAY_MS)


def test_abort_share_matches_percent(sandbox: Sandbox, cfg: dict[str, Any]) -> None:
    record = actions.inject_abort("reviews", http_status=503, percent=30, duration_s=60, configuration=cfg)
    results = get_many(sandbox.ingress_url + "/", 1000, concurrency=8)
    statuses = Counter(_hop(tree, "reviews")["status"] for _, tree in results)
    share = statuses[503] / len(results) * 100
    assert abs(share - 30) <= 5, statuses
    assert all(_hop(tree, "catalog")["status"] == 200 for _, tree in results), "other edges stay healthy"
    healed = actions.heal(record["fault_id"], configuration=cfg)["healed"][0]
    assert healed["reverted"]["requests_aborts_injected"] == statuses[503]


def test_partition_drop_times_out_and_reject_fails_fast(sandbox: Sandbox, cfg: dict[str, Any]) -> None:
    url = sandbox.ingress_url + "/"
    baseline = statistics.median(t for t, _, _ in _timed(url, 5))
    record = actions.partition("frontend", "reviews", duration_s=30, direction="to", mode="drop", configuration=cfg)
    assert record["changes"]["confirmed"] is True
    for elapsed, _, tree in _timed(url, 2):
        assert _hop(tree, "reviews")["status"] >= 500
        assert elapsed >= 0.9, "a blackhole makes callers wait for their (1 s) connect timeout"
        assert _hop(tree, "catalog")["status"] == 200
    actions.heal(record["fault_id"], configuration=cfg)

    actions.partition("frontend", "reviews", duration_s=30, direction="to", mode="reject", configuration=cfg)
    for elapsed, _, tree in _timed(url, 10):
        assert _hop(tree, "reviews")["status"] == 503
        assert_fails_fast(elapsed, baseline, CONNECT_TIMEOUT_S)  # refused connections do not wait for the timeout
        assert _hop(tree, "catalog")["status"] == 200
    actions.heal(configuration=cfg)
    assert all(code == 200 for _, code, _ in _timed(url, 5))


def test_kill_pods_removes_endpoint_and_replacement_serves(sandbox: Sandbox, cfg: dict[str, Any]) -> None:
    before = {p["name"] for p in sandbox.status()["pods"] if p["service"] == "catalog"}
    record = actions.kill_pods("catalog", count=1, restart_after_s=1.0, configuration=cfg)
    killed = record["changes"]["killed_pods"]
    assert len(killed) == 1 and killed[0] in before and record["changes"]["confirmed"]
    served = {_hop(t, "catalog")["pod"] for _, t in get_many(sandbox.ingress_url + "/", 30)}
    assert killed[0] not in served
    deadline = time.monotonic() + 15
    while True:
        pods = [p for p in sandbox.status()["pods"] if p["service"] == "catalog" and p["state"] == "ready"]
        new = {p["name"] for p in pods} - before
        if new:
            break
        assert time.monotonic() < deadline, "no replacement pod"
        time.sleep(0.1)
    served = {_hop(t, "catalog")["pod"] for _, t in get_many(sandbox.ingress_url + "/", 40)}
    assert new & served


def test_kill_app_gives_503_from_that_pod_until_restart(sandbox: Sandbox, cfg: dict[str, Any]) -> None:
    pki = Path(sandbox.state_dir) / "pki"
    record = actions.kill_app("inventory", count=1, restart_after_s=30, configuration=cfg)
    pod_name = record["changes"]["app_killed_in_pods"][0]
    pod = next(p for p in sandbox.status()["pods"] if p["name"] == pod_name)
    assert pod["state"] == "degraded" and pod["pids"]["sidecar"]
    port = pod["ports"]["inbound"]
    assert [mesh_tls_get(port, pki, "default-sa-catalog", "/stock") for _ in range(3)] == [503] * 3
    actions.heal(record["fault_id"], configuration=cfg)
    deadline = time.monotonic() + 10
    while mesh_tls_get(port, pki, "default-sa-catalog", "/stock") != 200:
        assert time.monotonic() < deadline, "app did not come back"
        time.sleep(0.05)


def test_fail_pods_takes_pods_out_for_the_duration(sandbox: Sandbox, cfg: dict[str, Any]) -> None:
    # 4 s: room for 20 requests through the mesh on a loaded machine before the pod is back
    record = actions.fail_pods("reviews", duration_s=4, version="v2", configuration=cfg)
    failed = record["changes"]["failed_pods"]
    assert len(failed) == 1
    results = get_many(sandbox.ingress_url + "/", 20, headers={"x-canary": "true"})
    assert all(_hop(t, "reviews")["status"] == 503 for _, t in results), "no v2 endpoint while it is down"
    deadline = time.monotonic() + 15
    while next(p for p in sandbox.status()["pods"] if p["name"] == failed[0])["state"] != "ready":
        assert time.monotonic() < deadline, "failed pod did not recover under its name"
        time.sleep(0.1)
    assert actions.get_target(cfg).active_faults() == []


def test_latency_over_a_failed_pod_composes_and_the_recovered_pod_inherits_it(sandbox: Sandbox,
                                                                               cfg: dict[str, Any]) -> None:
    failed = actions.fail_pods("catalog", duration_s=30, count=1, configuration=cfg)
    name = failed["changes"]["failed_pods"][0]
    # the confirmation reads only serving sidecars: the failed pod is skipped, and the record says so
    latency = actions.inject_latency("catalog", delay_ms=50, duration_s=30, configuration=cfg)
    assert latency["changes"]["confirmed"] is True and latency["changes"]["skipped_pods"] == {name: "failed"}
    keys = latency["changes"]["runtime_keys"]

    def runtime(pod_name: str) -> dict[str, Any]:
        pod = next(p for p in _pods(sandbox) if p["name"] == pod_name)
        entries = admin_json(pod["admin_socket"], "/runtime?format=json")["entries"]
        return {k: e["final_value"] for k, e in entries.items() if k.startswith("fault.")}  # not the tracer's

    actions.heal(failed["fault_id"], configuration=cfg)  # back under its name, with a fresh sidecar...
    deadline = time.monotonic() + 5
    while runtime(name) != keys:  # ...that inherits the fault still active on its service
        assert time.monotonic() < deadline, "the recovered pod never got the active latency"
        time.sleep(0.02)
    healed = actions.heal(latency["fault_id"], configuration=cfg)["healed"][0]
    assert name in healed["reverted"]["pods_cleared"]
    catalog = [p["name"] for p in _pods(sandbox) if p["service"] == "catalog"]
    assert all(runtime(pod) == {} for pod in catalog), "no runtime key left behind"
