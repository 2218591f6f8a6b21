"""``LocalTarget``: the ``MeshTarget`` over the embedded sandbox's control API.

Built by ``chaosmesh_qa.targets.get_target`` from an experiment's configuration; every
call is one request to the supervisor, which applies the fault as one transaction (all of
it or, after a rollback, none of it: ``targets.local.leases``), confirms and expires it.
Killing a pod is the ``kill_pods`` fault: there is no way around the leases.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from chaosmesh_qa.errors import FaultRejected, TargetUnavailable
from chaosmesh_qa.targets.base import Direction, KillMode, PartitionMode, Record
from chaosmesh_qa.targets.local import verify
from chaosmesh_qa.targets.local.sandbox import SandboxClient, default_mesh_dir, down, is_running, up, wait_for_metrics
from chaosmesh_qa.targets.local.state import SandboxPaths
from chaosmesh_qa.targets.policy import FaultRecord

if TYPE_CHECKING:
    from chaosmesh_qa.mesh.model import MeshModel


class LocalTarget:
    kind = "local"
    metrics_dialect = "envoy"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def _client(self) -> SandboxClient:
        return SandboxClient(self.state_dir)

    def _inject(self, kind: str, parameters: dict[str, Any], owner: str, ttl_s: float) -> FaultRecord:
        with self._client() as client:
            return cast(FaultRecord, client.inject(kind, parameters, owner, ttl_s))

    def describe(self) -> dict[str, Any]:
        with self._client() as client:
            return client.status()

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": f"embedded mesh ({self.state_dir})", "state_dir": str(self.state_dir),
                "emulation": False}

    def provision(self, mesh: str | None) -> bool:
        if is_running(SandboxPaths(self.state_dir)):
            return False
        up(Path(mesh) if mesh else default_mesh_dir(), self.state_dir)
        return True

    def release(self) -> None:
        down(self.state_dir)

    def prometheus_url(self) -> str:
        """The sandbox's Prometheus, once it has scraped every Envoy (a just-started sandbox takes ~5 s)."""
        with self._client() as client:
            return str(wait_for_metrics(client)["prometheus_url"])

    def kill_pods(self, service: str, count: int | None, percent: float | None, version: str | None,
                  restart_after_s: float, owner: str, mode: KillMode = "crash",
                  zone: str | None = None) -> FaultRecord:
        if mode != "crash":
            raise FaultRejected("kill_pods: mode='evict' is not available on the local target: the sandbox models "
                                "neither graceful termination (SIGTERM, the sidecar's drain, the grace period) nor "
                                "PodDisruptionBudgets; use mode='crash' here (on a cluster, mode='evict' goes "
                                "through the Eviction API)")
        # the lease ends when the replacement starts: heal() brings it forward
        return self._inject("pod-kill", _pods(service, count, percent, version, zone), owner, restart_after_s)

    def fail_pods(self, service: str, duration_s: float, count: int | None, percent: float | None,
                  version: str | None, owner: str, zone: str | None = None) -> FaultRecord:
        return self._inject("pod-failure", _pods(service, count, percent, version, zone), owner, duration_s)

    def kill_app(self, service: str, count: int | None, percent: float | None, version: str | None,
                 restart_after_s: float, owner: str) -> FaultRecord:
        return self._inject("app-kill", _pods(service, count, percent, version), owner, restart_after_s)

    def inject_latency(self, service: str, delay_ms: int, percent: int, source: str | None,
                       duration_s: float, owner: str, zone: str | None = None) -> FaultRecord:
        return self._inject("latency", {"service": service, "delay_ms": delay_ms, "percent": percent,
                                        "source": source, **({"zone": zone} if zone else {})}, owner, duration_s)

    def inject_abort(self, service: str, http_status: int, percent: int, source: str | None,
                     duration_s: float, owner: str, zone: str | None = None) -> FaultRecord:
        return self._inject("abort", {"service": service, "http_status": http_status, "percent": percent,
                                      "source": source, **({"zone": zone} if zone else {})}, owner, duration_s)

    def partition(self, a: str, b: str, direction: Direction, mode: PartitionMode, duration_s: float,
                  owner: str, count: int | None = None, percent: float | None = None,
                  version: str | None = None, zone: str | None = None, isolate: bool = False) -> FaultRecord:
        return self._inject("partition", {"a": a, "b": b, "direction": direction, "mode": mode, "count": count,
                                          "percent": percent, "version": version,
                                          **({"zone": zone} if zone else {}), **({"isolate": True} if isolate else {})},
                            owner, duration_s)

    def pod_localities(self) -> dict[str, str]:
        return {pod["name"]: pod.get("locality", "") for pod in self.describe()["pods"]}

    def heal(self, fault_id: str | None, owner: str | None) -> list[FaultRecord]:
        with self._client() as client:
            return cast(list[FaultRecord], client.heal(fault_id, owner))

    def active_faults(self) -> list[FaultRecord]:
        with self._client() as client:
            return cast(list[FaultRecord], client.faults())

    def fault_history(self, owner: str | None) -> list[FaultRecord]:
        with self._client() as client:
            return cast(list[FaultRecord], client.fault_history(owner))


    # ---- verdicts (chaosmesh_qa.probes.routing / .mtls / .authz): chaosmesh_qa/targets/local/verify.py

    def declared_mesh(self) -> MeshModel:
        from chaosmesh_qa.mesh import load_mesh  # only the mesh QA probes need the declared mesh

        return load_mesh(self.describe()["mesh_dir"]).model

    def check_plaintext_refused(self, service: str) -> list[Record]:
        return verify.plaintext_refused(self.describe(), service)

    def observed_edges(self, samples: int) -> list[Record]:
        return verify.call_tree_edges(self.describe(), samples)

    def check_authorization(self, service: str, callers: dict[str, str], window_s: float) -> list[Record]:
        return verify.authorization_answers(self.describe(), SandboxPaths(self.state_dir).pki, service, callers)

    def trace_query_url(self, configured: str | None) -> str:
        tracing = self.describe().get("tracing")
        if not tracing:
            raise TargetUnavailable(f"the sandbox in {self.state_dir} runs no trace receiver")
        return str(tracing["url"])


def _pods(service: str, count: int | None, percent: float | None, version: str | None,
          zone: str | None = None) -> dict[str, Any]:
    return {"service": service, "count": count, "percent": percent, "version": version,
            **({"zone": zone} if zone else {})}
