"""ServiceEntry hosts in the sandbox: stand-ins reached by host name as mesh-external destinations, and faults on them.

One sandbox for the module: experiments/meshes/external-payments (checkout calls two ServiceEntry hosts: the payment
provider, with a VirtualService timeout and retries and a DestinationRule with outlier detection and a connection pool,
and an exchange-rate host, here with a DestinationRule that originates TLS toward it, and which the frontend calls
too), with the mesh's ``outboundTrafficPolicy`` set to ``REGISTRY_ONLY`` in an ``istio`` ConfigMap.
Every check is a request through the real sidecars.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.client import admin_json, get
from tests.support.sandbox import Served, serve

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
MESH = ROOT / "experiments" / "meshes" / "external-payments"
PAYMENTS, RATES = "api.payments.example.com", "rates.fx.example.com"
OWNER = f"test-external-hosts-{os.getpid()}"
REGISTRY_ONLY = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
"""


RATES_TLS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: fx-rates}
spec:
  host: rates.fx.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, sni: rates.fx.example.com}
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("external")
    mesh = work / "mesh"
    shutil.copytree(MESH, mesh)
    shipped = (mesh / "mesh.yaml").read_text()
    checkout_call = "      - {service: checkout, path: /checkout}\n"
    assert checkout_call in shipped
    (mesh / "mesh.yaml").write_text(shipped.replace(  # a second caller of the exchange-rate host: the frontend
        checkout_call, checkout_call + f"      - {{service: {RATES}, path: /rates}}\n", 1))
    (mesh / "istio.yaml").write_text(REGISTRY_ONLY)
    (mesh / "rates-tls.yaml").write_text(RATES_TLS)
    for served in serve(mesh, work / "state"):
        try:
            yield served
        finally:
            LocalTarget(served.state_dir).heal(None, None)


def checkout_pod(box: Served) -> dict[str, Any]:
    return next(p for p in box.status()["pods"] if p["service"] == "checkout")


