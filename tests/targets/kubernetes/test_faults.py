"""The Kubernetes target against the API emulation: the same faults, the same client-visible numbers.

Tolerances are those of tests/actions/test_faults.py (the local target): an abort share within 5 points, a
delay judged by tests.support.latency (held or not, once or twice, back after the heal: each half-way between
the outcomes, from the baseline measured in the test).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chaosmesh_qa import actions
from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets import get_target
from chaosmesh_qa.targets.kubernetes import objects
from chaosmesh_qa.targets.kubernetes.objects import MANAGED_SELECTOR
from tests.support.client import get_many, hops
from tests.support.kube import KubeSandbox, listener_watch
from tests.support.latency import assert_delay_effect

pytestmark = pytest.mark.processes


@pytest.fixture
def cfg(kube: KubeSandbox) -> Iterator[dict[str, Any]]:
    configuration = kube.configuration()
    yield configuration
    get_target(configuration).heal(None, None)  # leave no fault behind, whatever the test did


def _hop(tree: dict[str, Any], service: str) -> dict[str, Any]:
    return next(h for h in hops(tree) if h["service"] == service)


def _timed(url: str, count: int) -> list[tuple[float, int, Any]]:
    results = []
    for _ in range(count):
        started = time.monotonic()
        (code, tree), = get_many(url, 1, concurrency=1)
        results.append((time.monotonic() - started, code, tree))
    return results


def _pods(kube: KubeSandbox) -> dict[str, dict[str, Any]]:
    listed = get_target(kube.configuration()).cluster.list_pods("default", "app")
    return {p["metadata"]["name"]: p for p in listed}


def test_kill_pods_deletes_and_names_the_ready_replacement(kube: KubeSandbox, cfg: dict[str, Any]) -> None:
    before = {name for name, pod in _pods(kube).items() if pod["metadata"]["labels"]["app"] == "catalog"}
    record = actions.kill_pods("catalog", count=1, restart_after_s=5, configuration=cfg)
    (killed,) = record["changes"]["killed_pods"]
    (replacement,) = record["changes"]["replacement_pods"]
    assert killed in before and replacement not in before
    assert record["changes"]["replacement_ready"] is True and record["changes"]["confirmed"] is True
    after = _pods(kube)
    assert killed not in after and after[replacement]["status"]["phase"] == "Running"
    assert record["fault_id"] in {f["fault_id"] for f in get_target(cfg).active_faults()}


def test_abort_on_one_edge_and_latency_on_one_service_match_the_local_target(kube: KubeSandbox,
                                                                            cfg: dict[str, Any]) -> None:
    url = kube.ingress_url + "/"
    watch = listener_watch(kube, "reviews")
    record = actions.inject_abort("reviews", http_status=503, percent=30, duration_s=60, source="frontend",
                                  configuration=cfg)
    assert record["changes"]["confirmed"] is True, record["changes"]
    assert watch.drained(10)
    results = get_many(url, 1000, concurrency=8)
    statuses = Counter(_hop(tree, "reviews")["status"] for _, tree in results)
    assert abs(statuses[503] / len(results) * 100 - 30) <= 5, statuses
    assert all(_hop(tree, "catalog")["status"] == 200 for _, tree in results), "other edges stay healthy"
    actions.heal(record["fault_id"], configuration=cfg)

    baseline = [t for t, _, _ in _timed(url, 20)]
    watch = listener_watch(kube, "reviews")
    record = actions.inject_latency("reviews", delay_ms=200, duration_s=30, configuration=cfg)
    # confirmed: the reviews sidecars' listeners changed (their stats, through pods/proxy); the connections
    # pooled before the change drain away within the sandbox's drain time, then every request takes the delay
    assert record["changes"]["confirmed"] is True, record["changes"]
    assert watch.drained(10)
    faulted = [t for t, _, _ in _timed(url, 20)]
    watch = listener_watch(kube, "reviews")
    (healed,) = actions.heal(record["fault_id"], configuration=cfg)["healed"]
    assert healed["reverted"]["data_plane"] is True, healed["reverted"]
    assert watch.drained(10)
    assert_delay_effect(baseline, faulted, [t for t, _, _ in _timed(url, 20)], 200)


def test_kubectl_shows_the_live_fault_and_heal_restores_every_patched_object(kube: KubeSandbox,
                                                                            cfg: dict[str, Any]) -> None:
    originals = {name: pod["metadata"] for name, pod in _pods(kube).items()}
    drop = actions.partition("frontend", "reviews", duration_s=30, direction="to", mode="drop", count=1,
                             configuration=cfg)
    reject = actions.partition("frontend", "catalog", duration_s=30, direction="both", mode="reject",
                               configuration=cfg)
    latency = actions.inject_latency("inventory", delay_ms=50, duration_s=30, source="catalog", configuration=cfg)
    shown = kube.kubectl("get", "pods,envoyfilters,networkpolicies", "-l", MANAGED_SELECTOR, "-o", "name")
    assert shown.returncode == 0, shown.stderr
    names = set(shown.stdout.split())
    assert f"envoyfilter.networking.istio.io/chaosmesh-qa-{latency['fault_id']}" in names
    assert f"networkpolicy.networking.k8s.io/chaosmesh-qa-{drop['fault_id']}-to" in names
    assert {f"envoyfilter.networking.istio.io/chaosmesh-qa-{reject['fault_id']}-{s}" for s in ("to", "from")} <= names
    assert drop["changes"]["confirmed"] is False and "CNI" in drop["changes"]["unconfirmed"]
    assert reject["changes"]["confirmed"] is True, reject["changes"]
    (marked,) = drop["changes"]["pods"]
    assert _pods(kube)[marked]["metadata"]["labels"] != originals[marked]["labels"]
    # the faults changed catalog's, frontend's and inventory's listeners: connections pooled before keep the old
    # filters until their next response or the end of the drain (2 s here, 45 s on Istio), so measure after it
    assert all(listener_watch(kube, service).drained(10) for service in ("catalog", "frontend", "inventory"))

    url = kube.ingress_url + "/"
    for elapsed, _, tree in _timed(url, 4):
        if _hop(tree, "reviews")["status"] >= 500:
            assert elapsed >= 0.9, "a blackholed replica makes the caller wait for its connect timeout"
        assert _hop(tree, "catalog")["status"] >= 500, "frontend may not reach catalog"

    healed = actions.heal(configuration=cfg)["healed"]
    assert {h["fault_id"] for h in healed} == {drop["fault_id"], reject["fault_id"], latency["fault_id"]}
    shown = kube.kubectl("get", "envoyfilters,networkpolicies", "-l", MANAGED_SELECTOR, "-o", "name")
    assert shown.returncode == 0 and shown.stdout.strip() == "", shown.stdout
    after = _pods(kube)
    for name, metadata in originals.items():
        if name in after:  # pods of other tests' kills come and go; every patched pod is back as it was
            assert (after[name]["metadata"].get("labels"), after[name]["metadata"].get("annotations")) == (
                metadata.get("labels"), metadata.get("annotations")), name
    # the heal changed those listeners again: a connection pooled before it may be closed under a request (Envoy's
    # drain closes idle ones at its end), so the requests after the heal are sent once they have drained
    assert all(listener_watch(kube, service).drained(10) for service in ("catalog", "frontend", "inventory"))
    assert all(_hop(tree, "catalog")["status"] == 200 for _, tree in get_many(url, 20))


def test_point18_a_fault_envoyfilter_with_one_field_wrong_is_recorded_unconfirmed(
        kube: KubeSandbox, cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18 acceptance: the emulation applies EnvoyFilters as istiod does, so a target that wrote its filter
    for the wrong context would change nothing; the target reads the callee sidecars' listeners back and records
    the fault ``confirmed: false`` with the reason, never as applied."""
    right = objects.envoy_filter

    def outbound(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body = right(*args, **kwargs)
        for patch in body["spec"]["configPatches"]:
            patch["match"]["context"] = "SIDECAR_OUTBOUND"
        return body

    monkeypatch.setattr(objects, "envoy_filter", outbound)
    record = actions.inject_abort("reviews", http_status=503, percent=100, duration_s=60, configuration=cfg)
    assert record["changes"]["confirmed"] is False
    assert "did not change within" in record["changes"]["unconfirmed"], record["changes"]
    stored = get_target(cfg).active_faults()[0]
    assert stored["fault_id"] == record["fault_id"] and stored["changes"]["confirmed"] is False
    assert {_hop(tree, "reviews")["status"] for _, tree in get_many(kube.ingress_url + "/", 40)} == {200}


def test_point1_a_drop_partition_is_refused_where_a_networkpolicy_already_selects_the_callee(
        kube: KubeSandbox, cfg: dict[str, Any]) -> None:
    """Issue 18 point 1: NetworkPolicies only allow; with the namespace's own "allow same namespace" policy in
    force, a drop partition's policy would deny nothing (and opened a default-deny namespace to everyone)."""
    allow_same_namespace = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-same-namespace", "namespace": "default"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}}
    target = get_target(cfg)
    target.cluster.create(allow_same_namespace)
    try:
        with pytest.raises(FaultRejected, match=r"^mode: 'drop' adds a NetworkPolicy, .*NetworkPolicy "
                                                r"allow-same-namespace in 'default' already selects the pods of "
                                                r"'reviews'.*use mode='reject'$"):
            actions.partition("frontend", "reviews", duration_s=30, direction="to", mode="drop", configuration=cfg)
        assert target.active_faults() == []
    finally:
        target.cluster.delete(objects.NETWORKPOLICY, "default", "allow-same-namespace")


def test_point13_two_runners_that_check_at_once_cannot_both_inject_clashing_faults(
        kube: KubeSandbox, cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18 point 13: the conflict check read the active leases, client-side: two runners checking at the same
    moment both saw nothing and both injected.  Each fault now claims what it holds with an object the API server
    creates for one runner only.  Here the second runner's check is made blind (it saw no lease, as in the race);
    the same fault is refused by the API server's 409, a clashing one of the same scope (all callers of catalog
    against frontend's) by the claims it finds after taking its own; nothing of the refused faults remains.  Then
    two runners race on one fault from two threads: exactly one injects it."""
    first, second = get_target(cfg), get_target(cfg)
    monkeypatch.setattr(second, "active_faults", list)
    held = first.inject_abort("catalog", 503, 50, "frontend", 30.0, "runner-a")
    for source in ("frontend", None):
        with pytest.raises(FaultRejected, match=rf"^conflicts with active fault {held['fault_id']} .*claimed by "
                                                r"another runner: ConfigMap/default/chaosmesh-qa-claim-"):
            second.inject_abort("catalog", 503, 50, source, 30.0, "runner-b")
    assert [f["fault_id"] for f in first.active_faults()] == [held["fault_id"]]
    filters = kube.kubectl("get", "envoyfilters", "-l", MANAGED_SELECTOR, "-o", "name").stdout.split()
    assert filters == [f"envoyfilter.networking.istio.io/chaosmesh-qa-{held['fault_id']}"], filters
    first.heal(held["fault_id"], "runner-a")

    runners = [get_target(cfg) for _ in range(2)]
    start = threading.Barrier(len(runners))
    outcomes: list[str] = []

    def race(index: int) -> None:
        monkeypatch.setattr(runners[index], "active_faults", list)
        start.wait()
        try:
            runners[index].inject_latency("inventory", 100, 100, None, 30.0, f"racer-{index}")
            outcomes.append("injected")
        except FaultRejected as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(runners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == 2 and outcomes.count("injected") == 1, outcomes
    first.heal(None, None)
    claims = kube.kubectl("get", "configmaps", "-l", objects.CLAIM_SCOPE, "-o", "name").stdout.split()
    assert claims == [], "every claim is released with its fault"


def test_point6_a_reject_partition_answers_503_which_5xx_slis_count(kube: KubeSandbox, cfg: dict[str, Any]) -> None:
    """Issue 18 point 6: ``reject`` answered 403 (an AuthorizationPolicy DENY), which Istio's default retryOn does
    not retry, outlier detection ignores and every ``response_code=~"5.."`` SLI does not count: error_ratio read 0
    during a reject partition.  The callee's sidecar now answers the cut-off caller 503, as a refused connection
    looks to the caller's policies; the client sees it and Istio's metrics count it as a 5xx of that edge."""
    errors = ('sum(istio_requests_total{reporter="destination", source_canonical_service="frontend", '
              'destination_canonical_service="reviews", response_code=~"5.."})')
    prometheus = cfg["chaosmesh_qa_prometheus_url"]
    before = _prometheus_value(prometheus, errors)
    watch = listener_watch(kube, "reviews")
    record = actions.partition("frontend", "reviews", duration_s=30, direction="to", mode="reject",
                               configuration=cfg)
    try:
        assert record["changes"]["confirmed"] is True, record["changes"]
        assert watch.drained(10)
        statuses = Counter(_hop(tree, "reviews")["status"] for _, tree in get_many(kube.ingress_url + "/", 20))
    finally:
        actions.heal(record["fault_id"], configuration=cfg)
    assert statuses == Counter({503: 20}), statuses
    deadline = time.monotonic() + 20  # a scrape and a rule evaluation after the last response
    while _prometheus_value(prometheus, errors) - before < 20:
        assert time.monotonic() < deadline, "the 503s of the reject partition are not in the 5xx series"
        time.sleep(0.5)


def _prometheus_value(url: str, query: str) -> float:
    result = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=10).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0
