"""The resilience promises a declared mesh makes, each with the file, resource and field it comes from.

``list_promises(directory)`` loads the mesh (``load_mesh``), reads each Istio resource back from its YAML
(``loader.sourced_documents``) to tell what is *declared* from Istio's defaults, and returns one ``Promise`` per:

* route of a service (a VirtualService's ``spec.http[i]``, an HTTPRoute's ``spec.rules[i]``, a gateway's): its
  declared ``retries`` (``retries``), ``timeout`` (``timeout``), split over subsets or several destinations
  (``routing``) and ``match`` (``match``);
* DestinationRule (top level and each subset's ``trafficPolicy``): ``outlierDetection`` (``outlier-detection``),
  connection pool limits (``connection-pool``: the circuit breaker), ``connectionPool.tcp.connectTimeout``
  (``connect-timeout``) and ``loadBalancer.localityLbSetting`` (``locality``); a top-level ``outlierDetection`` on
  a service whose pods are in several localities is a ``locality`` promise too (Istio's locality load balancing is
  on by default and acts only with outlier detection: that field is what the team declared);
* ServiceEntry host with a VirtualService or DestinationRule of its own: the same route and policy promises
  (``retries``, ``timeout``, ``outlier-detection``, ``connection-pool``, ``connect-timeout``), about the host,
  applied by its callers' sidecars (``MeshModel.external_callers``);
* service whose workloads a PeerAuthentication selects: its effective mode (``mtls``);
* AuthorizationPolicy rule (``authz-rule``; a policy without rules is one promise: it denies everything);
* program in the call path (called and calling: its app must copy the trace headers): ``trace-propagation``.

Istio's defaults (the retries of a route that sets none, no timeout, PERMISSIVE without any
PeerAuthentication) are not promises: nobody declared them.  Each promise says what would exercise it
(``fault``, ``probe``: the rules ``report.coverage`` applies, and what ``generate`` would write).
Called by ``report.coverage`` and ``scaffold.suite``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.loader import sourced_documents
from chaosmesh_qa.mesh.model import ISTIO_UNLIMITED, MeshModel, Route, TrafficPolicy, default_retries, selects

KINDS = ("retries", "timeout", "routing", "match", "outlier-detection", "connection-pool", "connect-timeout",
         "locality", "mtls", "authz-rule", "trace-propagation")
ISTIO_CONNECT_TIMEOUT_S = 10.0
# the retryOn conditions under which Envoy tries again after each kind of failure: a refused connection, one that
# hangs (the connect timeout ends the try), a try that gets no answer (perTryTimeout: retried as a 504 / no answer)
RETRIED = {"refused": {"connect-failure", "refused-stream", "reset", "5xx", "gateway-error"},
           "blackhole": {"connect-failure", "reset", "5xx", "gateway-error"},
           "delay": {"5xx", "gateway-error", "reset"}}


@dataclass(frozen=True)
class Source:
    file: str
    resource: str  # Kind/name
    field: str  # the field's path in the resource

    def __str__(self) -> str:
        return f"{self.file}: {self.resource}: {self.field}"


@dataclass(frozen=True)
class Promise:
    id: str  # stable: kind:service[:detail]
    kind: str  # one of KINDS
    service: str  # the service it is about (a route's host, a DestinationRule's, the policy's first workload)
    source: Source
    summary: str  # what it promises, in words
    fault: str  # the fault that makes it act, in words
    probe: str  # the probe that fails if it does not act, in words
    targets: tuple[str, ...] = ()  # the services a fault must hit (a route's destinations; a policy's workloads)
    callers: tuple[str, ...] = ()  # who applies it (a route's callers; 'ingress' for the gateway's)
    route: int | None = None  # the route's index in its resource
    subset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # the declared numbers


@dataclass(frozen=True)
class Promises:
    mesh: str
    directory: str
    model: MeshModel
    promises: tuple[Promise, ...]
    warnings: tuple[str, ...] = ()


def list_promises(directory: str | Path) -> Promises:
    """Every promise of the mesh in ``directory``, in a stable order (``InvalidMesh`` if it does not validate)."""
    loaded = load_mesh(directory)
    model = loaded.model
    raw = _Raw(Path(directory), model)
    found = [*_route_promises(model, raw), *_rule_promises(model, raw), *_external_promises(model, raw),
             *_mtls_promises(model, raw), *_authz_promises(model, raw), *_trace_promises(model, raw)]
    return Promises(model.name, str(directory), model, tuple(found), tuple(loaded.warnings))


def retries_answer(retry_on: Collection[str], retriable_codes: Collection[int], status: int) -> bool:
    """Whether a route with these retryOn conditions tries again after a try answered ``status``, as Envoy decides:
    ``5xx`` on any 5xx, ``gateway-error`` on 502, 503 and 504, and the VirtualService's listed status codes (Istio
    adds ``retriable-status-codes`` to the conditions whenever it lists some)."""
    return ((status >= 500 and "5xx" in retry_on) or (status in (502, 503, 504) and "gateway-error" in retry_on)
            or status in retriable_codes)


def tries(settings: dict[str, Any], failure: str) -> int:
    """How many tries a route's ``settings`` (retries, a timeout promise's) make after ``failure`` (``RETRIED``)."""
    retried = bool(set(str(settings.get("retry_on", "")).split(",")) & RETRIED[failure])
    return 1 + int(settings.get("attempts") or 0) if retried else 1


def reaches_timeout(settings: dict[str, Any]) -> bool:
    """Does a request that never gets an answer last until a timeout promise's route timeout?  Not when its tries
    end first: each ends at ``perTryTimeout``, and only retries of a per-try timeout make another."""
    per_try = settings.get("per_try_timeout_s")
    return not per_try or tries(settings, "delay") * per_try >= settings["timeout_s"]


def connects_outlast(settings: dict[str, Any]) -> bool:
    """Does a blackholed request last until a timeout promise's route timeout?  Each try ends at the connect
    timeout (the per-try timeout starts once a connection is up), and a ``retryOn`` that retries connection
    failures makes another."""
    connect_s = float(settings.get("connect_timeout_s", ISTIO_CONNECT_TIMEOUT_S))
    return tries(settings, "blackhole") * connect_s >= settings["timeout_s"]


class _Raw:
    """The documents as written: which fields a resource declares (file, kind, name -> data)."""

    def __init__(self, root: Path, model: MeshModel) -> None:
        self.docs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rules: dict[str, tuple[str, str, dict[str, Any]]] = {}  # service -> (file, name, DR spec)
        self.peer_auth: list[tuple[str, str, str, dict[str, Any]]] = []  # file, name, namespace, spec
        self.authz: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}  # (namespace, name) -> (file, spec)
        self.mesh: tuple[str, str, dict[str, Any]] | None = None
        hosts = {h: s for s, svc in model.services.items() for h in svc.host_names}
        for path, doc in sourced_documents(root):
            data = _dict(doc.data)
            spec, meta = _dict(data.get("spec")), _dict(data.get("metadata"))
            namespace = str(meta.get("namespace") or "default")
            self.docs[(str(path), str(doc.kind), str(doc.name))] = spec
            if doc.kind == "DestinationRule" and spec.get("host") in hosts:
                self.rules[hosts[spec["host"]]] = (str(path), str(doc.name), spec)
            elif doc.kind == "PeerAuthentication":
                self.peer_auth.append((str(path), str(doc.name), namespace, spec))
            elif doc.kind == "AuthorizationPolicy":
                self.authz[(namespace, str(doc.name))] = (str(path), spec)
            elif doc.kind == "Mesh":
                self.mesh = (str(path), str(doc.name), spec)

    def route(self, route: Route) -> tuple[Source, dict[str, Any] | None]:
        """Where a route is declared, and its entry as written (None if it cannot be found)."""
        parts = route.where.split(": ")
        if len(parts) < 3:
            return Source(route.where, "", ""), None
        file, resource, at = ": ".join(parts[:-2]), parts[-2], parts[-1]
        kind, _, name = resource.partition("/")
        spec = self.docs.get((file, kind, name), {})
        section, _, rest = at.partition("[")
        entries = spec.get(section.removeprefix("spec."))
        index = int(rest.rstrip("]")) if rest.rstrip("]").isdigit() else -1
        entry = entries[index] if isinstance(entries, list) and 0 <= index < len(entries) else None
        return Source(file, resource, at), entry if isinstance(entry, dict) else None


def _route_promises(model: MeshModel, raw: _Raw) -> list[Promise]:
    found: list[Promise] = []
    for host in sorted(model.routes):
        callers = tuple(model.callers(host))
        for index, route in enumerate(model.routes[host]):
            found.extend(_one_route(model, raw, host, index, route, callers))
    for gateway in model.gateway_hosts:
        for index, route in enumerate(gateway.routes):
            host = route.destinations[0].service if route.destinations else gateway.name
            found.extend(_one_route(model, raw, host, index, route, ("ingress",)))
    return found


def _one_route(model: MeshModel, raw: _Raw, host: str, index: int, route: Route,
               callers: tuple[str, ...], external: bool = False) -> list[Promise]:
    source, entry = raw.route(route)
    at = source.field
    key = f"{host}:{source.resource}:{at}"
    targets = (host,) if external else tuple(sorted({d.service for d in route.destinations
                                                     if d.service in model.services}))
    found = []

    def add(kind: str, field_: str, summary: str, fault: str, probe: str, **settings: Any) -> None:
        found.append(Promise(f"{kind}:{key}", kind, host, Source(source.file, source.resource, f"{at}.{field_}"),
                             summary, fault, probe, targets, callers, index, None, settings))

    retries = route.retries
    declared = (entry is not None and "retries" in entry) or (entry is None and retries != default_retries())
    if declared and retries.attempts > 0:  # attempts 0: the route declares no retries
        per_try = f", {retries.per_try_timeout_s:g}s per try" if retries.per_try_timeout_s else ""
        add("retries", "retries", f"{host}: {retries.attempts} retries on {retries.retry_on}{per_try}",
            f"a failure of {', '.join(targets)} its retryOn covers: a pod kill, a 5xx abort, a partition",
            "policy_engaged retries, or clients/callers recovered within budget",
            attempts=retries.attempts, retry_on=retries.retry_on, per_try_timeout_s=retries.per_try_timeout_s,
            retriable_status_codes=list(retries.retriable_status_codes))
    if route.timeout_s is not None:
        add("timeout", "timeout", f"{host}: requests time out after {route.timeout_s:g}s",
            f"latency on {', '.join(targets)} beyond {route.timeout_s:g}s, or a blackhole of all its pods",
            "a caller's or the clients' latency bounded below the injected delay", timeout_s=route.timeout_s,
            connect_timeout_s=_connect_timeout(model, targets),
            per_try_timeout_s=retries.per_try_timeout_s, attempts=retries.attempts, retry_on=retries.retry_on)
    weighted = [d for d in route.destinations if d.weight > 0]
    shown = ", ".join(f"{d.service}/{d.subset}" if d.subset else d.service for d in weighted)
    if len(weighted) > 1 or (any(d.subset for d in weighted) and not route.matches):
        shares = {f"{d.service}/{d.subset}" if d.subset else d.service: d.weight for d in weighted}
        add("routing", "route" if source.resource.startswith("VirtualService") else "backendRefs",
            f"{host}: " + ", ".join(f"{k} {w}%" for k, w in shares.items()),
            "none needed (traffic that takes this route)", f"routing_matches on {host}", shares=shares)
    if route.matches:
        add("match", "match", f"{host}: requests matching {_matches(route)} go to {shown}",
            "none needed (traffic that carries the match)", f"routing_matches on {host}")
    return found


def _connect_timeout(model: MeshModel, targets: tuple[str, ...]) -> float:
    """The longest connect timeout toward the route's destinations (a blackholed try ends there)."""
    policies = [model.policies[t] if t in model.policies else model.external_hosts[t].policy
                for t in targets if t in model.policies or t in model.external_hosts]
    return max([p.connect_timeout_s for p in policies if p is not None] or [ISTIO_CONNECT_TIMEOUT_S])


