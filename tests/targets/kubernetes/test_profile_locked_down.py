"""The Kubernetes target on the "locked-down" cluster profile (tests/profiles/locked-down).

The default mesh's services as many platform teams run a namespace: NetworkPolicies that deny all ingress and then
allow the namespace's own pods and the ingress gateway; catalog and reviews running under one service account
(``backend``); inventory a StatefulSet (pods ``inventory-0``/``-1`` and a headless governing Service).  The
emulation enforces the team's NetworkPolicies with the target's (a CNI's union of allow rules), names StatefulSet
pods by ordinal and gives a replacement its predecessor's name with a new uid, as the StatefulSet controller does.

Issue 18: point 1 (a drop partition next to the namespace's own policies), point 3 (a per-caller fault where
callers share an identity), point 10 (a StatefulSet's replacement keeps the pod's name), and the acceptance point
"a per-edge abort on the default-deny and shared-service-account profiles hits exactly the declared edge".
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets.factory import get_target
from chaosmesh_qa.targets.kubernetes.objects import MANAGED_SELECTOR
from tests.support.client import get_many, hops
from tests.support.kube import KubeSandbox, listener_watch, running, until_sidecars_settle

pytestmark = pytest.mark.processes

PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "locked-down"
OWNER = "test-locked-down"
GATEWAY = "istio-ingressgateway"  # the ingress gateway's canonical service: the caller of frontend
# istio_requests_total's 5xx as an error SLI reads them (response_code=~"5.."), per reporter: the caller's sidecar
# counts each request once with its exact code, the callee's once more (the emulation knows a sidecar-answered
# code by its class only: "5xx", flag FI; docs/explanation/kube-api-emulation.md)
ERRORS_BY_EDGE = ('sum by (reporter, source_canonical_service, destination_canonical_service) '
                  '(istio_requests_total{response_code=~"5.."})')


@pytest.fixture(scope="module")
def locked_down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    with running(tmp_path_factory.mktemp("locked-down") / "state", "--mesh", str(PROFILE)) as box:
        yield box


def _managed(box: KubeSandbox) -> list[str]:
    shown = box.kubectl("get", "envoyfilters,networkpolicies,configmaps", "-l", MANAGED_SELECTOR, "-o", "name")
    return [n for n in shown.stdout.split() if "lease" not in n]


def _errors_by_edge(prometheus: str) -> Counter[tuple[str, str, str]]:
    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": ERRORS_BY_EDGE}, timeout=10).json()
    found: Counter[tuple[str, str, str]] = Counter()
    for sample in result["data"]["result"]:
        metric = sample["metric"]
        found[(metric["reporter"], metric["source_canonical_service"], metric["destination_canonical_service"])] = (
            int(float(sample["value"][1])))
    return found


def _failed_hops(hop: dict[str, Any], caller: str) -> Iterator[tuple[str, str]]:
    """(caller, callee) of every hop of a demo-app call tree that answered 5xx."""
    if hop["status"] >= 500:
        yield caller, hop["service"]
    for upstream in hop.get("upstreams", []):
        yield from _failed_hops(upstream, hop["service"])


def test_point1_the_namespaces_default_deny_admits_the_mesh_and_a_drop_partition_is_refused(
        locked_down: KubeSandbox) -> None:
    """The team's three NetworkPolicies (seeded from the profile, enforced as a CNI would) admit every hop the
    mesh makes: the gateway reaches frontend from istio-system, the rest stay within the namespace.  A ``drop``
    partition would add one more allow-only policy next to them, changing nothing: refused before anything is
    created, naming the policies."""
    results = get_many(locked_down.ingress_url + "/", 20)
    assert all(code == 200 and all(h["status"] == 200 for h in hops(tree)) for code, tree in results), results[:2]
    target = get_target(locked_down.configuration())
    with pytest.raises(FaultRejected, match="default-deny-ingress"):
        target.partition("frontend", "catalog", "to", "drop", 30.0, OWNER)
    assert _managed(locked_down) == []


def test_point3_a_per_edge_abort_hits_exactly_its_edge_and_a_caller_sharing_its_identity_is_refused(
        locked_down: KubeSandbox) -> None:
    """frontend runs as its own service account: an abort of 30 % of frontend -> reviews (reviews shares
    ``backend`` with catalog, which does not matter: the callee is chosen by its pods' labels) hits that edge
    only.  Tolerances are the local fault tests' (tests/actions/test_faults.py: the share within 5 points of
    the percentage) and Prometheus must count exactly the 503s the client saw on that edge and none elsewhere,
    as the caller's sidecar reports them and as the callee's does (reviews has no retries: one request each).
    catalog shares its identity with reviews, so an abort of catalog -> inventory alone cannot be told apart
    from reviews -> inventory by the callee: refused in one line naming the service account, nothing created."""
    cfg = locked_down.configuration()
    target = get_target(cfg)
    prometheus = cfg["chaosmesh_qa_prometheus_url"]
    with pytest.raises(FaultRejected, match=r"service account\(s\) backend.*reviews"):
        target.inject_abort("inventory", 503, 100, "catalog", 30.0, OWNER)
    assert _managed(locked_down) == []

    watch = listener_watch(locked_down, "reviews")
    record = target.inject_abort("reviews", 503, 30, "frontend", 60.0, OWNER)
    try:
        assert record["changes"]["confirmed"] is True, record["changes"]
        until_sidecars_settle(watch)
        before = _errors_by_edge(prometheus)
        results = get_many(locked_down.ingress_url + "/", 1000)
    finally:
        target.heal(None, OWNER)
    seen: Counter[tuple[str, str]] = Counter()
    for _, tree in results:
        seen.update(_failed_hops(tree, GATEWAY))
    assert abs(seen[("frontend", "reviews")] / len(results) * 100 - 30) <= 5, seen
    # frontend answers 503 when a call it makes fails: the gateway's hop carries the same failures, nothing else
    assert seen == {("frontend", "reviews"): seen[("frontend", "reviews")],
                    (GATEWAY, "frontend"): seen[("frontend", "reviews")]}, f"other edges stay healthy: {seen}"
    expected = Counter({(reporter, *edge): n for edge, n in seen.items() for reporter in ("source", "destination")})
    deadline = time.monotonic() + 20  # a scrape (1 s) and the emulation's rule evaluation after the last response
    while (counted := _errors_by_edge(prometheus) - before) != expected:
        assert time.monotonic() < deadline, f"Prometheus counts {dict(counted)}, the client saw {dict(seen)}"
        time.sleep(0.5)


def test_point10_a_statefulset_pods_replacement_keeps_its_name_and_is_recorded(locked_down: KubeSandbox) -> None:
    """The StatefulSet controller replaces a deleted pod under the same name (a new uid): the target follows
    replacements by uid, so it names the replacement and records it ready (it waited 60 s for a new name and
    recorded none)."""
    def pods() -> dict[str, dict[str, Any]]:
        listed = json.loads(locked_down.kubectl("get", "pods", "-l", "app=inventory", "-o", "json").stdout)["items"]
        return {p["metadata"]["name"]: p for p in listed}

    before = pods()
    assert sorted(before) == ["inventory-0", "inventory-1"]
    owner = before["inventory-0"]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("StatefulSet", "inventory")
    assert before["inventory-0"]["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "inventory-0"
    target = get_target(locked_down.configuration())
    started = time.monotonic()
    record = target.kill_pods("inventory", count=1, percent=None, version=None, restart_after_s=5.0, owner=OWNER)
    try:
        (killed,) = record["changes"]["killed_pods"]
        assert record["changes"]["replacement_pods"] == [killed]
        assert record["changes"]["replacement_ready"] is True
        assert time.monotonic() - started < 30, "found by its uid, not awaited under a new name until the timeout"
        after = pods()
        assert after[killed]["metadata"]["uid"] != before[killed]["metadata"]["uid"]
        assert after[killed]["status"]["phase"] == "Running"
    finally:
        target.heal(None, OWNER)


def test_point7_the_declared_mesh_reads_the_external_dependency_and_the_statefulset_and_mtls_is_judged(
        locked_down: KubeSandbox) -> None:
    """Issue 18 point 7 on this profile: a ServiceEntry for a payment provider with its DestinationRule (TLS
    origination, ``tls.mode: SIMPLE``) and VirtualService, as most production meshes have, made the declared
    mesh fail ("unknown kind", "Input should be 'ISTIO_MUTUAL' or 'DISABLE'"), and with it every mesh QA verdict.
    The emulation serves them, the target reads them, the model keeps the external host out of the mesh's hops;
    inventory is declared as its StatefulSet (its pods' controller labels left out of the template); every pod
    of the backends refuses plaintext (STRICT)."""
    target = get_target(locked_down.configuration())
    model = target.declared_mesh()
    assert list(model.external_hosts) == ["api.payments.example.com"]
    (inventory,) = model.services["inventory"].versions
    assert (inventory.workload, inventory.replicas) == ("inventory", 2)
    assert not {"statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index"} & set(inventory.labels)
    for service in ("catalog", "inventory", "reviews"):
        pods = target.check_plaintext_refused(service)
        assert pods and all(p["refused"] for p in pods), pods


def test_point10_an_eviction_obeys_the_pod_disruption_budgets(locked_down: KubeSandbox) -> None:
    """Issue 18 point 10, "offer eviction": a pod delete with grace period 0 is a crash, not the disruption a
    drain or a rollout makes.  ``mode="evict"`` goes through the Eviction API: inventory's budget (minAvailable
    2 of 2) refuses it in one line naming the budget, nothing is deleted and no fault stays; catalog's
    (maxUnavailable 1) lets one pod go, and its replacement is named as for a crash."""
    target = get_target(locked_down.configuration())
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in json.loads(
        locked_down.kubectl("get", "pods", "-o", "json").stdout)["items"]}
    with pytest.raises(FaultRejected, match=r"^kubernetes: create pods/eviction in namespace 'default' failed "
                                            r"\(429\): Cannot evict pod as it would violate the pod's disruption "
                                            r"budget\. \(The disruption budget inventory needs 2 healthy pods and "
                                            r"has 2 currently\)$"):
        target.kill_pods("inventory", count=1, percent=None, version=None, restart_after_s=2.0, owner=OWNER,
                         mode="evict")
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in json.loads(
        locked_down.kubectl("get", "pods", "-o", "json").stdout)["items"]}
    assert after == before and target.active_faults() == []
    record = target.kill_pods("catalog", count=1, percent=None, version=None, restart_after_s=2.0, owner=OWNER,
                              mode="evict")
    try:
        assert record["parameters"]["mode"] == record["changes"]["mode"] == "evict"
        (evicted,) = record["changes"]["killed_pods"]
        (replacement,) = record["changes"]["replacement_pods"]
        assert evicted in before and replacement not in before and record["changes"]["replacement_ready"] is True
    finally:
        target.heal(None, OWNER)
