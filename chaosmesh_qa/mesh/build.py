"""Building the ``MeshModel`` from validated documents: cross-checks and Istio's defaults.

``loader.load_mesh`` calls ``build_model`` with the documents it validated; every problem
(unknown host, missing subset, weights not summing to 100, call cycle...) is appended as one
line naming file, resource and field, so the user sees them all at once.  Argo Rollouts first become the pod
sets their controller runs (``rollouts.expand``).  Services, DestinationRules
and the ServiceEntries' hosts (``serviceentries``; MESH_INTERNAL entries as services of the mesh:
``workloadentries``) are resolved here; VirtualServices by ``virtualservices``,
gateways, policies and Sidecars by their own modules.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from chaosmesh_qa.mesh import gateways, manifests, meshroutes, rollouts, schema, serviceentries, workloadentries
from chaosmesh_qa.mesh.authz import authorization_policies, selection_warnings
from chaosmesh_qa.mesh.callers import source_problems
from chaosmesh_qa.mesh.documents import Document, latest_documents
from chaosmesh_qa.mesh.hosts import HostResolver
from chaosmesh_qa.mesh.localities import Distribute, LocalityLbSetting, version_localities
from chaosmesh_qa.mesh.meshconfig import TrustDomains, trust_domains
from chaosmesh_qa.mesh.model import (
    DEFAULT_READY_TIMEOUT_S,
    AppBehaviour,
    CircuitBreaker,
    ExternalHost,
    MeshModel,
    OutlierPolicy,
    ServiceModel,
    SubsetModel,
    TrafficPolicy,
    VersionModel,
    selects,
)
from chaosmesh_qa.mesh.peerauth import peer_authentications, tls_warnings
from chaosmesh_qa.mesh.sidecars import sidecar_scopes, visibility_warnings
from chaosmesh_qa.mesh.values import DNS_LABEL, parse_duration
from chaosmesh_qa.mesh.virtualservices import virtual_services


def build_model(
    documents: list[Document], problems: list[str], warnings: list[str], source: str = "mesh directory",
) -> MeshModel:
    """Cross-check the documents and resolve them; append problems instead of raising.

    ``source`` names the mesh directory in the problem raised when it holds no Mesh document.
    """
    documents = latest_documents(documents, warnings)  # in age order from here on (file and document order)
    documents = rollouts.expand(documents, problems, warnings)  # Argo Rollouts: the pod sets their controller runs
    meshes = [d for d in documents if d.kind == "Mesh"]
    workloads = manifests.workloads(documents, problems, warnings)
    if not meshes and workloads:  # manifests alone: every service runs the demo app's defaults
        meshes = [_no_overlay(source)]
    if not meshes:
        problems.append(f"{source}: kind: no 'kind: Mesh' document found (expected exactly one)")
        return _empty()
    if len(meshes) > 1:
        problems.extend(f"{extra.where}: kind: expected exactly one 'kind: Mesh' document, found "
                        f"{len(meshes)} (the first is in {meshes[0].file})" for extra in meshes[1:])
        return _empty()
    mesh_doc = meshes[0]
    mesh_spec: schema.MeshSpec = mesh_doc.spec  # type: ignore[assignment]
    domains = trust_domains([d.spec for d in documents if isinstance(d.spec, TrustDomains)])
    services = {name: replace(svc, trust_domain=domains.local)
                for name, svc in _services(mesh_doc, mesh_spec, problems, workloads).items()}
    not_run: dict[str, str] = {}  # MESH_INTERNAL entries not run as services of the mesh: why
    services.update({name: replace(svc, trust_domain=domains.local) for name, svc in
                     workloadentries.internal_services(documents, services, not_run, warnings).items()})
    external = serviceentries.declared_hosts(documents, HostResolver(services), warnings, not_run)
    resolver = HostResolver(services, tuple(external))
    ingress = gateways.Ingress(documents, problems, warnings)
    if mesh_spec.ingress is not None and mesh_spec.ingress.service not in services:
        problems.append(f"{mesh_doc.where}: spec.ingress.service: unknown service {mesh_spec.ingress.service!r}")

    policies: dict[str, TrafficPolicy] = {}
    subsets: dict[str, dict[str, SubsetModel]] = {}
    # a rule for a service's own host wins over a wildcard one; a longer wildcard over a shorter one
    rules = sorted((d for d in documents if d.kind == "DestinationRule"),
                   key=lambda d: HostResolver.specificity(d.spec.host))  # type: ignore[attr-defined]
    for doc in rules:
        _destination_rule(doc, resolver, services, policies, subsets, external, problems, warnings)
    routes = virtual_services(documents, resolver, services, subsets, external, ingress, problems, warnings)
    serviceentries.with_stand_ins(external, mesh_doc, mesh_spec, services, problems, warnings)
    services = workloadentries.resolve_calls(services)  # a call to a MESH_INTERNAL entry's host: to its service
    views = {name: view for w in workloads.values() for name, view in w.views.items()}  # per-version Services
    meshroutes.mesh_routes(documents, services, views, subsets, routes, problems, warnings)  # Service parents
    ingress.add_http_routes(documents, services, problems, views)
    gateway_hosts = gateways.hosts(ingress, warnings)
    meshroutes.view_subsets(views, [r for rs in (*routes.values(), *(h.routes for h in gateway_hosts)) for r in rs],
                            subsets, problems)
    front, paths = gateways.front(mesh_doc, mesh_spec.ingress, gateway_hosts, problems)
    peer_auth = peer_authentications(documents, services, problems, warnings)
    authz = authorization_policies(documents, warnings, domains)
    sidecars = sidecar_scopes(documents, services, problems, warnings)
    model = MeshModel(
        name=mesh_doc.name,
        services=services,
        ingress_service=front,
        ingress_paths=paths,
        routes=routes,
        policies={name: policies.get(name, TrafficPolicy()) for name in services},
        subsets=subsets,
        peer_auth=peer_auth,
        authz=authz,
        sidecars=sidecars,
        gateway_hosts=gateway_hosts,
        trust_domains=domains,
        external_hosts=external,
        ingress_gateway=ingress.gateway,
        service_views=views,
    )
    if not problems:
        problems.extend(source_problems(model))
    if not problems:
        visibility_warnings(model, warnings)
        selection_warnings(model, documents, warnings)
        tls_warnings(model, warnings)
    return model


def _empty() -> MeshModel:
    return MeshModel("", {}, "", (), {}, {}, {}, (), ())


def _no_overlay(source: str) -> Document:
    """A stand-in for the Mesh document when manifests alone describe the mesh."""
    name = Path(source).name
    return Document(source, "Mesh", name if re.fullmatch(DNS_LABEL, name) else "mesh", "default", schema.MeshSpec())


def _services(doc: Document, spec: schema.MeshSpec, problems: list[str],
              workloads: dict[str, manifests.Workload]) -> dict[str, ServiceModel]:
    services: dict[str, ServiceModel] = {}
    if not spec.services and not workloads:
        problems.append(f"{doc.where}: spec.services: at least one service is needed (or Deployments and Services "
                        "in the mesh directory)")
    for i, svc in enumerate(spec.services):
        where = f"{doc.where}: spec.services[{i}]"
        if svc.name in services:
            problems.append(f"{where}.name: duplicate service {svc.name!r}")
            continue
        workload = workloads.get(svc.name)
        if workload is not None:
            manifests.check_overlay(workload, svc, where, problems)
            services[svc.name] = _from_workload(workload, svc, doc.file, spec.region, where, problems)
            continue
        if not svc.versions:
            problems.append(f"{where}.versions: required (no Deployment or StatefulSet with a Service named "
                            f"{svc.name!r} in the mesh directory)")
            continue
        seen: set[str] = set()
        versions = []
        for j, version in enumerate(svc.versions):
            if version.name in seen:
                problems.append(f"{where}.versions[{j}].name: duplicate version {version.name!r}")
            seen.add(version.name)
            labels = {"app": svc.name, "version": version.name, **version.labels}
            spread = version_localities(labels, version.zones, version.replicas, spec.region,
                                        f"{where}.versions[{j}]", problems)
            versions.append(VersionModel(version.name, version.replicas, labels, _behaviour(svc.app, version.app),
                                         localities=spread))
        services[svc.name] = ServiceModel(
            name=svc.name, namespace=svc.namespace, port=svc.port, target_port=svc.target_port,
            service_account=svc.service_account or svc.name, versions=tuple(versions),
            command=_command(svc.command, doc.file), health_path=svc.health_path,
            ready_timeout_s=_ready_timeout(svc.ready_timeout),
        )
    for name, workload in workloads.items():
        if name not in services:
            services[name] = _from_workload(workload, None, doc.file, spec.region, doc.where, problems)
    for i, svc in enumerate(spec.services):
        # the service-level app, then each version's override
        apps = [("app", svc.app), *((f"versions[{j}].app", v.app) for j, v in enumerate(svc.versions))]
        for field_path, app in apps:
            for k, call in enumerate(app.calls or [] if app else []):
                if call.service not in services and "." not in call.service:  # a host: serviceentries.with_stand_ins
                    problems.append(f"{doc.where}: spec.services[{i}].{field_path}.calls[{k}].service: "
                                    f"unknown service {call.service!r}")
    cycle = _call_cycle(services)
    if cycle:
        problems.append(f"{doc.where}: spec.services: call cycle {' -> '.join(cycle)} (requests would loop)")
    return services


def _ready_timeout(declared: str | None) -> float:
    """A service's ``readyTimeout``, or the default of ``ServiceModel``."""
    return parse_duration(declared) if declared else DEFAULT_READY_TIMEOUT_S