def _matches(route: Route) -> str:
    shown = []
    for m in route.matches:
        parts = [f"uri {m.uri.kind} {m.uri.value}"] if m.uri else []
        parts += [f"{name} {s.kind} {s.value}" for name, s in m.headers]
        parts += [f"sourceLabels {dict(m.source_labels)}"] if m.source_labels else []
        parts += [f"sourceNamespace {m.source_namespace}"] if m.source_namespace else []
        shown.append(" and ".join(parts) or "anything")
    return " or ".join(shown)


def _rule_promises(model: MeshModel, raw: _Raw) -> list[Promise]:
    found: list[Promise] = []
    for service in sorted(raw.rules):
        file, name, spec = raw.rules[service]
        found.extend(_policy(model, service, file, name, "spec.trafficPolicy", spec.get("trafficPolicy"),
                             model.policies[service], None))
        for i, subset in enumerate(_list(spec.get("subsets"))):
            if isinstance(subset, dict) and subset.get("name") in model.subsets.get(service, {}):
                model_subset = model.subsets[service][subset["name"]]
                found.extend(_policy(model, service, file, name, f"spec.subsets[{i}].trafficPolicy",
                                     subset.get("trafficPolicy"), model_subset.policy, model_subset.name))
    return found


def _external_promises(model: MeshModel, raw: _Raw) -> list[Promise]:
    """A ServiceEntry host's own route (its VirtualService) and policy (its DestinationRule) promises."""
    found: list[Promise] = []
    for host in sorted(model.external_hosts):
        entry = model.external_hosts[host]
        callers = tuple(model.external_callers(host))
        for index, route in enumerate(entry.routes):
            found.extend(_one_route(model, raw, host, index, route, callers, external=True))
        file, _, resource = entry.policy_by.rpartition(": ")
        kind, _, name = resource.partition("/")
        if entry.policy is not None and kind == "DestinationRule":
            spec = raw.docs.get((file, kind, name), {})
            found.extend(_policy(model, host, file, name, "spec.trafficPolicy", spec.get("trafficPolicy"),
                                 entry.policy, None, callers))
    seen = ("a partition (mode drop) of its callers toward it (a delay or abort on the host is injected before the "
            "callers' router: they never see it)")
    unnamed = "none: policy_engaged names a service of the mesh, never a host"
    return [replace(p, fault=seen, probe=unnamed if p.kind in ("outlier-detection", "connection-pool") else p.probe)
            for p in found]


