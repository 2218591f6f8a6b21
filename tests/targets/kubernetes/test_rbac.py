"""The shipped RBAC (deploy/kubernetes/rbac.yaml) against the API calls the emulation logged: exact, both ways.

The runner role must grant every call a run makes (every fault kind, heal, describe, bad input) and nothing
it does not make; the reaper role the same for `chaosmesh-qa reap`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaosmesh_qa import actions
from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets import get_target
from chaosmesh_qa.targets.kubernetes.reaper import stop_local_reapers
from tests.support.cli import CLI
from tests.support.kube import KubeSandbox

pytestmark = pytest.mark.processes

RBAC = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes" / "rbac.yaml"
Grant = tuple[str, str, str]  # (api group, resource, verb)


def granted(role: str) -> set[Grant]:
    (doc,) = [d for d in yaml.safe_load_all(RBAC.read_text()) if d["metadata"]["name"] == role]
    return {(group, resource, verb) for rule in doc["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


ROOT = "istio-system"


def used(calls: list[dict[str, Any]]) -> set[Grant]:
    return {(c["group"] or "", c["resource"] + (f"/{c['subresource']}" if c.get("subresource") else ""), c["verb"])
            for c in calls if c.get("resource")}


def test_runner_role_is_exactly_what_a_run_uses(kube: KubeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAOSMESH_QA_LOCAL_REAPER", "0")  # the reaper's calls are checked on their own below
    cfg = kube.configuration()
    since = len(kube.call_log())
    target = get_target(cfg)
    target.describe()
    target.declared_mesh()  # routing_matches / mtls_enforced: Services, pods and the mesh's Istio objects
    target.check_plaintext_refused("reviews")
    actions.kill_pods("reviews", version="v2", restart_after_s=1, configuration=cfg)
    actions.kill_pods("catalog", count=1, restart_after_s=1, mode="evict", configuration=cfg)
    actions.inject_abort("reviews", 503, 10, 30, source="frontend", configuration=cfg)
    actions.partition("frontend", "catalog", 30, direction="to", mode="drop", count=1, configuration=cfg)
    actions.partition("catalog", "inventory", 30, direction="both", mode="reject", configuration=cfg)
    with pytest.raises(FaultRejected):
        actions.inject_latency("nope", 100, 10, configuration=cfg)  # looks the namespace up
    zoned = len(kube.call_log())
    with pytest.raises(FaultRejected, match="unknown zone"):
        actions.kill_pods("catalog", zone="nowhere", configuration=cfg)  # reads the pods' nodes
    actions.heal(configuration=cfg)
    calls = kube.call_log(since)
    # only a zone fault reads nodes (cluster-scoped: its own ClusterRole, which a run without zones needs not bind)
    assert not [c for c in calls[:zoned - since] if c.get("resource") == "nodes"]
    nodes = [c for c in calls if c.get("resource") == "nodes"]
    assert nodes and used(nodes) == granted("chaosmesh-qa-node-reader")
    calls = [c for c in calls if c.get("resource") != "nodes"]
    in_root = [c for c in calls if c.get("namespace") == ROOT]
    elsewhere = [c for c in calls if c.get("namespace") != ROOT]
    assert used(elsewhere) <= granted("chaosmesh-qa-runner"), used(elsewhere) - granted("chaosmesh-qa-runner")
    # everything granted is used by a run or by the reaper-free paths above; `configmaps delete` is the
    # rollback of a failed fault (tests/targets/kubernetes/test_bad_input.py) and the reaper's history trim
    unused = granted("chaosmesh-qa-runner") - used(elsewhere) - {("", "configmaps", "delete")}
    assert not unused, f"granted but never used: {sorted(unused)}"
    # issue 18 point 13: in Istio's root namespace a run only reads, and the mesh-reader role is exactly that
    assert used(in_root) == granted("chaosmesh-qa-mesh-reader"), used(in_root) ^ granted("chaosmesh-qa-mesh-reader")


def test_reaper_role_is_exactly_what_reap_uses(kube: KubeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAOSMESH_QA_LOCAL_REAPER", "0")  # only the `reap` command below reverts these
    stop_local_reapers()  # nor a reaper an earlier test of this process started (it would race the `reap`)
    cfg = kube.configuration()
    actions.inject_latency("reviews", 100, 0.5, source="frontend", configuration=cfg)
    actions.partition("frontend", "reviews", 0.5, direction="to", mode="reject", count=1, configuration=cfg)
    actions.partition("frontend", "catalog", 0.5, direction="to", mode="drop", configuration=cfg)
    time.sleep(0.6)
    since = len(kube.call_log())
    for extra in ((), ("--keep-history", "0")):
        result = subprocess.run([*CLI, "reap", "--kubeconfig", str(kube.kubeconfig), *extra], capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
    calls = kube.call_log(since)
    assert used(calls) == granted("chaosmesh-qa-reaper"), (used(calls) ^ granted("chaosmesh-qa-reaper"))
    assert get_target(cfg).active_faults() == []
