"""The fault policy's rules on their own (chaosmesh_qa.targets.policy).

tests/targets/test_fault_contract.py holds both targets to them.
"""

from __future__ import annotations

import pytest

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets import policy

PODS = ["catalog-v1-a", "catalog-v1-b", "catalog-v2-c"]


def test_ids_name_their_kind_and_unknown_kinds_are_refused() -> None:
    ids = {policy.new_fault_id(kind) for kind in policy.FAULT_KINDS for _ in range(20)}
    assert len(ids) == 20 * len(policy.FAULT_KINDS) and all(policy.FAULT_ID.match(i) for i in ids)
    assert not policy.FAULT_ID.match("latency-1234567") and not policy.FAULT_ID.match("nap-12345678")
    with pytest.raises(FaultRejected, match=r"^kind: unknown fault kind 'nap' "):
        policy.check_kind("nap")


@pytest.mark.parametrize("duration", [0, -1, 3600.5, float("nan")])
def test_ttl_outside_the_bound_is_refused_naming_it(duration: float) -> None:
    with pytest.raises(FaultRejected, match=r"^duration_s: .* is outside \(0, 3600\] \(the sandbox's max TTL\)$"):
        policy.check_ttl(duration, 3600, "the sandbox's max TTL")
    assert policy.check_ttl(3600, 3600, "x") == 3600


@pytest.mark.parametrize(("count", "percent", "chosen"), [
    (1, None, PODS[:1]), (3, None, PODS), (None, 1, PODS[:1]), (None, 34, PODS[:2]), (None, 100, PODS),
    (None, None, PODS),
])
def test_count_or_percent_take_the_first_pods_rounding_up(count: int | None, percent: float | None,
                                                          chosen: list[str]) -> None:
    assert policy.select_pods(PODS, count, percent, "catalog") == chosen


def test_too_many_pods_is_refused_naming_the_count_version_and_held_pods() -> None:
    with pytest.raises(FaultRejected, match=r"^count: 4 exceeds the 3 running pod\(s\) of 'catalog'$"):
        policy.select_pods(PODS, 4, None, "catalog")
    with pytest.raises(FaultRejected, match=r"of 'catalog' version 'v1' that no other fault holds$"):
        policy.select_pods(PODS[:2], 3, None, "catalog", "v1", held_excluded=True)
    with pytest.raises(FaultRejected, match=r"^count: must select at least one pod$"):
        policy.select_pods(PODS, None, 0, "catalog")


def test_partition_edges_and_scope() -> None:
    assert policy.partition_edges("a", "b", "both") == [("a", "b"), ("b", "a")]
    assert policy.partition_edges("a", "b", "to") == [("a", "b")]
    assert policy.partition_edges("a", "b", "from") == [("b", "a")]
    with pytest.raises(FaultRejected, match=r"^b: cannot partition 'a' from itself$"):
        policy.partition_edges("a", "a", "to")
    with pytest.raises(FaultRejected, match=r"^direction: expected one of both, to, from, got 'up'$"):
        policy.partition_edges("a", "b", "up")
    policy.check_partition_scope("to", some_pods=True)
    policy.check_partition_scope("both", some_pods=False)
    with pytest.raises(FaultRejected, match=r"needs direction='to'$"):
        policy.check_partition_scope("from", some_pods=True)


HOST = "api.pay.example.com"  # a ServiceEntry's host: a partition may cut it off from every caller ("*")


@pytest.mark.parametrize(("kind", "target", "other_kind", "other_target", "clash"), [
    ("latency", {"service": "s", "source": None}, "latency", {"service": "s", "source": "x"}, True),
    ("latency", {"service": "s", "source": "x"}, "latency", {"service": "s", "source": None}, True),
    ("latency", {"service": "s", "source": "x"}, "latency", {"service": "s", "source": "x"}, True),
    ("latency", {"service": "s", "source": "x"}, "latency", {"service": "s", "source": "y"}, False),
    ("latency", {"service": "s", "source": None}, "latency", {"service": "t", "source": None}, False),
    ("latency", {"service": "s", "source": None}, "abort", {"service": "s", "source": None}, False),
    ("partition", {"a": "a", "b": "b", "direction": "to"}, "partition", {"a": "b", "b": "a", "direction": "from"},
     True),
    ("partition", {"a": "a", "b": "b", "direction": "to"}, "partition", {"a": "b", "b": "a", "direction": "to"},
     False),
    ("partition", {"a": "a", "b": "b", "direction": "both"}, "partition", {"a": "b", "b": "c", "direction": "both"},
     False),
    ("partition", {"a": "*", "b": HOST, "direction": "to"}, "partition", {"a": "c", "b": HOST, "direction": "to"},
     True),
    ("partition", {"a": "*", "b": HOST, "direction": "to"}, "partition", {"a": "*", "b": HOST, "direction": "to"},
     True),
    ("partition", {"a": "*", "b": HOST, "direction": "to"}, "partition",
     {"a": "c", "b": "other.example.com", "direction": "to"}, False),
    ("pod-kill", {"service": "s", "version": None}, "pod-kill", {"service": "s", "version": None}, False),
])
def test_which_faults_clash(kind: str, target: dict[str, str], other_kind: str, other_target: dict[str, str],
                            clash: bool) -> None:
    assert policy.clashes(kind, target, other_kind, other_target) is clash
    assert policy.clashes(other_kind, other_target, kind, target) is clash  # symmetric


