"""VirtualServices to routes: which VirtualService takes effect for each host, and its routes.

``build.build_model`` calls ``virtual_services`` with the validated documents in age order (a mesh directory's
file and document order; on a cluster, ``targets.kubernetes.declared`` orders them by creation time, then name, as
istiod does).  Delegates are merged into their roots first (``delegates.expand``).  Then, as istiod builds a
sidecar's routes (pilot/pkg/networking/core/httproute.go, route/route.go; model/sidecar.go): a host's own
VirtualService wins over a wildcard one, a longer wildcard over a shorter one, and among VirtualServices naming the
same host the oldest takes effect: istiod does not merge them for sidecars (its analyzer reports IST0109), so a
newer one is ignored for that host, with a warning naming both.  Gateway-bound VirtualServices go to
``gateways.Ingress`` in age order, which merges the routes of several for one gateway host as istiod does.  A host
that is a ServiceEntry's (``hosts.HostResolver.external``) gets no sandbox routes: its routes are recorded on the
model's ``ExternalHost`` (``serviceentries.with_routes``), destinations as written.
"""

from __future__ import annotations

from chaosmesh_qa.mesh import gateways, schema, serviceentries
from chaosmesh_qa.mesh.delegates import Routed, expand
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.hosts import HostResolver
from chaosmesh_qa.mesh.model import (
    ISTIO_DEFAULT_RETRY_ON,
    ExternalHost,
    Mirror,
    RetryPolicy,
    Route,
    RouteMatch,
    ServiceModel,
    StaticFault,
    StringMatch,
    SubsetModel,
    WeightedDestination,
    default_retries,
)
from chaosmesh_qa.mesh.values import UINT32_MAX, parse_duration


def virtual_services(
    documents: list[Document], resolver: HostResolver, services: dict[str, ServiceModel],
    subsets: dict[str, dict[str, SubsetModel]], external: dict[str, ExternalHost], ingress: gateways.Ingress,
    problems: list[str], warnings: list[str],
) -> dict[str, tuple[Route, ...]]:
    """The routes of each service that has a VirtualService; gateway routes go to ``ingress``, those of
    ServiceEntry hosts to ``external``."""
    claims: list[tuple[tuple[int, int], int, int, str, list[str]]] = []  # (specificity, age, i, host, services)
    built: list[tuple[Routed, tuple[Route, ...]]] = []
    for age, entry in enumerate(expand(documents, warnings)):
        doc, spec = entry.doc, entry.spec
        mesh_bound, bound = ingress.bindings(doc, spec.gateways, problems)  # gateways absent: [mesh]
        mesh_hosts = False
        outside: list[tuple[int, str]] = []
        for i, host in enumerate(spec.hosts if mesh_bound else ()):
            if host == "*":  # Istio's own validation
                problems.append(f"{doc.where}: spec.hosts[{i}]: '*' is not allowed in a VirtualService bound to the "
                                "mesh (as in Istio); name the services, or '*.<namespace>.svc.cluster.local'")
                continue
            chosen = resolver.matching(host)
            if chosen is None and bound and ingress.serves(bound, host):
                continue  # the mixed form: a gateway's external host, not a mesh service
            if not chosen and (outer := resolver.external(host)) is not None:  # a wildcard may name one too
                outside.append((i, outer))
                continue
            if chosen is None and resolver.outside_cluster(host):
                warnings.append(f"{doc.where}: spec.hosts[{i}]: {host!r} is outside the mesh and no ServiceEntry "
                                "declares it: the sandbox does not send traffic outside the mesh, so these routes "
                                "are not applied for it")
                continue
            if chosen is None:
                problems.append(f"{doc.where}: spec.hosts[{i}]: unknown host {host!r} (no such service in the Mesh "
                                "or ServiceEntry)")
                continue
            mesh_hosts = True
            claims.append((HostResolver.specificity(host), age, i, host, chosen))
        if mesh_hosts or bound:
            mine = _routes(entry, resolver, services, subsets, problems, lenient=False)
            built.append((entry, mine))
            if bound:
                ingress.add_virtual_service(doc, spec.hosts, bound, mine, problems, mesh_bound)
        else:
            built.append((entry, ()))
        if outside:  # destinations as written: the sandbox builds nothing from them, so nothing is refused
            recorded = _routes(entry, resolver, services, subsets, [], lenient=True)
            for i, host in outside:
                serviceentries.with_routes(external, host, recorded, doc.where, f"spec.hosts[{i}]", warnings)
    routes: dict[str, tuple[Route, ...]] = {}
    owners: dict[str, str] = {}
    for _, age, i, host, chosen in sorted(claims, key=lambda c: (c[0], c[1], c[2])):
        entry, found = built[age]
        for service in chosen:
            if service not in routes:
                routes[service], owners[service] = found, entry.doc.where
            elif not host.startswith("*") and owners[service] != entry.doc.where:
                # a wildcard host yields to a more specific (or older) VirtualService without a word, as in Istio
                warnings.append(f"{entry.doc.where}: spec.hosts[{i}]: host {host!r} already has an older "
                                f"VirtualService ({owners[service]}): as istiod does for sidecars, the oldest one "
                                "takes effect and this one is ignored for it (Istio's analyzer reports IST0109)")
    return routes


