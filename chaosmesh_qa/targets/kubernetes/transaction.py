"""A fault on a cluster as a transaction: its changes, the lease that names them first, and its record.

``KubernetesTarget`` builds a fault's changes with ``claimed`` (its server-side claims, ``claims``), ``created``
(an EnvoyFilter or NetworkPolicy), ``marked`` (pod labels), ``deleted_pod`` and ``evicted_pod``: each a ``Change``,
how to apply it and the undo entry the lease records before anything is applied.  ``Transaction.run`` opens the
lease, starts the run's local reaper, applies the changes in order and writes the record; a failure part-way
reverts what was applied and deletes the lease, and the error is one line.  ``Transaction.save`` updates the record
afterwards (a confirmation, a pod kill's replacements) unless a heal or the reaper has ended the lease meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from chaosmesh_qa.errors import ChaosMeshQAError, FaultRejected, error_line
from chaosmesh_qa.targets import policy
from chaosmesh_qa.targets.kubernetes import claims, leases, objects
from chaosmesh_qa.targets.kubernetes.cluster import Cluster, Conflict
from chaosmesh_qa.targets.kubernetes.settings import KubeSettings
from chaosmesh_qa.targets.policy import FaultRecord


class Change:
    """One change of a fault: how to apply it (False: applied but not as asked) and its undo entry, if any."""

    def __init__(self, apply: Callable[[], Any], undo: dict[str, Any] | None, name: str) -> None:
        self.apply, self.undo, self.name = apply, undo, name


def claimed(cluster: Cluster, fault_id: str, kind: str, target: dict[str, Any], expires_at: float,
            namespace: str) -> list[Change]:
    """The fault's server-side claims, its first changes: a runner that checked the active faults at the same
    moment as another cannot also inject a clashing one."""
    record = {"fault_id": fault_id, "kind": kind, "target": target, "expires_at": expires_at}
    return [Change(apply, undo, name) for apply, undo, name in claims.claims(cluster, record, namespace)]


def deleted_pod(cluster: Cluster, namespace: str, name: str) -> Change:
    return Change(lambda: cluster.delete(objects.POD, namespace, name, grace_period_s=0), None,
                  f"Pod/{namespace}/{name}")


def evicted_pod(cluster: Cluster, namespace: str, name: str) -> Change:
    return Change(lambda: cluster.evict(namespace, name), None, f"Pod/{namespace}/{name} (eviction)")


def created(cluster: Cluster, body: dict[str, Any]) -> Change:
    """Create ``body``; applied when the API stores it as sent.  Its undo deletes it."""
    kind, metadata = objects.KINDS[body["kind"]], body["metadata"]

    def apply() -> bool:
        cluster.create(body)
        if cluster.dry_run:
            return False
        stored = cluster.get(kind, metadata["namespace"], metadata["name"])
        return stored is not None and stored.get("spec") == body["spec"]

    return Change(apply, objects.object_ref(kind, metadata["namespace"], metadata["name"]),
                  f"{kind.kind}/{metadata['namespace']}/{metadata['name']}")


def marked(cluster: Cluster, namespace: str, pod: dict[str, Any], fault_id: str, labels: dict[str, str]) -> Change:
    """Give ``pod`` the fault's ``labels``; its undo restores what they were."""
    name, metadata = pod["metadata"]["name"], pod["metadata"]
    patch = objects.mark_pod_patch(metadata, fault_id, labels)
    original = {"labels": {key: (metadata.get("labels") or {}).get(key) for key in labels}}

    def apply() -> bool:
        patched = cluster.patch_pod(namespace, name, patch)
        return cluster.dry_run or all((patched["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())

    return Change(apply, {"op": "restore-pod", "kind": "Pod", "namespace": namespace, "name": name,
                          "original": original}, f"Pod/{namespace}/{name} (labels)")


class Transaction:
    """One fault's lease and record, from ``run`` to the last ``save``."""

    def __init__(self, cluster: Cluster, settings: KubeSettings) -> None:
        self.cluster, self.settings = cluster, settings
        self.lease: dict[str, Any] = {}

    def run(self, kind: str, target: dict[str, Any], parameters: dict[str, Any], owner: str, ttl_s: float,
            namespace: str, changes: list[Change], summary: Callable[[], Mapping[str, Any]],
            fault_id: str | None = None, expires_at: float | None = None, unconfirmable: str | None = None
            ) -> FaultRecord:
        """Open the lease, apply ``changes``, write the record.  ``unconfirmable``: why the data plane cannot show
        the change (recorded ``confirmed: false`` with it, however the API stored the objects)."""
        cluster = self.cluster
        now = cluster.now()
        fault_id = fault_id or policy.new_fault_id(kind)
        record: FaultRecord = {"fault_id": fault_id, "kind": policy.check_kind(kind), "owner": owner, "target": target,
                               "parameters": parameters, "started_at": now, "expires_at": expires_at or now + ttl_s,
                               "changes": {}, "namespace": namespace}
        lease = leases.open_lease(cluster, record, [c.undo for c in changes if c.undo is not None], namespace)
        if not cluster.dry_run:
            from chaosmesh_qa.targets.kubernetes.reaper import ensure_local_reaper

            ensure_local_reaper(self.settings, owner)
        try:
            confirmed = [c.apply() for c in changes]
            record["changes"] = {**summary(), "objects": [c.name for c in changes],
                                 "confirmed": all(x is not False for x in confirmed) and not cluster.dry_run
                                 and unconfirmable is None}
            if unconfirmable is not None and not cluster.dry_run:
                record["changes"]["unconfirmed"] = unconfirmable
            record["lease"] = f"ConfigMap/{namespace}/{lease['metadata']['name']}"
            self.lease = leases.update_record(cluster, lease, record)
        except BaseException as exc:
            if not cluster.dry_run:
                with contextlib.suppress(ChaosMeshQAError):  # else the lease stays: reverted at expiry
                    leases.discard(cluster, cluster.get(objects.CONFIGMAP, namespace, lease["metadata"]["name"])
                                   or lease)
            if isinstance(exc, ChaosMeshQAError | KeyboardInterrupt | SystemExit):
                raise
            raise FaultRejected(f"{kind}: {error_line(exc, 300)} (rolled back)") from None
        record["remaining_s"] = round(max(0.0, record["expires_at"] - cluster.now()), 3)
        if cluster.dry_run:
            record["dry_run"] = True
            record["planned"] = list(cluster.planned)
        return record

    def save(self, record: FaultRecord) -> None:
        """Update the lease's record; if a heal or reaper ended the lease meanwhile (kill_pods waits for the
        replacement, which may take longer than the lease's TTL), that end stands and nothing is written."""
        body = {k: v for k, v in record.items() if k != "remaining_s"}
        metadata = self.lease["metadata"]
        for _ in range(leases.MAX_CONFLICT_RETRIES):
            try:
                self.lease = leases.update_record(self.cluster, self.lease, body)
                return
            except Conflict:
                current = self.cluster.get(objects.CONFIGMAP, metadata["namespace"], metadata["name"])
                if current is None or leases.is_ended(current):
                    return
                self.lease = current