def _from_workload(workload: manifests.Workload, overlay: schema.ServiceDef | None, mesh_file: str,
                   region: str, where: str, problems: list[str]) -> ServiceModel:
    """A manifest-defined service, with the Mesh overlay's behaviour (and zones) for it, if any."""
    apps = {v.name: v.app for v in overlay.versions} if overlay else {}
    zones = {v.name: (j, v.zones) for j, v in enumerate(overlay.versions)} if overlay else {}
    versions = tuple(VersionModel(v.name, v.replicas, dict(v.labels),
                                  _behaviour(overlay.app if overlay else None, apps.get(v.name)), v.workload, v.kind,
                                  version_localities(v.labels, zones.get(v.name, (0, None))[1], v.replicas, region,
                                                     f"{where}.versions[{zones.get(v.name, (0, None))[0]}]", problems))
                     for v in workload.versions)
    return ServiceModel(
        name=workload.name, namespace=workload.namespace, port=workload.port, target_port=workload.target_port,
        service_account=workload.service_account, versions=versions, selector=dict(workload.selector),
        command=_command(overlay.command, mesh_file) if overlay else None,
        health_path=overlay.health_path if overlay else "/healthz",
        ready_timeout_s=_ready_timeout(overlay.ready_timeout if overlay else None),
    )


