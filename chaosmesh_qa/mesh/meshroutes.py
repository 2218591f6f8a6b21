"""Gateway API HTTPRoutes attached to a Service (the GAMMA model): the sidecars' routes toward that Service.

``build.build_model`` calls ``mesh_routes`` after ``virtual_services``, with the documents in age order.  As istiod
converts them (pilot/pkg/config/kube/gateway: route_collections.go, conversion.go), an HTTPRoute whose parentRef is a
Service (group '' and kind Service) becomes mesh routes for that Service's host, whatever its ``hostnames``: the
rules of every such HTTPRoute for one Service are merged (oldest first) and sorted by Gateway API precedence (exact
path, longest prefix, method, most headers, most query parameters); a parentRef ``port`` other than the Service's
one routes nothing here.  Backends, matches and filters are read by ``httproutes.rules``: weights, matches (path,
headers, method, query parameters), ``RequestHeaderModifier``, ``RequestMirror``, ``timeouts.request``, ``retry``;
other filters are warned and left out.  A per-version Service
(``model.ServiceView``) is reached as the subset of its pods' Service, which ``view_subsets`` adds (for the
mesh's and the ingress's routes alike).

Precedence with a VirtualService for the same host, as istiod orders them for a sidecar
(pilot/pkg/model/virtualservice.go ``SelectVirtualServices``: Gateway API routes of the proxy's own namespace
first, then the others oldest first; the first for a host takes effect): the HTTPRoute wins for callers in its
namespace.  Only producer routes (in the Service's namespace, which apply to every caller) are modelled.
"""

from __future__ import annotations

from typing import Any

from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.httproutes import HTTPRouteSpec, is_service_parent, rules
from chaosmesh_qa.mesh.model import Route, ServiceModel, ServiceView, SubsetModel, TrafficPolicy


def mesh_routes(documents: list[Document], services: dict[str, ServiceModel], views: dict[str, ServiceView],
                subsets: dict[str, dict[str, SubsetModel]], routes: dict[str, tuple[Route, ...]],
                problems: list[str], warnings: list[str]) -> None:
    """Put the routes of the Service-parented HTTPRoutes into ``routes`` (over a VirtualService's, warned)."""
    merged: dict[str, list[tuple[tuple[Any, ...], Route]]] = {}
    sources: dict[str, str] = {}
    for age, doc in enumerate(d for d in documents if d.kind == "HTTPRoute"):
        spec: HTTPRouteSpec = doc.spec  # type: ignore[assignment]
        parents = [(i, ref) for i, ref in enumerate(spec.parent_refs) if is_service_parent(ref)]
        if not parents:
            continue
        built = rules(doc, spec, services, problems, views, warnings)
        if built is None:
            continue
        for i, ref in parents:
            where = f"{doc.where}: spec.parentRefs[{i}]"
            svc = services.get(ref.name)
            if (ref.namespace or doc.namespace) != doc.namespace:
                problems.append(f"{where}.namespace: a route in namespace {doc.namespace!r} for a Service of "
                                f"namespace {ref.namespace!r} (a consumer route, applied by Istio to callers of its "
                                "own namespace only) is not modelled: put it in the Service's namespace")
            elif svc is None or svc.namespace != doc.namespace:
                reason = (f": it selects pods of Service {views[ref.name].parent!r}; attach the route to that one"
                          if ref.name in views else "")
                problems.append(f"{where}.name: no service {ref.name!r} in namespace {doc.namespace!r}{reason}")
            elif ref.port is not None and ref.port != svc.port:
                warnings.append(f"{where}.port: {ref.port} is not the port of service {ref.name!r} ({svc.port}): "
                                "as in Istio, this route takes no traffic the sandbox sends")
            else:
                if ref.section_name is not None:
                    warnings.append(f"{where}.sectionName: {ref.section_name!r} (a port name) is not checked: the "
                                    "sandbox serves one port per service, and the route applies to it")
                merged.setdefault(svc.name, []).extend(((*key[:-4], age, *key[-2:]), route) for key, route in built)
                sources.setdefault(svc.name, doc.where)
    for name, entries in merged.items():
        if name in routes:
            warnings.append(f"{sources[name]}: the HTTPRoute and a VirtualService both route {name!r}: as istiod "
                            "orders them for the sidecars of the route's namespace, the HTTPRoute takes effect "
                            "and the VirtualService is ignored for this host")
        routes[name] = tuple(route for _, route in sorted(entries, key=lambda kr: kr[0]))


def view_subsets(views: dict[str, ServiceView], routes: list[Route], subsets: dict[str, dict[str, SubsetModel]],
                 problems: list[str]) -> None:
    """Each per-version Service a route reaches, as a subset of its pods' Service (its labels: that Service's
    selector; Istio's defaults as its traffic policy: a DestinationRule of the parent's host is not the
    per-version Service's)."""
    used = {(d.service, d.subset) for r in routes for d in r.destinations if d.subset in views}
    used |= {(m.service, m.subset) for r in routes for m in r.mirrors if m.subset in views}
    for parent, name in sorted(used):
        view = views[name]
        if view.parent != parent:
            continue
        known = subsets.setdefault(parent, {})
        if name in known and known[name].labels != view.selector:
            problems.append(f"{view.where}: metadata.name: a DestinationRule of {parent!r} has a subset named "
                            f"{name!r} too; the sandbox reaches this Service as that subset: rename one")
            continue
        known[name] = SubsetModel(name, dict(view.selector), TrafficPolicy())