def _routes(entry: Routed, resolver: HostResolver, services: dict[str, ServiceModel],
            subsets: dict[str, dict[str, SubsetModel]], problems: list[str], lenient: bool) -> tuple[Route, ...]:
    """The routes of a VirtualService (its delegates merged in); ``lenient``: a destination that is no service
    of the mesh is kept as written (an external host's routes) instead of being a problem."""
    built: list[Route] = []
    for where, http in entry.http:
        destinations = []
        given = http.route or []
        for j, dest in enumerate(given):
            found = _destination(dest.destination, f"{where}.route[{j}].destination", resolver, services, subsets,
                                 problems, lenient)
            if found is None:
                continue
            service, subset = found
            weight = dest.weight if dest.weight is not None else (100 if len(given) == 1 else 0)
            destinations.append(WeightedDestination(service, subset, weight))
        total = sum(d.weight for d in destinations)
        if len(given) > 1 and len(destinations) == len(given) and total == 0:
            problems.append(f"{where}.route: every weight is 0 (or missing): no destination would receive traffic")
        if total > UINT32_MAX:
            problems.append(f"{where}.route: weights sum to {total}, more than Envoy takes ({UINT32_MAX})")
        if len(given) == 1 and destinations and destinations[0].weight != 100:
            # a lone destination takes all the traffic whatever its weight (even 0), as in Istio
            destinations[0] = WeightedDestination(destinations[0].service, destinations[0].subset, 100)
        built.append(Route(
            matches=tuple(_match(m) for m in http.match),
            destinations=tuple(destinations),
            retries=_retries(http.retries),
            timeout_s=parse_duration(http.timeout) if http.timeout else None,
            fault=_static_fault(http.fault),
            mirrors=_mirrors(http, where, resolver, services, subsets, problems, lenient),
            where=where,
        ))
    return tuple(built)


def _destination(
    dest: schema.Destination, where: str, resolver: HostResolver, services: dict[str, ServiceModel],
    subsets: dict[str, dict[str, SubsetModel]], problems: list[str], lenient: bool = False,
) -> tuple[str, str | None] | None:
    """A route or mirror destination as (service, subset); None (with a problem) if it names none."""
    service = resolver.resolve(dest.host)
    if service is None and lenient:
        return dest.host, dest.subset
    if service is None:
        outer = resolver.external(dest.host)
        reason = (f": it is an external host ({outer!r}, a ServiceEntry's), and the sandbox does not send traffic "
                  "to external hosts" if outer else "")
        problems.append(f"{where}.host: unknown host {dest.host!r}{reason}")
        return None
    if dest.subset is not None and dest.subset not in subsets.get(service, {}):
        problems.append(f"{where}.subset: subset {dest.subset!r} is not defined in a DestinationRule for "
                        f"{service!r}")
    if dest.port is not None and dest.port.number != services[service].port:
        problems.append(f"{where}.port.number: {service!r} has no port {dest.port.number} (its port is "
                        f"{services[service].port})")
    return service, dest.subset


def _mirrors(
    http: schema.HTTPRoute, where: str, resolver: HostResolver, services: dict[str, ServiceModel],
    subsets: dict[str, dict[str, SubsetModel]], problems: list[str], lenient: bool,
) -> tuple[Mirror, ...]:
    """``mirror`` (with ``mirrorPercentage`` or the deprecated ``mirrorPercent``) and ``mirrors``;
    Istio mirrors every request when no percentage is given."""
    found: list[Mirror] = []
    if http.mirror is not None:
        dest = _destination(http.mirror, f"{where}.mirror", resolver, services, subsets, problems, lenient)
        percent = (http.mirror_percentage.value if http.mirror_percentage is not None
                   else float(http.mirror_percent) if http.mirror_percent is not None else 100.0)
        if dest is not None:
            found.append(Mirror(dest[0], dest[1], percent))
    for k, policy in enumerate(http.mirrors):
        dest = _destination(policy.destination, f"{where}.mirrors[{k}].destination", resolver, services, subsets,
                            problems, lenient)
        if dest is not None:
            found.append(Mirror(dest[0], dest[1], policy.percentage.value if policy.percentage else 100.0))
    return tuple(found)


def _match(spec: schema.HTTPMatchRequest) -> RouteMatch:
    return RouteMatch(
        uri=_string_match(spec.uri) if spec.uri else None,
        headers=tuple((name.lower(), _string_match(m)) for name, m in spec.headers.items()),
        source_labels=tuple(sorted((spec.source_labels or {}).items())),
        source_namespace=spec.source_namespace,
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
        delay_percent=_delay_percent(delay),
        abort_status=abort.http_status if abort else None,
        abort_percent=(abort.percentage.value if abort and abort.percentage else 100.0) if abort else 0.0,
    )


def _delay_percent(delay: schema.FaultDelay | None) -> float:
    """``percentage.value``, else the deprecated integer ``percent`` (still honoured by Istio), else 100."""
    if delay is None:
        return 0.0
    if delay.percentage is not None:
        return delay.percentage.value
    return float(delay.percent) if delay.percent is not None else 100.0