def _command(command: list[str] | None, mesh_file: str) -> tuple[str, ...] | None:
    """A ``command`` with ``{mesh}`` replaced by the mesh directory (absolute), so that a program
    shipped next to its mesh starts whatever the current directory; ``{port}`` stays for the pod."""
    if not command:
        return None
    mesh_dir = str(Path(mesh_file).parent.absolute())
    return tuple(arg.replace("{mesh}", mesh_dir) for arg in command)


def _behaviour(base: schema.DemoApp | None, override: schema.DemoApp | None) -> AppBehaviour:
    merged: dict[str, object] = {}
    for app in (base, override):
        if app is not None:
            merged.update({k: v for k, v in app.model_dump(exclude_none=True).items() if k in
                           AppBehaviour.__dataclass_fields__})
    calls = tuple((c["service"], c["path"]) for c in merged.pop("calls", []))  # type: ignore[attr-defined]
    headers = tuple(h.lower() for h in merged.pop("propagate_headers", []))  # type: ignore[attr-defined]
    return AppBehaviour(calls=calls, propagate_headers=headers, **merged)  # type: ignore[arg-type]


def _call_cycle(services: dict[str, ServiceModel]) -> list[str]:
    graph = {name: sorted({c for v in s.versions for c, _ in v.behaviour.calls if c in services})
             for name, s in services.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str]:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt] if nxt in stack else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*stack, nxt])):
                return found
        state[node] = 2
        return []

    for name in graph:
        if name not in state and (found := visit(name, [name])):
            return found
    return []


