"""Prometheus recording rules that give the sandbox Istio's standard metric names, from the Envoy stats.

``server.KubeApi.write_prometheus_rules`` calls ``write_rules`` before the supervisor starts
Prometheus when ``up --kube-api`` is on (the Prometheus config loads ``<prometheus dir>/rules/*.yml``),
so that the Istio dialect of the SLI catalog (``chaosmesh_qa/sli/istio.yaml``) answers in the sandbox
as it would on a cluster.  The rules
are generated from the mesh model, one per (caller workload, callee cluster) and per callee workload:

* ``istio_requests_total`` and ``istio_request_duration_milliseconds_{bucket,sum,count}`` with
  ``reporter="source"`` from each caller sidecar's outbound cluster stats (exact response codes of the
  final attempt, as the caller saw them), and ``reporter="destination"`` from each callee sidecar's
  inbound stats: requests its app answered (exact codes, response_flags "-") plus requests the
  sidecar answered itself (RBAC denials: 403 / "RBAC"; injected aborts: response_code "5xx" / "FI",
  the Envoy stats keep only the class).  Each reporter counts a request once; summing both counts it
  twice, exactly as in Istio.  The destination series name the caller (source_*, source_principal,
  connection_security_policy) only where the mesh gives the callee a single caller (``_peer_labels``).
* ``envoy_cluster_*`` retry / overflow / outlier / membership series again, with Istio's
  ``cluster_name="outbound|<port>|<subset>|<svc>.<ns>.svc.cluster.local"`` instead of
  ``envoy_cluster_name`` (what Istio exports when ``proxyStatsMatcher`` includes them), at 0 before their
  first count: the sandbox scrapes Envoy's ``usedonly`` stats, where a counter is born at its first count
  and ``increase()`` would miss that count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from chaosmesh_qa.files import atomic_write_text
from chaosmesh_qa.mesh.callers import INGRESS
from chaosmesh_qa.mesh.identity import canonical_revision, canonical_service
from chaosmesh_qa.mesh.model import MeshModel

SCRAPE_LABELS = "instance, job, role, service, version"
CLUSTER_STATS = ("envoy_cluster_upstream_rq_retry", "envoy_cluster_upstream_cx_overflow",
                 "envoy_cluster_upstream_rq_pending_overflow", "envoy_cluster_outlier_detection_ejections_active",
                 "envoy_cluster_outlier_detection_ejections_enforced_total", "envoy_cluster_membership_healthy",
                 "envoy_cluster_membership_total")
HISTOGRAM_PARTS = ("bucket", "sum", "count")


def _sel(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _workload_labels(model: MeshModel, service: str, version: str | None) -> dict[str, str]:
    """How Istio's telemetry names one workload: its Deployment, its ``app`` label, its canonical service and
    revision (``mesh.identity``: ``app.kubernetes.io/name`` before ``app``, as Istio reads them)."""
    svc = model.services[service]
    if version is None or version == "unknown":
        names = {canonical_service(v.labels, svc.workload_name(v.name)) for v in svc.versions}
        apps = {v.labels.get("app", "unknown") for v in svc.versions}
        return {"workload": "unknown", "app": apps.pop() if len(apps) == 1 else "unknown",
                "canonical_service": names.pop() if len(names) == 1 else "unknown", "version": "unknown"}
    labels, workload = svc.version(version).labels, svc.workload_name(version)
    return {"workload": workload, "app": labels.get("app", "unknown"),
            "canonical_service": canonical_service(labels, workload), "version": canonical_revision(labels)}


def _source_labels(model: MeshModel, caller: str, version: str | None) -> dict[str, str]:
    if caller == INGRESS:
        gateway = model.ingress_gateway  # its Deployment, app label and canonical service share its name
        return {"source_workload": gateway.name, "source_workload_namespace": gateway.namespace,
                "source_app": gateway.labels.get("app", gateway.name), "source_canonical_service": gateway.name,
                "source_version": "unknown", "source_principal": model.ingress_spiffe}
    svc = model.services[caller]
    named = _workload_labels(model, caller, version)
    return {**{f"source_{k}": v for k, v in named.items()}, "source_workload_namespace": svc.namespace,
            "source_principal": svc.spiffe_id}


def _destination_labels(model: MeshModel, service: str, version: str) -> dict[str, str]:
    svc = model.services[service]
    named = _workload_labels(model, service, version)
    return {"destination_service_name": service, "destination_service_namespace": svc.namespace,
            "destination_service": f"{service}.{svc.namespace}.svc.cluster.local",
            **{f"destination_{k}": v for k, v in named.items()},
            "destination_workload_namespace": svc.namespace, "destination_principal": svc.spiffe_id}


def _peer_labels(model: MeshModel, service: str, version: str) -> dict[str, str]:
    """The caller as the callee's proxy reports it: named only when the mesh gives the service one caller.

    The inbound stats do not say which caller a request came from, so with several callers the source is
    "unknown" (as Istio reports a peer without metadata); ``connection_security_policy`` is what the
    sandbox's configuration makes of the hop (the DestinationRule's tls mode and the callee's
    PeerAuthentication mode), ``source_principal`` the caller's SPIFFE id on a mutual-TLS hop.
    """
    mutual = model.policies[service].tls_mode == "ISTIO_MUTUAL" and model.mtls_mode(service, version) != "DISABLE"
    callers = model.callers(service)
    unknown = {"source_workload": "unknown", "source_app": "unknown", "source_canonical_service": "unknown",
               "source_principal": "unknown"}
    if len(callers) != 1:
        return {**unknown, "connection_security_policy": "mutual_tls" if mutual else "none"}
    caller = callers[0]
    versions = [None] if caller == INGRESS else [v.name for v in model.services[caller].versions]
    found = _source_labels(model, caller, versions[0] if len(versions) == 1 else None)
    if len(versions) != 1:
        found.update(source_workload="unknown", source_version="unknown")
    if not mutual:
        found["source_principal"] = "unknown"
    return {**found, "connection_security_policy": "mutual_tls" if mutual else "none"}


def _callers(model: MeshModel) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = [(INGRESS, None)]
    return found + [(s.name, v.name) for s in model.services.values() for v in s.versions if model.callees(s.name)]


def _clusters(model: MeshModel, callee: str) -> list[tuple[str, str, str]]:
    """(envoy cluster, subset or "", destination version or "unknown") of every caller-side cluster of callee."""
    found = [(callee, "", "unknown")]
    for subset in model.subsets.get(callee, {}).values():
        versions = [v.name for v in model.services[callee].versions
                    if all(v.labels.get(k) == value for k, value in subset.labels.items())]
        found.append((f"{callee}_{subset.name}", subset.name, versions[0] if len(versions) == 1 else "unknown"))
    return found


def rules(model: MeshModel) -> dict[str, Any]:
    recorded: list[dict[str, Any]] = []
    for caller, version in _callers(model):
        scrape = {"service": caller, **({"version": version} if version else {})}
        callees = model.ingress_services() if caller == INGRESS else model.callees(caller)
        for callee in callees:
            for cluster, subset, dest_version in _clusters(model, callee):
                labels = {"reporter": "source", **_source_labels(model, caller, version),
                          **_destination_labels(model, callee, dest_version), "response_flags": "-"}
                selector = _sel(**scrape, envoy_cluster_name=cluster)
                recorded.append({"record": "istio_requests_total", "labels": labels, "expr": (
                    f"sum without ({SCRAPE_LABELS}, envoy_cluster_name, envoy_response_code) (label_replace("
                    f'envoy_cluster_upstream_rq{selector}, "response_code", "$1", "envoy_response_code", "(.*)"))')})
                for part in HISTOGRAM_PARTS:
                    recorded.append({"record": f"istio_request_duration_milliseconds_{part}", "labels": labels,
                                     "expr": f"sum without ({SCRAPE_LABELS}, envoy_cluster_name) "
                                             f"(envoy_cluster_upstream_rq_time_{part}{selector})"})
                svc = model.services[callee]
                istio_cluster = f"outbound|{svc.port}|{subset}|{callee}.{svc.namespace}.svc.cluster.local"
                members = f"envoy_cluster_membership_total{selector}"
                for stat in CLUSTER_STATS:  # at 0 from the start, as Istio's proxies export them (not "usedonly")
                    recorded.append({"record": stat, "labels": {"cluster_name": istio_cluster},
                                     "expr": f"sum without (envoy_cluster_name) ({stat}{selector}) or "
                                             f"0 * sum without (envoy_cluster_name) ({members})"})
    for svc in model.services.values():
        for v in svc.versions:
            scrape = {"service": svc.name, "version": v.name}
            labels = {"reporter": "destination", **_peer_labels(model, svc.name, v.name),
                      **_destination_labels(model, svc.name, v.name)}
            app = _sel(**scrape, envoy_cluster_name="local_app")
            inbound = _sel(**scrape, envoy_http_conn_manager_prefix="inbound")
            recorded.append({"record": "istio_requests_total", "labels": {**labels, "response_flags": "-"},
                             "expr": (
                f"sum without ({SCRAPE_LABELS}, envoy_cluster_name, envoy_response_code) (label_replace("
                f'envoy_cluster_upstream_rq{app}, "response_code", "$1", "envoy_response_code", "(.*)"))')})
            for klass, code, flags in (("4", "403", "RBAC"), ("5", "5xx", "FI")):
                of_class = f'envoy_response_code_class="{klass}"}}'
                answered = f"sum by (pod) (envoy_http_downstream_rq_xx{inbound[:-1]},{of_class})"
                by_app = f"sum by (pod) (envoy_cluster_upstream_rq_xx{app[:-1]},{of_class})"
                recorded.append({"record": "istio_requests_total",
                                 "labels": {**labels, "response_code": code, "response_flags": flags},
                                 "expr": f"clamp_min({answered} - ({by_app} or {answered} * 0), 0)"})
            for part in HISTOGRAM_PARTS:
                recorded.append({"record": f"istio_request_duration_milliseconds_{part}", "labels": labels,
                                 "expr": f"sum without ({SCRAPE_LABELS}, envoy_http_conn_manager_prefix) "
                                         f"(envoy_http_downstream_rq_time_{part}{inbound})"})
    return {"groups": [{"name": "chaosmesh-qa-istio-standard-metrics", "interval": "1s", "rules": recorded}]}


def write_rules(model: MeshModel, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(rules(model), sort_keys=False, width=1000))
