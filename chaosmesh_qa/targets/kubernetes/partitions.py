"""The plan of an in-cluster partition: which objects cut which edges, and which sidecars show it.

Called by ``KubernetesTarget.partition`` once it has ruled out the external case (a ServiceEntry's host, cut at the
caller's sidecar) and every caller: ``plan`` checks the arguments against the cluster (one line each, nothing
written) and returns the transaction's changes — the fault's claims, the pods it marks, and per cut edge a
NetworkPolicy (``mode: drop``: the callee's pods stop accepting the caller's connections where the CNI enforces
NetworkPolicies) or an EnvoyFilter at the callee's inbound (``mode: reject``: the callee's sidecar answers the
caller's identity 503, as a refused connection looks to the caller's policies) — with the listeners to watch to
confirm it.  The target runs the transaction (``transaction``) and confirms; docs/reference/kubernetes-target.md
says how a partition maps to the cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.mesh.meshconfig import MeshConfig
from chaosmesh_qa.targets import policy
from chaosmesh_qa.targets.base import Direction, PartitionMode
from chaosmesh_qa.targets.kubernetes import objects, transaction
from chaosmesh_qa.targets.kubernetes.cluster import Cluster
from chaosmesh_qa.targets.kubernetes.dataplane import ListenerWatch
from chaosmesh_qa.targets.kubernetes.transaction import Change
from chaosmesh_qa.targets.kubernetes.workloads import Workloads
from chaosmesh_qa.targets.policy import FaultRecord

# per direction, the cut edges: (caller's side, callee's side, the suffix of the objects that cut it)
EDGES: dict[str, list[tuple[str, str, str]]] = {
    "both": [("a", "b", "to"), ("b", "a", "from")], "to": [("a", "b", "to")], "from": [("b", "a", "from")]}
DROP_UNCONFIRMED = ("a NetworkPolicy cannot be confirmed from the API: it acts only where the CNI enforces "
                    "NetworkPolicies, and only on new connections (connections the callers' sidecars already pooled "
                    "keep working)")


@dataclass
class Scope:
    """Which pods a partition cuts: all of b's (nothing set), or some (count/percent/version/zone), and with a zone
    whether a's pods in it are cut off too (``isolate``) or spared."""

    count: int | None = None
    percent: float | None = None
    version: str | None = None
    zone: str | None = None
    isolate: bool = False

    @property
    def some(self) -> bool:
        return any(v is not None for v in (self.count, self.percent, self.version, self.zone))


@dataclass
class PartitionPlan:
    fault_id: str
    expires_at: float
    namespace: str  # where the lease lives
    target: dict[str, Any]
    parameters: dict[str, Any]
    changes: list[Change]
    summary: Callable[[], dict[str, Any]]
    watched: list[ListenerWatch] = field(default_factory=list)


