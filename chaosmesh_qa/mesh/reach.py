"""Which requests reach each service of a mesh from the clients' own, and which route of a service they take.

``reached(model, requests)`` follows the clients' requests (path, headers) from the ingress through the call graph:
the built-in app calls each callee's path with the headers it propagates (a ServiceEntry host among them is reached
and calls nothing); a ``command`` program's calls are its own code's business and are not guessed.  ``takes(model,
service, route, requests)``: does one of those requests take that route (``mesh.routing.expected_shares`` picks the
route as Istio does)?  Called by ``report.coverage`` (does an experiment's traffic take a route?) and
``scaffold.suite`` (traffic that does).
"""

from __future__ import annotations

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.mesh.routing import expected_shares

Request = tuple[str | None, tuple[tuple[str, str], ...]]  # path (None: unknown), headers (lower-case names)


def reached(model: MeshModel, requests: list[tuple[str, dict[str, str]]]) -> dict[str, set[Request]]:
    """The requests that reach each service, from the clients' ``(path, headers)``."""
    found: dict[str, set[Request]] = {}
    todo: list[tuple[str, str | None, tuple[tuple[str, str], ...]]] = []
    for sent, given in requests:
        headers = tuple(sorted({k.lower(): v for k, v in given.items()}.items()))
        todo.extend((s, sent.split("?")[0], headers) for s in model.ingress_services())
    while todo:
        service, path, headers = todo.pop()
        if (path, headers) in found.setdefault(service, set()):
            continue
        found[service].add((path, headers))
        svc = model.services.get(service)
        if svc is None or svc.command is not None:  # a ServiceEntry host (it calls nothing), or a program's calls
            continue
        for version in svc.versions:
            kept = tuple((k, v) for k, v in headers if k in {h.lower() for h in version.behaviour.propagate_headers})
            todo.extend((callee, call_path, kept) for callee, call_path in version.behaviour.calls)
    return found


def takes(model: MeshModel, service: str, route: int, requests: list[tuple[str, dict[str, str]]]) -> bool:
    """Does some request reaching ``service`` from the clients' take its route ``route``?"""
    for path, headers in reached(model, requests).get(service, set()):
        try:
            taken = expected_shares(model, service, dict(headers), path).route_index
        except InvalidArgument:
            continue
        if taken == route:
            return True
    return False
