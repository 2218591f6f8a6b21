"""Istio / NetworkPolicy objects created through the API emulation change real Envoy behaviour, whoever wrote them.

The Kubernetes target's objects (``tests.support.kube``: its EnvoyFilters; a DENY AuthorizationPolicy as it once
wrote them) and the team's are applied alike.  A team's AuthorizationPolicies made with kubectl, an ALLOW for one
caller and the webhook's refusals: test_kubectl_authorization.py.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from chaosmesh_qa.targets.kubernetes.dataplane import ListenerWatch
from tests.support.client import get_many, hops, mesh_tls_get
from tests.support.kube import (
    KubeSandbox,
    deny_policy,
    drop_policy,
    envoy_filter,
    listener_watch,
    until_sidecars_settle,
)
from tests.support.latency import assert_delay_effect, assert_fails_fast

pytestmark = pytest.mark.processes

ISTIO_NET = ("networking.istio.io", "v1")
ISTIO_SEC = ("security.istio.io", "v1")
MESH_POLICIES = {"inventory-callers"}  # mesh/security.yaml's, read-only in the emulation


@pytest.fixture
def k8s(kube_sandbox: KubeSandbox) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kube_sandbox.kubeconfig))
    yield api
    custom, net = client.CustomObjectsApi(api), client.NetworkingV1Api(api)
    for obj in custom.list_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters",
                                                    label_selector="app.kubernetes.io/managed-by")["items"]:
        custom.delete_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", obj["metadata"]["name"])
    for obj in custom.list_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies")["items"]:
        if obj["metadata"]["name"] not in MESH_POLICIES:
            custom.delete_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies",
                                                   obj["metadata"]["name"])
    for policy in net.list_namespaced_network_policy("default").items:
        net.delete_namespaced_network_policy(policy.metadata.name, "default")
    assert kube_sandbox.status()["faults"] == [], "every fault healed by deleting its object"


def _hop(tree: dict[str, Any], service: str) -> dict[str, Any]:
    return next(h for h in hops(tree) if h["service"] == service)


def _times_s(url: str, count: int = 20) -> list[float]:
    times = []
    for _ in range(count):
        started = time.monotonic()
        (code, _), = get_many(url, 1, concurrency=1)
        times.append(time.monotonic() - started)
        assert code == 200
    return times


@pytest.mark.slow  # the same data-plane effect through KubernetesTarget: tests/targets/kubernetes/test_faults.py
def test_envoyfilter_abort_on_one_edge_matches_percent(kube_sandbox: KubeSandbox, k8s: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(k8s)
    body = envoy_filter("abort-edge", "reviews", {"abort": {"http_status": 503, "percentage": {
        "numerator": 30, "denominator": "HUNDRED"}}}, caller_sa="frontend")
    custom.create_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", body)
    reaching = kube_sandbox.status()["envoy_filters"]["reaching"]
    assert {pod for pod, filters in reaching.items() if "default/abort-edge" in filters} == {
        p["name"] for p in kube_sandbox.status()["pods"] if p["service"] == "reviews"}
    assert kube_sandbox.status()["faults"] == [], "Envoy applies it: no sandbox fault stands for it"
    results = get_many(kube_sandbox.ingress_url + "/", 800, concurrency=8)
    statuses = Counter(_hop(tree, "reviews")["status"] for _, tree in results)
    assert abs(statuses[503] / len(results) * 100 - 30) <= 5, statuses
    assert all(_hop(tree, "catalog")["status"] == 200 for _, tree in results), "other edges stay healthy"
    custom.delete_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", "abort-edge")
    _until_reviews_answer(kube_sandbox, {200})


@pytest.mark.slow  # the same data-plane effect through KubernetesTarget: tests/targets/kubernetes/test_faults.py
def test_envoyfilter_delay_on_one_service_adds_200ms(kube_sandbox: KubeSandbox, k8s: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(k8s)
    url = kube_sandbox.ingress_url + "/"
    baseline = _times_s(url)
    watch = listener_watch(kube_sandbox, "reviews")
    custom.create_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", envoy_filter(
        "delay-svc", "reviews", {"delay": {"fixed_delay": "0.200s", "percentage": {"numerator": 100,
                                                                                    "denominator": "HUNDRED"}}}))
    until_sidecars_settle(watch)  # every request after this is on a listener with the filter
    faulted = _times_s(url)
    watch = listener_watch(kube_sandbox, "reviews")
    custom.delete_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", "delay-svc")
    until_sidecars_settle(watch)
    assert_delay_effect(baseline, faulted, _times_s(url), 200)


def _reviews_statuses(kube_sandbox: KubeSandbox, count: int = 20) -> set[int]:
    return {_hop(tree, "reviews")["status"] for _, tree in get_many(kube_sandbox.ingress_url + "/", count)}


def _until_reviews_answer(kube_sandbox: KubeSandbox, wanted: set[int], within_s: float = 5.0) -> None:
    """A changed EnvoyFilter reaches Envoy as a listener update (an xDS push, milliseconds here); a connection
    the caller pooled before it answers once more with the old filters, then closes (the sidecars drain
    immediately, as Istio's do).  So the new behaviour shows within a few batches; 5 s is far above that."""
    deadline = time.monotonic() + within_s
    while (seen := _reviews_statuses(kube_sandbox)) != wanted:
        assert time.monotonic() < deadline, f"reviews still answers {seen}, not {wanted}, {within_s} s later"


def _wrong(body: dict[str, Any], where: str) -> dict[str, Any]:
    wrong = json.loads(json.dumps(body))
    patch = wrong["spec"]["configPatches"][0]
    if where == "context":
        patch["match"]["context"] = "SIDECAR_OUTBOUND"
    elif where == "sub-filter":
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] = "envoy.filters.http.routr"
    elif where == "selector":
        wrong["spec"]["workloadSelector"]["labels"] = {"app": "reviews", "version": "v9"}
    elif where == "port":
        patch["match"]["listener"]["portNumber"] = 15999
    return wrong


