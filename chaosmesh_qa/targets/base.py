"""The ``MeshTarget`` seam: everything an activity may ask of a mesh, whatever runs it.

Activity modules (``chaosmesh_qa.actions``, probes, controls) call only this interface
and never branch on the target kind.  ``chaosmesh_qa.targets.local.target.LocalTarget``
realises it over the embedded sandbox; a Kubernetes + Istio target will implement the
same methods with pods, VirtualService faults and AuthorizationPolicies.

Every fault method returns a JSON-serialisable record for the journal, a
``targets.policy.FaultRecord`` (its schema, with what each field means); the rules that decide
whether a fault may be injected and on what (ids, TTL, pod selection, edges, conflicts) are in
``targets.policy`` too, for every target alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from chaosmesh_qa.mesh.model import MeshModel

from chaosmesh_qa.targets.policy import Direction, FaultRecord

Record = dict[str, Any]  # a verdict's observation (a pod's mTLS answer, an observed edge)
PartitionMode = Literal["drop", "reject"]
KillMode = Literal["crash", "evict"]  # kill_pods: a crash (delete, grace period 0) or an eviction (Eviction API)


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
        """``services`` (versions, subsets, callers, callees; ``canonical_service`` where the name the metrics know
        its pods by may differ from the service's: Istio's canonical service), ``ingress_service``, pods, URLs,
        active faults."""
        ...

    def identity(self) -> dict[str, Any]:
        """What a run was pointed at, for the journal and every report: ``kind``, ``name`` (one line a person
        reads: the sandbox's state directory, or the kube context and API server) and ``emulation`` (True
        when the "cluster" is the sandbox's Kubernetes API emulation, not a cluster).  Never raises for an
        unreachable mesh: it says so in ``name`` instead."""
        ...

    def kill_pods(self, service: str, count: int | None, percent: float | None, version: str | None,
                  restart_after_s: float, owner: str, mode: KillMode = "crash",
                  zone: str | None = None) -> FaultRecord:
        """``zone``: only pods in that zone (``targets.policy.in_zone``), as every pod fault and partition."""
        ...

    def fail_pods(self, service: str, duration_s: float, count: int | None, percent: float | None,
                  version: str | None, owner: str, zone: str | None = None) -> FaultRecord: ...

    def kill_app(self, service: str, count: int | None, percent: float | None, version: str | None,
                 restart_after_s: float, owner: str) -> FaultRecord: ...

    def inject_latency(self, service: str, delay_ms: int, percent: int, source: str | None,
                       duration_s: float, owner: str, zone: str | None = None) -> FaultRecord:
        """``zone``: only at ``service``'s pods in that zone (their sidecars' inbound; ``targets.policy.in_zone``)."""
        ...

    def inject_abort(self, service: str, http_status: int, percent: int, source: str | None,
                     duration_s: float, owner: str, zone: str | None = None) -> FaultRecord: ...

    def partition(self, a: str, b: str, direction: Direction, mode: PartitionMode, duration_s: float,
                  owner: str, count: int | None = None, percent: float | None = None,
                  version: str | None = None, zone: str | None = None, isolate: bool = False) -> FaultRecord:
        """``zone``: only ``b``'s pods in that zone, and ``a``'s pods in it are spared unless ``isolate``."""
        ...

    def pod_localities(self) -> dict[str, str]:
        """Every pod of the mesh (running or starting) -> its locality, ``region/zone/subzone`` ('' for none), as
        Istio gives it to the pod's sidecar.  Local: the sandbox's pods.  A cluster: the pod's ``istio-locality``
        label, else its node's ``topology.kubernetes.io/region``/``zone`` and ``topology.istio.io/subzone``
        labels (what istiod reads; needs ``get`` on nodes)."""
        ...

    def heal(self, fault_id: str | None, owner: str | None) -> list[FaultRecord]:
        """Revert one fault, every fault of ``owner``, or every fault; idempotent."""
        ...

    def active_faults(self) -> list[FaultRecord]: ...

    def fault_history(self, owner: str | None) -> list[FaultRecord]:
        """Every fault still remembered (ended ones carry ``ended_at``), oldest first; for run phases."""
        ...

    # ---- verdicts on the mesh's own promises (routing, mTLS, authorization, tracing): chaosmesh_qa.probes.*

    def declared_mesh(self) -> MeshModel:
        """The mesh as declared and resolved with Istio's defaults (routes, subsets, policies).

        Local: the sandbox's mesh directory, loaded with ``chaosmesh_qa.mesh.load_mesh``.  A cluster
        target: the services (Deployments' version labels and replicas) and the VirtualServices,
        DestinationRules, PeerAuthentications and AuthorizationPolicies read from the API server,
        resolved with ``chaosmesh_qa.mesh.build.build_model`` into the same ``MeshModel``.
        """
        ...

    def check_plaintext_refused(self, service: str) -> list[Record]:
        """Whether each running pod of ``service`` refuses a plaintext (non-mTLS) request on its inbound.

        One record per pod: ``pod``, ``version``, ``refused`` (bool), ``detail`` (what happened).
        Local: a plaintext HTTP request to the sidecar's inbound port (a STRICT listener closes the
        connection at the TLS handshake; PERMISSIVE/DISABLE answer HTTP).  A cluster target: from a
        pod outside the mesh (no sidecar) in the service's namespace, or, where it cannot run one,
        the pod's effective PeerAuthentication mode (``refused`` only under STRICT) with ``detail``
        saying which was done.
        """
        ...

    def observed_edges(self, samples: int) -> list[Record]:
        """Caller -> callee hops seen on live requests, with the identity the callee's proxy verified.

        Records ``source`` (a service, or ``ingress``), ``destination``, ``principal`` (the caller's
        SPIFFE id from its client certificate; ``None`` when the hop carried none, i.e. plaintext),
        ``requests``; a hop whose workload cannot report the identity is left out.  Local: sends
        ``samples`` requests through the ingress and reads the demo apps' call trees (each app
        reports the caller its sidecar verified).  A cluster target: ``istio_requests_total``
        with ``reporter="destination"`` over the last minute, grouped by
        ``source_canonical_service``, ``destination_service_name``, ``source_principal`` and
        ``connection_security_policy`` (``principal`` None unless it is ``mutual_tls``);
        ``samples`` is ignored there.
        """
        ...

    def check_authorization(self, service: str, callers: dict[str, str], window_s: float) -> list[Record]:
        """How ``service``'s workloads answer each caller identity, for the authorization verdict.

        ``callers``: SPIFFE id -> the path that identity is to ask for.  One record per answer: ``how``
        (``sent`` or ``observed``), ``pod`` (None when observed), ``version``, ``principal`` (the caller's SPIFFE
        id; None when the callee's proxy could not name it), ``path`` (None when observed), ``codes`` (response
        code -> requests), ``detail``.  Local: one mTLS request ``GET <path>`` (``Host: <service>``) to each
        running pod's inbound port as each identity, with the certificate the sandbox's PKI issued it; an
        identity it has issued none for, or a pod that does not answer, is a record with no codes saying so
        (``window_s`` is ignored).  A cluster target cannot present another workload's identity: it reports the
        requests the callee's proxies counted over the last ``window_s`` (``istio_requests_total`` with
        ``reporter="destination"`` per ``source_principal``, ``destination_version`` and ``response_code``),
        every source it saw, asked for or not; ``callers`` only says whom the verdict asks about.
        """
        ...

    def trace_query_url(self, configured: str | None) -> str:
        """Base URL of a Zipkin v2 query API (``GET /api/v2/traces``) holding this mesh's spans.

        Local: the sandbox's own receiver (``targets.local.tracing.collector``; ``configured`` is
        ignored).  A cluster target: ``configured`` (``configuration.chaosmesh_qa_tracing_url``),
        a ``TargetUnavailable`` line when it is not set.  Used by ``chaosmesh_qa.probes.tracing``.
        """
        ...

