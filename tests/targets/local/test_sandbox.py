"""The embedded sandbox against real Envoy, Prometheus and demo-app processes: routing and security."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support.client import get, get_many, hops, mesh_tls_get, plaintext_get
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes

SPIFFE = "spiffe://cluster.local/ns/{ns}/sa/{sa}"


def test_ingress_returns_call_tree_naming_every_hop(sandbox: Sandbox) -> None:
    status = sandbox.status()
    pods = {p["name"]: p for p in status["pods"]}
    code, tree = get(status["ingress_url"] + "/")
    assert code == 200
    seen = hops(tree)
    assert [h["service"] for h in seen] == ["frontend", "catalog", "inventory", "reviews"]
    for hop in seen:
        assert hop["status"] == 200
        assert hop["pod"] in pods, f"{hop['pod']} is not a running pod"
        assert pods[hop["pod"]]["service"] == hop["service"]
        assert pods[hop["pod"]]["version"] == hop["version"]
    assert len({h["request_id"] for h in seen}) == 1, "x-request-id is propagated along the call tree"


def test_status_lists_every_pod_ready(sandbox: Sandbox) -> None:
    status = sandbox.status()
    assert status["state"] == "ready"
    replicas = Counter((p["service"], p["version"]) for p in status["pods"] if p["state"] == "ready")
    assert replicas == {("frontend", "v1"): 1, ("catalog", "v1"): 2, ("inventory", "v1"): 2,
                        ("reviews", "v1"): 2, ("reviews", "v2"): 1}
    for pod in status["pods"]:
        assert pod["pids"]["app"] and pod["pids"]["sidecar"]
        assert set(pod["ports"]) == {"stats", "inbound", "app", "outbound"}  # every workload has an outbound side


def test_weighted_split_follows_virtualservice_weights(sandbox: Sandbox) -> None:
    results = get_many(sandbox.ingress_url + "/", 1000, concurrency=8)
    assert all(code == 200 for code, _ in results)
    versions = Counter(next(h["version"] for h in hops(tree) if h["service"] == "reviews") for _, tree in results)
    share_v1 = versions["v1"] / len(results) * 100
    share_v2 = versions["v2"] / len(results) * 100
    assert abs(share_v1 - 80) <= 5, versions
    assert abs(share_v2 - 20) <= 5, versions


def test_header_route_sends_everything_to_its_subset(sandbox: Sandbox) -> None:
    results = get_many(sandbox.ingress_url + "/", 200, headers={"x-canary": "true"})
    versions = Counter(next(h["version"] for h in hops(tree) if h["service"] == "reviews") for _, tree in results)
    assert versions == {"v2": 200}


def test_strict_mtls_refuses_plaintext_on_every_sidecar(sandbox: Sandbox) -> None:
    for pod in sandbox.status()["pods"]:
        answer = plaintext_get(pod["ports"]["inbound"])
        assert not answer.startswith(b"HTTP/"), f"{pod['name']} answered plaintext: {answer[:60]!r}"


def test_app_sees_its_callers_spiffe_identity(sandbox: Sandbox) -> None:
    _, tree = get(sandbox.ingress_url + "/")
    callers = {hop["service"]: hop["caller"] for hop in hops(tree)}
    assert callers == {
        "frontend": SPIFFE.format(ns="istio-system", sa="istio-ingressgateway-service-account"),
        "catalog": SPIFFE.format(ns="default", sa="frontend"),
        "reviews": SPIFFE.format(ns="default", sa="frontend"),
        "inventory": SPIFFE.format(ns="default", sa="catalog"),
    }


def test_authorization_policy_refuses_callers_outside_allow_list(sandbox: Sandbox) -> None:
    pki = Path(sandbox.state_dir) / "pki"
    inventory = next(p for p in sandbox.status()["pods"] if p["service"] == "inventory")
    port = inventory["ports"]["inbound"]
    assert mesh_tls_get(port, pki, "default-sa-catalog", "/stock") == 200  # on the ALLOW list
    assert mesh_tls_get(port, pki, "default-sa-frontend", "/stock") == 403  # a mesh identity, not allowed
    assert mesh_tls_get(port, pki, "default-sa-reviews", "/stock") == 403
