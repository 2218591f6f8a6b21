"""Delegate VirtualServices merged into their roots, as istiod merges them before it builds any route.

A root VirtualService's ``http[]`` entry may name a ``delegate`` (a VirtualService without ``hosts``, in the
namespace given or the root's own) instead of destinations.  ``virtualservices`` calls ``expand``, which does what
istiod's ``mergeVirtualServices`` / ``MergeHTTPRoutes`` do (pilot/pkg/model/virtualservice_controller.go,
virtualservice.go): each delegate route takes the root route's place, in order, its match merged with the root's
(every delegate match must fall inside a root match: its ``uri`` a sub-prefix or equal exact of the root's, no
header, ``sourceNamespace`` or ``sourceLabels`` value contradicting the root's; the delegate's values win, the
root's fill in the rest), and ``timeout``, ``retries``, ``fault`` and mirrors inherited from the root route when the
delegate route sets none.  As istiod does, with a warning each: a delegate route that conflicts with the root's
match is dropped, and a root route whose delegate does not exist (or has hosts) is dropped; a delegate no root
names routes nothing.  Each route keeps where it was written, for messages: the delegate's file and index, with
the root route it stands in.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaosmesh_qa.mesh import schema
from chaosmesh_qa.mesh.documents import Document

_INHERITED = ("timeout", "retries", "fault", "mirror", "mirror_percent", "mirror_percentage")


@dataclass(frozen=True)
class Routed:
    """A VirtualService with hosts, and its HTTP routes once its delegates are merged in: (where, route)."""

    doc: Document
    http: tuple[tuple[str, schema.HTTPRoute], ...]

    @property
    def spec(self) -> schema.VirtualServiceSpec:
        return self.doc.spec  # type: ignore[return-value]


def expand(documents: list[Document], warnings: list[str]) -> list[Routed]:
    """Every VirtualService with hosts (in the documents' order), its delegates merged in."""
    services = [d for d in documents if d.kind == "VirtualService"]
    delegates = {(d.namespace, d.name): d for d in services if not _spec(d).hosts}
    rooted = {(d.namespace, d.name) for d in services if _spec(d).hosts}
    named: set[tuple[str, str]] = set()
    found: list[Routed] = []
    for doc in (d for d in services if _spec(d).hosts):
        routes: list[tuple[str, schema.HTTPRoute]] = []
        for i, http in enumerate(_spec(doc).http):
            where = f"{doc.where}: spec.http[{i}]"
            if http.delegate is None:
                routes.append((where, http))
                continue
            key = (http.delegate.namespace or doc.namespace, http.delegate.name)
            leaf = delegates.get(key)
            if leaf is None:
                why = "has hosts (only a VirtualService without hosts is a delegate)" if key in rooted \
                    else "does not exist"
                warnings.append(f"{where}.delegate: VirtualService {key[0]}/{key[1]} {why}: as istiod does, this "
                                "route is dropped")
                continue
            named.add(key)
            for j, sub in enumerate(_spec(leaf).http):
                sub_where = f"{leaf.file}: VirtualService/{leaf.name} (delegate of {doc.kind}/{doc.name} " \
                            f"spec.http[{i}]): spec.http[{j}]"
                merged = merge_route(http, sub)
                if merged is None:
                    warnings.append(f"{sub_where}.match: falls outside the match of {where} (root): as istiod does, "
                                    "this delegate route is dropped")
                    continue
                routes.append((sub_where, merged))
        if not routes:
            warnings.append(f"{doc.where}: spec.http: no route is left once its delegates are merged: Istio "
                            "answers 404 for its hosts, the sandbox routes them as if it had no VirtualService")
        found.append(Routed(doc, tuple(routes)))
    for key in sorted(delegates.keys() - named):
        warnings.append(f"{delegates[key].where}: spec.hosts: none, and no root VirtualService names it as a "
                        "delegate: it routes nothing")
    return found


def _spec(doc: Document) -> schema.VirtualServiceSpec:
    return doc.spec  # type: ignore[return-value]


def merge_route(root: schema.HTTPRoute, leaf: schema.HTTPRoute) -> schema.HTTPRoute | None:
    """A delegate route in its root route's place (None: its match conflicts with the root's)."""
    matches = merge_matches(root.match, leaf.match)
    if matches is None:
        return None
    name = f"{root.name}-{leaf.name}" if root.name and leaf.name else leaf.name or root.name
    update: dict[str, object] = {"match": matches, "name": name, "delegate": None}
    update.update({field: getattr(root, field) for field in _INHERITED if getattr(leaf, field) is None})
    if not leaf.mirrors:
        update["mirrors"] = root.mirrors
    return leaf.model_copy(update=update)


def merge_matches(root: list[schema.HTTPMatchRequest],
                  leaf: list[schema.HTTPMatchRequest]) -> list[schema.HTTPMatchRequest] | None:
    """Each delegate match merged with every root match it does not conflict with; None if one fits none."""
    if not root:
        return leaf
    if not leaf:
        return root
    merged: list[schema.HTTPMatchRequest] = []
    for sub in leaf:
        fits = [top for top in root if not _conflict(top, sub)]
        if not fits:
            return None
        merged.extend(_merge_match(top, sub) for top in fits)
    return merged


def _merge_match(root: schema.HTTPMatchRequest, leaf: schema.HTTPMatchRequest) -> schema.HTTPMatchRequest:
    labels = {**(root.source_labels or {}), **(leaf.source_labels or {})}
    return leaf.model_copy(update={
        "uri": leaf.uri if leaf.uri is not None else root.uri,
        "headers": {**root.headers, **leaf.headers},
        "source_labels": labels or None,
        "source_namespace": leaf.source_namespace or root.source_namespace,
    })


def _conflict(root: schema.HTTPMatchRequest, leaf: schema.HTTPMatchRequest) -> bool:
    if _string_conflict(root.uri, leaf.uri):
        return True
    if any(_string_conflict(root.headers.get(name), value) for name, value in leaf.headers.items()):
        return True
    if root.source_namespace and leaf.source_namespace != root.source_namespace:
        return True
    mine = root.source_labels or {}
    return any(key in mine and mine[key] != value for key, value in (leaf.source_labels or {}).items())


def _string_conflict(root: schema.StringMatch | None, leaf: schema.StringMatch | None) -> bool:
    """istiod's ``stringMatchConflict``: the delegate's match must be as narrow as the root's, or narrower."""
    if root is None or leaf is None:
        return False
    if root.regex:
        return bool(leaf.regex or leaf.prefix or leaf.exact)
    if leaf.regex:
        return bool(root.prefix or root.exact)
    if root.exact:
        return bool(leaf.prefix) or leaf.exact != root.exact
    if root.prefix:
        if leaf.prefix:
            return not leaf.prefix.startswith(root.prefix)
        if leaf.exact:
            return not leaf.exact.startswith(root.prefix)
    return True
