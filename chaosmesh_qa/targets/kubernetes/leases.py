"""Fault leases on a cluster: ConfigMaps that name every change of a fault before it is made.

``KubernetesTarget`` opens a lease before it changes anything, fills in what changed, and ends it on heal;
``reap`` (the CLI, the in-cluster CronJob and the runner's detached local reaper) ends the expired ones.
Ending a lease reverts its undo list (idempotent: a missing object counts as deleted, a restored label as
restored) and then marks it ended with an update guarded by ``resourceVersion``, so two reapers, or a reaper
and a heal, racing on one lease revert it harmlessly twice and record it once.  Ended leases stay as the
run's fault history and are deleted (with a resourceVersion precondition) a day later.

Every time here is the API server's (``Cluster.now``), so a runner and a reaper whose clocks disagree still
agree on when a lease expires.  One lease that cannot be reverted (a 403, an object in a namespace the reaper
may not touch) does not stop a pass: the others are reverted, and the pass reports it under ``failed``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from chaosmesh_qa.errors import ChaosMeshQAError
from chaosmesh_qa.targets.kubernetes.cluster import Cluster, Conflict
from chaosmesh_qa.targets.kubernetes.objects import (
    CLAIM_OF,
    CONFIGMAP,
    ENDED_AT,
    EXPIRES_AT,
    KINDS,
    LEASE_SELECTOR,
    OWNER_HASH,
    POD,
    lease_configmap,
    owner_hash,
    restore_pod_patch,
)

HISTORY_KEEP_S = 24 * 3600.0
MAX_CONFLICT_RETRIES = 5


def open_lease(cluster: Cluster, record: Mapping[str, Any], undo: list[dict[str, Any]],
               namespace: str) -> dict[str, Any]:
    return cluster.create(lease_configmap(record, undo, namespace))


def update_record(cluster: Cluster, lease: dict[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    body = {**lease, "data": {**lease.get("data", {}), "record.json": json.dumps(record, sort_keys=True)}}
    return cluster.replace_configmap(body)


def record_of(lease: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The lease's fault record; ``now`` (the API server's time) gives an active one its ``remaining_s``."""
    record = dict(json.loads(lease.get("data", {}).get("record.json", "{}")))
    if "ended_at" not in record:
        now = time.time() if now is None else now
        record["remaining_s"] = round(max(0.0, float(record.get("expires_at", 0)) - now), 3)
    return record


def undo_of(lease: dict[str, Any]) -> list[dict[str, Any]]:
    return list(json.loads(lease.get("data", {}).get("undo.json", "[]")))


def is_ended(lease: dict[str, Any]) -> bool:
    return ENDED_AT in (lease.get("metadata", {}).get("annotations") or {})


def expires_at(lease: dict[str, Any]) -> float:
    return float((lease.get("metadata", {}).get("annotations") or {}).get(EXPIRES_AT, "0"))


def list_leases(cluster: Cluster, namespaces: list[str], owner: str | None = None) -> list[dict[str, Any]]:
    """Every lease (active and ended) in ``namespaces``, oldest first; ``owner`` narrows to one run."""
    selector = LEASE_SELECTOR + (f",{OWNER_HASH}={owner_hash(owner)}" if owner is not None else "")
    leases = [cm for namespace in namespaces for cm in cluster.list_configmaps(namespace, selector)]
    if owner is not None:
        leases = [cm for cm in leases if record_of(cm).get("owner") == owner]
    return sorted(leases, key=lambda cm: float(record_of(cm).get("started_at", 0)))


class RevertIncomplete(ChaosMeshQAError):
    """Some steps of a lease's undo list failed; the others were done, and the lease stays active."""


