"""A MESH_INTERNAL ServiceEntry in the sandbox: a service of the mesh, reached by its host over mTLS, and faulted.

One sandbox for the module: tests/profiles/mesh-internal (frontend calls orders.internal.example.com, a MESH_INTERNAL
ServiceEntry whose workloadSelector picks two WorkloadEntries, v1 and v2, with the service account ``orders``; its
VirtualService sends every request to subset v1, or to v2 with ``x-orders-version: v2``; v2's entry has no
serviceAccount).  Every check is a request through the real sidecars.  The pure
tests of the model are tests/mesh/test_workloadentries.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.client import admin_json, get
from tests.support.sandbox import Served, serve

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
MESH = ROOT / "tests" / "profiles" / "mesh-internal"
HOST = "orders.internal.example.com"
OWNER = f"test-mesh-internal-{os.getpid()}"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    for served in serve(MESH, tmp_path_factory.mktemp("mesh-internal") / "state"):
        try:
            yield served
        finally:
            LocalTarget(served.state_dir).heal(None, None)


def pod(box: Served, service: str, version: str) -> dict[str, Any]:
    return next(p for p in box.status()["pods"] if p["service"] == service and p["version"] == version)


def inbound_handshakes(box: Served, version: str) -> int:
    """TLS handshakes the ``orders`` pod's sidecar accepted on its inbound listener (the mesh's mTLS)."""
    stats = admin_json(pod(box, "orders", version)["admin_socket"], "/stats?format=json&filter=ssl.handshake$")
    return sum(int(s.get("value", 0)) for s in stats["stats"] if s["name"].startswith("listener."))


def test_the_caller_reaches_the_entry_by_its_host_over_mtls_and_its_routing_applies(box: Served) -> None:
    before = inbound_handshakes(box, "v1")
    answers = [get(box.url + "/") for _ in range(5)]
    for code, tree in answers:
        hop = tree["upstreams"][0]
        # the VirtualService for the host sends every request to subset v1 (the WorkloadEntry labelled version: v1)
        assert code == 200 and hop["status"] == 200 and (hop["service"], hop["version"]) == ("orders", "v1"), tree
        # x-forwarded-client-cert, set by the callee's sidecar from the client certificate it verified: frontend's
        # identity, so the hop was mutual TLS, sidecar to sidecar
        assert hop["caller"] == "spiffe://cluster.local/ns/default/sa/frontend", hop
    # the callee's sidecar counted the handshakes (at least one connection; the caller pools them)
    assert inbound_handshakes(box, "v1") > before
    # the caller's sidecar knows it by Istio's cluster for a service of the mesh, with its mTLS client certificate
    dump = admin_json(pod(box, "frontend", "v1")["admin_socket"], "/config_dump?resource=dynamic_active_clusters")
    names = {c["cluster"]["name"]: c["cluster"] for c in dump["configs"]}
    assert {"orders", "orders_v1", "orders_v2"} <= set(names)  # the service and its DestinationRule's subsets
    orders = names["orders_v1"]
    assert orders["circuit_breakers"]["thresholds"][0]["max_connections"] == 50  # the DestinationRule's pool
    # auto mTLS per endpoint (v2's entry is sent plaintext, below): mTLS to the endpoints labelled tlsMode istio
    [match] = orders["transport_socket_matches"]
    assert match["match"] == {"tlsMode": "istio"}
    tls = match["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["tls_certificates"], tls  # ISTIO_MUTUAL: the caller presents its workload certificate
    # and checks the entries' identity, from their serviceAccount, as Istio's SAN check does
    assert tls["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/default/sa/orders"}}]
    assert HOST not in box.status()["external"]  # no stand-in outside the mesh: the entries are pods of the mesh
    # what the mTLS verdict reads: the hop frontend -> orders, with the caller's verified identity
    edges = {(e["source"], e["destination"]): e for e in LocalTarget(box.state_dir).observed_edges(3)}
    assert edges[("frontend", "orders")]["principal"] == "spiffe://cluster.local/ns/default/sa/frontend", edges


def test_an_entry_without_service_account_is_reached_in_plaintext_as_istios_auto_mtls_does(box: Served) -> None:
    # orders-vm-2 (v2) has no serviceAccount and no security.istio.io/tlsMode label: istiod marks its endpoint
    # tlsMode disabled, and auto mTLS (no DestinationRule tls.mode) sends it plaintext
    for _ in range(3):
        code, tree = get(box.url + "/", headers={"x-orders-version": "v2"})
        hop = tree["upstreams"][0]
        assert code == 200 and (hop["version"], hop["status"]) == ("v2", 200), tree
        assert hop["caller"] is None, hop  # no client certificate reached its sidecar: no x-forwarded-client-cert
    dump = admin_json(pod(box, "frontend", "v1")["admin_socket"], "/config_dump?resource=dynamic_active_clusters")
    v2 = next(c["cluster"] for c in dump["configs"] if c["cluster"]["name"] == "orders_v2")
    assert [m["match"] for m in v2["transport_socket_matches"]] == [{"tlsMode": "istio"}]  # mTLS only where labelled
    assert "transport_socket" not in v2


def test_a_latency_fault_and_a_pod_kill_on_it_work_through_the_usual_leases(box: Served) -> None:
    target = LocalTarget(box.state_dir)
    with pytest.raises(FaultRejected, match=r"^service: 'orders\.internal\.example\.com' is a host of the "
                                            r"MESH_INTERNAL ServiceEntry 'orders', a service of the mesh: name it "):
        target.inject_latency(HOST, 400, 100, None, 30, OWNER)
    assert target.active_faults() == []
    record = target.inject_latency("orders", 400, 100, None, 30, OWNER)
    try:
        assert record["changes"]["confirmed"], record
        started = time.monotonic()
        code, tree = get(box.url + "/")
        elapsed = time.monotonic() - started
    finally:
        healed = target.heal(None, OWNER)
    # a callee-side delay at orders' sidecar, under the VirtualService's 2 s timeout: late, not failed
    assert code == 200 and tree["upstreams"][0]["status"] == 200 and elapsed >= 0.4, (elapsed, tree)
    assert healed[0]["reverted"]["requests_delays_injected"] == 1
    killed = target.kill_pods("orders", 1, None, "v1", 30, OWNER)
    try:
        assert killed["changes"]["confirmed"] and len(killed["changes"]["killed_pods"]) == 1, killed
        assert killed["changes"]["killed_pods"][0].startswith("orders-v1-"), killed
        code, tree = get(box.url + "/")
    finally:
        target.heal(None, OWNER)
    # v1's only workload entry is down: the route to subset v1 has no endpoint (Istio's 503 UH), the caller fails
    assert code == 502 and tree["upstreams"][0]["status"] == 503, tree
    deadline = time.monotonic() + 15  # the heal brings the replacement forward; it starts like any pod
    while get(box.url + "/")[0] != 200:
        assert time.monotonic() < deadline, "healed: orders v1 is served again"
        time.sleep(0.2)