def raw_get(port: int, host: str, path: str = "/") -> int:
    """A request to a sidecar's outbound listener with ``Host: host``, as the app sends it; the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def external_calls(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    checkout = tree["upstreams"][0]
    return {hop["service"]: hop for hop in checkout["upstreams"]}


def test_callers_reach_both_stand_ins_by_host_name_as_mesh_external_destinations(box: Served) -> None:
    code, tree = get(box.url + "/")
    assert code == 200, tree
    found = external_calls(tree)
    assert set(found) == {PAYMENTS, RATES}
    for host, hop in found.items():
        # the stand-in answered (its service is the host), and no client certificate reached it: no mTLS
        assert hop["status"] == 200 and hop["pod"] == f"{host}-stand-in" and hop["caller"] is None, hop
    assert box.status()["external"][PAYMENTS]["running"]
    # the caller's sidecar holds Istio's clusters for them, the DestinationRule in force on the payment provider's
    dump = admin_json(checkout_pod(box)["admin_socket"], "/config_dump?resource=dynamic_active_clusters")
    clusters = {c["cluster"]["name"]: c for c in dump["configs"]}
    payments = clusters[f"outbound|80||{PAYMENTS}"]["cluster"]
    rates = clusters[f"outbound|80||{RATES}"]["cluster"]
    assert "transport_socket" not in payments  # plaintext: no Istio mTLS to a mesh-external host
    assert payments["outlier_detection"]["consecutive_5xx"] == 3 and payments["connect_timeout"] == "0.250s"
    assert payments["circuit_breakers"]["thresholds"][0]["max_connections"] == 50
    assert "outlier_detection" not in rates and rates["connect_timeout"] == "10s"  # Istio's defaults
    # TLS origination (tls.mode SIMPLE): the sidecar speaks TLS with the rule's SNI, not mTLS (no client certificate)
    tls = rates["transport_socket"]["typed_config"]
    assert tls["sni"] == RATES and "tls_certificates" not in tls["common_tls_context"]
    port = box.status()["external"][RATES]["port"]
    assert httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False).status_code == 200  # the stand-in: HTTPS
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")


def test_registry_only_refuses_an_undeclared_host_with_istios_502(box: Served) -> None:
    port = checkout_pod(box)["ports"]["outbound"]
    # istiod's catch-all under REGISTRY_ONLY is a direct response 502 (BlackHoleCluster's block_all route)
    assert raw_get(port, "undeclared.example.org") == 502
    assert raw_get(port, "undeclared.example.org:8443") == 502
    assert raw_get(port, PAYMENTS) == 200 and raw_get(port, f"{PAYMENTS}:80") == 200  # declared: served
    assert raw_get(port, "frontend", "/healthz") == 200  # a service of the mesh: unchanged


def test_latency_toward_the_provider_is_injected_at_its_caller_before_the_route_timeout(box: Served) -> None:
    target = LocalTarget(box.state_dir)
    # 700 ms: over checkout's 500 ms route timeout toward the provider, under its callers' 1 s timeout toward checkout
    record = target.inject_latency(PAYMENTS, 700, 100, "checkout", 30, OWNER)
    try:
        assert record["changes"]["confirmed"] and "caller-side" in record["changes"]["placement"]
        assert record["changes"]["caller_services"] == ["checkout"] and len(record["changes"]["pods"]) == 2
        started = time.monotonic()
        code, tree = get(box.url + "/")
        elapsed = time.monotonic() - started
    finally:
        healed = target.heal(None, OWNER)
    # the fault filter holds the request 700 ms before checkout's router: the VirtualService's 500 ms timeout (and its
    # 250 ms per-try timeout) start after it, so the call succeeds, late, as it does under Istio
    assert code == 200 and external_calls(tree)[PAYMENTS]["status"] == 200, tree
    assert elapsed >= 0.7, elapsed
    assert healed[0]["reverted"]["requests_delays_injected"] == 1
    started = time.monotonic()
    assert get(box.url + "/")[0] == 200
    assert time.monotonic() - started < 0.7, "healed: no delay left"


def test_an_abort_toward_the_provider_is_not_retried_and_never_reaches_it(box: Served) -> None:
    target = LocalTarget(box.state_dir)
    target.inject_abort(PAYMENTS, 503, 100, None, 30, OWNER)
    try:
        answers = [get(box.url + "/") for _ in range(5)]
    finally:
        healed = target.heal(None, OWNER)
    for code, tree in answers:
        assert code == 502 and external_calls(tree)[PAYMENTS]["status"] == 503, tree
        assert external_calls(tree)[RATES]["status"] == 200  # only that host
    # one abort per request: the VirtualService's retry on 5xx never sees an injected abort
    assert healed[0]["reverted"]["requests_aborts_injected"] == 5
    assert get(box.url + "/")[0] == 200


def test_a_fault_on_an_external_host_from_a_service_that_does_not_call_it_is_refused(box: Served) -> None:
    with pytest.raises(FaultRejected, match=r"^source: 'frontend' does not call 'api.payments.example.com' "
                                            r"\(callers: checkout\)$"):
        LocalTarget(box.state_dir).inject_latency(PAYMENTS, 100, 100, "frontend", 30, OWNER)
    assert LocalTarget(box.state_dir).active_faults() == []


def test_a_partition_toward_the_provider_is_cut_at_its_caller_and_its_guards_see_it(box: Served) -> None:
    target = LocalTarget(box.state_dir)
    record = target.partition("checkout", PAYMENTS, "to", "drop", 30, OWNER)
    try:
        assert record["changes"]["confirmed"] and record["changes"]["edges"] == [["checkout", PAYMENTS]]
        answers = []
        for _ in range(4):
            started = time.monotonic()
            code, tree = get(box.url + "/")
            answers.append((code, external_calls(tree), time.monotonic() - started))
    finally:
        target.heal(None, OWNER)
    for code, calls, elapsed in answers:
        # a blackholed egress: connects hang until the DestinationRule's 250 ms connect timeout, the VirtualService's
        # 500 ms route timeout bounds the whole call (an ejected host fails at once): a 5xx, not a hang
        assert code == 502 and calls[PAYMENTS]["status"] in (503, 504) and calls[RATES]["status"] == 200, calls
        assert elapsed < 1.0, elapsed  # 500 ms route timeout, with as much again for the rest of the request
    deadline = time.monotonic() + 5  # the heal replaces the cluster: no ejection outlives it (base ejection: 5 s)
    while get(box.url + "/")[0] != 200:
        assert time.monotonic() < deadline, "healed: the provider is served again"
        time.sleep(0.1)


def test_a_partition_from_the_provider_or_of_some_of_its_pods_is_refused_on_one_line(box: Served) -> None:
    target = LocalTarget(box.state_dir)
    with pytest.raises(FaultRejected, match=r"^direction: 'from' cuts 'api.payments.example.com' -> 'checkout'"):
        target.partition("checkout", PAYMENTS, "from", "drop", 30, OWNER)
    with pytest.raises(FaultRejected, match=r"^count/percent/version: external host 'api.payments.example.com' "):
        target.partition("checkout", PAYMENTS, "to", "drop", 30, OWNER, count=1)
    assert target.active_faults() == []


def test_a_partition_toward_a_host_from_every_caller_cuts_each_callers_egress_and_heals(box: Served) -> None:
    """``a='*'``: the exchange-rate provider down for the whole mesh (the frontend and checkout both call it)."""
    target = LocalTarget(box.state_dir)
    record = target.partition("*", RATES, "to", "reject", 30, OWNER)
    try:
        assert record["target"] == {"a": "*", "b": RATES, "direction": "to"}
        assert record["changes"]["confirmed"], record["changes"]
        assert sorted(map(tuple, record["changes"]["edges"])) == [("checkout", RATES), ("frontend", RATES)]
        with pytest.raises(FaultRejected, match=r"^conflicts with active fault partition-[0-9a-f]{8} \(partition on "
                                                r"every caller -> rates\.fx\.example\.com\); heal it first$"):
            target.partition("checkout", RATES, "to", "drop", 30, OWNER)
        answers = [get(box.url + "/") for _ in range(4)]
    finally:
        target.heal(None, OWNER)
    for code, tree in answers:
        by_service = {hop["service"]: hop for hop in tree["upstreams"]}
        # each caller's connection to the host refused by its own sidecar's cluster: both hops fail, payments not
        assert code == 502 and by_service[RATES]["status"] == 503, tree
        assert external_calls(tree)[RATES]["status"] == 503 and external_calls(tree)[PAYMENTS]["status"] == 200, tree
    deadline = time.monotonic() + 5  # the heal replaces the clusters: no ejection outlives it (base ejection: 5 s)
    while get(box.url + "/")[0] != 200:
        assert time.monotonic() < deadline, "healed: the exchange-rate host is served again"
        time.sleep(0.1)