def revert(cluster: Cluster, undo: list[dict[str, Any]], fault_id: str) -> dict[str, Any]:
    """Undo in reverse order; every step is idempotent and is tried even when an earlier one failed."""
    deleted, restored, failed = [], [], []
    for step in reversed(undo):
        kind = KINDS[step["kind"]]
        try:
            if step["op"] == "delete":
                if cluster.delete(kind, step["namespace"], step["name"]):
                    deleted.append(f"{kind.kind}/{step['name']}")
            elif step["op"] == "release-claim":
                claim = cluster.get(kind, step["namespace"], step["name"])
                labels = (claim or {}).get("metadata", {}).get("labels") or {}
                if claim is not None and labels.get(CLAIM_OF) == fault_id and cluster.delete(
                        kind, step["namespace"], step["name"], claim["metadata"].get("resourceVersion")):
                    deleted.append(f"{kind.kind}/{step['name']}")
            elif step["op"] == "restore-pod":
                pod = cluster.get(POD, step["namespace"], step["name"])
                patch = None if pod is None else restore_pod_patch(pod.get("metadata", {}), fault_id,
                                                                   step["original"])
                if patch is not None:
                    cluster.patch_pod(step["namespace"], step["name"], patch)
                    restored.append(f"Pod/{step['name']}")
        except ChaosMeshQAError as exc:
            failed.append(f"{kind.kind}/{step['namespace']}/{step['name']}: {exc}")
    if failed:
        raise RevertIncomplete(f"{fault_id}: {len(failed)} change(s) not reverted: {'; '.join(failed)}")
    return {"deleted": deleted, "restored": restored}


def end_lease(cluster: Cluster, namespace: str, name: str, how: str) -> dict[str, Any] | None:
    """Revert the lease's changes and mark it ended; None when there is no such lease."""
    for _ in range(MAX_CONFLICT_RETRIES):
        lease = cluster.get(CONFIGMAP, namespace, name)
        if lease is None:
            return None
        record = record_of(lease)
        if is_ended(lease):
            return {**record, "ended": "already-ended"}
        reverted = revert(cluster, undo_of(lease), record["fault_id"])
        ended_at = cluster.now()
        record = {**record, "ended": how, "ended_at": ended_at, "reverted": reverted}
        record.pop("remaining_s", None)
        metadata = lease["metadata"]
        metadata["annotations"] = {**(metadata.get("annotations") or {}), ENDED_AT: repr(ended_at)}
        try:
            update_record(cluster, lease, record)  # lease carries its resourceVersion: a concurrent end conflicts
        except Conflict:
            continue
        return record
    return None


def discard(cluster: Cluster, lease: dict[str, Any]) -> None:
    """Revert and delete a lease whose fault failed part-way: as if nothing had been attempted."""
    revert(cluster, undo_of(lease), record_of(lease)["fault_id"])
    cluster.delete(CONFIGMAP, lease["metadata"]["namespace"], lease["metadata"]["name"])


def reap(cluster: Cluster, namespaces: list[str], owner: str | None = None, now: float | None = None,
         keep_history_s: float = HISTORY_KEEP_S) -> dict[str, Any]:
    """End every expired lease, delete ended leases older than ``keep_history_s``; returns what it did.

    ``failed`` lists the expired leases this pass could not end (each with its one-line reason): they stay
    active, so the next pass tries them again.  ``next_expiry_s`` is how long (by the API server's clock) until
    the first active lease expires, None when none is active: a watching reaper wakes then.
    """
    now = cluster.now() if now is None else now
    expired, forgotten, failed, active = [], [], [], 0
    next_expiry_s: float | None = None
    for lease in list_leases(cluster, namespaces, owner):
        metadata = lease["metadata"]
        if is_ended(lease):
            ended_at = float(metadata["annotations"][ENDED_AT])
            if now - ended_at > keep_history_s:
                try:
                    if cluster.delete(CONFIGMAP, metadata["namespace"], metadata["name"],
                                      resource_version=metadata.get("resourceVersion")):
                        forgotten.append(metadata["name"])
                except Conflict:
                    pass  # someone else changed it: the next pass sees its new state
            continue
        if expires_at(lease) > now:
            active += 1
            remaining = expires_at(lease) - now
            next_expiry_s = remaining if next_expiry_s is None else min(next_expiry_s, remaining)
            continue
        try:
            record = end_lease(cluster, metadata["namespace"], metadata["name"], "expired")
        except ChaosMeshQAError as exc:
            failed.append({"lease": f"{metadata['namespace']}/{metadata['name']}", "error": str(exc)})
            continue
        if record is not None and record.get("ended") == "expired":
            expired.append(record)
    return {"expired": expired, "forgotten": forgotten, "failed": failed, "active": active,
            "next_expiry_s": next_expiry_s}
