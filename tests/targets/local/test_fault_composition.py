"""Faults compose and roll back whole: every ordered pair of fault kinds on catalog, and a failure part-way.

Each pair, on the session sandbox's default mesh: inject A, inject B (accepted; or rejected with
one line when it is the same kind on the same target), confirm both at the data plane, heal both,
then the data plane is as it was -- runtime keys at every sidecar, every caller's endpoints of
catalog, every pod serving, requests through the ingress answered.  The part-way failure uses the
fault manager's test hook (``leases`` module docstring): the N-th change of the next fault fails.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from itertools import product
from typing import Any

import httpx
import pytest

from chaosmesh_qa.errors import FaultRejected, InvalidArgument, TargetUnavailable
from chaosmesh_qa.targets.base import Record
from chaosmesh_qa.targets.local.leases import TEST_HOOKS_ENV
from chaosmesh_qa.targets.local.sandbox import SandboxClient
from chaosmesh_qa.targets.local.state import SandboxPaths
from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.client import admin_json, get_many, hops
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes

# Read by the supervisor when it starts: modules are imported at collection, before the session
# sandbox is started, so this enables its /debug/fail-change route (and nothing else).
os.environ.setdefault(TEST_HOOKS_ENV, "1")

OWNER = "test-fault-composition"
TTL_S = 30.0  # never reached: every test heals
SERVICE = "catalog"
RESTORE_TIMEOUT_S = 20.0

KINDS: dict[str, Callable[[LocalTarget], Record]] = {
    "kill_pods": lambda t: t.kill_pods(SERVICE, 1, None, None, TTL_S, OWNER),
    "fail_pods": lambda t: t.fail_pods(SERVICE, TTL_S, 1, None, None, OWNER),
    "kill_app": lambda t: t.kill_app(SERVICE, 1, None, None, TTL_S, OWNER),
    "latency": lambda t: t.inject_latency(SERVICE, 50, 100, None, TTL_S, OWNER),
    "abort": lambda t: t.inject_abort(SERVICE, 503, 100, None, TTL_S, OWNER),
    "partition_drop": lambda t: t.partition("frontend", SERVICE, "to", "drop", TTL_S, OWNER),
    "partition_reject": lambda t: t.partition("frontend", SERVICE, "to", "reject", TTL_S, OWNER),
}
POD_KINDS = {"kill_pods", "fail_pods", "kill_app"}


def _fault_kind(name: str) -> str:
    return "partition" if name.startswith("partition") else name


def _client(sandbox: Sandbox) -> SandboxClient:
    return SandboxClient(sandbox.state_dir, timeout_s=60.0)


def _runtime(pod: dict[str, Any]) -> dict[str, Any]:
    entries = admin_json(pod["admin_socket"], "/runtime?format=json")["entries"]
    return {key: entry.get("final_value") for key, entry in entries.items()}


def _endpoint_ports(caller: dict[str, Any], cluster: str) -> list[int]:
    statuses = admin_json(caller["admin_socket"], "/clusters?format=json")["cluster_statuses"]
    return sorted(h["address"]["socket_address"]["port_value"]
                  for c in statuses if c["name"] == cluster for h in c.get("host_statuses", []))


def _problems(sandbox: Sandbox, baseline: dict[str, Any]) -> list[str]:
    """How the data plane differs from the baseline (empty: restored)."""
    with _client(sandbox) as client:
        status = client.status()
    pods, problems = status["pods"], []
    if status["faults"]:
        problems.append(f"active faults: {[f['fault_id'] for f in status['faults']]}")
    if Counter(p["service"] for p in pods) != baseline["replicas"]:
        problems.append(f"pods: {Counter(p['service'] for p in pods)}")
    problems += [f"{p['name']} is {p['state']}" for p in pods if p["state"] != "ready"]
    if problems:
        return problems
    for pod in [status["ingress"], *pods]:
        if (keys := _runtime(pod)) != baseline["runtime"][pod["service"]]:
            problems.append(f"{pod['name']}: runtime {keys}")
    catalog_ports = sorted(p["ports"]["inbound"] for p in pods if p["service"] == SERVICE)
    for caller in (p for p in pods if p["service"] in baseline["callers"]):
        if (ports := _endpoint_ports(caller, SERVICE)) != catalog_ports:
            problems.append(f"{caller['name']}: endpoints of {SERVICE} {ports}, pods at {catalog_ports}")
    return problems


def _wait_restored(sandbox: Sandbox, baseline: dict[str, Any]) -> None:
    deadline = time.monotonic() + RESTORE_TIMEOUT_S
    while problems := _problems(sandbox, baseline):
        assert time.monotonic() < deadline, f"data plane not restored: {problems}"
        time.sleep(0.02)
    results = get_many(baseline["ingress_url"] + "/", 10, concurrency=2)
    assert all(code == 200 and all(h["status"] == 200 for h in hops(tree)) for code, tree in results), results


@pytest.fixture(scope="module")
def baseline(sandbox: Sandbox) -> dict[str, Any]:
    """The data plane before any fault of this module: runtime per service, replicas, catalog's callers."""
    LocalTarget(sandbox.state_dir).heal(None, None)
    deadline = time.monotonic() + RESTORE_TIMEOUT_S
    while True:
        with _client(sandbox) as client:
            status = client.status()
        if all(p["state"] == "ready" for p in status["pods"]) and not status["faults"]:
            break
        assert time.monotonic() < deadline, "the sandbox never settled before the composition tests"
        time.sleep(0.05)
    catalog = [p["name"] for p in status["pods"] if p["service"] == SERVICE]
    assert len(catalog) >= 2, f"{SERVICE} runs {catalog}: a replacement failed to start earlier (supervisor log)"
    runtime: dict[str, Any] = {}
    for pod in [status["ingress"], *status["pods"]]:
        keys = _runtime(pod)
        assert runtime.setdefault(pod["service"], keys) == keys, f"{pod['name']}: runtime differs from its peers"
    return {"runtime": runtime, "replicas": Counter(p["service"] for p in status["pods"]),
            "callers": status["services"][SERVICE]["callers"], "ingress_url": status["ingress_url"]}


