"""Resilience analysis of a declared mesh, before any experiment: ``chaosmesh-qa explain``.

``explain(directory, rps)`` loads the mesh (``load_mesh``), reads each Istio resource's file and
name back from the YAML (``loader.sourced_documents``: a kustomization's as rendered) so every finding names file,
resource and field, and
returns findings (``mesh.findings``) with stable codes (``CMQ-<area><nnn>``, never renumbered), why
each matters and the shipped experiment that would show it; given experiments, also their latency
SLOs the histograms cannot resolve (``mesh.explain_slos``).  With a request rate it predicts, per service, what
killing one pod costs (``predict_pod_kill``).  Called by ``chaosmesh_qa.cli.explain``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.access import decide_caller, identities
from chaosmesh_qa.mesh.explain_localities import locality_findings
from chaosmesh_qa.mesh.explain_slos import slo_findings
from chaosmesh_qa.mesh.findings import Finding
from chaosmesh_qa.mesh.loader import sourced_documents
from chaosmesh_qa.mesh.model import ISTIO_UNLIMITED, MeshModel, Route, TrafficPolicy, default_retries, selects
from chaosmesh_qa.mesh.promises import RETRIED
from chaosmesh_qa.mesh.routing import expected_shares

DEFAULT_ENDPOINT_DELAY_S = 1.0  # the sandbox's default; Kubernetes + istiod take about as long


@dataclass(frozen=True)
class PodKillPrediction:
    service: str
    rps_into_service: float
    pod_share: float  # of the service's requests, on the killed pod
    ejection_s: float | None  # None: outlier detection cannot eject it
    exposed_s: float  # how long callers still send to the dead pod
    failed_requests: float  # client-visible, until ejection or endpoint removal
    retried: bool
    sole_pod: bool  # no other pod to go to: the outage lasts until a replacement is ready


class _Sources:
    """Where each Istio resource of the mesh is declared (file, name) by kind and service."""

    def __init__(self, root: Path, model: MeshModel) -> None:
        self.by_key: dict[tuple[str, str], str] = {}
        self.peer_auth: list[tuple[str, str, dict[str, str]]] = []  # name, mode, selector
        hosts = {h: s for s, svc in model.services.items() for h in svc.host_names}
        for path, doc in sourced_documents(root):  # a kustomization's as kubectl kustomize renders it
            data = doc.data if isinstance(doc.data, dict) else {}
            spec = data.get("spec") or {}
            where = f"{path}: {doc.kind}/{doc.name}"
            if doc.kind == "DestinationRule" and spec.get("host") in hosts:
                self.by_key[("DestinationRule", hosts[spec["host"]])] = where
            elif doc.kind == "VirtualService":
                for host in spec.get("hosts") or []:
                    if host in hosts:  # the first read is the oldest, the one in effect (mesh.virtualservices)
                        self.by_key.setdefault(("VirtualService", hosts[host]), where)
            elif doc.kind in ("PeerAuthentication", "AuthorizationPolicy"):
                self.by_key[(doc.kind, str(doc.name))] = where
                if doc.kind == "PeerAuthentication":
                    selector = (spec.get("selector") or {}).get("matchLabels") or {}
                    self.peer_auth.append((str(doc.name), str((spec.get("mtls") or {}).get("mode")), selector))
            elif doc.kind == "Mesh":
                self.by_key[("Mesh", "")] = where

    def at(self, kind: str, key: str, field: str) -> str:
        where = self.by_key.get((kind, key), f"(no {kind} for {key})")
        return f"{where}: {field}"


def explain(directory: str | Path, rps: float | None = None, endpoint_delay_s: float = DEFAULT_ENDPOINT_DELAY_S,
            experiments: list[Path] | None = None, dialect: str = "envoy") -> dict[str, Any]:
    """Findings (and, with ``rps``, pod-kill predictions) for the mesh in ``directory``.

    ``experiments``: also check their latency SLOs against ``dialect``'s histogram buckets.
    """
    loaded = load_mesh(directory)
    model = loaded.model
    src = _Sources(Path(directory), model)
    findings = [*_routes(model, src), *_policies(model, src), *_security(model, src), *_tracing(model, src),
                *locality_findings(model, src.at), *slo_findings(experiments or [], dialect)]
    result: dict[str, Any] = {"mesh": model.name, "directory": str(directory), "warnings": loaded.warnings,
                              "findings": [asdict(f) for f in findings]}
    if rps is not None:
        result["rps"] = rps
        result["pod_kill"] = [asdict(p) for p in predict_pod_kill(model, rps, endpoint_delay_s)]
    return result


def _routes(model: MeshModel, src: _Sources) -> list[Finding]:
    found = []
    for name in sorted(model.services):
        if not model.callers(name):
            continue
        routes = model.routes_for(name)
        declared = name in model.routes
        policy = model.policies[name]
        def vs(i: int, field: str, name: str = name, routes: tuple[Route, ...] = routes) -> str:
            if "HTTPRoute/" in routes[i].where:  # an HTTPRoute attached to the Service (mesh.meshroutes)
                return f"{routes[i].where.rpartition('.matches[')[0]}.{'retry' if field == 'retries' else field}"
            return src.at("VirtualService", name, f"spec.http[{i}].{field}")

        defaults = [i for i, r in enumerate(routes) if r.retries == default_retries()]
        for i, route in enumerate(routes):
            if defaults and i == defaults[0]:
                found.append(Finding("CMQ-R001", "info", vs(i, "retries") if declared else
                                     src.at("VirtualService", name, "(none)"),
                                     f"{name}: Istio's default retries (2 attempts on connect-failure, refused-stream, "
                                     "unavailable) apply",
                                     "they retry a killed pod's refused connections on another replica, so a pod-kill "
                                     "experiment passes whatever your own resilience settings are",
                                     "pod-kill-failover"))
            tries = route.retries.attempts + 1
            per_try = route.retries.per_try_timeout_s
            if per_try and route.timeout_s and route.retries.attempts and tries * per_try > route.timeout_s:
                found.append(Finding("CMQ-T003", "warning", vs(i, "retries"),
                                     f"{name}: {tries} tries x perTryTimeout {per_try:g}s exceed the route timeout "
                                     f"{route.timeout_s:g}s", "the last retries can never run: the request times "
                                     "out first", "latency-circuit-breaker"))
            if per_try and policy.connect_timeout_s > per_try:
                found.append(Finding("CMQ-T001", "warning", src.at("DestinationRule", name,
                                     "spec.trafficPolicy.connectionPool.tcp.connectTimeout"),
                                     f"{name}: connect timeout {policy.connect_timeout_s:g}s is longer than the "
                                     f"per-try timeout {per_try:g}s", "Envoy's per-try timeout starts once the "
                                     "connection is up: a blackholed replica eats whole request timeouts",
                                     "partition-failover"))
            if route.fault is not None and route.retries.attempts:
                found.append(Finding("CMQ-F001", "warning", vs(i, "fault"),
                                     f"{name}: a VirtualService fault on a route that also carries retries",
                                     "Istio injects it in the caller before the router: the retries you mean to "
                                     "test never see it (inject faults at the callee instead)", "pod-kill-failover"))
        for caller in model.callers(name):
            if caller == "ingress":
                continue
            outer = min((r.timeout_s for r in model.routes_for(caller) if r.timeout_s), default=None)
            inner = max((r.timeout_s or math.inf for r in routes), default=math.inf)
            if outer is not None and inner > outer:
                found.append(Finding("CMQ-T002", "warning", src.at("VirtualService", name, "spec.http[].timeout"),
                                     f"{name}: its timeout ({'none' if inner == math.inf else f'{inner:g}s'}) is "
                                     f"longer than its caller {caller}'s ({outer:g}s)", "the caller gives up first: "
                                     f"{name}'s own timeout and retries never act", "latency-circuit-breaker"))
        for subset in model.subsets.get(name, {}).values():
            selected = [v.name for v in model.services[name].versions
                        if selects(subset.labels, model.workload_labels(name, v.name))]
            where = src.at("DestinationRule", name, f"spec.subsets[{subset.name}].labels")
            if not selected:
                found.append(Finding("CMQ-R003", "warning", where, f"{name}: subset {subset.name} selects no pod",
                                     "its share of the traffic fails with 503 no healthy upstream", "routing-canary"))
            elif subset.name in {v.name for v in model.services[name].versions} and subset.name not in selected:
                found.append(Finding("CMQ-R002", "warning", where,
                                     f"{name}: subset {subset.name} selects the pods of {', '.join(selected)}, "
                                     f"not version {subset.name}", "the traffic meant for that version lands on "
                                     "other pods: the canary receives nothing", "routing-canary"))
    return found


def _policies(model: MeshModel, src: _Sources) -> list[Finding]:
    found = []
    for name in sorted(model.services):
        if not model.callers(name):
            continue
        policy = model.policies[name]
        replicas = sum(v.replicas for v in model.services[name].versions)
        def dr(field: str, name: str = name) -> str:
            return src.at("DestinationRule", name, field)

        if policy.outlier is None and replicas > 1:
            found.append(Finding("CMQ-O001", "warning", dr("spec.trafficPolicy.outlierDetection"),
                                 f"{name}: no outlier detection", "a dead or blackholed replica keeps its share "
                                 "of the traffic until its endpoint is removed (or forever, when it hangs)",
                                 "partition-failover"))
        elif policy.outlier is not None and math.floor(policy.outlier.max_ejection_percent * replicas / 100) < 1:
            found.append(Finding("CMQ-O002", "warning", dr("spec.trafficPolicy.outlierDetection.maxEjectionPercent"),
                                 f"{name}: maxEjectionPercent {policy.outlier.max_ejection_percent} of {replicas} "
                                 "hosts allows no ejection", "Envoy does not eject past it (unless "
                                 "always_eject_one_host, which Istio does not set): the detector never acts",
                                 "pod-kill-failover"))
        if _unlimited(policy):
            found.append(Finding("CMQ-C001", "info", dr("spec.trafficPolicy.connectionPool"),
                                 f"{name}: no connection pool limits (no circuit breaker)", "a slow " + name +
                                 " piles up requests in its callers instead of failing them fast",
                                 "latency-circuit-breaker"))
    return found


def _unlimited(policy: TrafficPolicy) -> bool:
    b = policy.circuit_breaker
    return all(v == ISTIO_UNLIMITED for v in (b.max_connections, b.max_pending_requests, b.max_requests))


def _security(model: MeshModel, src: _Sources) -> list[Finding]:
    found = []
    for name in sorted(model.services):
        for version in model.services[name].versions:
            mode = model.mtls_mode(name, version.name)
            if mode != "STRICT":
                labels = model.workload_labels(name, version.name)
                chosen = [n for n, m, sel in src.peer_auth if m == mode and (not sel or selects(sel, labels))]
                where = (src.at("PeerAuthentication", chosen[0], "spec.mtls.mode") if chosen
                         else "(no PeerAuthentication: Istio's default PERMISSIVE): spec.mtls.mode")
                found.append(Finding("CMQ-S001", "warning", where, f"{name}/{version.name}: mTLS is {mode}",
                                     "its sidecar accepts plaintext: any workload (or anything on the network) "
                                     "can call it without an identity", "mtls-strict"))
    for policy in model.authz:
        where = src.at("AuthorizationPolicy", policy.name, "spec.rules")
        if policy.action == "ALLOW" and not policy.rules:
            found.append(Finding("CMQ-S002", "warning", where, f"AuthorizationPolicy {policy.name} allows nobody",
                                 "an ALLOW policy without rules matches no request: every call to the selected "
                                 "workloads is denied", "authz-enforced"))
        elif policy.action == "ALLOW" and any(
                (not r.sources or any("*" in s.principals for s in r.sources)) and not r.operations
                for r in policy.rules):
            found.append(Finding("CMQ-S003", "warning", where, f"AuthorizationPolicy {policy.name} allows everybody",
                                 "a rule with no source (or principal '*') and no operation matches every "
                                 "request: the policy restricts nothing", "authz-enforced"))
    return found + _needless_callers(model, src)


def _needless_callers(model: MeshModel, src: _Sources) -> list[Finding]:
    """CMQ-S004: an ALLOW policy lets in an identity none of whose workloads calls the service (least privilege)."""
    found = []
    for name in sorted(model.services):
        callers, seen = set(model.callers(name)), set()
        for version in model.services[name].versions:
            policies = model.authz_for(name, version.name)
            if not any(p.action == "ALLOW" for p in policies):
                continue
            for principal, who in identities(model).items():
                decision = decide_caller(policies, principal)
                if callers & set(who) or decision.allowed is False or not decision.policies or principal in seen:
                    continue
                seen.add(principal)
                policy = decision.policies[0].split("/", 1)[1]
                found.append(Finding("CMQ-S004", "warning", src.at("AuthorizationPolicy", policy, "spec.rules"),
                                     f"{name}: AuthorizationPolicy {policy} lets in {'/'.join(who)} ({principal}), "
                                     f"which never calls {name}",
                                     "an identity with no business there can call it: a widened or copied rule "
                                     "that no traffic test shows, since nobody sends that traffic", "authz-enforced"))
    return found


def _tracing(model: MeshModel, src: _Sources) -> list[Finding]:
    """A team's own program in the call path: the mesh cannot say whether it forwards trace context."""
    return [Finding("CMQ-P001", "info", src.at("Mesh", "", f"spec.services[{name}].command"),
                    f"{name}: a team's own program in the call path ({' '.join(model.services[name].command or [])})",
                    "Envoy starts and ends spans, but only the app copies the trace headers from its request to "
                    "its calls: if this program does not, every trace breaks at it (the built-in app does)",
                    "tracing-complete")
            for name in sorted(model.services)
            if model.services[name].command is not None and model.callers(name)]