@pytest.mark.parametrize("where", ["context", "sub-filter", "selector", "port"])
def test_point18_an_envoyfilter_with_one_field_wrong_changes_nothing(kube_sandbox: KubeSandbox, k8s: client.ApiClient,
                                                                     where: str) -> None:
    """Issue 18 acceptance: EnvoyFilters are applied with istiod's semantics, not recognised by their shape; the
    same filter with one field wrong (a context, a sub-filter name, a selector, a port) matches nothing, and
    nothing answers in its place.  The right one (unlabelled, as a team's own) aborts every request."""
    custom = client.CustomObjectsApi(k8s)
    right = envoy_filter("abort-all", "reviews", {"abort": {"http_status": 500, "percentage": {
        "numerator": 100, "denominator": "HUNDRED"}}})
    right["metadata"]["labels"] = {}
    right["spec"]["configPatches"][0]["match"]["listener"]["portNumber"] = 8080  # reviews' service port
    custom.create_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", _wrong(right, where))
    try:
        time.sleep(0.5)  # the push, had there been anything to push, is milliseconds
        assert _reviews_statuses(kube_sandbox, 40) == {200}
        assert kube_sandbox.status()["faults"] == []
    finally:
        custom.delete_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", "abort-all")
    custom.create_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", right)
    try:
        _until_reviews_answer(kube_sandbox, {500})
    finally:
        custom.delete_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", "abort-all")
    _until_reviews_answer(kube_sandbox, {200})


def test_deny_policy_answers_403_and_network_policy_drops_one_edge(kube_sandbox: KubeSandbox,
                                                                  k8s: client.ApiClient) -> None:
    """The Kubernetes target's DENY shape is no special case: applied as istiod applies any AuthorizationPolicy, it
    makes reviews' sidecars answer frontend 403 (RBAC) at once, where a NetworkPolicy's drop waits for the connect
    timeout."""
    custom, net = client.CustomObjectsApi(k8s), client.NetworkingV1Api(k8s)
    url = kube_sandbox.ingress_url + "/"
    baseline = statistics.median(_times_s(url, 5))
    watch = listener_watch(kube_sandbox, "reviews")
    custom.create_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies",
                                           deny_policy("deny-reviews", "frontend", "reviews"))
    until_sidecars_settle(watch)  # every request after this meets the RBAC filter
    assert kube_sandbox.status()["faults"] == [], "Envoy's RBAC applies it: no sandbox fault stands for it"
    for _ in range(5):
        started = time.monotonic()
        (_, tree), = get_many(url, 1, concurrency=1)
        assert _hop(tree, "reviews")["status"] == 403 and _hop(tree, "catalog")["status"] == 200
        assert_fails_fast(time.monotonic() - started, baseline, 1.0)  # reviews' connect timeout: 1 s
    watch = listener_watch(kube_sandbox, "reviews")
    custom.delete_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies", "deny-reviews")
    until_sidecars_settle(watch)
    assert {_hop(t, "reviews")["status"] for _, t in get_many(url, 10)} == {200}

    net.create_namespaced_network_policy("default", drop_policy("drop-reviews", "frontend", "reviews"))
    # A CNI enforces a stored policy shortly after, not before the API answers (the emulation pushes the denial
    # to the callers' sidecars then): the first request that meets it may come a moment later, within seconds.
    deadline = time.monotonic() + 5
    while True:
        started = time.monotonic()
        (_, tree), = get_many(url, 1, concurrency=1)
        if _hop(tree, "reviews")["status"] >= 500 or time.monotonic() > deadline:
            break
    assert _hop(tree, "reviews")["status"] >= 500 and _hop(tree, "catalog")["status"] == 200
    assert time.monotonic() - started >= 0.9, "a blackhole makes the caller wait for its connect timeout"
    net.delete_namespaced_network_policy("drop-reviews", "default")
    assert {_hop(t, "reviews")["status"] for _, t in get_many(url, 10)} == {200}