def _traffic_policy(spec: schema.TrafficPolicy | schema.PortTrafficPolicy | None,
                    base: TrafficPolicy) -> TrafficPolicy:
    """Resolve a ``trafficPolicy`` over ``base`` (Istio's defaults, or the top level for a subset).

    As Istio merges a subset's policy: each of loadBalancer, connectionPool, outlierDetection
    and tls the subset sets replaces the top-level one whole (its unset fields take Istio's
    defaults, not the top-level values); the ones it omits are inherited.
    """
    if spec is None:
        return base
    defaults = TrafficPolicy()
    lb, locality_lb = base.load_balancer, base.locality_lb
    if spec.load_balancer is not None:
        lb = spec.load_balancer.simple or defaults.load_balancer
        locality_lb = _locality_lb(spec.load_balancer.locality_lb_setting)
    breaker, connect_timeout = base.circuit_breaker, base.connect_timeout_s
    pool = spec.connection_pool
    if pool is not None:
        tcp, http = pool.tcp, pool.http
        unlimited = CircuitBreaker()
        breaker = CircuitBreaker(
            max_connections=(tcp.max_connections if tcp and tcp.max_connections else unlimited.max_connections),
            max_pending_requests=(http.http1_max_pending_requests if http and http.http1_max_pending_requests
                                  else unlimited.max_pending_requests),
            max_requests=(http.http2_max_requests if http and http.http2_max_requests else unlimited.max_requests),
            max_retries=(http.max_retries if http and http.max_retries is not None else unlimited.max_retries),
            max_requests_per_connection=(http.max_requests_per_connection
                                         if http and http.max_requests_per_connection is not None
                                         else unlimited.max_requests_per_connection),
        )
        connect_timeout = (parse_duration(tcp.connect_timeout) if tcp and tcp.connect_timeout
                           else defaults.connect_timeout_s)
    outlier = base.outlier
    od = spec.outlier_detection
    if od is not None:
        outlier = OutlierPolicy(
            consecutive_5xx=5 if od.consecutive_5xx_errors is None else od.consecutive_5xx_errors,
            consecutive_gateway_errors=od.consecutive_gateway_errors or 0,
            interval_s=parse_duration(od.interval) if od.interval else 10.0,
            base_ejection_time_s=parse_duration(od.base_ejection_time) if od.base_ejection_time else 30.0,
            max_ejection_percent=10 if od.max_ejection_percent is None else od.max_ejection_percent,
        )
    tls_mode = spec.tls.mode if spec.tls else base.tls_mode
    return TrafficPolicy(lb, breaker, connect_timeout, outlier, tls_mode, spec.tls is not None or base.tls_explicit,
                         locality_lb)


def _locality_lb(spec: schema.LocalityLbSetting | None) -> LocalityLbSetting | None:
    """A ``localityLbSetting`` as the model keeps it (``None``: not given, Istio's default)."""
    if spec is None:
        return None
    return LocalityLbSetting(
        enabled=spec.enabled is not False,
        distribute=tuple(Distribute(d.from_, tuple(d.to.items())) for d in spec.distribute),
        failover=tuple((f.from_, f.to) for f in spec.failover),
        failover_priority=tuple(spec.failover_priority))


def _port_level(spec: schema.TrafficPolicy | None, policy: TrafficPolicy, port: int, where: str,
                warnings: list[str]) -> TrafficPolicy:
    """Apply the ``portLevelSettings`` entry for the service's port over ``policy`` (as Istio: a
    port's settings override the destination's, section by section); others are warned."""
    for i, entry in enumerate(spec.port_level_settings if spec else []):
        if entry.port.number == port:
            policy = _traffic_policy(entry, policy)
        else:
            warnings.append(f"{where}.portLevelSettings[{i}].port.number: the service has no port "
                            f"{entry.port.number} (its port is {port}): this setting has no effect")
    return policy


