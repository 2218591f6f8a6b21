"""Managed Istio / NetworkPolicy objects created through the API emulation change real Envoy behaviour."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from tests.support.client import get_many, hops
from tests.support.kube import KubeSandbox, deny_policy, drop_policy, envoy_filter
from tests.support.latency import assert_delay_effect, assert_fails_fast

pytestmark = pytest.mark.processes

ISTIO_NET = ("networking.istio.io", "v1")
ISTIO_SEC = ("security.istio.io", "v1")


@pytest.fixture
def k8s(kube_sandbox: KubeSandbox) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kube_sandbox.kubeconfig))
    yield api
    custom, net = client.CustomObjectsApi(api), client.NetworkingV1Api(api)
    for (group, version), plural in ((ISTIO_NET, "envoyfilters"), (ISTIO_SEC, "authorizationpolicies")):
        for obj in custom.list_namespaced_custom_object(group, version, "default", plural,
                                                        label_selector="app.kubernetes.io/managed-by")["items"]:
            custom.delete_namespaced_custom_object(group, version, "default", plural, obj["metadata"]["name"])
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
    created = custom.create_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", body)
    applied = created["status"]["chaosmeshQaEmulation"]
    assert applied["applied"] and applied["state"] == "active"
    fault = next(f for f in kube_sandbox.status()["faults"] if f["fault_id"] == applied["faultId"])
    assert fault["target"] == {"service": "reviews", "source": "frontend"} and fault["changes"]["confirmed"]
    assert 55 < fault["remaining_s"] <= 60, "the sandbox lease ends at the object's expires-at"
    results = get_many(kube_sandbox.ingress_url + "/", 800, concurrency=8)
    statuses = Counter(_hop(tree, "reviews")["status"] for _, tree in results)
    assert abs(statuses[503] / len(results) * 100 - 30) <= 5, statuses
    assert all(_hop(tree, "catalog")["status"] == 200 for _, tree in results), "other edges stay healthy"
    listed = kube_sandbox.kubectl("get", "envoyfilters,authorizationpolicies,networkpolicies", "-l",
                                  "app.kubernetes.io/managed-by=chaosmesh-qa").stdout
    assert "envoyfilter.networking.istio.io/abort-edge" in listed
    custom.delete_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", "abort-edge")
    assert kube_sandbox.status()["faults"] == []
    results = get_many(kube_sandbox.ingress_url + "/", 100, concurrency=8)
    assert all(_hop(tree, "reviews")["status"] == 200 for _, tree in results), "DELETE heals"
    healed = [c for c in kube_sandbox.call_log() if c.get("verb") == "delete" and c.get("name") == "abort-edge"]
    assert healed[-1]["healed"] == {"fault_id": applied["faultId"], "ended": "healed"}


@pytest.mark.slow  # the same data-plane effect through KubernetesTarget: tests/targets/kubernetes/test_faults.py
def test_envoyfilter_delay_on_one_service_adds_200ms(kube_sandbox: KubeSandbox, k8s: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(k8s)
    url = kube_sandbox.ingress_url + "/"
    baseline = _times_s(url)
    custom.create_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", envoy_filter(
        "delay-svc", "reviews", {"delay": {"fixed_delay": "0.200s", "percentage": {"numerator": 100,
                                                                                    "denominator": "HUNDRED"}}}))
    faulted = _times_s(url)
    custom.delete_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", "delay-svc")
    assert_delay_effect(baseline, faulted, _times_s(url), 200)


def test_expires_at_is_the_sandbox_lease(kube_sandbox: KubeSandbox, k8s: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(k8s)
    body = envoy_filter("short", "reviews", {"abort": {"http_status": 500, "percentage": {
        "numerator": 100, "denominator": "HUNDRED"}}}, ttl_s=3)
    created = custom.create_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", body)
    assert created["status"]["chaosmeshQaEmulation"]["state"] == "active"
    deadline = time.monotonic() + 15
    while kube_sandbox.status()["faults"]:  # nobody deletes the object: the sandbox reverts it at expires-at
        assert time.monotonic() < deadline, "the lease outlived its expires-at"
        time.sleep(0.1)
    obj = custom.get_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", "short")
    assert obj["status"]["chaosmeshQaEmulation"]["state"] == "expired"
    assert {_hop(t, "reviews")["status"] for _, t in get_many(kube_sandbox.ingress_url + "/", 10)} == {200}


def test_deny_policy_rejects_and_network_policy_drops_one_edge(kube_sandbox: KubeSandbox,
                                                               k8s: client.ApiClient) -> None:
    custom, net = client.CustomObjectsApi(k8s), client.NetworkingV1Api(k8s)
    url = kube_sandbox.ingress_url + "/"
    baseline = statistics.median(_times_s(url, 5))
    custom.create_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies",
                                           deny_policy("deny-reviews", "frontend", "reviews"))
    for _ in range(5):
        started = time.monotonic()
        (_, tree), = get_many(url, 1, concurrency=1)
        assert _hop(tree, "reviews")["status"] == 503 and _hop(tree, "catalog")["status"] == 200
        # a refused connection does not wait for reviews' 1 s connect timeout (mesh/traffic.yaml)
        assert_fails_fast(time.monotonic() - started, baseline, 1.0)
    custom.delete_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies", "deny-reviews")
    assert {_hop(t, "reviews")["status"] for _, t in get_many(url, 10)} == {200}

    net.create_namespaced_network_policy("default", drop_policy("drop-reviews", "frontend", "reviews"))
    started = time.monotonic()
    (_, tree), = get_many(url, 1, concurrency=1)
    assert _hop(tree, "reviews")["status"] >= 500 and _hop(tree, "catalog")["status"] == 200
    assert time.monotonic() - started >= 0.9, "a blackhole makes the caller wait for its connect timeout"
    net.delete_namespaced_network_policy("drop-reviews", "default")
    assert {_hop(t, "reviews")["status"] for _, t in get_many(url, 10)} == {200}


def test_labelled_pods_narrow_a_partition(kube_sandbox: KubeSandbox, k8s: client.ApiClient) -> None:
    core, custom = client.CoreV1Api(k8s), client.CustomObjectsApi(k8s)
    pods = sorted(p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=catalog").items)
    victim = pods[-1]
    core.patch_namespaced_pod(victim, "default", {"metadata": {"labels": {"chaosmesh-qa.io/partition-x": "true"}}})
    body = deny_policy("deny-one", "frontend", "catalog")
    body["spec"]["selector"]["matchLabels"]["chaosmesh-qa.io/partition-x"] = "true"
    created = custom.create_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies", body)
    fault = next(f for f in kube_sandbox.status()["faults"]
                 if f["fault_id"] == created["status"]["chaosmeshQaEmulation"]["faultId"])
    assert fault["changes"]["pods"] == [victim]
    custom.delete_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies", "deny-one")
    core.patch_namespaced_pod(victim, "default", {"metadata": {"labels": {"chaosmesh-qa.io/partition-x": None}}})
    assert "chaosmesh-qa.io/partition-x" not in core.read_namespaced_pod(victim, "default").metadata.labels


def test_unmanaged_objects_are_stored_with_a_warning_and_bad_shapes_refused(kube_sandbox: KubeSandbox,
                                                                           k8s: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(k8s)
    plain = deny_policy("someone-elses", "frontend", "reviews")
    plain["metadata"]["labels"] = {}
    custom.create_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies", plain)
    try:
        assert kube_sandbox.status()["faults"] == []
        assert any("someone-elses stored but NOT applied" in w
                   for w in kube_sandbox.status()["kube_api_objects"]["warnings"])
    finally:
        custom.delete_namespaced_custom_object(*ISTIO_SEC, "default", "authorizationpolicies", "someone-elses")
    bad = envoy_filter("bad", "reviews", {"abort": {"http_status": 503, "percentage": {"numerator": 30,
                                                                                       "denominator": "MILLION"}}})
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters", bad)
    status = json.loads(refused.value.body)
    assert refused.value.status == 422 and "typed_config.abort.percentage" in status["message"]
    assert custom.list_namespaced_custom_object(*ISTIO_NET, "default", "envoyfilters")["items"] == []


def test_dynamic_client_discovers_the_istio_groups(k8s: client.ApiClient) -> None:
    dynamic = DynamicClient(k8s)
    envoy_filters = dynamic.resources.get(api_version="networking.istio.io/v1", kind="EnvoyFilter")
    assert envoy_filters.namespaced and envoy_filters.get(namespace="default").items == []
    vs = dynamic.resources.get(api_version="networking.istio.io/v1beta1", kind="VirtualService")
    assert {o.metadata.name for o in vs.get(namespace="default").items} == {"catalog", "inventory", "reviews"}
