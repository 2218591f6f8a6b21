"""Pods of the sandbox: a killed pod's endpoint leaves callers' config; its replacement is routed to."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.client import admin_json, get_many, hops
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes


def _endpoint_ports(admin_socket: str, cluster: str) -> set[int]:
    clusters = admin_json(admin_socket, "/clusters?format=json")["cluster_statuses"]
    found = next(c for c in clusters if c["name"] == cluster)
    return {h["address"]["socket_address"]["port_value"] for h in found.get("host_statuses", [])}


def _wait_for(condition: Any, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.01)
    return time.monotonic() - started


def test_killed_pod_leaves_endpoints_and_replacement_is_routed_to(sandbox: Sandbox) -> None:
    status = sandbox.status()
    frontend = next(p for p in status["pods"] if p["service"] == "frontend")
    victim = next(p for p in status["pods"] if p["service"] == "catalog")
    caller_admin = frontend["admin_socket"]
    assert victim["ports"]["inbound"] in _endpoint_ports(caller_admin, "catalog")

    # the only way to kill a pod is the kill_pods fault: a lease (replacement at its expiry) with history
    target = LocalTarget(sandbox.state_dir)
    record = target.kill_pods("catalog", 1, None, None, 1.0, "test_pods")
    assert record["changes"]["killed_pods"] == [victim["name"]], "a pod fault picks pods by name"

    gone_after = _wait_for(lambda: victim["ports"]["inbound"] not in _endpoint_ports(caller_admin, "catalog"),
                           3.0, "the killed pod's endpoint to leave the caller's cluster")
    assert 0.9 <= gone_after < 1.5, "endpoints follow after the 1 s propagation delay (Kubernetes-like)"
    pods_now = sandbox.status()["pods"]
    assert victim["name"] not in {p["name"] for p in pods_now}

    def replacement() -> dict[str, Any] | None:
        return next((p for p in sandbox.status()["pods"] if p["service"] == "catalog"
                     and p["name"] not in {victim["name"], *(q["name"] for q in status["pods"])}
                     and p["state"] == "ready"), None)

    _wait_for(lambda: replacement() is not None, 15.0, "a ready replacement pod")
    new_pod = replacement()
    assert new_pod is not None
    assert new_pod["ports"]["inbound"] in _endpoint_ports(caller_admin, "catalog")
    served_by = {h["pod"] for _, tree in get_many(sandbox.ingress_url + "/", 40)
                 for h in hops(tree) if h["service"] == "catalog"}
    assert new_pod["name"] in served_by

    def ended() -> dict[str, Any] | None:
        return next((f for f in target.fault_history("test_pods")
                     if f["fault_id"] == record["fault_id"] and "ended_at" in f), None)

    _wait_for(lambda: ended() is not None, 5.0, "the kill's lease to end")
    final = ended()
    assert final is not None and final["ended"] == "expired"
    assert final["reverted"]["replacement_pods"] == [new_pod["name"]]


def test_crashed_container_restarts_in_place(sandbox: Sandbox) -> None:
    import os
    import signal

    pod = next(p for p in sandbox.status()["pods"] if p["service"] == "inventory")
    os.kill(pod["pids"]["app"], signal.SIGKILL)

    def restarted() -> bool:
        now = next(p for p in sandbox.status()["pods"] if p["name"] == pod["name"])
        return bool(now["restarts"] == pod["restarts"] + 1 and now["state"] == "ready")

    _wait_for(restarted, 15.0, "the app container to restart in the same pod")