def plan(cluster: Cluster, found: Workloads, a: str, b: str, direction: Direction, mode: PartitionMode,
         scope: Scope, ttl_s: Callable[[], float], trust_domain: Callable[[], str],
         mesh_config: Callable[[], MeshConfig], active_faults: Callable[[], list[FaultRecord]]) -> PartitionPlan:
    """The partition's changes, or one line (FaultRejected) naming the argument the cluster refuses; ``ttl_s`` (the
    duration, checked against the target's limit), the trust domain, the mesh config and the active faults are asked
    for when the checks reach them, as the target's other faults do."""
    side = {"a": found.service(a, "a"), "b": found.service(b, "b")}
    for argument, workload in side.items():
        found.running_pods(workload, argument=argument)
    policy.partition_edges(a, b, direction)
    wanted, some = EDGES[direction], scope.some
    policy.check_partition_scope(direction, some)
    percent = scope.percent
    if scope.zone is not None and scope.count is None and percent is None:
        percent = 100.0  # a zone partition: every pod of b in the zone
    homes = sorted({side[callee_key].namespace for _, callee_key, _ in wanted})
    if len(homes) > 1:
        raise FaultRejected(f"partition: {a!r} ({side['a'].namespace}) and {b!r} ({side['b'].namespace}) are in "
                            "different namespaces: direction 'both' needs a policy in each, while a fault's lease "
                            "(and the in-cluster reaper that reverts it) lives in one; run one partition per "
                            "direction ('to' and 'from')")
    policy.check_conflicts("partition", {"a": a, "b": b, "direction": direction}, active_faults())
    callers: dict[str, list[str | None]] = {}
    for caller_key, callee_key, _ in wanted:
        callee = side[callee_key]
        if mode == "drop":
            found.require_no_policy_selecting(callee)
        else:
            found.require_sidecars(callee, callee_key)
            callers[caller_key] = found.caller_principals(side[caller_key], caller_key, trust_domain())
            found.require_caller_in_xfcc(callee, callee_key, mesh_config())
    fault_id, expires_at = policy.new_fault_id("partition"), cluster.now() + ttl_s()
    zone = scope.zone
    marked = found.pick(side["b"], scope.count, percent, scope.version, "b", zone=zone) if some else []
    # a zone partition spares a's pods in the zone (they may still call b's pods there): marked as such
    spared = [] if scope.isolate or zone is None else [p for p in found.running_pods(side["a"], argument="a")
                                                       if policy.spares(found.locality(p), zone)]
    if spared and mode == "reject":
        raise FaultRejected(f"mode: 'reject' cannot spare {a!r}'s pods in zone {zone!r} "
                            f"({', '.join(p['metadata']['name'] for p in spared)}): its EnvoyFilter matches the "
                            "caller's identity, which every pod of it shares; use mode='drop' (a NetworkPolicy, "
                            "which selects pods)")
    label = {objects.partition_label(fault_id): "true"}
    where = {"zone": zone, **({"isolate": True} if scope.isolate else {})} if zone is not None else {}
    spare = {objects.spared_label(fault_id): "true"}
    changes = transaction.claimed(cluster, fault_id, "partition", {"a": a, "b": b, "direction": direction},
                                  expires_at, homes[0])
    changes += [transaction.marked(cluster, side["b"].namespace, pod, fault_id, label) for pod in marked]
    changes += [transaction.marked(cluster, side["a"].namespace, pod, fault_id, spare) for pod in spared]
    watched: list[ListenerWatch] = []
    for caller_key, callee_key, suffix in wanted:
        caller, callee = side[caller_key], side[callee_key]
        if mode == "drop":
            changes.append(transaction.created(cluster, objects.network_policy(
                fault_id, expires_at, callee.namespace, suffix, caller.selector, callee.selector, some,
                spared=bool(spared))))
            continue
        # reject: the callee's sidecar answers the caller 503, as a refused connection looks to the caller's
        # policies (Istio's default retryOn retries 503, outlier detection counts it, 5xx SLIs see it)
        selector = objects.callee_selector(callee.selector, fault_id, some)
        ports = found.inbound_ports(callee)  # once per callee, not per caller identity (it may list pods)
        for index, principal in enumerate(callers[caller_key]):
            changes.append(transaction.created(cluster, objects.envoy_filter(
                fault_id, expires_at, callee.namespace, selector, ports,
                objects.abort_fault(503, 100), f"spiffe://{principal}",
                name=f"chaosmesh-qa-{fault_id}-{suffix}" + (f"-{index}" if index else ""))))
        pods = [p["metadata"]["name"] for p in (marked if some and callee_key == "b" else
                                                found.running_pods(callee, argument=callee_key))]
        if not cluster.dry_run:
            watched.append(ListenerWatch(cluster, callee.namespace, pods))
    edges = [[side[c].name, side[e].name] for c, e, _ in wanted]

    def summary() -> dict[str, Any]:
        return {"edges": edges, "mode": mode, "pods": [p["metadata"]["name"] for p in marked] if some else "all",
                **({"spared_callers": [p["metadata"]["name"] for p in spared]} if zone is not None else {})}

    return PartitionPlan(fault_id, expires_at, homes[0], {"a": a, "b": b, "direction": direction, **where},
                         {"a": a, "b": b, "direction": direction, "mode": mode, "count": scope.count,
                          "percent": percent, "version": scope.version, **where},
                         changes, summary, watched)