def _destination_rule(
    doc: Document, resolver: HostResolver, services: dict[str, ServiceModel],
    policies: dict[str, TrafficPolicy], subsets: dict[str, dict[str, SubsetModel]],
    external: dict[str, ExternalHost], problems: list[str], warnings: list[str],
) -> None:
    spec: schema.DestinationRuleSpec = doc.spec  # type: ignore[assignment]
    chosen = resolver.matching(spec.host)
    if not chosen and (outer := resolver.external(spec.host)) is not None:  # a wildcard may name one too
        serviceentries.with_policy(external, outer, _traffic_policy(spec.traffic_policy, TrafficPolicy()),
                                   spec.traffic_policy.tls if spec.traffic_policy else None, doc.where, warnings)
        return
    if chosen is None and resolver.outside_cluster(spec.host):
        warnings.append(f"{doc.where}: spec.host: {spec.host!r} is outside the mesh and no ServiceEntry declares it: "
                        "as in Istio, this rule has no effect (the sandbox does not send traffic outside the mesh)")
        return
    if chosen is None:
        problems.append(f"{doc.where}: spec.host: unknown host {spec.host!r} (no such service in the Mesh or "
                        "ServiceEntry)")
        return
    _mesh_tls_settings(doc, spec, warnings)
    wildcard = spec.host.startswith("*")
    if wildcard and not chosen:
        warnings.append(f"{doc.where}: spec.host: {spec.host!r} matches no service of the mesh: this rule has "
                        "no effect")
    for service in chosen:
        if service in policies:
            if not wildcard:  # a wildcard rule only applies where no more specific one does
                problems.append(f"{doc.where}: spec.host: a second DestinationRule for {spec.host!r}")
            continue
        svc = services[service]
        top = _traffic_policy(spec.traffic_policy, TrafficPolicy())
        top = _port_level(spec.traffic_policy, top, svc.port, f"{doc.where}: spec.trafficPolicy", warnings)
        policies[service] = top
        found: dict[str, SubsetModel] = {}
        for i, subset in enumerate(spec.subsets):
            if subset.name in found:
                problems.append(f"{doc.where}: spec.subsets[{i}].name: duplicate subset {subset.name!r}")
                continue
            policy = _port_level(subset.traffic_policy, _traffic_policy(subset.traffic_policy, top), svc.port,
                                 f"{doc.where}: spec.subsets[{i}].trafficPolicy", warnings)
            found[subset.name] = SubsetModel(subset.name, dict(subset.labels), policy)
            if not any(selects(subset.labels, v.labels)
                       for v in svc.versions):
                warnings.append(f"{doc.where}: spec.subsets[{i}].labels: selects no version of {service!r}")
        subsets[service] = found


def _mesh_tls_settings(doc: Document, spec: schema.DestinationRuleSpec, warnings: list[str]) -> None:
    """TLS settings of a rule for mesh services that the sandbox does not apply: with ISTIO_MUTUAL or DISABLE it
    uses the mesh's own certificates and SNI (SIMPLE and MUTUAL get plaintext: ``peerauth.tls_warnings``)."""
    places: list[tuple[str, schema.TrafficPolicy | schema.PortTrafficPolicy | None]] = [
        ("spec.trafficPolicy", spec.traffic_policy)]
    places += [(f"spec.subsets[{i}].trafficPolicy", s.traffic_policy) for i, s in enumerate(spec.subsets)]
    places += [(f"{path}.portLevelSettings[{j}]", entry) for path, policy in list(places)
               if isinstance(policy, schema.TrafficPolicy) for j, entry in enumerate(policy.port_level_settings)]
    for path, policy in places:
        tls = policy.tls if policy is not None else None
        if tls is None or tls.mode not in ("ISTIO_MUTUAL", "DISABLE"):
            continue
        for name, value in serviceentries.tls_settings(tls):
            warnings.append(f"{doc.where}: {path}.tls.{name}: unsupported field, ignored (with tls.mode {tls.mode} "
                            f"the sandbox uses the mesh's own certificates and SNI; {value!r} is not read)")
