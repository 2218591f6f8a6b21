"""The fault policy: what a fault is and when it may be injected, written once for every target.

Both targets decide here, so they cannot disagree: the local sandbox's fault manager
(``targets.local.faults``, inside the supervisor) and ``targets.kubernetes.target``.  The
activities (``chaosmesh_qa.actions``) check an argument's type and range first; this module
holds the rules that need the mesh or the other faults:

* the **record** every fault method returns (``FaultRecord``, the journal's schema),
* the **fault id** (``<kind>-<8 hex digits>``) and the **TTL** bound of a target,
* **pod selection**: which running pods ``count`` / ``percent`` take, and the one-line refusal,
* **partition edges**: which caller → callee edges ``a``, ``b`` and ``direction`` cut, and the
  rule that choosing some of ``b``'s pods needs ``direction='to'``; ``a`` is ``EVERY_CALLER`` (``*``) for a
  ServiceEntry's host cut off from every caller (the provider down for the whole mesh),
* **zones**: which pods a ``zone`` argument takes (``in_zone``: every pod of the service in that zone, before
  ``count`` / ``percent``), the one-line refusals (a zone no pod of the mesh is in; a service with no pod
  there), and which callers a zone partition spares (``spares``: those in the zone itself),
* **conflicts**: two faults of one kind on the same thing are refused with one message
  (two latencies on a service, unless both name different sources; two partitions sharing an
  edge); different kinds compose, and pod faults never take a pod another fault holds.

The tests of tests/targets/test_fault_contract.py hold both targets to it.  (No ``from __future__ import
annotations`` here: ``FaultRecord``'s ``NotRequired`` fields must be seen at runtime, for ``REQUIRED_FIELDS``.)
"""

import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.mesh.localities import Locality

FaultKind = Literal["latency", "abort", "pod-kill", "pod-failure", "app-kill", "partition"]
FAULT_KINDS: tuple[FaultKind, ...] = ("latency", "abort", "pod-kill", "pod-failure", "app-kill", "partition")
L7_KINDS: tuple[FaultKind, ...] = ("latency", "abort")
POD_KINDS: tuple[FaultKind, ...] = ("pod-kill", "pod-failure", "app-kill")
FAULT_ID = re.compile(r"^(?:" + "|".join(FAULT_KINDS) + r")-[0-9a-f]{8}$")
Direction = Literal["both", "to", "from"]
DIRECTIONS: tuple[Direction, ...] = ("both", "to", "from")
ARROWS = {"both": "<->", "to": "->", "from": "<-"}
Edge = tuple[str, str]  # (caller, callee)
EVERY_CALLER = "*"  # a partition's ``a`` for a ServiceEntry's host cut off from all of its callers


class FaultRecord(TypedDict):
    """One fault as every target reports it: returned by inject, heal and the fault listings, kept in the journal.

    Times are epoch seconds of the clock that enforces the lease (the supervisor's; a cluster's API server).
    """

    fault_id: str  # FAULT_ID: the kind and 8 hex digits
    kind: FaultKind
    owner: str  # the run that injected it (targets.run.run_owner): heal and the safety control use it
    target: dict[str, Any]  # what it acts on: {service, source} (L7), {service, version} (pods), {a, b, direction}
    parameters: dict[str, Any]  # the arguments as given
    started_at: float
    expires_at: float  # started_at + the fault's duration: the lease ends here even if its runner died
    changes: dict[str, Any]  # what was changed; ``confirmed``: the data plane (or API) shows the change
    remaining_s: NotRequired[float]  # active faults: seconds until expiry
    state: NotRequired[str]  # local target: applying / active
    ended: NotRequired[str]  # healed, expired, rolled-back (or already-ended on a repeated heal)
    ended_at: NotRequired[float]
    reverted: NotRequired[dict[str, Any]]  # what the revert did, and what the fault did while it ran
    namespace: NotRequired[str]  # kubernetes target: where the lease lives
    lease: NotRequired[str]  # kubernetes target: the lease ConfigMap
    dry_run: NotRequired[bool]  # kubernetes target with dry_run: nothing was written
    planned: NotRequired[list[dict[str, Any]]]  # ... and what would have been