def test_a_clash_is_refused_in_one_line_naming_the_active_fault() -> None:
    active = [{"fault_id": "partition-0123abcd", "kind": "partition", "target": {"a": "x", "b": "y",
                                                                                  "direction": "both"}}]
    with pytest.raises(FaultRejected) as raised:
        policy.check_conflicts("partition", {"a": "y", "b": "x", "direction": "to"}, active)
    assert str(raised.value) == "conflicts with active fault partition-0123abcd (partition on x <-> y); heal it first"


@pytest.mark.parametrize(("kind", "target", "other_kind", "other_target"), [
    ("latency", {"service": "s", "source": None}, "latency", {"service": "s", "source": "c"}),
    ("abort", {"service": "s", "source": "c"}, "abort", {"service": "s", "source": "c"}),
    ("partition", {"a": "a", "b": "b", "direction": "both"}, "partition", {"a": "b", "b": "a", "direction": "to"}),
    ("partition", {"a": "*", "b": HOST, "direction": "to"}, "partition", {"a": "c", "b": HOST, "direction": "to"}),
])
def test_faults_that_clash_share_a_claim_key_or_a_scope(kind: str, target: dict[str, str], other_kind: str,
                                                        other_target: dict[str, str]) -> None:
    """What a runner can check server-side (targets.kubernetes.claims): clashing faults meet on one key (the API
    server refuses the second) or in one scope (the second finds the first's claim and withdraws)."""
    assert policy.clashes(kind, target, other_kind, other_target)
    mine, theirs = policy.claim_keys(kind, target), policy.claim_keys(other_kind, other_target)
    assert {k for k, _ in mine} & {k for k, _ in theirs} or {s for _, s in mine} & {s for _, s in theirs}


def test_faults_that_compose_claim_nothing_in_common_and_pod_faults_claim_nothing() -> None:
    assert policy.claim_keys("latency", {"service": "s", "source": "c"}) != policy.claim_keys(
        "abort", {"service": "s", "source": "c"})
    assert policy.claim_keys("partition", {"a": "a", "b": "b", "direction": "to"}) == [("partition/a->b",
                                                                                        "partition/->b")]
    assert policy.claim_keys("pod-kill", {"service": "s", "version": None}) == []


# ---- zones (issue 20)

LOCALITIES = {"catalog-a": "r1/a", "catalog-b": "r1/b", "catalog-c": "r2/a/s1", "catalog-x": ""}


def test_a_zone_is_the_zone_label_or_region_slash_zone() -> None:
    assert policy.zone_matches("r1/a", "a") and policy.zone_matches("r2/a/s1", "a")
    assert policy.zone_matches("r1/a", "r1/a") and not policy.zone_matches("r2/a/s1", "r1/a")
    assert not policy.zone_matches("r1", "a") and not policy.zone_matches("", "a")
    assert not policy.zone_matches("/a", "r1/a") and policy.zone_matches("/a", "a")  # a zone without a region


def test_in_zone_takes_every_pod_there_in_order() -> None:
    pods = sorted(LOCALITIES)
    assert policy.in_zone(pods, "a", LOCALITIES.__getitem__, "catalog", LOCALITIES.values()) == ["catalog-a",
                                                                                                 "catalog-c"]
    assert policy.in_zone(pods, "r1/a", LOCALITIES.__getitem__, "catalog", LOCALITIES.values()) == ["catalog-a"]


def test_unknown_zone_and_a_service_without_a_pod_there_are_one_line_each() -> None:
    with pytest.raises(FaultRejected) as unknown:
        policy.in_zone(["catalog-a"], "c", LOCALITIES.__getitem__, "catalog", LOCALITIES.values())
    assert str(unknown.value) == "zone: unknown zone 'c': no pod of the mesh is in it (zones: a, b)"
    with pytest.raises(FaultRejected) as absent:
        policy.in_zone(["catalog-a"], "b", LOCALITIES.__getitem__, "catalog", LOCALITIES.values())
    assert str(absent.value) == "zone: service 'catalog' has no running pod in zone 'b' (its pods' zones: a)"


def test_a_zone_partition_spares_the_callers_in_the_zone() -> None:
    assert policy.spares("r1/a", "a") and not policy.spares("r1/b", "a") and not policy.spares("", "a")
    assert not policy.spares("r1/a", None)  # no zone: a partition spares nobody


def test_a_zones_latency_clashes_with_any_other_latency_on_the_service_and_is_named_by_its_zone() -> None:
    """One delay per service at a time (as without zones): a zone-a and a zone-b latency on one service clash,
    unless they name different sources; the refusal names the zone."""
    active = [{"fault_id": "latency-0000abcd", "kind": "latency", "target": {"service": "s", "source": None,
                                                                             "zone": "b"}}]
    with pytest.raises(FaultRejected) as raised:
        policy.check_conflicts("latency", {"service": "s", "source": None, "zone": "a"}, active)
    assert str(raised.value) == ("conflicts with active fault latency-0000abcd (latency on s in zone b); "
                                 "heal it first")
    policy.check_conflicts("abort", {"service": "s", "source": None, "zone": "b"}, active)  # kinds compose
