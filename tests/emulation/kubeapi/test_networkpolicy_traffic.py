"""NetworkPolicies on a running sandbox (``up --kube-api``): real traffic through real sidecars.

The team's policies and the Kubernetes target's own drop partition (built by
``targets.kubernetes.objects.network_policy``, as the target builds it) are created through the API and
enforced as one union of allow rules: next to an allow, the drop changes nothing; deleting an allow cuts the
caller; alone, the drop cuts exactly its edge.  A denied connection hangs in the sandbox's tarpit until the
caller's connect timeout (reviews: 1 s), as a CNI's dropped SYNs do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from chaosmesh_qa.targets.kubernetes import objects
from tests.support.client import admin_json, get_many, hops
from tests.support.kube import KubeSandbox

pytestmark = pytest.mark.processes

DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress"]}
ALLOW_SAME_NAMESPACE = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}
# on a cluster as here, a default-deny namespace must admit its ingress gateway (istio-system) to the entry service
ALLOW_GATEWAY = {"podSelector": {"matchLabels": {"app": "frontend"}}, "ingress": [{"from": [{"namespaceSelector": {
    "matchLabels": {"kubernetes.io/metadata.name": "istio-system"}}}]}]}


@pytest.fixture
def net(kube_sandbox: KubeSandbox) -> Iterator[client.NetworkingV1Api]:
    api = config.new_client_from_config(config_file=str(kube_sandbox.kubeconfig))
    networking = client.NetworkingV1Api(api)
    yield networking
    for policy in networking.list_namespaced_network_policy("default").items:
        networking.delete_namespaced_network_policy(policy.metadata.name, "default")
    _until(lambda: _reachable(kube_sandbox, "frontend", "reviews") == _reviews(kube_sandbox),
           "frontend sees reviews again")
    assert kube_sandbox.status()["kube_api_objects"]["network_policies"]["denied_connections"] == []


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


def _target_drop(caller: str = "frontend", callee: str = "reviews") -> dict[str, Any]:
    return objects.network_policy("partition-abcd1234", time.time() + 60, "default", "to", {"app": caller},
                                  {"app": callee}, False)


def _reachable(box: KubeSandbox, caller: str, callee: str) -> set[str]:
    """The pods of ``callee`` that every sidecar of ``caller`` sees at their own inbound port.  (Denied ones sit at
    the tarpit's one address, where Envoy keeps one host for them all.)"""
    pods = box.status()["pods"]
    inbound = {p["name"]: p["ports"]["inbound"] for p in pods}
    found = {p["name"] for p in pods if p["service"] == callee}
    for pod in (p for p in pods if p["service"] == caller):
        seen = {h["hostname"] for cluster in admin_json(pod["admin_socket"], "/clusters?format=json")[
            "cluster_statuses"] if cluster["name"] == callee for h in cluster.get("host_statuses", [])
            if h["address"]["socket_address"]["port_value"] == inbound.get(h["hostname"])}
        found &= seen
    return found


def _until(condition: Any, what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.02)


def _statuses(box: KubeSandbox, count: int = 10) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for _, tree in get_many(box.ingress_url + "/", count):
        for hop in hops(tree):
            seen.setdefault(hop["service"], set()).add(hop["status"])
    return seen


def _reviews(box: KubeSandbox) -> set[str]:
    return {p["name"] for p in box.status()["pods"] if p["service"] == "reviews"}


def test_a_next_to_allow_same_namespace_the_targets_drop_partition_changes_nothing(
        kube_sandbox: KubeSandbox, net: client.NetworkingV1Api) -> None:
    for name, spec in (("deny-all", DENY_ALL), ("allow-same-namespace", ALLOW_SAME_NAMESPACE),
                       ("allow-gateway", ALLOW_GATEWAY)):
        net.create_namespaced_network_policy("default", _policy(name, spec))
    assert _statuses(kube_sandbox) == {"frontend": {200}, "catalog": {200}, "inventory": {200}, "reviews": {200}}
    net.create_namespaced_network_policy("default", _target_drop())
    time.sleep(0.3)  # were anything pushed, it would be pushed in milliseconds
    assert _reachable(kube_sandbox, "frontend", "reviews") == _reviews(kube_sandbox)
    assert _statuses(kube_sandbox)["reviews"] == {200}, "frontend still reaches reviews: the drop denies nothing"
    assert kube_sandbox.status()["kube_api_objects"]["network_policies"]["denied_connections"] == []


def test_b_deleting_the_callers_allow_cuts_it_from_the_callee(kube_sandbox: KubeSandbox,
                                                              net: client.NetworkingV1Api) -> None:
    deny = {"podSelector": {"matchLabels": {"app": "reviews"}}, "policyTypes": ["Ingress"]}
    allow = {"podSelector": {"matchLabels": {"app": "reviews"}},
             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]}
    net.create_namespaced_network_policy("default", _policy("deny-reviews", deny))
    net.create_namespaced_network_policy("default", _policy("allow-frontend", allow))
    assert _statuses(kube_sandbox)["reviews"] == {200}, "also leaves frontend connections pooled to reviews"
    net.delete_namespaced_network_policy("allow-frontend", "default")
    _until(lambda: _reachable(kube_sandbox, "frontend", "reviews") == set(),
           "frontend's sidecar sees no reviews pod at its own port")
    started = time.monotonic()
    (_, tree), = get_many(kube_sandbox.ingress_url + "/", 1)
    statuses = {h["service"]: h["status"] for h in hops(tree)}
    # what the sandbox does to the connections frontend had pooled: re-pointed endpoints make its Envoy drain
    # them, so this first request opens a new connection and hangs; a CNI's conntrack would have let the pooled
    # ones carry it (docs/explanation/kube-api-emulation.md)
    assert statuses["reviews"] >= 500 and statuses["catalog"] == 200, statuses
    assert time.monotonic() - started >= 0.9, "a dropped connect waits for reviews' 1 s connect timeout"
    net.create_namespaced_network_policy("default", _policy("allow-frontend", allow))
    _until(lambda: _reachable(kube_sandbox, "frontend", "reviews") == _reviews(kube_sandbox),
           "frontend sees reviews again")
    assert _statuses(kube_sandbox)["reviews"] == {200}


