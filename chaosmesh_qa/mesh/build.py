"""Building the ``MeshModel`` from validated documents: cross-checks and Istio's defaults.

``loader.load_mesh`` calls ``build_model`` with the documents it validated; every problem
(unknown host, missing subset, weights not summing to 100, call cycle...) is appended as one
line naming file, resource and field, so the user sees them all at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from chaosmesh_qa.mesh import schema
from chaosmesh_qa.mesh.model import (
    ISTIO_DEFAULT_RETRY_ON,
    TRUST_DOMAIN,
    AppBehaviour,
    AuthzOperation,
    AuthzPolicy,
    AuthzRule,
    AuthzSource,
    CircuitBreaker,
    MeshModel,
    OutlierPolicy,
    PeerAuthPolicy,
    RetryPolicy,
    Route,
    RouteMatch,
    ServiceModel,
    StaticFault,
    StringMatch,
    SubsetModel,
    TrafficPolicy,
    VersionModel,
    WeightedDestination,
    default_retries,
    selects,
)
from chaosmesh_qa.mesh.sidecars import sidecar_scopes, visibility_warnings
from chaosmesh_qa.mesh.values import parse_duration

if TYPE_CHECKING:
    from chaosmesh_qa.mesh.loader import Document


def build_model(
    documents: list[Document], problems: list[str], warnings: list[str], source: str = "mesh directory",
) -> MeshModel:
    """Cross-check the documents and resolve them; append problems instead of raising.

    ``source`` names the mesh directory in the problem raised when it holds no Mesh document.
    """
    meshes = [d for d in documents if d.kind == "Mesh"]
    if not meshes:
        problems.append(f"{source}: kind: no 'kind: Mesh' document found (expected exactly one)")
        return _empty()
    if len(meshes) > 1:
        problems.extend(f"{extra.where}: kind: expected exactly one 'kind: Mesh' document, found "
                        f"{len(meshes)} (the first is in {meshes[0].file})" for extra in meshes[1:])
        return _empty()
    mesh_doc = meshes[0]
    mesh_spec: schema.MeshSpec = mesh_doc.spec  # type: ignore[assignment]
    services = _services(mesh_doc, mesh_spec, problems)
    resolver = _HostResolver(services)
    if mesh_spec.ingress.service not in services:
        problems.append(f"{mesh_doc.where}: spec.ingress.service: unknown service {mesh_spec.ingress.service!r}")

    policies: dict[str, TrafficPolicy] = {}
    subsets: dict[str, dict[str, SubsetModel]] = {}
    for doc in (d for d in documents if d.kind == "DestinationRule"):
        _destination_rule(doc, resolver, services, policies, subsets, problems, warnings)
    routes: dict[str, tuple[Route, ...]] = {}
    for doc in (d for d in documents if d.kind == "VirtualService"):
        _virtual_service(doc, resolver, subsets, routes, problems)
    peer_auth = tuple(
        PeerAuthPolicy(d.namespace, _selector(d.spec), d.spec.mtls.mode if d.spec.mtls else "UNSET")  # type: ignore[attr-defined]
        for d in documents if d.kind == "PeerAuthentication"
    )
    authz = tuple(_authorization_policy(d) for d in documents if d.kind == "AuthorizationPolicy")
    sidecars = sidecar_scopes(documents, services, problems, warnings)
    model = MeshModel(
        name=mesh_doc.name,
        services=services,
        ingress_service=mesh_spec.ingress.service,
        ingress_paths=tuple(mesh_spec.ingress.paths),
        routes=routes,
        policies={name: policies.get(name, TrafficPolicy()) for name in services},
        subsets=subsets,
        peer_auth=peer_auth,
        authz=authz,
        sidecars=sidecars,
    )
    if not problems:
        visibility_warnings(model, warnings)
    return model


def _empty() -> MeshModel:
    return MeshModel("", {}, "", (), {}, {}, {}, (), ())


def _services(doc: Document, spec: schema.MeshSpec, problems: list[str]) -> dict[str, ServiceModel]:
    services: dict[str, ServiceModel] = {}
    for i, svc in enumerate(spec.services):
        where = f"{doc.where}: spec.services[{i}]"
        if svc.name in services:
            problems.append(f"{where}.name: duplicate service {svc.name!r}")
            continue
        seen: set[str] = set()
        versions = []
        for j, version in enumerate(svc.versions):
            if version.name in seen:
                problems.append(f"{where}.versions[{j}].name: duplicate version {version.name!r}")
            seen.add(version.name)
            versions.append(VersionModel(version.name, version.replicas, dict(version.labels),
                                         _behaviour(svc.app, version.app)))
        services[svc.name] = ServiceModel(
            name=svc.name, namespace=svc.namespace, port=svc.port,
            service_account=svc.service_account or svc.name, versions=tuple(versions),
            command=_command(svc.command, doc.file), health_path=svc.health_path,
            **({"ready_timeout_s": parse_duration(svc.ready_timeout)} if svc.ready_timeout else {}),
        )
    for i, svc in enumerate(spec.services):
        # the service-level app, then each version's override
        apps = [("app", svc.app), *((f"versions[{j}].app", v.app) for j, v in enumerate(svc.versions))]
        for field_path, app in apps:
            for k, call in enumerate(app.calls or [] if app else []):
                if call.service not in services:
                    problems.append(f"{doc.where}: spec.services[{i}].{field_path}.calls[{k}].service: "
                                    f"unknown service {call.service!r}")
    cycle = _call_cycle(services)
    if cycle:
        problems.append(f"{doc.where}: spec.services: call cycle {' -> '.join(cycle)} (requests would loop)")
    return services


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


class _HostResolver:
    """Maps Istio host names (short, ``name.ns``, FQDN) to service names."""

    def __init__(self, services: dict[str, ServiceModel]) -> None:
        self.by_host: dict[str, str] = {}
        for svc in services.values():
            for host in (svc.name, f"{svc.name}.{svc.namespace}", f"{svc.name}.{svc.namespace}.svc",
                         f"{svc.name}.{svc.namespace}.svc.{TRUST_DOMAIN}"):
                self.by_host[host] = svc.name

    def resolve(self, host: str) -> str | None:
        return self.by_host.get(host)


def _traffic_policy(spec: schema.TrafficPolicy | None, base: TrafficPolicy) -> TrafficPolicy:
    """Resolve a ``trafficPolicy`` over ``base`` (Istio's defaults, or the top level for a subset).

    As Istio merges a subset's policy: each of loadBalancer, connectionPool, outlierDetection
    and tls the subset sets replaces the top-level one whole (its unset fields take Istio's
    defaults, not the top-level values); the ones it omits are inherited.
    """
    if spec is None:
        return base
    defaults = TrafficPolicy()
    lb = base.load_balancer
    if spec.load_balancer is not None:
        lb = spec.load_balancer.simple or defaults.load_balancer
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
    return TrafficPolicy(lb, breaker, connect_timeout, outlier, tls_mode)


def _destination_rule(
    doc: Document, resolver: _HostResolver, services: dict[str, ServiceModel],
    policies: dict[str, TrafficPolicy], subsets: dict[str, dict[str, SubsetModel]],
    problems: list[str], warnings: list[str],
) -> None:
    spec: schema.DestinationRuleSpec = doc.spec  # type: ignore[assignment]
    service = resolver.resolve(spec.host)
    if service is None:
        problems.append(f"{doc.where}: spec.host: unknown host {spec.host!r} (no such service in the Mesh)")
        return
    if service in policies:
        problems.append(f"{doc.where}: spec.host: a second DestinationRule for {spec.host!r}")
        return
    top = _traffic_policy(spec.traffic_policy, TrafficPolicy())
    policies[service] = top
    found: dict[str, SubsetModel] = {}
    for i, subset in enumerate(spec.subsets):
        if subset.name in found:
            problems.append(f"{doc.where}: spec.subsets[{i}].name: duplicate subset {subset.name!r}")
            continue
        found[subset.name] = SubsetModel(subset.name, dict(subset.labels),
                                         _traffic_policy(subset.traffic_policy, top))
        svc = services[service]
        if not any(selects(subset.labels, {"app": service, "version": v.name, **v.labels})
                   for v in svc.versions):
            warnings.append(f"{doc.where}: spec.subsets[{i}].labels: selects no version of {service!r}")
    subsets[service] = found


def _virtual_service(
    doc: Document, resolver: _HostResolver, subsets: dict[str, dict[str, SubsetModel]],
    routes: dict[str, tuple[Route, ...]], problems: list[str],
) -> None:
    spec: schema.VirtualServiceSpec = doc.spec  # type: ignore[assignment]
    targets = []
    for i, host in enumerate(spec.hosts):
        service = resolver.resolve(host)
        if service is None:
            problems.append(f"{doc.where}: spec.hosts[{i}]: unknown host {host!r} (no such service in the Mesh)")
        elif service in routes:
            problems.append(f"{doc.where}: spec.hosts[{i}]: host {host!r} already has a VirtualService")
        else:
            targets.append(service)
    built: list[Route] = []
    for i, http in enumerate(spec.http):
        where = f"{doc.where}: spec.http[{i}]"
        destinations = []
        for j, dest in enumerate(http.route):
            service = resolver.resolve(dest.destination.host)
            if service is None:
                problems.append(f"{where}.route[{j}].destination.host: unknown host {dest.destination.host!r}")
                continue
            subset = dest.destination.subset
            if subset is not None and subset not in subsets.get(service, {}):
                problems.append(f"{where}.route[{j}].destination.subset: subset {subset!r} is not defined "
                                f"in a DestinationRule for {service!r}")
            weight = dest.weight if dest.weight is not None else (100 if len(http.route) == 1 else 0)
            destinations.append(WeightedDestination(service, subset, weight))
        total = sum(d.weight for d in destinations)
        if len(http.route) > 1 and len(destinations) == len(http.route) and total != 100:
            problems.append(f"{where}.route: weights sum to {total}, expected 100")
        if len(http.route) == 1 and destinations and destinations[0].weight != 100:
            # a lone destination takes all the traffic whatever its weight (even 0), as in Istio
            destinations[0] = WeightedDestination(destinations[0].service, destinations[0].subset, 100)
        built.append(Route(
            matches=tuple(_match(m) for m in http.match),
            destinations=tuple(destinations),
            retries=_retries(http.retries),
            timeout_s=parse_duration(http.timeout) if http.timeout else None,
            fault=_static_fault(http.fault),
        ))
    for service in targets:
        routes[service] = tuple(built)


def _match(spec: schema.HTTPMatchRequest) -> RouteMatch:
    return RouteMatch(
        uri=_string_match(spec.uri) if spec.uri else None,
        headers=tuple((name.lower(), _string_match(m)) for name, m in spec.headers.items()),
    )


def _string_match(spec: schema.StringMatch) -> StringMatch:
    for kind in ("exact", "prefix", "regex"):
        value = getattr(spec, kind)
        if value is not None:
            return StringMatch(kind, value)
    raise AssertionError("schema guarantees one match kind")


def _retries(spec: schema.HTTPRetry | None) -> RetryPolicy:
    if spec is None:
        return default_retries()
    policies = (spec.retry_on or ISTIO_DEFAULT_RETRY_ON).split(",")
    codes = tuple(dict.fromkeys(int(p) for p in policies if p.isdigit()))
    named = [p for p in dict.fromkeys(policies) if not p.isdigit()]
    if codes and "retriable-status-codes" not in named:
        named.append("retriable-status-codes")  # as Istio turns status codes into Envoy's retry policy
    return RetryPolicy(
        attempts=spec.attempts,
        retry_on=",".join(named),
        per_try_timeout_s=parse_duration(spec.per_try_timeout) if spec.per_try_timeout else None,
        retriable_status_codes=codes,
    )


def _static_fault(spec: schema.HTTPFaultInjection | None) -> StaticFault | None:
    if spec is None or (spec.delay is None and spec.abort is None):
        return None
    delay, abort = spec.delay, spec.abort
    return StaticFault(
        delay_s=parse_duration(delay.fixed_delay) if delay else None,
        delay_percent=(delay.percentage.value if delay and delay.percentage else 100.0) if delay else 0.0,
        abort_status=abort.http_status if abort else None,
        abort_percent=(abort.percentage.value if abort and abort.percentage else 100.0) if abort else 0.0,
    )


def _selector(spec: object) -> dict[str, str] | None:
    selector = getattr(spec, "selector", None)
    return dict(selector.match_labels) if selector and selector.match_labels else None


def _authorization_policy(doc: Document) -> AuthzPolicy:
    spec: schema.AuthorizationPolicySpec = doc.spec  # type: ignore[assignment]
    rules = tuple(
        AuthzRule(
            sources=tuple(AuthzSource(tuple(f.source.principals), tuple(f.source.namespaces))
                          for f in rule.from_),
            operations=tuple(AuthzOperation(tuple(t.operation.paths), tuple(t.operation.methods))
                             for t in rule.to),
        )
        for rule in spec.rules
    )
    return AuthzPolicy(doc.name, doc.namespace, _selector(spec), spec.action, rules)

