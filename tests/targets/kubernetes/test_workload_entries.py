"""A service of the mesh on VMs (a MESH_INTERNAL ServiceEntry and its WorkloadEntries) on the kubernetes target.

One sandbox with the Kubernetes API emulation on tests/profiles/mesh-internal (the frontend calls
orders.internal.example.com, served by two WorkloadEntries).  On a cluster those VMs are no Pods and no Service:
the API shows the ServiceEntry and the WorkloadEntries, and a fault on ``orders`` is an EnvoyFilter selecting the
entries' labels, which istiod matches on the VMs' proxies.  The same experiment argument (``service: orders``)
thus works on both targets; what needs pods is refused in one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets import get_target
from chaosmesh_qa.targets.kubernetes.objects import MANAGED_SELECTOR
from chaosmesh_qa.targets.kubernetes.target import VMS_UNCONFIRMED
from tests.support.client import after_pooled_connections
from tests.support.kube import KubeSandbox, running

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
OWNER = "test-kube-workload-entries"
ORDERS_HOST = "orders.internal.example.com"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    state = tmp_path_factory.mktemp("kube-vms") / "state"
    with running(state, "--mesh", str(ROOT / "tests" / "profiles" / "mesh-internal")) as sandbox:
        try:
            yield sandbox
        finally:
            get_target(sandbox.configuration()).heal(None, None)


def names(box: KubeSandbox, kind: str) -> list[str]:
    listed = json.loads(box.kubectl("get", kind, "-o", "json").stdout)["items"]
    return sorted(item["metadata"]["name"] for item in listed)


def orders_hop(tree: dict[str, Any]) -> dict[str, Any]:
    return next(h for h in tree["upstreams"] if h["service"] in ("orders", ORDERS_HOST))


def test_the_api_shows_the_vms_as_a_cluster_does(box: KubeSandbox) -> None:
    # no Pod, Service or Endpoints for a VM: its ServiceEntry and WorkloadEntries (served from the mesh directory)
    assert all(not name.startswith("orders") for name in names(box, "pods")), names(box, "pods")
    assert names(box, "services") == ["frontend"] and names(box, "endpoints") == ["frontend"]
    assert names(box, "serviceentries") == ["orders"]
    assert names(box, "workloadentries") == ["orders-vm-1", "orders-vm-2"]
    declared = get_target(box.configuration()).declared_mesh()
    orders = declared.services["orders"]  # the mesh model's service of the entry, read back from the API
    assert sorted(v.name for v in orders.versions) == ["v1", "v2"]
    assert {v.workload_kind for v in orders.versions} == {"WorkloadEntry"}


def test_a_latency_on_the_vms_service_is_an_envoyfilter_on_their_labels_and_delays_its_hop(box: KubeSandbox) -> None:
    target = get_target(box.configuration())
    url = box.status()["ingress_url"] + "/"
    record = target.inject_latency("orders", 300, 100, None, 60, OWNER)
    try:
        changes = record["changes"]
        assert changes["workload_entries"] == ["orders-vm-1", "orders-vm-2"] and changes["pods"] == []
        # stored, and honest that no API call can show a VM's listeners
        assert changes["confirmed"] is False and changes["unconfirmed"] == VMS_UNCONFIRMED
        (found,) = box.managed_envoy_filters()
        assert found["spec"]["workloadSelector"]["labels"] == {"app": "orders-vm"}
        assert found["spec"]["configPatches"][0]["match"]["context"] == "SIDECAR_INBOUND"
        # the delay is held by the VMs' own sidecars: no answer through them comes back in under 300 ms
        answers = after_pooled_connections(url, lambda code, tree, elapsed: elapsed >= 0.3)
    finally:
        target.heal(None, OWNER)
    for code, tree, elapsed in answers:
        assert code == 200 and orders_hop(tree)["status"] == 200 and elapsed >= 0.3, (elapsed, tree)
    assert box.managed_envoy_filters() == []


def test_an_abort_from_one_caller_on_the_vms_service_answers_its_status(box: KubeSandbox) -> None:
    target = get_target(box.configuration())
    url = box.status()["ingress_url"] + "/"
    record = target.inject_abort("orders", 503, 100, "frontend", 60, OWNER)
    try:
        assert record["target"] == {"service": "orders", "source": "frontend"}
        answers = after_pooled_connections(url, lambda code, tree, elapsed: orders_hop(tree)["status"] == 503)
    finally:
        target.heal(None, OWNER)
    assert all(orders_hop(tree)["status"] == 503 for _, tree, _ in answers)
    healed = after_pooled_connections(url, lambda code, tree, elapsed: code == 200)
    assert all(orders_hop(tree)["status"] == 200 for _, tree, _ in healed)


@pytest.mark.parametrize("inject", [
    lambda target: target.kill_pods("orders", 1, None, None, 30, OWNER),
    lambda target: target.partition("frontend", "orders", "to", "reject", 30, OWNER),
    lambda target: target.inject_latency("frontend", 100, 100, "orders", 30, OWNER),
], ids=["kill", "partition", "vm-as-caller"])
def test_what_needs_pods_is_refused_on_one_line_and_writes_nothing(box: KubeSandbox, inject: Any) -> None:
    target = get_target(box.configuration())
    managed = ["get", "envoyfilters,configmaps", "-A", "-l", MANAGED_SELECTOR, "-o", "name"]
    before = box.kubectl(*managed).stdout  # the earlier tests' ended leases: the run's fault history
    with pytest.raises(FaultRejected, match=r"^(service|b|source): 'orders' runs on WorkloadEntries \(orders-vm-1, "
                                            r"orders-vm-2\): VMs, not pods, which this fault needs; "):
        inject(target)
    assert target.active_faults() == []
    assert box.kubectl(*managed).stdout == before, "no lease, claim or filter was written"