REQUIRED_FIELDS = frozenset(FaultRecord.__required_keys__)


def new_fault_id(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(4)}"


def check_kind(kind: str) -> FaultKind:
    if kind not in FAULT_KINDS:
        raise FaultRejected(f"kind: unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
    return kind


def check_ttl(duration_s: float, max_ttl_s: float, whose: str) -> float:
    """The fault's lease length: in (0, ``max_ttl_s``], ``whose`` naming where the bound comes from."""
    if not 0 < duration_s <= max_ttl_s:
        raise FaultRejected(f"duration_s: {duration_s:g} is outside (0, {max_ttl_s:g}] ({whose})")
    return duration_s


def select_pods[Pod](running: Sequence[Pod], count: int | None, percent: float | None, service: str,
                version: str | None = None, held_excluded: bool = False) -> list[Pod]:
    """The first ``count`` of ``running`` (serving pods, sorted by name), or ``percent`` % of them rounded up
    (at least one); neither given: all of them.  ``held_excluded`` says the caller left out pods other faults hold."""
    if count is None:
        share = 100.0 if percent is None else float(percent)
        count = max(1, math.ceil(len(running) * share / 100)) if share > 0 else 0
    if count < 1:
        raise FaultRejected("count: must select at least one pod")
    if count > len(running):
        raise FaultRejected(f"count: {count} exceeds the {len(running)} running pod(s) of {service!r}"
                            + (f" version {version!r}" if version else "")
                            + (" that no other fault holds" if held_excluded else ""))
    return list(running[:count])


def zone_matches(locality: str, zone: str) -> bool:
    """Whether a pod in ``locality`` (``region/zone/subzone``) is in ``zone``: a zone name (the value of
    ``topology.kubernetes.io/zone``), or ``region/zone`` to name one region's."""
    where = Locality.parse(locality)
    if "/" in zone:
        region, _, name = zone.partition("/")
        return bool(name) and (where.region, where.zone) == (region, name)
    return bool(zone) and where.zone == zone


def in_zone[Pod](pods: Sequence[Pod], zone: str, locality_of: Callable[[Pod], str], service: str,
                 mesh_localities: Iterable[str]) -> list[Pod]:
    """The pods of ``pods`` (one service's, in order) in ``zone``; ``mesh_localities``: the localities of every pod
    of the mesh, to tell an unknown zone (no pod of the mesh there) from a service that has no pod in it."""
    known = sorted({Locality.parse(where).zone for where in mesh_localities if Locality.parse(where).zone})
    if not any(zone_matches(where, zone) for where in mesh_localities):
        raise FaultRejected(f"zone: unknown zone {zone!r}: no pod of the mesh is in it (zones: "
                            f"{', '.join(known) or 'none, the mesh declares no locality'})")
    chosen = [pod for pod in pods if zone_matches(locality_of(pod), zone)]
    if not chosen:
        mine = sorted({Locality.parse(locality_of(pod)).zone or "none" for pod in pods})
        raise FaultRejected(f"zone: service {service!r} has no running pod in zone {zone!r} (its pods' zones: "
                            f"{', '.join(mine) or 'no running pod'})")
    return chosen


def spares(caller_locality: str, zone: str | None) -> bool:
    """Whether a zone partition (``zone``) leaves a caller pod in ``caller_locality`` its callee's pods: the zone
    is cut off from the other zones, so callers in the zone itself still reach it."""
    return zone is not None and zone_matches(caller_locality, zone)


def partition_edges(a: str, b: str, direction: str) -> list[Edge]:
    """The caller → callee edges a partition cuts: ``to`` is a → b, ``from`` is b → a, ``both`` is both."""
    if direction not in DIRECTIONS:
        raise FaultRejected(f"direction: expected one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if a == b:
        raise FaultRejected(f"b: cannot partition {a!r} from itself")
    return {"both": [(a, b), (b, a)], "to": [(a, b)], "from": [(b, a)]}[direction]


def every_caller_refused(service: str) -> str:
    """The refusal of ``a`` = ``*`` toward a service of the mesh (it is for a ServiceEntry's host)."""
    return (f"a: '*' (every caller) is for a ServiceEntry's host, and {service!r} is a service of the mesh: to take "
            "it away from every caller, use fail_pods")


def check_partition_scope(direction: str, some_pods: bool) -> None:
    """Choosing some of ``b``'s pods (count/percent/version/zone) cuts only a → those pods: direction ``to``."""
    if some_pods and direction != "to":
        raise FaultRejected("direction: choosing some of b's pods (count/percent/version) needs direction='to'")


def clashes(kind: str, target: Mapping[str, Any], other_kind: str, other_target: Mapping[str, Any]) -> bool:
    """Whether a new fault (``kind`` on ``target``) may not run alongside an active one."""
    if kind != other_kind:
        return False  # different kinds compose (a latency and an abort on one service, a kill during a partition)
    if kind in L7_KINDS:
        sources = (target.get("source"), other_target.get("source"))
        return target.get("service") == other_target.get("service") and (None in sources or sources[0] == sources[1])
    if kind == "partition":
        theirs = partition_edges(other_target["a"], other_target["b"], other_target["direction"])
        return any(_same_edge(mine, other) for mine in partition_edges(target["a"], target["b"], target["direction"])
                   for other in theirs)
    return False  # pod faults: a pod another fault holds is never selected (select_pods' caller leaves it out)


def _same_edge(mine: Edge, other: Edge) -> bool:
    """Two cut edges overlap: one callee, and one caller or either of them every caller."""
    return mine[1] == other[1] and (mine[0] == other[0] or EVERY_CALLER in (mine[0], other[0]))


def claim_keys(kind: str, target: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key, scope)`` of what a fault holds exclusively, for a target whose runners share no memory (the
    Kubernetes target's claims: one object per key, created or refused by the API server).  A fault clashes with
    another one of the same key; within a scope, ``clashes`` decides (an L7 fault on all callers of a service
    against one on a single caller; a partition of a host from every caller against one from a single caller:
    a partition's scope is its callee).  Pod faults hold pods, not keys: none."""
    if kind in L7_KINDS:
        scope = f"{kind}/{target['service']}"
        return [(f"{scope}/{target.get('source') or '*'}", scope)]
    if kind == "partition":
        return [(f"partition/{caller}->{callee}", f"partition/->{callee}")
                for caller, callee in partition_edges(target["a"], target["b"], target["direction"])]
    return []


def conflict_message(other: Mapping[str, Any]) -> str:
    return (f"conflicts with active fault {other['fault_id']} ({other['kind']} on "
            f"{_describe(other['kind'], other['target'])}); heal it first")


def check_conflicts(kind: str, target: Mapping[str, Any], active: Iterable[Mapping[str, Any]]) -> None:
    """Refuse the fault when an active one (a record: ``fault_id``, ``kind``, ``target``) clashes with it."""
    for other in active:
        if clashes(kind, target, other["kind"], other["target"]):
            raise FaultRejected(conflict_message(other))


def _describe(kind: str, target: Mapping[str, Any]) -> str:
    if kind == "partition":
        a = "every caller" if target["a"] == EVERY_CALLER else target["a"]
        return f"{a} {ARROWS[target['direction']]} {target['b']}"
    where = str(target.get("service"))
    if target.get("source"):
        where += f" from {target['source']}"
    if target.get("version"):
        where += f" version {target['version']}"
    if target.get("zone"):
        where += f" in zone {target['zone']}"
    return where