@pytest.fixture
def target(sandbox: Sandbox, baseline: dict[str, Any]) -> Any:
    local = LocalTarget(sandbox.state_dir)
    yield local
    local.heal(None, OWNER)  # leave no fault behind, whatever the test did


@pytest.mark.parametrize(("first", "second"), list(product(KINDS, KINDS)), ids=lambda name: str(name))
def test_pair_composes_and_heals_to_the_original_data_plane(sandbox: Sandbox, baseline: dict[str, Any],
                                                            target: LocalTarget, first: str, second: str) -> None:
    a = KINDS[first](target)
    overlapping_same_kind = _fault_kind(first) == _fault_kind(second) and first not in POD_KINDS
    if overlapping_same_kind:
        with pytest.raises(FaultRejected) as rejected:
            KINDS[second](target)
        assert "\n" not in str(rejected.value) and f"conflicts with active fault {a['fault_id']}" in str(
            rejected.value)
        records = [a]
    else:
        records = [a, KINDS[second](target)]
    for record in records:
        assert record["changes"]["confirmed"] is True, record
        assert record["state"] == "active"
    assert {f["fault_id"] for f in target.active_faults()} == {r["fault_id"] for r in records}
    held = [name for r in records for key in ("killed_pods", "failed_pods", "app_killed_in_pods")
            for name in r["changes"].get(key, [])]
    assert len(held) == len(set(held)), "two pod faults never take the same pod"
    if first == "fail_pods" and second in ("latency", "abort"):
        # the failed pod has no sidecar to change or read back: skipped, and the record says so
        assert records[1]["changes"]["skipped_pods"] == {a["changes"]["failed_pods"][0]: "failed"}

    healed = target.heal(None, OWNER)
    assert [h["fault_id"] for h in healed] == [r["fault_id"] for r in reversed(records)], "newest first"
    assert all(h["ended"] == "healed" and "undo_errors" not in h for h in healed), healed
    _wait_restored(sandbox, baseline)


def _fail_change(sandbox: Sandbox, change: int) -> None:
    """Arm the test hook: the next fault's ``change``-th change fails before it is applied."""
    transport = httpx.HTTPTransport(uds=str(SandboxPaths(sandbox.state_dir).socket))
    with httpx.Client(transport=transport, base_url="http://sandbox", timeout=10) as control:
        response = control.post("/debug/fail-change", json={"change": change})
    assert response.status_code == 200, f"the session sandbox was started without {TEST_HOOKS_ENV}=1"


@pytest.mark.parametrize(("kind", "undone"), [("latency", "pods_cleared"), ("fail_pods", "recovered_pods")])
def test_failure_part_way_is_rolled_back_and_leaves_nothing_behind(
        sandbox: Sandbox, baseline: dict[str, Any], target: LocalTarget, kind: str, undone: str) -> None:
    inject = {"latency": lambda: target.inject_latency(SERVICE, 50, 100, None, TTL_S, OWNER),
              "fail_pods": lambda: target.fail_pods(SERVICE, TTL_S, None, 100, None, OWNER)}[kind]
    _fail_change(sandbox, 2)  # catalog has two pods: the first is changed, the second refuses
    started = time.time()
    with pytest.raises(TargetUnavailable) as raised:
        inject()
    message = str(raised.value)
    assert "\n" not in message and "1 change(s) rolled back" in message and "test hook (change 2)" in message
    assert target.active_faults() == [], "no lease survives a rolled-back fault"
    (record,) = [f for f in target.fault_history(OWNER) if f["started_at"] >= started]
    assert record["ended"] == "rolled-back" and record["applied_changes"] == 1
    assert len(record["reverted"][undone]) == 1, record["reverted"]
    _wait_restored(sandbox, baseline)
    # and the next fault is whole again (the hook is one-shot)
    again = inject()
    assert again["changes"]["confirmed"] is True
    target.heal(again["fault_id"], None)
    _wait_restored(sandbox, baseline)


def test_supervisor_errors_reach_the_client_as_one_line(sandbox: Sandbox, target: LocalTarget) -> None:
    with _client(sandbox) as client:
        with pytest.raises(TargetUnavailable) as bug:  # a caller that skips the actions' checks: no percent
            client.inject("latency", {"service": SERVICE, "delay_ms": 5}, OWNER, 5.0)
        assert "\n" not in str(bug.value) and str(bug.value).startswith("sandbox answered 500 to POST /faults")
        with pytest.raises(TargetUnavailable) as missing:  # aiohttp's own plain-text answer, not JSON
            client._request("GET", "/no-such-route")
        assert str(missing.value) == "sandbox answered 404 to GET /no-such-route: 404: Not Found"
        with pytest.raises(FaultRejected, match=r"^duration_s: expected a number of seconds, got 'soon'$"):
            client._request("POST", "/faults", json={"kind": "latency", "ttl_s": "soon", "parameters": {}})
        with pytest.raises(InvalidArgument, match=r"^arguments cannot be sent to the sandbox: Out of range float"):
            client.inject("latency", {"service": SERVICE, "delay_ms": 5, "percent": 1}, OWNER, float("nan"))
    assert target.active_faults() == [], "nothing was injected"
