"""Istio's locality load balancing measured on real Envoys (issue 20): shares of real requests per locality.

Two sandboxes, brought up with ``chaosmesh-qa up --mesh``: tests/profiles/zones (the default mesh with every
service spread over zones a and b of region r1, the frontend in zone a, outlier detection on catalog) and
tests/profiles/locality-rules (a zone-a frontend calling one service per rule: ``distribute``, ``failover``,
``failoverPriority``).  600 requests through the ingress each; the demo app's response tree names the pod that
served every hop, and ``chaosmesh-qa status`` each pod's locality.

Tolerances: priorities are exact in Envoy (a level whose endpoints are all healthy takes
``min(100%, 1.4 x 100%)`` of the load), so "stays in zone a" allows only the odd request a retry after a failure
could move (>= 99%); ``distribute`` weights are followed by Envoy's weighted (EDF) locality scheduler, which is
deterministic for the one-worker sidecars (measured: exactly 480 of 600), so +-4 points only absorbs where the
schedule starts and a stray retry (it is also about 3 standard deviations of a random 80/20 split over 600).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import get_many, hops
from tests.support.sandbox import Served, serve

pytestmark = pytest.mark.processes

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
REQUESTS = 600  # >= 500: a share within 1 point is 6 requests


def _measure(box: Served) -> Counter[tuple[str, str]]:
    """Per (service, serving pod's locality) and (service, 'tier=' its tier label), the hops of ``REQUESTS``
    ingress requests."""
    pods = {pod["name"]: pod for pod in box.status()["pods"]}
    results = get_many(box.url, REQUESTS)
    assert [status for status, _ in results] == [200] * REQUESTS
    counted: Counter[tuple[str, str]] = Counter()
    for _, tree in results:
        for hop in hops(tree):
            pod = pods[hop["pod"]]
            counted[hop["service"], pod.get("locality", "")] += 1
            counted[hop["service"], f"tier={pod['labels'].get('tier', '')}"] += 1
    return counted


@pytest.fixture(scope="module")
def zones(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Counter[tuple[str, str]]]]:
    for box in serve(PROFILES / "zones", tmp_path_factory.mktemp("zones") / "state"):
        yield box, _measure(box)


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Counter[tuple[str, str]]]:
    for box in serve(PROFILES / "locality-rules", tmp_path_factory.mktemp("locality-rules") / "state"):
        yield _measure(box)


def test_every_pod_is_in_its_declared_zone(zones: tuple[Served, Counter[tuple[str, str]]]) -> None:
    placed = Counter((pod["service"], pod.get("locality")) for pod in zones[0].status()["pods"])
    assert placed[("frontend", "r1/a")] == 1
    assert placed[("catalog", "r1/a")] == placed[("catalog", "r1/b")] == 1


def test_the_zone_a_caller_stays_in_zone_a_while_it_is_healthy(zones: tuple[Served, Counter[tuple[str, str]]]) -> None:
    served = zones[1]
    assert served["catalog", "r1/a"] + served["catalog", "r1/b"] == REQUESTS
    assert served["catalog", "r1/a"] >= 0.99 * REQUESTS, served
    # inventory has no outlier detection: Istio gives no locality preference, catalog's zone-a pod spreads evenly
    assert 0.35 * REQUESTS <= served["inventory", "r1/a"] <= 0.65 * REQUESTS, served


def test_distribute_weights_hold(rules: Counter[tuple[str, str]]) -> None:
    assert rules["spread", "r1/a"] + rules["spread", "r1/b"] == REQUESTS
    assert abs(rules["spread", "r1/a"] / REQUESTS - 0.80) <= 0.04, rules


def test_failover_goes_to_the_declared_region(rules: Counter[tuple[str, str]]) -> None:
    assert rules["remote", "r2/a"] >= 0.99 * REQUESTS, rules  # r1 -> r2 over r3 (without the rule: half each)


def test_failover_priority_prefers_the_callers_label(rules: Counter[tuple[str, str]]) -> None:
    assert rules["tiered", "tier=gold"] >= 0.99 * REQUESTS, rules  # the frontend's tier, though silver is in its zone
