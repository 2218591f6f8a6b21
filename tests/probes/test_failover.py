"""The failover verdict's rules on their own (chaosmesh_qa.probes.failover): expectations from the shipped two-zone
mesh and its twin, counter samples to served requests, and the phases' judgement.

The verdict on real runs: experiments/zone-failover.json in tests/experiments (local) and
tests/targets/kubernetes/test_experiments.py (the Kubernetes target against the emulation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.probes import failover

MESHES = Path(__file__).resolve().parents[2] / "experiments" / "meshes"
CATALOG = [("catalog-a", "r1/a", {"app": "catalog", "version": "v1"}),
           ("catalog-b", "r1/b", {"app": "catalog", "version": "v1"})]
T0 = 1000.0
LAG = 3.0


def _fault(kind: str = "partition", **target: Any) -> dict[str, Any]:
    return {"fault_id": f"{kind}-0000abcd", "kind": kind, "target": {"zone": "a", **target}, "started_at": T0,
            "expires_at": T0 + 4, "ended_at": T0 + 4, "changes": {}}


def test_home_is_the_callers_zone_and_next_the_other_one() -> None:
    model = load_mesh(MESHES / "two-zones").model
    expected = failover.expect(model, "frontend", "catalog", {"frontend-1": "r1/a"}, CATALOG, _fault(isolate=True))
    assert (expected.home, expected.next, expected.problems) == ({"r1/a"}, {"r1/b"}, ())
    # a zone partition that spares the caller (it is in the zone) changes nothing for it
    spared = failover.expect(model, "frontend", "catalog", {"frontend-1": "r1/a"}, CATALOG, _fault())
    assert spared.next == {"r1/a"}


def test_without_outlier_detection_the_rules_keep_nothing_local() -> None:
    model = load_mesh(MESHES / "two-zones-no-outlier-detection").model
    expected = failover.expect(model, "frontend", "catalog", {"frontend-1": "r1/a"}, CATALOG, _fault(isolate=True))
    assert expected.home == {"r1/a", "r1/b"}  # Istio's rule: no locality preference at all
    assert expected.problems and "no outlierDetection" in expected.problems[0]


def test_a_caller_in_two_zones_is_refused_in_one_line() -> None:
    model = load_mesh(MESHES / "two-zones").model
    with pytest.raises(InvalidArgument, match=r"^caller: 'frontend' has pods in 2 localities \(r1/a, r1/b\)"):
        failover.expect(model, "frontend", "catalog", {"f1": "r1/a", "f2": "r1/b"}, CATALOG, _fault())


def test_served_counts_increments_new_series_from_zero_and_resets() -> None:
    series = [{"metric": {"pod": "catalog-a"}, "values": [[990, "100"], [991, "110"], [992, "3"]]},  # a reset
              {"metric": {"pod": "catalog-b"}, "values": [[1001, "7"], [1002, "9"]]}]  # born in the window
    got = failover.served(series, {"catalog-a": "r1/a", "catalog-b": "r1/b"}, since=990)
    assert got == [(991.0, "catalog-a", "r1/a", 10.0), (992.0, "catalog-a", "r1/a", 3.0),
                   (1001.0, "catalog-b", "r1/b", 7.0), (1002.0, "catalog-b", "r1/b", 2.0)]


def _samples(spec: list[tuple[float, float, str, int]]) -> list[tuple[float, str, str, float]]:
    """(from, to, locality, requests per 1-s sample) -> one sample per second."""
    out = []
    for low, high, where, per in spec:
        at = low
        while at < high:
            out.append((at, f"catalog-{where[-1]}", where, float(per)))
            at += 1
    return sorted(out)


EXPECTED = failover.Expectation("r1/a", frozenset({"r1/a"}), frozenset({"r1/b"}), ())


def _judge(samples: list[tuple[float, str, str, float]], outage_s: float = 4) -> dict[str, Any]:
    return failover.judge(samples, EXPECTED, _fault(isolate=True), (T0, T0 + outage_s, T0 + 15), (1.0, 5.0), LAG, 10,
                          0.95, 20)


def test_traffic_that_moves_and_comes_back_passes() -> None:
    # zone a until the fault; zone a's samples go on for the lag (requests served before the start); zone b from
    # +0.5 s; zone a again from the end
    result = _judge(_samples([(990.5, T0 + 2.5, "r1/a", 100), (T0 + 0.5, T0 + 4.5, "r1/b", 100),
                              (T0 + 4.5, T0 + 15, "r1/a", 100)]))
    assert result["status"] == "pass", result["summary"]
    assert result["phases"]["during"]["by_locality"] == {"r1/b": 300}  # zone a's late samples: not evidence


def test_traffic_that_stays_in_the_dead_zone_is_violated_with_its_shares() -> None:
    """Zone a's requests are evidence only a lag into the phase (before, they may be the budget's): an outage
    longer than budget + lag shows them."""
    result = _judge(_samples([(990.5, T0 + 15, "r1/a", 100)]), outage_s=7)
    assert result["status"] == "violated"
    assert "during 0.0% in r1/b (r1/a 300)" in result["summary"], result["summary"]
    # shorter than budget + lag, the same traffic cannot be told from a failover that took the whole budget
    assert _judge(_samples([(990.5, T0 + 15, "r1/a", 100)]))["status"] == "not-enough-traffic"


def test_traffic_that_never_comes_back_is_violated() -> None:
    result = _judge(_samples([(990.5, T0 + 0.5, "r1/a", 100), (T0 + 0.5, T0 + 15, "r1/b", 100)]))
    assert result["status"] == "violated" and "after 0.0% in r1/a" in result["summary"]


def test_too_few_requests_is_not_a_pass() -> None:
    result = _judge(_samples([(990.5, T0 + 0.5, "r1/a", 1), (T0 + 0.5, T0 + 4.5, "r1/b", 1),
                              (T0 + 4.5, T0 + 15, "r1/a", 1)]))
    assert result["status"] == "not-enough-traffic"


def test_a_replacement_ends_a_pod_kills_outage() -> None:
    kill = {**_fault("pod-kill", service="catalog"), "expires_at": T0 + 8, "ended_at": T0 + 8,
            "changes": {"killed_pods": ["catalog-a"]}}
    samples = [(T0 + 5.0, "catalog-a2", "r1/a", 10.0), (T0 + 6.0, "catalog-a", "r1/a", 10.0)]
    assert failover.outage_ended(samples, kill) == T0 + 5.0  # the killed pod's own (late) sample is not it
    assert failover.outage_ended(samples, _fault()) == T0 + 4  # a partition ends with its lease
