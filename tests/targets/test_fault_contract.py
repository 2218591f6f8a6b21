"""The fault policy's contract (chaosmesh_qa.targets.policy), held by both targets alike.

Every test runs once per target over one sandbox: the local target talks to its supervisor, the Kubernetes
target to the sandbox's Kubernetes API emulation (``up --kube-api``).  What a fault record holds, the ids, the
TTL bound, which pods ``count``/``percent`` take, the partition rules, the conflict rule and its message, and
an idempotent heal are the same on both; where a target must differ (its TTL bound; ``fail_pods`` and
``kill_app``, which the Kubernetes target refuses) the test says so.  These tests replace the per-target
copies that tests/actions and tests/targets/kubernetes used to hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets import get_target
from chaosmesh_qa.targets.base import MeshTarget
from chaosmesh_qa.targets.local.target import LocalTarget
from chaosmesh_qa.targets.policy import FAULT_ID, REQUIRED_FIELDS
from tests.support.kube import KubeSandbox

pytestmark = pytest.mark.processes
OWNER = "fault-contract"


@pytest.fixture(params=["local", "kubernetes"])
def target(request: pytest.FixtureRequest, kube: KubeSandbox) -> Iterator[MeshTarget]:
    chosen: MeshTarget = LocalTarget(kube.state_dir) if request.param == "local" else get_target(kube.configuration())
    yield chosen
    chosen.heal(None, OWNER)  # leave no fault behind, whatever the test did
    assert [f["fault_id"] for f in chosen.active_faults() if f["owner"] == OWNER] == []


def _running(target: MeshTarget, service: str) -> list[str]:
    return sorted(p["name"] for p in target.describe()["pods"] if p["service"] == service
                  and p.get("ready", True) and p.get("phase", p.get("state", "Running")) in ("Running", "ready"))


def _rejected(call: Any) -> str:
    with pytest.raises(FaultRejected) as raised:
        call()
    text = str(raised.value)
    assert "\n" not in text
    return text


def test_every_fault_record_follows_one_schema_and_heal_ends_it(target: MeshTarget) -> None:
    records = [
        (target.inject_latency("reviews", 50, 100, "frontend", 30, OWNER),
         {"service": "reviews", "source": "frontend"}),
        (target.inject_abort("catalog", 503, 10, None, 30, OWNER), {"service": "catalog", "source": None}),
        (target.partition("catalog", "inventory", "to", "drop", 30, OWNER),
         {"a": "catalog", "b": "inventory", "direction": "to"}),
    ]
    for record, expected_target in records:
        assert record.keys() >= REQUIRED_FIELDS, REQUIRED_FIELDS - record.keys()
        assert FAULT_ID.match(record["fault_id"]) and record["fault_id"].startswith(record["kind"] + "-")
        assert record["owner"] == OWNER and record["target"] == expected_target
        # the lease is the fault's duration long (a target reads its clock once or twice while it plans)
        assert record["expires_at"] - record["started_at"] == pytest.approx(30, abs=1)
        assert isinstance(record["changes"]["confirmed"], bool)
        json.dumps(record)  # the journal keeps it as it is
    active = {f["fault_id"] for f in target.active_faults()}
    assert {r["fault_id"] for r, _ in records} <= active

    ended = target.heal(None, OWNER)
    assert sorted(f["fault_id"] for f in ended) == sorted(r["fault_id"] for r, _ in records)
    assert {f["ended"] for f in ended} == {"healed"} and all("ended_at" in f for f in ended)
    history = {f["fault_id"]: f for f in target.fault_history(OWNER)}
    assert all(history[r["fault_id"]].get("ended") == "healed" for r, _ in records)
    # healing again is harmless and ends nothing
    assert target.heal(records[0][0]["fault_id"], OWNER) == [] and target.heal(None, OWNER) == []


def test_a_duration_beyond_the_targets_bound_is_refused(target: MeshTarget) -> None:
    text = _rejected(lambda: target.inject_latency("reviews", 50, 100, None, 10**6, OWNER))
    assert text.startswith("duration_s: 1e+06 is outside (0, ") and "max TTL" in text, text


def test_a_second_fault_of_one_kind_on_the_same_thing_is_refused_with_one_message(target: MeshTarget) -> None:
    first = target.inject_latency("reviews", 50, 100, "frontend", 30, OWNER)
    text = _rejected(lambda: target.inject_latency("reviews", 80, 100, None, 30, OWNER))
    assert text == f"conflicts with active fault {first['fault_id']} (latency on reviews from frontend); heal it first"
    target.inject_abort("reviews", 500, 1, None, 30, OWNER)  # another kind on the same service composes

    cut = target.partition("catalog", "inventory", "to", "drop", 30, OWNER)
    text = _rejected(lambda: target.partition("inventory", "catalog", "both", "drop", 30, OWNER))
    assert text == f"conflicts with active fault {cut['fault_id']} (partition on catalog -> inventory); heal it first"
    assert sorted(f["kind"] for f in target.active_faults() if f["owner"] == OWNER) == ["abort", "latency",
                                                                                         "partition"]


def test_pods_are_chosen_and_refused_by_one_rule(target: MeshTarget) -> None:
    catalog = _running(target, "catalog")
    assert len(catalog) == 2
    text = _rejected(lambda: target.kill_pods("catalog", 5, None, None, 5, OWNER))
    assert text == "count: 5 exceeds the 2 running pod(s) of 'catalog'"
    text = _rejected(lambda: target.partition("frontend", "catalog", "both", "drop", 30, OWNER, count=1))
    assert text == "direction: choosing some of b's pods (count/percent/version) needs direction='to'"
    text = _rejected(lambda: target.partition("reviews", "reviews", "to", "drop", 30, OWNER))
    assert text == "b: cannot partition 'reviews' from itself"
    # 50 % of two pods is one, the first by name
    half = target.partition("frontend", "catalog", "to", "reject", 30, OWNER, percent=50)
    assert half["changes"]["pods"] == catalog[:1]
    assert target.active_faults() and not any(f["kind"] != "partition" for f in target.active_faults()
                                              if f["owner"] == OWNER)
