"""The Eviction API's PodDisruptionBudget check (emulation.kubeapi.eviction), as the API server and the disruption
controller decide it: pure, on pod and budget objects as the API serves them."""

from __future__ import annotations

from typing import Any

import pytest

from chaosmesh_qa.emulation.kubeapi.eviction import MESSAGE, desired_healthy, refusal
from chaosmesh_qa.emulation.kubeapi.status import ApiError


def pod(name: str, app: str, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app": app}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-06T10:00:00Z"
    return {"metadata": metadata, "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}


def budget(name: str, selector: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {**spec, **({"selector": selector} if selector is not None else {})}}


CATALOG = [pod("catalog-1", "catalog"), pod("catalog-2", "catalog"), pod("inventory-0", "inventory")]


@pytest.mark.parametrize(("spec", "expected", "needed"), [
    ({"minAvailable": 2}, 3, 2), ({"minAvailable": "50%"}, 3, 2), ({"maxUnavailable": 1}, 3, 2),
    ({"maxUnavailable": "34%"}, 3, 1), ({}, 3, 3), ({"maxUnavailable": 5}, 3, 0)])
def test_the_healthy_pods_a_budget_needs_round_percentages_up(spec: dict[str, Any], expected: int,
                                                              needed: int) -> None:
    assert desired_healthy(spec, expected) == needed


def test_a_budget_with_a_disruption_left_lets_the_eviction_through_and_one_without_answers_429() -> None:
    one_at_a_time = budget("catalog", {"matchLabels": {"app": "catalog"}}, maxUnavailable=1)
    refusal(CATALOG[0], CATALOG, [one_at_a_time])  # two healthy, one needed: allowed
    starting = [CATALOG[0], pod("catalog-3", "catalog", ready=False), *CATALOG[2:]]  # the replacement starts
    with pytest.raises(ApiError) as refused:
        refusal(starting[0], starting, [one_at_a_time])
    assert refused.value.code == 429 and refused.value.message == MESSAGE
    assert refused.value.details["causes"] == [{"reason": "DisruptionBudget", "message": "The disruption budget "
                                                "catalog needs 1 healthy pods and has 1 currently"}]


def test_pods_no_budget_selects_are_evicted_and_a_pod_under_two_budgets_is_an_error() -> None:
    refusal(CATALOG[2], CATALOG, [budget("catalog", {"matchLabels": {"app": "catalog"}}, minAvailable=2)])
    refusal(CATALOG[0], CATALOG, [budget("none", None, minAvailable=3)])  # policy/v1: no selector, no pod
    everything = budget("all", {}, minAvailable=3)  # policy/v1: an empty selector selects every pod
    with pytest.raises(ApiError) as refused:
        refusal(CATALOG[0], CATALOG, [everything])
    assert refused.value.code == 429
    with pytest.raises(ApiError) as twice:
        refusal(CATALOG[0], CATALOG, [everything, budget("catalog", {"matchLabels": {"app": "catalog"}})])
    assert twice.value.code == 500 and "more than one PodDisruptionBudget" in twice.value.message


def test_a_pod_being_deleted_is_not_expected() -> None:
    going = [CATALOG[0], pod("catalog-2", "catalog", deleting=True)]
    with pytest.raises(ApiError):  # one pod expected, one needed: none to spare
        refusal(going[0], going, [budget("catalog", {"matchLabels": {"app": "catalog"}}, minAvailable=1)])
