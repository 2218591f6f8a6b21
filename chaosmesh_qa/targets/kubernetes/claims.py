"""Server-side claims: two runners cannot inject clashing faults, whatever the timing.

``KubernetesTarget`` checks the active leases before a fault (``policy.check_conflicts``), but two runners that
check at the same moment both see nothing.  So each fault also claims, as its first change, what it holds
exclusively (``policy.claim_keys``: an L7 fault its service and caller, a partition each edge): a ConfigMap whose
name is derived from the key, which the API server creates for one runner and refuses to the others (409).  A
fault on all callers of a service and one on a single caller have different keys but one scope: after creating
its claim, a fault lists the claims of its scope and withdraws when one of another live fault clashes
(``policy.clashes``); two runners that cross this way both withdraw, never both proceed.  A claim is released by
its lease's undo list (heal, reaper, or the rollback of a fault that failed part-way), and only by the fault
that holds it; a claim whose lease has ended or is gone is stale and is taken over.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets import policy
from chaosmesh_qa.targets.kubernetes import leases, objects
from chaosmesh_qa.targets.kubernetes.cluster import Cluster, Conflict

Claim = tuple[Callable[[], None], dict[str, Any], str]  # apply, undo entry, name


def claims(cluster: Cluster, record: Mapping[str, Any], namespace: str) -> list[Claim]:
    """The claims of a fault (``record``: fault_id, kind, target, expires_at), to apply before its changes."""
    found: list[Claim] = []
    for key, scope in policy.claim_keys(record["kind"], record["target"]):
        name = objects.claim_name(key)
        found.append((functools.partial(_take, cluster, key, scope, record, namespace),
                      objects.claim_release(namespace, name), f"ConfigMap/{namespace}/{name}"))
    return found


def _take(cluster: Cluster, key: str, scope: str, record: Mapping[str, Any], namespace: str) -> None:
    body = objects.claim_configmap(key, scope, record, namespace)
    name = body["metadata"]["name"]
    for _ in range(leases.MAX_CONFLICT_RETRIES):
        try:
            cluster.create(body)
            break
        except Conflict:
            held = cluster.get(objects.CONFIGMAP, namespace, name)
            if held is None:
                continue  # released meanwhile
            if _live(cluster, held):
                raise FaultRejected(f"{policy.conflict_message(_claimed(held))} (claimed by another runner: "
                                    f"ConfigMap/{namespace}/{name})") from None
            with contextlib.suppress(Conflict):  # stale: its fault has ended; take it over
                cluster.delete(objects.CONFIGMAP, namespace, name, held["metadata"].get("resourceVersion"))
    else:
        raise FaultRejected(f"claim ConfigMap/{namespace}/{name}: changed under us {leases.MAX_CONFLICT_RETRIES} "
                            "times; try again")
    if cluster.dry_run:
        return
    for other in cluster.list_configmaps(namespace, objects.claim_selector(scope)):
        claimed = _claimed(other)
        if (claimed["fault_id"] != record["fault_id"] and _live(cluster, other)
                and policy.clashes(record["kind"], record["target"], claimed["kind"], claimed["target"])):
            raise FaultRejected(f"{policy.conflict_message(claimed)} (claimed by another runner: "
                                f"ConfigMap/{namespace}/{other['metadata']['name']})")


def _claimed(claim: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads((claim.get("data") or {}).get("claim.json") or "{}")
    except ValueError:
        value = {}
    labels = claim["metadata"].get("labels") or {}
    return {"fault_id": value.get("fault_id") or labels.get(objects.CLAIM_OF, "?"),
            "kind": value.get("kind", "?"), "target": value.get("target") or {}}


def _live(cluster: Cluster, claim: dict[str, Any]) -> bool:
    """Whether the fault holding ``claim`` still runs: its lease (same namespace) exists and has not ended."""
    fault_id = (claim["metadata"].get("labels") or {}).get(objects.CLAIM_OF)
    if not fault_id:
        return False
    lease = cluster.get(objects.CONFIGMAP, claim["metadata"]["namespace"], objects.lease_name(fault_id))
    return lease is not None and not leases.is_ended(lease)