def _policy(model: MeshModel, service: str, file: str, name: str, at: str, written: Any, policy: TrafficPolicy,
            subset: str | None, external_callers: tuple[str, ...] | None = None) -> list[Promise]:
    if not isinstance(written, dict):
        return []
    pool = _dict(written.get("connectionPool"))
    tcp, balancer = _dict(pool.get("tcp")), _dict(written.get("loadBalancer"))
    on = f"{service}/{subset}" if subset else service
    key = f"{service}:{subset}" if subset else service
    callers = tuple(model.callers(service)) if external_callers is None else external_callers
    found = []

    def add(kind: str, field_: str, summary: str, fault: str, probe: str, **settings: Any) -> None:
        found.append(Promise(f"{kind}:{key}", kind, service, Source(file, f"DestinationRule/{name}", f"{at}.{field_}"),
                             summary, fault, probe, (service,), callers, None, subset, settings))

    if "outlierDetection" in written and policy.outlier is not None:
        o = policy.outlier
        add("outlier-detection", "outlierDetection",
            f"{on}: a host failing {o.consecutive_5xx} x 5xx / {o.consecutive_gateway_errors} gateway errors is "
            f"ejected for {o.base_ejection_time_s:g}s (up to {o.max_ejection_percent}%)",
            f"a pod kill, a 5xx abort or a blackhole of some of {service}'s pods",
            f"policy_engaged outlier_ejection on {service} (a recovery probe only when no retries hide the fault)",
            consecutive_5xx=o.consecutive_5xx, consecutive_gateway_errors=o.consecutive_gateway_errors,
            interval_s=o.interval_s, base_ejection_time_s=o.base_ejection_time_s,
            max_ejection_percent=o.max_ejection_percent)
    b = policy.circuit_breaker
    limits = {k: v for k, v in (("max_connections", b.max_connections),
                                ("max_pending_requests", b.max_pending_requests), ("max_requests", b.max_requests),
                                ("max_retries", b.max_retries)) if v != ISTIO_UNLIMITED}
    if limits and ({"tcp", "http"} & set(pool)):
        add("connection-pool", "connectionPool", f"{on}: at most " + ", ".join(f"{v} {k.removeprefix('max_')}"
                                                                            for k, v in limits.items()),
            f"latency on {service} (requests pile up in its callers)",
            f"policy_engaged circuit_breaker on {service}", **limits)
    if "connectTimeout" in tcp and policy.connect_timeout_s != ISTIO_CONNECT_TIMEOUT_S:
        add("connect-timeout", "connectionPool.tcp.connectTimeout",
            f"{on}: a connection attempt gives up after {policy.connect_timeout_s:g}s",
            f"a blackhole (partition, mode drop) of some of {service}'s pods",
            "clients/callers recovered within budget", connect_timeout_s=policy.connect_timeout_s)
    if "localityLbSetting" in balancer and policy.locality_lb is not None:
        setting = policy.locality_lb
        add("locality", "loadBalancer.localityLbSetting",
            f"{on}: locality load balancing " + ("disabled" if not setting.enabled else
                                                 "with " + ", ".join(k for k, v in (
                                                     ("failover", setting.failover),
                                                     ("failoverPriority", setting.failover_priority),
                                                     ("distribute", setting.distribute)) if v) or "Istio's defaults"),
            f"the loss of {service}'s pods in one locality, its caller in that locality",
            f"failover_matches on {service} with that caller", enabled=setting.enabled)
    elif ("outlierDetection" in written and policy.outlier is not None and subset is None and policy.locality_lb is None
          and service in model.services and len(_localities(model, service)) > 1):
        add("locality", "outlierDetection",
            f"{on}: Istio's locality load balancing (on by default, acting with this outlier detection) keeps a "
            f"caller's requests in its own locality of {', '.join(_localities(model, service))} and fails over",
            f"the loss of {service}'s pods in one locality, its caller in that locality",
            f"failover_matches on {service} with that caller", enabled=True)
    return found


