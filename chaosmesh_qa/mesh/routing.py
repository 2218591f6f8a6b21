"""What the declared routing promises: the share of a service's requests each version should serve.

``chaosmesh_qa.probes.routing`` (and ``mesh.explain``) call ``expected_shares(model, service,
headers, path)``: the first route (a VirtualService's, or an HTTPRoute's attached to the Service) whose match
takes a request with those headers (and path, with its query) decides, its weights split over the destinations'
subsets (a per-version Service's: the pods it selects), and a subset's share over the versions its labels select,
in proportion to their replicas (the load balancer spreads a cluster's requests over its endpoints).  Pure model
arithmetic: no target, no metrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh.callers import routes_seen_by
from chaosmesh_qa.mesh.model import MeshModel, Route, RouteMatch, StringMatch


@dataclass(frozen=True)
class Expectation:
    shares: dict[str, float]  # version -> share of the requests the service serves
    route_index: int  # which http route of the service's VirtualService decided (-1: no VirtualService)
    problems: tuple[str, ...]  # declared routing that cannot be served (a subset selecting no pod)


def expected_shares(model: MeshModel, service: str, headers: dict[str, str] | None = None,
                    path: str | None = None) -> Expectation:
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    routes = model.routes_for(service)
    if any(m.source_labels or m.source_namespace for r in routes for m in r.matches):
        return _per_caller(model, service, headers, path)
    declared = service in model.routes
    for index, route in enumerate(routes):
        if _takes(route, headers, path, service, index):
            return _split(model, service, route, index if declared else -1)
    raise InvalidArgument(f"headers: no route of {service!r}'s VirtualService takes a request with "
                          f"{headers or 'no headers'} (Istio answers 404)")


def _per_caller(model: MeshModel, service: str, headers: dict[str, str], path: str | None) -> Expectation:
    """Routes that match on the caller (``sourceLabels``): one expectation if every caller gets
    the same split, else the caller mix decides and only the user can say what to expect."""
    found: dict[str, Expectation] = {}
    for caller in model.callers(service):
        for index, route in enumerate(routes_seen_by(model, service, caller)):
            if _takes(route, headers, path, service, index):
                declared = next(i for i, r in enumerate(model.routes[service]) if r.where == route.where)
                found[caller] = _split(model, service, route, declared)
                break
    splits = {tuple(sorted(e.shares.items())) for e in found.values()}
    if len(splits) != 1:
        raise InvalidArgument(f"expected: the routes toward {service!r} match on the caller (sourceLabels), and "
                              f"its callers {', '.join(sorted(found)) or '(none)'} get different splits; the "
                              "share to expect depends on their traffic mix, so give 'expected'")
    return next(iter(found.values()))


def _takes(route: Route, headers: dict[str, str], path: str | None, service: str, index: int) -> bool:
    if not route.matches:
        return True
    return any(_match(m, headers, path, service, index) for m in route.matches)


def _match(match: RouteMatch, headers: dict[str, str], path: str | None, service: str, index: int) -> bool:
    if match.uri is not None or match.query_params:
        if path is None:
            raise InvalidArgument(f"path: route http[{index}] of {service!r} matches on the URI; "
                                  "give the request path the traffic uses")
        if match.uri is not None and not _string(match.uri, path):
            return False
        query = dict(parse_qsl(path.partition("?")[2], keep_blank_values=True))  # an HTTPRoute's queryParams
        if not all(name in query and _string(m, query[name]) for name, m in match.query_params):
            return False
    return all(name in headers and _string(m, headers[name]) for name, m in match.headers)


def _string(match: StringMatch, value: str) -> bool:
    if match.kind == "exact":
        return value == match.value
    if match.kind == "prefix":
        return value.startswith(match.value)
    return re.fullmatch(match.value, value) is not None  # Istio's regex matches the whole value


def _split(model: MeshModel, service: str, route: Route, index: int) -> Expectation:
    svc = model.services[service]
    mine = [d for d in route.destinations if d.service == service]
    total = sum(d.weight for d in mine) or 1
    shares: dict[str, float] = {}
    problems: list[str] = []
    for dest in mine:
        if dest.subset is None:
            selected = list(svc.versions)
        else:
            labels = model.subsets[service][dest.subset].labels
            selected = [v for v in svc.versions
                        if all(model.workload_labels(service, v.name).get(k) == val for k, val in labels.items())]
            if not selected and dest.weight:
                problems.append(f"subset {dest.subset!r} of {service!r} (labels {labels}) selects no pod: "
                                f"its {dest.weight}% cannot be served")
        replicas = sum(v.replicas for v in selected)
        for version in selected:
            shares[version.name] = shares.get(version.name, 0.0) + dest.weight / total * version.replicas / replicas
    return Expectation(shares, index, tuple(problems))