def test_a_deny_selects_pods_by_their_current_labels(kube_sandbox: KubeSandbox, k8s: client.ApiClient) -> None:
    """istiod selects a policy's workloads by the pods' labels as they are now: a label patched on one catalog
    pod brings it under a DENY that selects that label, and removing it takes it out again."""
    core, custom = client.CoreV1Api(k8s), client.CustomObjectsApi(k8s)
    pods = {p["name"]: p for p in kube_sandbox.status()["pods"] if p["service"] == "catalog"}
    victim, spared = sorted(pods)
    pki = Path(kube_sandbox.state_dir) / "pki"

    def answers(pod: str) -> int:  # a new connection to the pod's sidecar, as frontend
        return mesh_tls_get(pods[pod]["ports"]["inbound"], pki, "default-sa-frontend", "/items")

    body = deny_policy("deny-one", "frontend", "catalog")
    body["spec"]["selector"]["matchLabels"]["chaosmesh-qa.io/partition-x"] = "true"
    custom.create_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies", body)
    assert (answers(victim), answers(spared)) == (200, 200), "the label is on no pod yet"
    watch = ListenerWatch(listener_watch(kube_sandbox, "catalog").cluster, "default", [victim])
    core.patch_namespaced_pod(victim, "default", {"metadata": {"labels": {"chaosmesh-qa.io/partition-x": "true"}}})
    assert watch.changed(10)[0], "the victim's listeners changed when its label did"
    assert (answers(victim), answers(spared)) == (403, 200)
    watch = ListenerWatch(watch.cluster, "default", [victim])
    core.patch_namespaced_pod(victim, "default", {"metadata": {"labels": {"chaosmesh-qa.io/partition-x": None}}})
    assert watch.changed(10)[0]
    assert (answers(victim), answers(spared)) == (200, 200)
    custom.delete_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies", "deny-one")
    assert "chaosmesh-qa.io/partition-x" not in core.read_namespaced_pod(victim, "default").metadata.labels


def test_a_bad_envoyfilter_is_refused_by_istiods_webhook(kube_sandbox: KubeSandbox, k8s: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(k8s)
    bad = envoy_filter("bad", "reviews", {"abort": {"http_status": 503}})
    bad["spec"]["configPatches"][0]["patch"]["operation"] = "INSERT_BEFOR"
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", bad)
    status = json.loads(refused.value.body)
    assert refused.value.status == 400 and status["message"].startswith(
        'admission webhook "validation.istio.io" denied the request: configuration is invalid: '
        "spec.configPatches[0].patch.operation: 'INSERT_BEFOR' is not one of"), status["message"]
    assert custom.list_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters")["items"] == []


def test_dynamic_client_discovers_the_istio_groups(k8s: client.ApiClient) -> None:
    dynamic = DynamicClient(k8s)
    envoy_filters = dynamic.resources.get(api_version="networking.istio.io/v1", kind="EnvoyFilter")
    assert envoy_filters.namespaced and envoy_filters.get(namespace="default").items == []
    vs = dynamic.resources.get(api_version="networking.istio.io/v1beta1", kind="VirtualService")
    assert {o.metadata.name for o in vs.get(namespace="default").items} == {"catalog", "inventory", "reviews"}