def _localities(model: MeshModel, service: str) -> list[str]:
    """The distinct localities of the service's pods ('' left out: a pod without one)."""
    return sorted({v.locality(i) for v in model.services[service].versions for i in range(v.replicas)} - {""})


def _mtls_promises(model: MeshModel, raw: _Raw) -> list[Promise]:
    """One per service some PeerAuthentication applies to: its workloads' effective mode, and the most specific
    PeerAuthentication that sets it (workload > namespace > mesh, as ``MeshModel.mtls_mode`` ranks them)."""
    found = []
    for service in sorted(model.services):
        svc = model.services[service]
        modes = {v.name: model.mtls_mode(service, v.name) for v in svc.versions}
        deciding = []
        for version, mode in modes.items():
            labels = model.workload_labels(service, version)
            for order, (file, name, namespace, spec) in enumerate(raw.peer_auth):
                selector = _dict(_dict(spec.get("selector")).get("matchLabels"))
                level = (2 if selector and namespace == svc.namespace and selects(selector, labels)
                         else 1 if not selector and namespace == svc.namespace
                         else 0 if not selector and namespace == model.root_namespace else -1)
                ports = _dict(spec.get("portLevelMtls")) if level == 2 else {}
                written = {str(_dict(spec.get("mtls")).get("mode", "UNSET"))} | {
                    str(_dict(v).get("mode")) for v in ports.values()}
                if level >= 0 and mode in written:
                    deciding.append((level, -order, file, name))
        if not deciding:
            continue  # no PeerAuthentication sets it: Istio's default PERMISSIVE, nobody's promise
        _, _, file, name = max(deciding)
        shown = ", ".join(sorted(set(modes.values())))
        found.append(Promise(f"mtls:{service}", "mtls", service, Source(file, f"PeerAuthentication/{name}",
                                                                        "spec.mtls.mode"),
                             f"{service}: mTLS {shown}", "none needed (plaintext tried against every pod)",
                             "mtls_enforced", (service,), tuple(model.callers(service)), None, None,
                             {"modes": modes}))
    return found


