"""Route matches on the caller (``sourceLabels``, ``sourceNamespace``), resolved per caller.

In Istio each sidecar knows its own pod labels, so a VirtualService match with ``sourceLabels``
is put into the outbound routes of the callers it selects and left out of the others'.  The
sandbox does the same: ``routes_seen_by`` gives the routes one caller's Envoys get (called by the
local control plane's ``envoy.routes``), and ``source_problems`` (called by ``build``) refuses a
match that selects some versions of a calling service and not the others, since a service's
replicas share one outbound configuration here.
"""

from __future__ import annotations

from dataclasses import replace

from chaosmesh_qa.mesh.model import MeshModel, Route, RouteMatch, selects

INGRESS = "ingress"  # the caller name of the ingress gateway (``MeshModel.ingress_gateway`` says which one it is)


def caller_labels(model: MeshModel, caller: str) -> list[dict[str, str]]:
    """The pod labels of each version of a caller (the ingress gateway's own labels for ``ingress``)."""
    if caller == INGRESS:
        return [dict(model.ingress_gateway.labels)]
    return [model.workload_labels(caller, v.name) for v in model.services[caller].versions]


def caller_namespace(model: MeshModel, caller: str) -> str:
    return model.ingress_gateway.namespace if caller == INGRESS else model.services[caller].namespace


def _selection(model: MeshModel, match: RouteMatch, caller: str) -> bool | None:
    """True: the caller's every version satisfies the match's source conditions; False: none does;
    None: some do (the sandbox cannot render that)."""
    if match.source_namespace is not None and match.source_namespace != caller_namespace(model, caller):
        return False
    if not match.source_labels:
        return True
    wanted = dict(match.source_labels)
    chosen = [selects(wanted, labels) for labels in caller_labels(model, caller)]
    if all(chosen):
        return True
    return False if not any(chosen) else None


def routes_seen_by(model: MeshModel, callee: str, caller: str) -> tuple[Route, ...]:
    """The routes toward ``callee`` as ``caller``'s sidecars apply them (see ``as_seen_by``)."""
    return as_seen_by(model, model.routes_for(callee), caller)


def as_seen_by(model: MeshModel, routes: tuple[Route, ...], caller: str) -> tuple[Route, ...]:
    """``routes`` as ``caller``'s Envoys apply them: a match whose source conditions select the
    caller loses them (they hold), one that does not is left out, and a route left without any
    match is left out whole (it never applies to this caller)."""
    seen: list[Route] = []
    for route in routes:
        if not route.matches:
            seen.append(route)
            continue
        kept = tuple(replace(m, source_labels=(), source_namespace=None) for m in route.matches
                     if _selection(model, m, caller))
        if kept:
            seen.append(replace(route, matches=kept))
    return tuple(seen)


def source_problems(model: MeshModel) -> list[str]:
    """One line per match whose ``sourceLabels`` select some versions of a calling service only."""
    problems: list[str] = []
    for routes in model.routes.values():
        for route in routes:
            for j, match in enumerate(route.matches):
                if not match.source_labels:
                    continue
                for caller in sorted(model.services):
                    if _selection(model, match, caller) is None:
                        versions = [v.name for v, labels in zip(model.services[caller].versions,
                                                                caller_labels(model, caller), strict=True)
                                    if selects(dict(match.source_labels), labels)]
                        problems.append(
                            f"{route.where}.match[{j}].sourceLabels: {dict(match.source_labels)} selects "
                            f"version(s) {', '.join(versions)} of caller {caller!r} but not the others (a "
                            "service's versions share one outbound configuration in the sandbox; select "
                            f"all of {caller!r}'s versions or none)")
    return list(dict.fromkeys(problems))  # a wildcard host's routes stand under each service it names