def predict_pod_kill(model: MeshModel, rps: float, endpoint_delay_s: float) -> list[PodKillPrediction]:
    """For each called service: killing its busiest pod at ``rps`` into the ingress.

    Requests into each service follow the call graph (one call per caller request); callers keep
    sending to the dead pod until outlier detection ejects it (N consecutive errors at the rate
    each caller pod sends to it, if ``maxEjectionPercent`` allows one ejection) or its endpoint
    is removed (``endpoint_delay_s``).  A route that retries connect failures with another pod
    to go to hides them from clients; otherwise each of those requests fails.
    """
    rates = _rates(model, rps)
    out = []
    for name in sorted(model.services):
        rate = rates.get(name, 0.0)
        if rate <= 0:
            continue
        svc = model.services[name]
        shares, route = _plain_routing(model, name)
        per_pod = max((shares.get(v.name, 0.0) / v.replicas for v in svc.versions if v.replicas), default=0.0)
        busiest = max(svc.versions, key=lambda v: shares.get(v.name, 0.0) / v.replicas if v.replicas else 0)
        pool = model.subset_of(name, busiest.name)[:1] or [""]
        pods_in_pool = sum(v.replicas for v in svc.versions if not pool[0] or pool[0] in model.subset_of(name, v.name))
        retried = route.retries.attempts > 0 and pods_in_pool > 1 and any(
            k in route.retries.retry_on.split(",") for k in RETRIED["blackhole"])
        callers = sum(1 if c == "ingress" else sum(v.replicas for v in model.services[c].versions)
                      for c in model.callers(name)) or 1
        outlier = (model.subsets[name][pool[0]].policy if pool[0] else model.policies[name]).outlier
        ejection = None
        if outlier is not None and math.floor(outlier.max_ejection_percent * pods_in_pool / 100) >= 1:
            thresholds = [t for t in (outlier.consecutive_5xx, outlier.consecutive_gateway_errors) if t > 0]
            to_pod = rate * per_pod / callers
            if thresholds and to_pod > 0:
                ejection = min(thresholds) / to_pod
        exposed = min(ejection, endpoint_delay_s) if ejection is not None else endpoint_delay_s
        failed = 0.0 if retried else rate * per_pod * exposed
        out.append(PodKillPrediction(name, round(rate, 3), round(per_pod, 4),
                                     None if ejection is None else round(ejection, 4), round(exposed, 4),
                                     round(failed, 1), retried, pods_in_pool <= 1))
    return out


def _plain_routing(model: MeshModel, name: str) -> tuple[dict[str, float], Route]:
    """Version shares and route of requests without headers (replica shares if a route needs a path)."""
    routes = model.routes_for(name)
    try:
        found = expected_shares(model, name)
        return found.shares, routes[max(found.route_index, 0)]
    except InvalidArgument:
        svc = model.services[name]
        total = sum(v.replicas for v in svc.versions)
        return {v.name: v.replicas / total for v in svc.versions}, routes[-1]


def _rates(model: MeshModel, rps: float) -> dict[str, float]:
    rates = {model.ingress_service: rps}
    order = [model.ingress_service]
    for name in order:  # breadth first over the call graph (the loader refuses cycles)
        for version in model.services[name].versions:
            share = version.replicas / sum(v.replicas for v in model.services[name].versions)
            for callee, _path in version.behaviour.calls:
                rates[callee] = rates.get(callee, 0.0) + rates[name] * share
                if callee not in order:
                    order.append(callee)
    return rates
