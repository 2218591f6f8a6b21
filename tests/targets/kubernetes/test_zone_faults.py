"""Zone faults on the Kubernetes target against the emulation of a two-zone mesh (issue 20 item 2).

One sandbox on experiments/meshes/two-zones (frontend in r1/a; catalog, inventory and reviews spread over r1/a and
r1/b).  The emulation runs pods as a cluster does: one Node per locality, labelled with the topology labels a cloud
provider sets, each pod's ``spec.nodeName`` the node of its locality and no topology label on the pod itself; the
target finds a pod's zone as istiod does (``istio-locality``, else its node's labels).  The traffic these faults
make is measured on both targets by experiments/zone-failover.json (tests/targets/kubernetes/test_experiments.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaosmesh_qa import actions
from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets import get_target
from tests.support.client import hops, timed_get_many
from tests.support.kube import KubeSandbox, running

pytestmark = pytest.mark.processes

TWO_ZONES = Path(__file__).resolve().parents[3] / "experiments" / "meshes" / "two-zones"
WRITES = {"create", "update", "patch", "delete"}


@pytest.fixture(scope="module")
def zoned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    with running(tmp_path_factory.mktemp("two-zones") / "state", "--mesh", str(TWO_ZONES)) as box:
        yield box


def _pods(box: KubeSandbox) -> dict[str, dict[str, object]]:
    return {p["metadata"]["name"]: p for p in json.loads(box.kubectl("get", "pods", "-o", "json").stdout)["items"]}


def test_pods_run_on_the_node_of_their_zone(zoned: KubeSandbox) -> None:
    nodes = {n["metadata"]["name"]: n["metadata"]["labels"]
             for n in json.loads(zoned.kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    zones = {name: (labels.get("topology.kubernetes.io/region"), labels.get("topology.kubernetes.io/zone"))
             for name, labels in nodes.items()}
    assert sorted(v for v in zones.values() if v[0]) == [("r1", "a"), ("r1", "b")]
    localities = get_target(zoned.configuration()).pod_localities()
    for name, pod in _pods(zoned).items():
        assert not any(k.startswith("topology.") for k in pod["metadata"]["labels"])  # type: ignore[index]
        region, zone = zones[pod["spec"]["nodeName"]]  # type: ignore[index]
        assert localities[name] == f"{region}/{zone}"
    assert sorted(where for name, where in localities.items() if name.startswith("catalog")) == ["r1/a", "r1/b"]


def test_a_zone_outage_kills_every_pod_of_the_zone_and_the_replicaset_replaces_them(zoned: KubeSandbox) -> None:
    cfg = zoned.configuration()
    before = get_target(cfg).pod_localities()
    record = actions.kill_pods("catalog", zone="a", restart_after_s=1, configuration=cfg)
    try:
        assert record["target"] == {"service": "catalog", "version": None, "zone": "a"}
        assert [before[p] for p in record["changes"]["killed_pods"]] == ["r1/a"]
        assert record["changes"]["replacement_ready"] and record["changes"]["confirmed"]
        after = get_target(cfg).pod_localities()
        assert [after[p] for p in record["changes"]["replacement_pods"]] == ["r1/a"]  # its zone's node again
    finally:
        actions.heal(configuration=cfg)


def test_a_zone_partition_marks_the_zones_pods_and_spares_its_callers_there(zoned: KubeSandbox) -> None:
    """catalog -> inventory cut for zone a: inventory's zone-a pod is selected by the NetworkPolicy, catalog's
    zone-a pod is let in (spared: in the zone), its zone-b pod is not; the heal restores every label."""
    cfg = zoned.configuration()
    localities = get_target(cfg).pod_localities()
    record = actions.partition("catalog", "inventory", 30, direction="to", mode="drop", zone="a", configuration=cfg)
    try:
        assert [localities[p] for p in record["changes"]["pods"]] == ["r1/a"]
        assert [localities[p] for p in record["changes"]["spared_callers"]] == ["r1/a"]
        managed = zoned.kubectl("get", "networkpolicies", "-l", "app.kubernetes.io/managed-by=chaosmesh-qa",
                                "-o", "json")
        (policy,) = json.loads(managed.stdout)["items"]
        suffix = record["fault_id"].rsplit("-", 1)[-1]
        assert policy["spec"]["podSelector"]["matchLabels"][f"chaosmesh-qa.io/partition-{suffix}"] == "true"
        assert {"podSelector": {"matchLabels": {f"chaosmesh-qa.io/spared-{suffix}": "true"}}} \
            in policy["spec"]["ingress"][0]["from"]
        pods = _pods(zoned)
        spared = f"chaosmesh-qa.io/spared-{suffix}"
        marked = [n for n, p in pods.items() if spared in p["metadata"]["labels"]]  # type: ignore[index]
        assert marked == record["changes"]["spared_callers"]
    finally:
        actions.heal(configuration=cfg)
    assert not [n for n, p in _pods(zoned).items() if any(
        k.startswith("chaosmesh-qa.io/") for k in p["metadata"]["labels"])]  # type: ignore[index]


def test_bad_zones_are_one_line_and_change_nothing(zoned: KubeSandbox) -> None:
    cfg = zoned.configuration()
    since = len(zoned.call_log())
    cases = [
        (lambda: actions.kill_pods("catalog", zone="c", configuration=cfg),
         "zone: unknown zone 'c': no pod of the mesh is in it (zones: a, b)"),
        (lambda: actions.kill_pods("frontend", zone="b", configuration=cfg),
         "zone: service 'frontend' has no running pod in zone 'b' (its pods' zones: a)"),
        (lambda: actions.inject_latency("frontend", 100, 10, zone="b", configuration=cfg),
         "zone: service 'frontend' has no running pod in zone 'b' (its pods' zones: a)"),
        # the frontend's zone-a pod would be spared, but an EnvoyFilter matches the caller's identity, not a pod
        (lambda: actions.partition("frontend", "catalog", 10, direction="to", mode="reject", zone="a",
                                   configuration=cfg), "mode: 'reject' cannot spare 'frontend''s pods in zone 'a'"),
    ]
    for call, message in cases:
        with pytest.raises(FaultRejected) as raised:
            call()
        assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    writes = [c for c in zoned.call_log(since) if c["verb"] in WRITES and c.get("code", 200) < 300]
    assert writes == [] and get_target(cfg).active_faults() == []


def test_a_zones_latency_selects_the_zones_pods_by_a_label_and_delays_only_them(zoned: KubeSandbox) -> None:
    """inject_latency(inventory, zone='a'): inventory's zone-a pod is marked with the fault's label, the
    EnvoyFilter's workloadSelector adds that label, and only requests inventory's zone-a pod served take the
    delay (>= 250 ms each; zone b's median below it: a delayed request cannot be faster, as on the local
    target); the heal removes the filter and restores the labels."""
    cfg = zoned.configuration()
    localities = get_target(cfg).pod_localities()
    record = actions.inject_latency("inventory", 250, 30, zone="a", configuration=cfg)
    try:
        assert record["target"] == {"service": "inventory", "source": None, "zone": "a"}
        assert [localities[p] for p in record["changes"]["pods"]] == ["r1/a"] and record["changes"]["confirmed"]
        label = f"chaosmesh-qa.io/{record['fault_id']}"
        (envoy_filter,) = json.loads(zoned.kubectl("get", "envoyfilters", "-l",
                                                   "app.kubernetes.io/managed-by=chaosmesh-qa", "-o",
                                                   "json").stdout)["items"]
        assert envoy_filter["spec"]["workloadSelector"]["labels"][label] == "true"
        marked = [n for n, p in _pods(zoned).items() if label in p["metadata"]["labels"]]  # type: ignore[index]
        assert marked == record["changes"]["pods"]
        results = timed_get_many(cfg["chaosmesh_qa_ingress_url"], 60)
    finally:
        actions.heal(configuration=cfg)
    by_zone: dict[str, list[float]] = {}
    for code, tree, seconds in results:
        assert code == 200, tree
        (hop,) = [h for h in hops(tree) if h["service"] == "inventory"]
        by_zone.setdefault(localities[hop["pod"]], []).append(seconds)
    assert len(by_zone["r1/a"]) >= 5 and len(by_zone["r1/b"]) >= 5, {k: len(v) for k, v in by_zone.items()}
    assert min(by_zone["r1/a"]) >= 0.25, sorted(by_zone["r1/a"])[:5]
    assert sorted(by_zone["r1/b"])[len(by_zone["r1/b"]) // 2] < 0.25, sorted(by_zone["r1/b"])
    assert not [n for n, p in _pods(zoned).items() if any(
        k.startswith("chaosmesh-qa.io/") for k in p["metadata"]["labels"])]  # type: ignore[index]
    assert get_target(cfg).active_faults() == []