def test_c_the_targets_drop_partition_alone_cuts_exactly_the_caller_to_callee_edge(
        kube_sandbox: KubeSandbox, net: client.NetworkingV1Api) -> None:
    created = net.create_namespaced_network_policy("default", _target_drop())
    assert created.metadata.name == "chaosmesh-qa-partition-abcd1234-to"
    _until(lambda: _reachable(kube_sandbox, "frontend", "reviews") == set(),
           "frontend's sidecar sees no reviews pod at its own port")
    assert _reachable(kube_sandbox, "frontend", "catalog") == {
        p["name"] for p in kube_sandbox.status()["pods"] if p["service"] == "catalog"}
    assert _reachable(kube_sandbox, "catalog", "inventory") == {
        p["name"] for p in kube_sandbox.status()["pods"] if p["service"] == "inventory"}
    denied = kube_sandbox.status()["kube_api_objects"]["network_policies"]["denied_connections"]
    (frontend,) = [p["name"] for p in kube_sandbox.status()["pods"] if p["service"] == "frontend"]
    assert {(c["source"], c["destination"]) for c in denied} == {(frontend, r) for r in _reviews(kube_sandbox)}
    seen = _statuses(kube_sandbox, 3)
    assert min(seen["reviews"]) >= 500 and seen["catalog"] == seen["inventory"] == {200}, seen


def test_d_a_replacement_pod_is_denied_before_it_serves(kube_sandbox: KubeSandbox,
                                                        net: client.NetworkingV1Api) -> None:
    """A pod the ReplicaSet starts in place of a deleted one is evaluated when the supervisor creates it, before it
    can be ready (``KubeApi.pod_created``, as a CNI programs a pod's rules before its containers run): the caller's
    sidecar never sees it anywhere but at the tarpit.  (Left to the server's 100 ms poll, the replacement's endpoint
    was once published first, in a full make test.)"""
    net.create_namespaced_network_policy("default", _target_drop())
    _until(lambda: _reachable(kube_sandbox, "frontend", "reviews") == set(), "frontend's sidecar cut from reviews")
    (frontend,) = [p for p in kube_sandbox.status()["pods"] if p["service"] == "frontend"]

    def reviews_hosts() -> dict[str, int]:
        return {h["hostname"]: h["address"]["socket_address"]["port_value"]
                for c in admin_json(frontend["admin_socket"], "/clusters?format=json")["cluster_statuses"]
                if c["name"] == "reviews" for h in c.get("host_statuses", [])}

    (tarpit,) = set(reviews_hosts().values())
    before = _reviews(kube_sandbox)
    victim = sorted(before)[0]
    (victim_port,) = [p["ports"]["inbound"] for p in kube_sandbox.status()["pods"] if p["name"] == victim]
    # Envoy keeps one host per address, named after the first endpoint at it: the hosts at the tarpit may carry any
    # denied pod's name, the deleted one's too (until its endpoint goes, after the endpoint delay).  So the ports are
    # what is checked: the tarpit, or the deleted pod's own dead port, never a live pod's.
    allowed = {tarpit, victim_port}
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kube_sandbox.kubeconfig)))
    core.delete_namespaced_pod(victim, "default")
    deadline = time.monotonic() + 15
    while True:
        # the deleted pod's endpoint lingers for the endpoint delay: at its own dead port it is not a new connection
        assert set(reviews_hosts().values()) <= allowed
        ready = [p for p in core.list_namespaced_pod("default", label_selector="app=reviews").items
                 if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        if len(ready) == len(before) and victim not in {p.metadata.name for p in ready}:
            break
        assert time.monotonic() < deadline, "no ready replacement within 15 s"
        time.sleep(0.05)
    time.sleep(0.5)  # the replacement's endpoint is published once it is ready
    assert set(reviews_hosts().values()) <= allowed and tarpit in set(reviews_hosts().values())
    denied = kube_sandbox.status()["kube_api_objects"]["network_policies"]["denied_connections"]
    assert {c["destination"] for c in denied} == _reviews(kube_sandbox) and victim not in _reviews(kube_sandbox)
