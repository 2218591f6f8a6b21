"""``KubernetesTarget``: the ``MeshTarget`` over a Kubernetes + Istio cluster's API.

Built by ``chaosmesh_qa.targets.get_target`` when ``chaosmesh_qa_target`` (or ``CHAOSMESH_QA_TARGET``) is
``kubernetes``.  Each fault is a transaction (``transaction``): the lease ConfigMap naming every planned change is
created first, then the changes (the fault's server-side claims, ``claims``; EnvoyFilter, NetworkPolicy, pod label
patches, pod deletes); any failure part-way reverts what was applied and deletes the lease, and the error is one
line.  Expiry
is enforced by ``reap`` (a detached local reaper per run, and the in-cluster CronJob of deploy/kubernetes/).
docs/reference/kubernetes-target.md says how each fault maps to the cluster and how it differs from the local
target.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from chaosmesh_qa.errors import ChaosMeshQAError, FaultRejected, MeasurementFailed, TargetUnavailable
from chaosmesh_qa.mesh.meshconfig import MeshConfig
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets import policy
from chaosmesh_qa.targets.base import Direction, KillMode, PartitionMode, Record
from chaosmesh_qa.targets.kubernetes import declared, external, leases, objects, partitions, transaction, verdicts
from chaosmesh_qa.targets.kubernetes.cluster import Cluster
from chaosmesh_qa.targets.kubernetes.dataplane import ListenerWatch
from chaosmesh_qa.targets.kubernetes.settings import KubeSettings, api_client
from chaosmesh_qa.targets.kubernetes.transaction import Change, Transaction
from chaosmesh_qa.targets.kubernetes.workloads import Workload, Workloads, is_serving, mesh_config
from chaosmesh_qa.targets.policy import FaultRecord

MAX_TTL_S = 24 * 3600.0
REPLACEMENT_TIMEOUT_S = 60  # how long kill_pods waits to name the ReplicaSet's replacement
VMS_UNCONFIRMED = ("the service runs on WorkloadEntries (VMs): the EnvoyFilter selects their labels, which istiod "
                   "matches on the VMs' proxies, but a VM's sidecar is no pod, so the Kubernetes API cannot show "
                   "its listeners to confirm the change")
FAITHLESS = {
    "fail_pods": "a pod cannot be held unready from outside the kubelet; use kill_pods (the ReplicaSet "
                 "replaces it) or partition with count/percent (some pods cut off for a duration)",
    "kill_app": "killing only the app container needs exec into it, which this target does not do; use "
                "inject_abort with http_status=503 (what callers see from the sidecar) or kill_pods",
}


class KubernetesTarget:
    kind = "kubernetes"
    metrics_dialect = "istio"

    def __init__(self, settings: KubeSettings, cluster: Cluster | None = None) -> None:
        self.settings = settings
        self._cluster = cluster
        self._trust_domain: str | None = None
        self._mesh_config: MeshConfig | None = None
        self._writing: Transaction | None = None  # the fault being injected: its lease and record

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(api_client(self.settings), dry_run=self.settings.dry_run)
        return self._cluster

    def workloads(self) -> Workloads:
        return Workloads(self.cluster, self.settings.namespaces)

    def trust_domain(self) -> str:
        """The mesh's SPIFFE trust domain: ``chaosmesh_qa_trust_domain``, else ``meshConfig.trustDomain`` of the
        ``istio`` ConfigMap in ``istio-system`` (where istiod reads it), else Istio's default ``cluster.local``."""
        if self._trust_domain is None:
            self._trust_domain = self.settings.trust_domain or self.mesh_config().local
        return self._trust_domain

    def mesh_config(self) -> MeshConfig:
        """The ``istio`` ConfigMap's settings this target reads (trust domain, proxy headers), read once."""
        if self._mesh_config is None:
            self._mesh_config = mesh_config(self.cluster)
        return self._mesh_config

    # ------------------------------------------------------------------ MeshTarget: the mesh

    def provision(self, mesh: str | None) -> bool:
        """Nothing to start (the cluster is there or not), but before the run's traffic starts: check that the
        API answers (one line if not) and pay the client's one-time cost (~1.5 CPU-s: imports, first calls),
        and start this run's detached reaper, so that neither lands inside a fault's measured window."""
        self.describe()
        if not self.cluster.dry_run:
            from chaosmesh_qa.targets.kubernetes.reaper import ensure_local_reaper
            from chaosmesh_qa.targets.run import run_owner

            ensure_local_reaper(self.settings, run_owner())
        return False

    def release(self) -> None:
        return None

    def identity(self) -> dict[str, Any]:
        """The kube context, the API server and its version; ``emulation`` when the server says it is
        chaosmesh-qa's Kubernetes API emulation (its ``/version`` carries ``chaosmesh-qa-emulation``)."""
        context = self.settings.context or self.settings.current_context_name()
        found: dict[str, Any] = {"kind": self.kind, "context": context, "api_server": None,
                                 "server_version": None, "emulation": False,
                                 "namespaces": list(self.settings.namespaces)}
        try:
            found["api_server"] = self.cluster.host
            found["server_version"] = self.cluster.server_version()
        except ChaosMeshQAError as exc:
            found["unreachable"] = str(exc)
        found["emulation"] = "chaosmesh-qa-emulation" in str(found["server_version"] or "")
        what = "Kubernetes API emulation of chaosmesh-qa" if found["emulation"] else "cluster"
        found["name"] = f"{what} {found['api_server'] or '(unreachable)'} (context {context or 'in-cluster'})"
        return found

    def prometheus_url(self) -> str:
        if not self.settings.prometheus_url:
            raise TargetUnavailable("configuration.chaosmesh_qa_prometheus_url: not set (a Prometheus that scrapes "
                                    "Istio's metrics; or CHAOSMESH_QA_PROMETHEUS_URL)")
        return self.settings.prometheus_url

    def describe(self) -> dict[str, Any]:
        described = self.workloads().describe()
        described["ingress_service"] = self.settings.ingress_service or described["ingress_service"]
        return {"kind": self.kind, "cluster": self.cluster.host, "namespaces": self.settings.namespaces,
                "ingress_url": self.settings.ingress_url, "prometheus_url": self.settings.prometheus_url,
                "ingress_gateway": self.settings.ingress_gateway, **described, "faults": self.active_faults()}

    # ------------------------------------------------------------------ MeshTarget: faults

    def kill_pods(self, service: str, count: int | None, percent: float | None, version: str | None,
                  restart_after_s: float, owner: str, mode: KillMode = "crash",
                  zone: str | None = None) -> FaultRecord:
        found = self.workloads()
        workload = found.service(service)
        victims = found.pick(workload, count, percent, version, zone=zone)
        where = {"zone": zone} if zone is not None else {}
        orphans = [p["metadata"]["name"] for p in victims
                   if not any(o.get("controller") for o in p["metadata"].get("ownerReferences") or [])]
        if orphans:
            raise FaultRejected(f"kill_pods: pod(s) {', '.join(orphans)} of {service!r} have no controller "
                                "(no ReplicaSet, StatefulSet, DaemonSet or Job owns them): deleted, they would be "
                                "gone for good, not replaced; run the workload under a controller, or choose pods "
                                "with version/count")
        names = [p["metadata"]["name"] for p in victims]
        # by uid, not name: a StatefulSet's replacement keeps the name of the pod it replaces
        existing = {p["metadata"]["uid"] for p in self.cluster.list_pods(workload.namespace,
                                                                          workload.label_selector())}
        remove = transaction.evicted_pod if mode == "evict" else transaction.deleted_pod
        changes = [remove(self.cluster, workload.namespace, n) for n in names]
        record = self._transaction("pod-kill", {"service": service, "version": version, **where},
                                   {"service": service, "count": count, "percent": percent, "version": version,
                                    "restart_after_s": restart_after_s, "mode": mode, **where}, owner,
                                   restart_after_s,
                                   workload.namespace, changes,
                                   lambda: {"killed_pods": names, "mode": mode,
                                            # an eviction deletes with the pod's own grace period
                                            "grace_period_s": None if mode == "evict" else 0})
        if not self.cluster.dry_run:
            replacements = self._replacements(workload, version, existing, len(names))
            record["changes"].update(replacement_pods=replacements,
                                     replacement_ready=len(replacements) >= len(names))
            self._save(record)
        return record

    def fail_pods(self, service: str, duration_s: float, count: int | None, percent: float | None,
                  version: str | None, owner: str, zone: str | None = None) -> FaultRecord:
        raise FaultRejected(f"fail_pods: not available on the kubernetes target: {FAITHLESS['fail_pods']}")

    def kill_app(self, service: str, count: int | None, percent: float | None, version: str | None,
                 restart_after_s: float, owner: str) -> FaultRecord:
        raise FaultRejected(f"kill_app: not available on the kubernetes target: {FAITHLESS['kill_app']}")

    def inject_latency(self, service: str, delay_ms: int, percent: int, source: str | None,
                       duration_s: float, owner: str, zone: str | None = None) -> FaultRecord:
        return self._l7("latency", service, source, objects.delay_fault(delay_ms, percent),
                        {"service": service, "delay_ms": delay_ms, "percent": percent, "source": source},
                        duration_s, owner, zone)

    def inject_abort(self, service: str, http_status: int, percent: int, source: str | None,
                     duration_s: float, owner: str, zone: str | None = None) -> FaultRecord:
        return self._l7("abort", service, source, objects.abort_fault(http_status, percent),
                        {"service": service, "http_status": http_status, "percent": percent, "source": source},
                        duration_s, owner, zone)

    def partition(self, a: str, b: str, direction: Direction, mode: PartitionMode, duration_s: float,
                  owner: str, count: int | None = None, percent: float | None = None,
                  version: str | None = None, zone: str | None = None, isolate: bool = False) -> FaultRecord:
        if "." in b:  # no Service name has a dot: a ServiceEntry's host, cut at a's sidecar (external)
            if direction != "to" or mode != "reject" or isolate or any(
                    v is not None for v in (count, percent, version, zone)):
                raise FaultRejected(external.PARTITION_RULE)
            source = None if a == policy.EVERY_CALLER else a  # every caller: the filter on every sidecar
            return self._external_l7("partition", b, source, objects.abort_fault(503, 100),
                                     {"a": a, "b": b, "direction": direction, "mode": mode}, duration_s, owner,
                                     {"a": a, "b": b, "direction": direction})
        if a == policy.EVERY_CALLER:
            raise FaultRejected(policy.every_caller_refused(b))
        planned = partitions.plan(self.cluster, self.workloads(), a, b, direction, mode,
                                  partitions.Scope(count, percent, version, zone, isolate),
                                  lambda: self._ttl(duration_s), self.trust_domain, self.mesh_config,
                                  self.active_faults)
        record = self._transaction("partition", planned.target, planned.parameters, owner, duration_s,
                                   planned.namespace, planned.changes, planned.summary,
                                   fault_id=planned.fault_id, expires_at=planned.expires_at)
        if self.cluster.dry_run:
            return record
        if mode == "drop":
            record["changes"]["confirmed"] = False
            record["changes"]["unconfirmed"] = partitions.DROP_UNCONFIRMED
            self._save(record)
            return record
        return self._confirm(record, planned.watched)

    def pod_localities(self) -> dict[str, str]:
        return {key.split("/", 1)[1]: where for key, where in self.workloads().localities().items()}

    # ------------------------------------------------------------------ mesh QA verdicts (declared.py, verdicts.py)

    def declared_mesh(self) -> MeshModel:
        return declared.declared_mesh(self.cluster, self.settings.namespaces, self._ingress_service())

    def _ingress_service(self) -> str | None:
        """The configured first service behind the ingress, else the one a gateway-bound VirtualService names."""
        return self.settings.ingress_service or self.workloads().describe()["ingress_service"]

    def write_declared_mesh(self, directory: Path, calls_window: str) -> list[str]:
        """The cluster's mesh written as a mesh directory (``chaosmesh-qa coverage``), each service's calls those
        Istio's metrics saw over ``calls_window`` (a PromQL duration); returns what the API could not tell."""
        raw, unread = declared.declared_documents(self.cluster, self.settings.namespaces, self._ingress_service())
        model = declared.build_declared(raw, f"cluster {self.cluster.host}", unread)
        edges = verdicts.observed_edges(self.prometheus_url(), set(model.services),
                                        {**verdicts.source_names(model), self.settings.ingress_gateway: "ingress"},
                                        settle_s=0, window=calls_window)
        calls: dict[str, list[str]] = {}
        for edge in edges:
            calls.setdefault(str(edge["source"]), []).append(str(edge["destination"]))
        declared.write_directory(declared.with_calls(raw, {k: sorted(set(v)) for k, v in calls.items()}), directory)
        seen = (f"the calls between services are those Istio's metrics saw over the last {calls_window} "
                f"({len(edges)} hop(s) by caller identity)" if edges else
                f"no call between services in Istio's metrics over the last {calls_window}: only the ingress's "
                "first service is reached, so most promises count as uncovered (send traffic, or widen --calls-window)")
        return [f"{seen}; which paths the apps call and which headers they pass on is not in the API: a route matched "
                "on a header set upstream counts as reached by no request", *unread]

    def check_plaintext_refused(self, service: str) -> list[Record]:
        workload = self.workloads().service(service)
        model = self.declared_mesh()
        if service not in model.services:
            raise MeasurementFailed(f"service: {service!r} has no pod with a 'version' label in namespace "
                                    f"{workload.namespace!r}")
        return verdicts.effective_modes(model, self.cluster, workload.namespace, service)

    def observed_edges(self, samples: int) -> list[Record]:
        model = self.declared_mesh()
        return verdicts.observed_edges(self.prometheus_url(), set(model.services),
                                       {**verdicts.source_names(model), self.settings.ingress_gateway: "ingress"})

    def check_authorization(self, service: str, callers: dict[str, str], window_s: float) -> list[Record]:
        workload = self.workloads().service(service)  # the target presents no identity: it reads what was counted
        return verdicts.caller_answers(self.prometheus_url(), service, workload.namespace, window_s)

    def trace_query_url(self, configured: str | None) -> str:
        if not configured:
            raise TargetUnavailable("configuration.chaosmesh_qa_tracing_url: not set (the base URL of a Zipkin v2 "
                                    "query API that receives the mesh's spans, such as Istio's Zipkin addon "
                                    "http://zipkin.istio-system:9411; see docs/how-to/verdicts/tracing.md)")
        return configured

    def heal(self, fault_id: str | None, owner: str | None) -> list[FaultRecord]:
        """End the matching active leases; one that cannot be reverted does not stop the others (it stays
        active, for the reaper to retry) and is named in the one-line error raised after them."""
        healed, failed = [], []
        for lease in leases.list_leases(self.cluster, self.settings.namespaces, owner):
            metadata = lease["metadata"]
            if leases.is_ended(lease) or (fault_id is not None and leases.record_of(lease)["fault_id"] != fault_id):
                continue
            known = leases.record_of(lease)
            # a fault the listeners never showed (unconfirmed) has nothing there to take back: no wait for it
            watch = ListenerWatch(self.cluster, metadata["namespace"], list(known["changes"].get("pods") or [])) \
                if known.get("kind") in policy.L7_KINDS and known["changes"].get("confirmed") \
                and not self.cluster.dry_run else None
            try:
                record = leases.end_lease(self.cluster, metadata["namespace"], metadata["name"], "healed")
            except ChaosMeshQAError as exc:
                failed.append(str(exc))
                continue
            if record is not None and watch is not None and record.get("ended") == "healed":
                # the heal returns once the callee sidecars' listeners are back (or says they are not)
                record["reverted"]["data_plane"], why = watch.changed()
                if why:
                    record["reverted"]["data_plane_detail"] = why
            if record is not None:
                healed.append(cast(FaultRecord, record))
        if failed:
            raise FaultRejected(f"heal: {len(failed)} fault(s) not reverted ({len(healed)} were; the reaper retries "
                                f"at expiry): {'; '.join(failed)}")
        return healed

    def active_faults(self) -> list[FaultRecord]:
        now = self.cluster.now()
        return [cast(FaultRecord, leases.record_of(lease, now))
                for lease in leases.list_leases(self.cluster, self.settings.namespaces) if not leases.is_ended(lease)]

    def fault_history(self, owner: str | None) -> list[FaultRecord]:
        now = self.cluster.now()
        return [cast(FaultRecord, leases.record_of(lease, now))
                for lease in leases.list_leases(self.cluster, self.settings.namespaces, owner)]

    # ------------------------------------------------------------------ faults: building blocks

    def _l7(self, kind: str, service: str, source: str | None, fault: dict[str, Any], parameters: dict[str, Any],
            duration_s: float, owner: str, zone: str | None = None) -> FaultRecord:
        """A latency or abort at the callee's sidecars' inbound: an EnvoyFilter selecting its pods (with ``zone``:
        those of the zone, marked with a label of the fault's own, restored at the heal, as a zone partition's)."""
        if "." in service:  # no Service name has a dot: a ServiceEntry's host
            if zone is not None:
                raise FaultRejected(f"zone: {service!r} is a ServiceEntry's host, not pods in a zone")
            return self._external_l7(kind, service, source, fault, parameters, duration_s, owner)
        found = self.workloads()
        callee = found.service(service)
        on_vms = bool(callee.entries)  # WorkloadEntries: their sidecars are no pods to check or watch
        zoned = found.pick(callee, None, 100.0, None, zone=zone) if zone is not None else []
        pods = [] if on_vms else [p["metadata"]["name"] for p in (zoned or found.running_pods(callee))]
        if not on_vms:
            found.require_sidecars(callee, "service")
        principals: list[str | None] = [None]
        if source is not None:
            principals = found.caller_principals(found.service(source, "source"), "source", self.trust_domain())
            if not on_vms:
                found.require_caller_in_xfcc(callee, "source", self.mesh_config())
        ports = found.inbound_ports(callee)
        target = {"service": service, "source": source, **({"zone": zone} if zone is not None else {})}
        policy.check_conflicts(kind, target, self.active_faults())
        fault_id, expires_at = policy.new_fault_id(kind), self.cluster.now() + self._ttl(duration_s)
        changes = transaction.claimed(self.cluster, fault_id, kind, target, expires_at, callee.namespace)
        mark = {objects.marked_label(fault_id): "true"}
        changes += [transaction.marked(self.cluster, callee.namespace, pod, fault_id, mark) for pod in zoned]
        selector = {**callee.selector, **(mark if zoned else {})}
        for index, principal in enumerate(principals):
            body = objects.envoy_filter(fault_id, expires_at, callee.namespace, selector, ports, fault,
                                        f"spiffe://{principal}" if principal else None)
            if index:
                body["metadata"]["name"] += f"-{index}"
            changes.append(transaction.created(self.cluster, body))
        watch = None if self.cluster.dry_run or on_vms else ListenerWatch(self.cluster, callee.namespace, pods)
        if zone is not None:
            parameters = {**parameters, "zone": zone}
        vms = {"workload_entries": list(callee.entries)} if on_vms else {}
        record = self._transaction(kind, target, parameters, owner, duration_s, callee.namespace, changes,
                                   lambda: {"pods": pods, "applied_at": "callee inbound", **vms},
                                   fault_id=fault_id, expires_at=expires_at,
                                   unconfirmable=VMS_UNCONFIRMED if on_vms else None)
        return self._confirm(record, [watch] if watch is not None else [])

    def _external_l7(self, kind: str, host: str, source: str | None, fault: dict[str, Any],
                     parameters: dict[str, Any], duration_s: float, owner: str,
                     target: dict[str, Any] | None = None) -> FaultRecord:
        """A latency or abort toward a ServiceEntry's host, at its callers' sidecars (``external``); a partition
        (``target``: a, b, direction) is the abort of every request of ``source``."""
        namespaces = self.settings.namespaces
        entry = external.declared_host(self.cluster, namespaces, host)
        if entry is None:
            raise FaultRejected(f"service: {host!r} is no Service and no ServiceEntry's host in namespace(s) "
                                f"{', '.join(namespaces)}")
        found = self.workloads()
        caller = found.service(source, "source") if source is not None else None
        homes = [caller.namespace] if caller is not None else list(namespaces)
        pods = {ns: [p["metadata"]["name"] for p in (found.running_pods(caller, argument="source") if caller else
                     [p for p in self.cluster.list_pods(ns, None) if is_serving(p)])] for ns in homes}
        if caller is not None:
            found.require_sidecars(caller, "source")
        target = target or {"service": host, "source": source}
        policy.check_conflicts(kind, target, self.active_faults())
        fault_id, expires_at = policy.new_fault_id(kind), self.cluster.now() + self._ttl(duration_s)
        changes = transaction.claimed(self.cluster, fault_id, kind, target, expires_at, homes[0])
        for index, namespace in enumerate(homes):
            changes.append(transaction.created(self.cluster, external.outbound_fault_filter(
                fault_id, expires_at, namespace, caller.selector if caller else None, host, fault,
                f"chaosmesh-qa-{fault_id}" + (f"-{index}" if index else ""))))
        watches = [] if self.cluster.dry_run else [ListenerWatch(self.cluster, ns, names)
                                                   for ns, names in pods.items() if names]
        record = self._transaction(kind, target, parameters, owner, duration_s, homes[0], changes,
                                   lambda: {"pods": sorted(n for names in pods.values() for n in names),
                                            "applied_at": "caller outbound", "service_entry": entry,
                                            "placement": external.CALLER_SIDE},
                                   fault_id=fault_id, expires_at=expires_at)
        return self._confirm(record, watches)

    def _confirm(self, record: FaultRecord, watches: list[ListenerWatch]) -> FaultRecord:
        """Stored is not applied: the fault is confirmed only once the watched sidecars' listeners changed (each
        watch's reason otherwise, in ``unconfirmed``); the lease's record is updated.  No watch (a dry run, no pod
        to watch): the record as the transaction left it."""
        if not watches:
            return record
        results = [watch.changed() for watch in watches]
        record["changes"]["confirmed"] = bool(record["changes"].get("confirmed")) and all(ok for ok, _ in results)
        reasons = [why for _, why in results if why]
        if reasons:
            record["changes"]["unconfirmed"] = "; ".join(reasons)
        self._save(record)
        return record

    def _transaction(self, kind: str, target: dict[str, Any], parameters: dict[str, Any], owner: str,
                     duration_s: float, namespace: str, changes: list[Change], summary: Callable[[], dict[str, Any]],
                     fault_id: str | None = None, expires_at: float | None = None,
                     unconfirmable: str | None = None) -> FaultRecord:
        self._writing = Transaction(self.cluster, self.settings)
        return self._writing.run(kind, target, parameters, owner, self._ttl(duration_s), namespace, changes, summary,
                                 fault_id, expires_at, unconfirmable)

    def _save(self, record: FaultRecord) -> None:
        assert self._writing is not None, "saved before the transaction ran"
        self._writing.save(record)

    def _replacements(self, workload: Workload, version: str | None, before: set[str], wanted: int) -> list[str]:
        """Pods (uids not in ``before``) that were not there before the kill and are ready: the controller's
        answer (bounded wait).  A StatefulSet's replacement has the old name and a new uid."""
        ready: set[str] = set()
        deadline = time.monotonic() + REPLACEMENT_TIMEOUT_S
        while len(ready) < wanted and time.monotonic() < deadline:
            timeout = max(1, int(deadline - time.monotonic()))
            for event, pod in self.cluster.watch_pods(workload.namespace, workload.label_selector(), timeout):
                name = pod["metadata"]["name"]
                if (event != "DELETED" and pod["metadata"].get("uid") not in before and is_serving(pod)
                        and workload.runs(pod, version)):
                    ready.add(name)
                if len(ready) >= wanted:
                    break
        return sorted(ready)

    @staticmethod
    def _ttl(duration_s: float) -> float:
        return policy.check_ttl(duration_s, MAX_TTL_S, "the kubernetes target's max TTL")
