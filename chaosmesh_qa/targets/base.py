"""The ``MeshTarget`` seam: everything an activity may ask of a mesh, whatever runs it.

Activity modules (``chaosmesh_qa.actions``, probes, controls) call only this interface
and never branch on the target kind.  ``chaosmesh_qa.targets.local.target.LocalTarget``
realises it over the embedded sandbox; a Kubernetes + Istio target will implement the
same methods with pods, VirtualService faults and AuthorizationPolicies.

Every fault method returns a JSON-serialisable record for the journal: ``fault_id``,
``kind``, ``target``, ``parameters``, ``started_at``/``expires_at`` (epoch seconds),
``changes`` (what was actually changed, with ``confirmed``: the data plane shows it).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

Record = dict[str, Any]
Direction = Literal["both", "to", "from"]
PartitionMode = Literal["drop", "reject"]


class MeshTarget(Protocol):
    kind: str
    metrics_dialect: str  # which SLI catalog (chaosmesh_qa/sli/<dialect>.yaml) its Prometheus speaks

    def prometheus_url(self) -> str: ...

    def provision(self, mesh: str | None) -> bool:
        """Make the mesh available for a run (the local target starts a sandbox when none runs).

        Returns whether it started something that ``release`` must stop; a cluster target has
        nothing to start and returns ``False``.
        """
        ...

    def release(self) -> None:
        """Stop what ``provision`` started."""
        ...

    def describe(self) -> dict[str, Any]:
        """``services`` (versions, subsets, callers, callees), ``ingress_service``, pods, URLs, active faults."""
        ...

    def kill_pods(self, service: str, count: int | None, percent: float | None, version: str | None,
                  restart_after_s: float, owner: str) -> Record: ...

    def fail_pods(self, service: str, duration_s: float, count: int | None, percent: float | None,
                  version: str | None, owner: str) -> Record: ...

    def kill_app(self, service: str, count: int | None, percent: float | None, version: str | None,
                 restart_after_s: float, owner: str) -> Record: ...

    def inject_latency(self, service: str, delay_ms: int, percent: int, source: str | None,
                       duration_s: float, owner: str) -> Record: ...

    def inject_abort(self, service: str, http_status: int, percent: int, source: str | None,
                     duration_s: float, owner: str) -> Record: ...

    def partition(self, a: str, b: str, direction: Direction, mode: PartitionMode, duration_s: float,
                  owner: str, count: int | None = None, percent: float | None = None,
                  version: str | None = None) -> Record: ...

    def heal(self, fault_id: str | None, owner: str | None) -> list[Record]:
        """Revert one fault, every fault of ``owner``, or every fault; idempotent."""
        ...

    def active_faults(self) -> list[Record]: ...

    def fault_history(self, owner: str | None) -> list[Record]:
        """Every fault still remembered (ended ones carry ``ended_at``), oldest first; for run phases."""
        ...
