"""Faults toward a ServiceEntry's host on the kubernetes target, against the emulation: at the callers' sidecars.

One sandbox with the Kubernetes API emulation on experiments/meshes/external-payments (checkout calls the payment
provider, a ServiceEntry host).  The target writes EnvoyFilters on SIDECAR_OUTBOUND; the emulation applies them to
the callers' outbound listeners as istiod would, and every effect is measured with requests through the ingress.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets import get_target
from tests.support.client import after_pooled_connections
from tests.support.kube import KubeSandbox, running

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
PAYMENTS = "api.payments.example.com"
OWNER = "test-kube-external-hosts"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    state = tmp_path_factory.mktemp("kube-external") / "state"
    with running(state, "--mesh", str(ROOT / "experiments" / "meshes" / "external-payments")) as sandbox:
        try:
            yield sandbox
        finally:
            get_target(sandbox.configuration()).heal(None, None)


def payments_hop(tree: dict[str, Any]) -> dict[str, Any]:
    return next(h for h in tree["upstreams"][0]["upstreams"] if h["service"] == PAYMENTS)


def test_a_delay_from_one_caller_is_an_outbound_envoyfilter_its_route_timeout_does_not_see(box: KubeSandbox) -> None:
    target = get_target(box.configuration())
    url = box.status()["ingress_url"] + "/"
    record = target.inject_latency(PAYMENTS, 700, 100, "checkout", 60, OWNER)
    try:
        changes = record["changes"]
        assert changes["applied_at"] == "caller outbound" and changes["service_entry"] == "default/payments"
        assert changes["confirmed"] and "caller-side" in changes["placement"], changes
        (found,) = box.managed_envoy_filters()
        assert found["spec"]["workloadSelector"]["labels"]["app"] == "checkout"
        assert found["spec"]["configPatches"][0]["match"]["context"] == "SIDECAR_OUTBOUND"
        answers = after_pooled_connections(url, lambda code, tree, elapsed: elapsed >= 0.7)
    finally:
        target.heal(None, OWNER)
    # checkout's 500 ms route timeout toward the provider starts after the fault filter's 700 ms: served, late
    for code, tree, elapsed in answers:
        assert code == 200 and payments_hop(tree)["status"] == 200 and elapsed >= 0.7, (elapsed, tree)
    assert all(code == 200 for code, _, _ in after_pooled_connections(url, lambda code, tree, elapsed: code == 200))
    assert box.managed_envoy_filters() == []


def test_a_reject_partition_toward_the_provider_is_a_503_at_the_caller_and_drop_is_refused(box: KubeSandbox) -> None:
    target = get_target(box.configuration())
    url = box.status()["ingress_url"] + "/"
    with pytest.raises(FaultRejected, match=r"^mode: a partition toward a ServiceEntry's host takes direction 'to' "):
        target.partition("checkout", PAYMENTS, "to", "drop", 60, OWNER)
    record = target.partition("checkout", PAYMENTS, "to", "reject", 60, OWNER)
    try:
        assert record["target"] == {"a": "checkout", "b": PAYMENTS, "direction": "to"}
        assert record["changes"]["confirmed"], record["changes"]
        answers = after_pooled_connections(url, lambda code, tree, elapsed: code == 502)
    finally:
        target.heal(None, OWNER)
    for code, tree, _ in answers:
        assert code == 502 and payments_hop(tree)["status"] == 503, tree
    assert all(code == 200 for code, _, _ in after_pooled_connections(url, lambda code, tree, elapsed: code == 200))


def test_a_partition_toward_the_provider_from_every_caller_is_one_filter_on_every_sidecar(box: KubeSandbox) -> None:
    """``a='*'``: the provider down for the whole mesh; the abort filter selects no workload (every sidecar of the
    namespace), as a VirtualService fault for every caller does."""
    target = get_target(box.configuration())
    url = box.status()["ingress_url"] + "/"
    record = target.partition("*", PAYMENTS, "to", "reject", 60, OWNER)
    try:
        assert record["target"] == {"a": "*", "b": PAYMENTS, "direction": "to"}
        assert record["changes"]["confirmed"], record["changes"]
        with pytest.raises(FaultRejected, match=r"^conflicts with active fault partition-[0-9a-f]{8} \(partition on "
                                                r"every caller -> api\.payments\.example\.com\); heal it first$"):
            target.partition("checkout", PAYMENTS, "to", "reject", 60, OWNER)
        (found,) = box.managed_envoy_filters()
        assert "workloadSelector" not in found["spec"]
        answers = after_pooled_connections(url, lambda code, tree, elapsed: code == 502)
    finally:
        target.heal(None, OWNER)
    for code, tree, _ in answers:
        assert code == 502 and payments_hop(tree)["status"] == 503, tree
    assert all(code == 200 for code, _, _ in after_pooled_connections(url, lambda code, tree, elapsed: code == 200))
