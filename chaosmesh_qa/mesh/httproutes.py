"""Gateway API ``HTTPRoute`` rules as the sandbox's routes, and the Gateway API schemas.

``loader`` validates Gateway API ``Gateway`` and ``HTTPRoute`` documents with the schemas here
(through ``gateways.spec_for``); ``gateways.Ingress`` calls ``rules`` for each HTTPRoute it
attaches: matches (path by whole segments for ``PathPrefix``, headers, method), weighted
Service backends (relative weights as whole percents), ``timeouts.request`` and the one filter
supported, ``RequestHeaderModifier``; everything else is refused on one line.  Each route comes
with its Gateway API precedence key, so that several HTTPRoutes for one host can be merged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from chaosmesh_qa.mesh import schema
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.model import (
    HeaderChanges,
    Mirror,
    RetryPolicy,
    Route,
    RouteMatch,
    ServiceModel,
    ServiceView,
    StringMatch,
    WeightedDestination,
    default_retries,
)
from chaosmesh_qa.mesh.values import (
    Duration,
    HeaderName,
    Text,
    envoy_regex,
    is_http_path,
    parse_duration,
    show,
)

_HOST = re.compile(r"\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII)


def host_name(value: str) -> str:
    if len(value) > 253 or not _HOST.fullmatch(value):
        raise ValueError(f"{show(value)} is not a host name: '*', '*.<domain>' or a lower-case DNS name")
    return value


Host = Annotated[str, AfterValidator(host_name)]


class RouteNamespaces(schema.Spec):
    from_: Literal["Same", "All"] = Field(default="Same", alias="from")


class AllowedRoutes(schema.Spec):
    namespaces: RouteNamespaces | None = None


class Listener(schema.Spec):
    name: str = Field(min_length=1)
    hostname: Host | None = None
    port: Annotated[int, Field(ge=1, le=65535)]
    protocol: str
    allowed_routes: AllowedRoutes | None = None
    tls: dict[str, Any] | None = None


class K8sGatewaySpec(schema.Spec):
    gateway_class_name: str = Field(min_length=1)
    listeners: list[Listener] = Field(min_length=1)


class ParentRef(schema.Spec):
    name: str = Field(min_length=1)
    namespace: str | None = None
    section_name: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    group: str | None = None
    kind: str | None = None


class PathMatch(schema.Spec):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"


class HeaderMatch(schema.Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: str = Field(max_length=4096)


class QueryParamMatch(schema.Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: Annotated[str, Field(min_length=1, max_length=256)]
    value: str = Field(max_length=1024)


class HTTPRouteMatch(schema.Spec):
    path: PathMatch = Field(default_factory=PathMatch)
    headers: list[HeaderMatch] = Field(default_factory=list)
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] | None = None
    query_params: list[QueryParamMatch] = Field(default_factory=list)


class HTTPHeader(schema.Spec):
    name: HeaderName
    value: Annotated[Text, Field(max_length=4096)]


class HeaderModifier(schema.Spec):
    set: list[HTTPHeader] = Field(default_factory=list)
    add: list[HTTPHeader] = Field(default_factory=list)
    remove: list[HeaderName] = Field(default_factory=list)


class BackendRef(schema.Spec):
    name: str = Field(min_length=1)
    namespace: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    kind: str | None = None
    group: str | None = None


class Fraction(schema.Spec):
    numerator: Annotated[int, Field(ge=0)]
    denominator: Annotated[int, Field(ge=1)] = 100


class MirrorFilter(schema.Spec):
    backend_ref: BackendRef
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    fraction: Fraction | None = None


class Filter(schema.Spec):
    type: str
    request_header_modifier: HeaderModifier | None = None
    request_mirror: MirrorFilter | None = None
    # read by no route of the sandbox: the filter is refused (ingress) or warned (mesh routes) as a whole
    url_rewrite: dict[str, Any] | None = None
    request_redirect: dict[str, Any] | None = None
    response_header_modifier: dict[str, Any] | None = None
    cors: dict[str, Any] | None = None
    extension_ref: dict[str, Any] | None = None


class Timeouts(schema.Spec):
    request: Duration | None = None


class Retry(schema.Spec):
    attempts: Annotated[int, Field(ge=0)] | None = None
    codes: list[Annotated[int, Field(ge=400, le=599)]] = Field(default_factory=list)
    backoff: Duration | None = None


class HTTPRouteRule(schema.Spec):
    matches: list[HTTPRouteMatch] = Field(default_factory=lambda: [HTTPRouteMatch()])
    filters: list[Filter] = Field(default_factory=list)
    backend_refs: list[BackendRef] = Field(default_factory=list)
    timeouts: Timeouts | None = None
    retry: Retry | None = None


class HTTPRouteSpec(schema.Spec):
    parent_refs: list[ParentRef] = Field(min_length=1)
    hostnames: list[Host] = Field(default_factory=list)
    rules: list[HTTPRouteRule] = Field(default_factory=lambda: [HTTPRouteRule()])


def is_service_parent(ref: ParentRef) -> bool:
    """A parentRef naming a Service (group '' and kind Service): mesh routing, the GAMMA model.  Without
    ``group`` the API server defaults it to gateway.networking.k8s.io, which has no kind Service."""
    return ref.kind == "Service" and ref.group == ""


def rules(doc: Document, spec: HTTPRouteSpec, services: dict[str, ServiceModel], problems: list[str],
          views: dict[str, ServiceView] | None = None,
          warnings: list[str] | None = None) -> list[tuple[tuple[Any, ...], Route]] | None:
    """An HTTPRoute's routes, one per match, each with its precedence key; None if it has problems.

    ``warnings`` given (mesh routes, ``meshroutes``): a filter the sandbox does not apply is warned and left out,
    and ``RequestMirror`` and ``retry`` are read; without it (the ingress's routes) such a filter is a problem."""
    built: list[tuple[tuple[Any, ...], Route]] = []
    before = len(problems)
    known = views or {}
    for i, rule in enumerate(spec.rules):
        where = f"{doc.where}: spec.rules[{i}]"
        headers, mirrors = _filters(doc, where, rule.filters, services, known, problems, warnings)
        destinations = _backends(doc, where, rule.backend_refs, services, known, problems)
        timeout = parse_duration(rule.timeouts.request) if rule.timeouts and rule.timeouts.request else None
        retries = _retry(where, rule.retry, warnings) if warnings is not None else default_retries()
        for j, match in enumerate(rule.matches):
            route_match, key = _match(f"{where}.matches[{j}]", match, problems)
            route = Route((route_match,), destinations, retries, timeout, None, mirrors, f"{where}.matches[{j}]",
                          headers=headers)
            built.append(((*key, doc.namespace, doc.name, i, j), route))
    return None if len(problems) > before else built


def _retry(where: str, retry: Retry | None, warnings: list[str]) -> RetryPolicy:
    """``retry`` as istiod converts it: connection errors plus ``codes``, ``attempts`` (default 2); none given:
    Istio's default retry policy, as for a VirtualService without ``retries``."""
    if retry is None:
        return default_retries()
    if retry.backoff is not None:
        warnings.append(f"{where}.retry.backoff: not applied by the sandbox (Envoy's default backoff is used)")
    attempts = 2 if retry.attempts is None else retry.attempts
    named = "connect-failure,refused-stream,unavailable,cancelled" + (",retriable-status-codes" if retry.codes
                                                                       else "")
    return RetryPolicy(attempts, named if attempts else "", None, tuple(dict.fromkeys(retry.codes)))


def _backend(doc: Document, path: str, ref: BackendRef, services: dict[str, ServiceModel],
             views: dict[str, ServiceView], problems: list[str]) -> tuple[str, str | None] | None:
    """The (service, subset) a backendRef names: a Service of the mesh, or a per-version Service's subset."""
    svc = services.get(ref.name)
    view = views.get(ref.name)
    port = view.port if view is not None and view.namespace == doc.namespace else svc.port if svc else None
    if (ref.kind or "Service") != "Service" or ref.group not in (None, ""):
        problems.append(f"{path}.kind: only Service backends are supported")
    elif (ref.namespace or doc.namespace) != doc.namespace:
        problems.append(f"{path}.namespace: a backend in another namespace needs a ReferenceGrant, "
                        "which the sandbox does not support")
    elif port is None or (view is None and svc is not None and svc.namespace != doc.namespace):
        problems.append(f"{path}.name: no service {ref.name!r} in namespace {doc.namespace!r}")
    elif ref.port is None:
        problems.append(f"{path}.port: required for a Service backend (Gateway API)")
    elif ref.port != port:
        problems.append(f"{path}.port: {ref.port} is not the port of service {ref.name!r} ({port})")
    else:
        return (view.parent, view.name) if view is not None else (ref.name, None)
    return None


def _backends(doc: Document, where: str, refs: list[BackendRef], services: dict[str, ServiceModel],
              views: dict[str, ServiceView], problems: list[str]) -> tuple[WeightedDestination, ...]:
    if not refs:
        problems.append(f"{where}.backendRefs: none given (the gateway would answer 500)")
        return ()
    chosen: list[tuple[tuple[str, str | None], int]] = []
    for k, ref in enumerate(refs):
        found = _backend(doc, f"{where}.backendRefs[{k}]", ref, services, views, problems)
        if found is not None:
            chosen.append((found, ref.weight))
    if len(chosen) < len(refs):
        return ()
    total = sum(w for _, w in chosen)
    if total == 0:
        problems.append(f"{where}.backendRefs: every weight is 0 (the gateway would answer 500)")
        return ()
    return tuple(WeightedDestination(name, subset, share) for ((name, subset), _), share in
                 zip(chosen, percents([w for _, w in chosen]), strict=True))


def _filters(doc: Document, where: str, filters: list[Filter], services: dict[str, ServiceModel],
             views: dict[str, ServiceView], problems: list[str],
             warnings: list[str] | None) -> tuple[HeaderChanges | None, tuple[Mirror, ...]]:
    """RequestHeaderModifier (at most once per rule, as Gateway API requires) and, on mesh routes, RequestMirror;
    another filter is a problem (ingress) or warned and left out (mesh: ``warnings`` given)."""
    changes: HeaderChanges | None = None
    mirrors: list[Mirror] = []
    supported = "RequestHeaderModifier" if warnings is None else "RequestHeaderModifier, RequestMirror"
    for k, flt in enumerate(filters):
        path = f"{where}.filters[{k}]"
        if flt.type == "RequestMirror" and warnings is not None:
            if flt.request_mirror is None:
                problems.append(f"{path}.requestMirror: required for type RequestMirror")
            elif (found := _backend(doc, f"{path}.requestMirror.backendRef", flt.request_mirror.backend_ref,
                                    services, views, problems)) is not None:
                fraction = flt.request_mirror.fraction
                percent = (100.0 * fraction.numerator / fraction.denominator if fraction is not None
                           else float(flt.request_mirror.percent) if flt.request_mirror.percent is not None
                           else 100.0)
                mirrors.append(Mirror(found[0], found[1], percent))
        elif flt.type != "RequestHeaderModifier" and warnings is not None:
            warnings.append(f"{path}.type: {flt.type!r} is not applied by the sandbox (supported: {supported}); "
                            "the route is served without it")
        elif flt.type != "RequestHeaderModifier":
            problems.append(f"{path}.type: {flt.type!r} is not supported by the sandbox (supported: "
                            f"{supported}); the route would behave differently")
        elif flt.request_header_modifier is None:
            problems.append(f"{path}.requestHeaderModifier: required for type RequestHeaderModifier")
        elif changes is not None:
            problems.append(f"{path}.type: RequestHeaderModifier given twice in one rule (Gateway API allows one)")
        else:
            spec = flt.request_header_modifier
            names = [h.name.lower() for h in (*spec.set, *spec.add)] + [n.lower() for n in spec.remove]
            if "host" in names or len(set(names)) < len(names):
                problems.append(f"{path}.requestHeaderModifier: each header once, and not 'host' (a rewrite of "
                                "the host is URLRewrite, not supported)")
            changes = HeaderChanges(tuple((h.name.lower(), h.value) for h in spec.set),
                                    tuple((h.name.lower(), h.value) for h in spec.add),
                                    tuple(n.lower() for n in spec.remove))
    return changes, tuple(mirrors)


def percents(weights: list[int]) -> list[int]:
    """Relative weights as whole percents summing to 100 (largest remainders get the rest)."""
    total = sum(weights)
    exact = [w * 100 / total for w in weights]
    shares = [int(e) for e in exact]
    for i in sorted(range(len(weights)), key=lambda i: exact[i] - shares[i], reverse=True)[:100 - sum(shares)]:
        shares[i] += 1
    return shares


def _match(where: str, match: HTTPRouteMatch, problems: list[str]) -> tuple[RouteMatch, tuple[Any, ...]]:
    """A Gateway API match, and its precedence key (exact path, longest prefix, method, most headers, most query
    parameters)."""
    path, uri = match.path, None
    if path.type == "RegularExpression":
        try:
            uri = StringMatch("regex", envoy_regex(path.value))
        except ValueError as exc:
            problems.append(f"{where}.path.value: {exc}")
    elif not path.value.startswith("/") or not is_http_path(path.value):
        problems.append(f"{where}.path.value: {show(path.value)} is not an HTTP path")
    elif path.type == "Exact":
        uri = StringMatch("exact", path.value)
    elif path.value.rstrip("/"):
        # PathPrefix matches whole path segments: "/api" takes "/api" and "/api/x", not "/apix"
        uri = StringMatch("regex", f"{re.escape(path.value.rstrip('/'))}(/.*)?")
    headers: list[tuple[str, StringMatch]] = []
    for k, header in enumerate(match.headers):
        name = header.name.lower()
        if any(name == seen for seen, _ in headers):
            problems.append(f"{where}.headers[{k}].name: {header.name!r} is matched twice")
            continue
        try:
            value = envoy_regex(header.value) if header.type == "RegularExpression" else header.value
        except ValueError as exc:
            problems.append(f"{where}.headers[{k}].value: {exc}")
            continue
        headers.append((name, StringMatch("regex" if header.type == "RegularExpression" else "exact", value)))
    if match.method:
        headers.append((":method", StringMatch("exact", match.method)))
    query: list[tuple[str, StringMatch]] = []
    for k, param in enumerate(match.query_params):
        if any(param.name == seen for seen, _ in query):
            problems.append(f"{where}.queryParams[{k}].name: {param.name!r} is matched twice")
            continue
        try:
            value = envoy_regex(param.value) if param.type == "RegularExpression" else param.value
        except ValueError as exc:
            problems.append(f"{where}.queryParams[{k}].value: {exc}")
            continue
        query.append((param.name, StringMatch("regex" if param.type == "RegularExpression" else "exact", value)))
    rank = {"Exact": 0, "PathPrefix": 1, "RegularExpression": 2}[path.type]
    key = (rank, -len(path.value), 0 if match.method else 1, -len(match.headers), -len(match.query_params))
    return RouteMatch(uri, tuple(headers), query_params=tuple(query)), key
