"""The call graph of a mesh as the scaffolding reads it: who calls whom, in which order from the ingress, at
what rate, and the route a caller applies to plain requests.

Used by ``scaffold.timing`` (budgets along a path) and ``scaffold.experiment`` (defaults and checks).  Only
the ``MeshModel``'s public view is read (``callees``, ``callers``, ``routes_for``, ``subset_of``).
"""

from __future__ import annotations

from dataclasses import dataclass

from chaosmesh_qa.mesh.model import MeshModel, Route, TrafficPolicy

INGRESS = "ingress"  # the gateway, as the actions and probes name it


@dataclass(frozen=True)
class Edge:
    source: str  # a service, or "ingress"
    service: str
    depth: int  # hops from the ingress to ``service``


def order(model: MeshModel) -> list[str]:
    """Every service the ingress reaches, breadth first (the services the traffic crosses)."""
    found: list[str] = []
    queue = list(model.ingress_services())
    while queue:
        name = queue.pop(0)
        if name in found:
            continue
        found.append(name)
        queue.extend(callee for callee in model.callees(name) if callee not in found)
    return found


def edges(model: MeshModel) -> list[Edge]:
    """Every caller -> callee edge the traffic crosses, breadth first from the ingress."""
    depth = dict.fromkeys(model.ingress_services(), 1)
    out = [Edge(INGRESS, name, 1) for name in model.ingress_services()]
    for name in order(model):
        for callee in model.callees(name):
            depth.setdefault(callee, depth[name] + 1)
            out.append(Edge(name, callee, depth[name] + 1))
    return out


def path_to(model: MeshModel, service: str) -> list[str]:
    """``ingress``, then the services a request crosses to reach ``service`` (shortest, breadth first)."""
    parents: dict[str, str] = {name: INGRESS for name in model.ingress_services()}
    for name in order(model):
        for callee in model.callees(name):
            parents.setdefault(callee, name)
    if service not in parents:
        return []
    path = [service]
    while path[-1] != INGRESS:
        path.append(parents[path[-1]])
    return path[::-1]


def plain_route(model: MeshModel, service: str) -> Route:
    """The route requests without special headers take to ``service`` (its last catch-all, else its first)."""
    routes = model.routes_for(service)
    for route in routes:
        if not route.matches or any(m.uri is None or (m.uri.kind == "prefix" and m.uri.value == "/")
                                    for m in route.matches if not m.headers and not m.source_labels):
            return route
    return routes[0]


def pods(model: MeshModel, service: str) -> int:
    return sum(v.replicas for v in model.services[service].versions)


def busiest_version(model: MeshModel, service: str) -> str:
    """The version with the most pods (a kill there leaves the most behind in its subset)."""
    return max(model.services[service].versions, key=lambda v: v.replicas).name


def pool(model: MeshModel, service: str, version: str) -> tuple[int, TrafficPolicy]:
    """How many pods share ``version``'s load-balancing pool (its subset's, or the whole service's), and the
    traffic policy callers apply to that pool."""
    subsets = model.subset_of(service, version)
    if not subsets:
        return pods(model, service), model.policies[service]
    subset = model.subsets[service][subsets[0]]
    versions = model.services[service].versions
    return sum(v.replicas for v in versions if subset.name in model.subset_of(service, v.name)), subset.policy


def rates(model: MeshModel, rps: float) -> dict[str, float]:
    """Requests per second into each service for ``rps`` at the ingress (one call per caller request)."""
    into = dict.fromkeys(model.ingress_services(), rps / max(1, len(model.ingress_services())))
    for name in _callers_first(model):
        versions = model.services[name].versions
        total = sum(v.replicas for v in versions) or 1
        callees = model.callees(name)
        for version in versions:
            share = version.replicas / total
            called = [c for c, _ in version.behaviour.calls] if model.services[name].command is None else callees
            for callee in called:
                into[callee] = into.get(callee, 0.0) + into.get(name, 0.0) * share
    return into


def _callers_first(model: MeshModel) -> list[str]:
    """``order`` rearranged so that every caller comes before its callees where the graph allows it (the loader
    refuses cycles among the demo app's calls; programs run by ``command`` may call anything)."""
    reached = order(model)
    waiting = {name: {c for c in model.callers(name) if c in reached} for name in reached}
    done: list[str] = []
    while len(done) < len(reached):
        ready = [name for name in reached if name not in done and not waiting[name] - set(done)]
        done.extend(ready or [next(name for name in reached if name not in done)])
    return done


def caller_pods(model: MeshModel, service: str) -> int:
    """The sidecars that send to ``service``: each keeps its own outlier detection counts."""
    return sum(1 if caller == INGRESS else pods(model, caller) for caller in model.callers(service)) or 1