def _authz_promises(model: MeshModel, raw: _Raw) -> list[Promise]:
    found = []
    for policy in model.authz:
        file, _spec = raw.authz.get((policy.namespace, policy.name), ("(unknown file)", {}))
        workloads = tuple(sorted(s for s in model.services
                                 if any(policy in model.authz_for(s, v.name) for v in model.services[s].versions)))
        first = workloads[0] if workloads else "(no workload)"
        resource = f"AuthorizationPolicy/{policy.name}"
        callers = tuple(sorted({c for w in workloads for c in model.callers(w)}))
        if not policy.rules:
            found.append(Promise(f"authz-rule:{policy.namespace}/{policy.name}", "authz-rule", first,
                                 Source(file, resource, "spec.rules"),
                                 f"{policy.name}: {policy.action} with no rule "
                                 f"({'denies' if policy.action == 'ALLOW' else 'changes'} nothing else)",
                                 "none needed (requests from each identity)", "authz_enforced", workloads, callers))
        for i, rule in enumerate(policy.rules):
            who = [p for s in rule.sources for p in s.principals] + [f"ns {n}" for s in rule.sources
                                                                     for n in s.namespaces]
            what = [f"{m or '*'} {p}" for o in rule.operations for m in (o.methods or ("",))
                    for p in (o.paths or ("*",))]
            summary = (f"{policy.name}: {policy.action} from {', '.join(who) or 'anyone'}"
                       + (f" to {', '.join(what)}" if what else "") + f" on {', '.join(workloads) or 'no workload'}")
            found.append(Promise(f"authz-rule:{policy.namespace}/{policy.name}:{i}", "authz-rule", first,
                                 Source(file, resource, f"spec.rules[{i}]"), summary,
                                 "none needed (requests from each identity)", "authz_enforced", workloads, callers,
                                 i, None, {"action": policy.action}))
    return found


def _trace_promises(model: MeshModel, raw: _Raw) -> list[Promise]:
    """A program that is called and calls others must copy the trace headers to its calls."""
    found = []
    names = [_dict(e).get("name") for e in _list(raw.mesh[2].get("services"))] if raw.mesh else []
    for service in sorted(model.services):
        if not model.callers(service) or not model.callees(service):
            continue
        svc = model.services[service]
        at = f"spec.services[{names.index(service)}]" if service in names else "spec.services"
        at += ".command" if svc.command is not None else ".app.calls"
        program = " ".join(svc.command) if svc.command is not None else "the built-in app"
        found.append(Promise(f"trace-propagation:{service}", "trace-propagation", service,
                             Source(raw.mesh[0] if raw.mesh else "(no Mesh document)",
                                    f"Mesh/{raw.mesh[1] if raw.mesh else model.name}", at),
                             f"{service}: {program} forwards the trace context to {', '.join(model.callees(service))}",
                             "none needed (traffic through it)", "traces_complete", (service,),
                             tuple(model.callers(service))))
    return found


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
