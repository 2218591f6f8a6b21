"""Istio ``Sidecar`` resources: which services each workload's sidecar knows, cross-checked.

``build.build_model`` calls ``sidecar_scopes`` with the validated ``Sidecar`` documents (their
shape is checked by ``schema.SidecarSpec``) and, once the model exists, ``visibility_warnings``
for calls and route destinations a Sidecar hides.  ``MeshModel.egress`` applies the result.
Without any Sidecar every sidecar knows every service, as in Istio.
"""

from __future__ import annotations

from chaosmesh_qa.mesh import schema
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.model import EgressHost, MeshModel, ServiceModel, SidecarScope, selects


def sidecar_scopes(documents: list[Document], services: dict[str, ServiceModel], problems: list[str],
                   warnings: list[str]) -> tuple[SidecarScope, ...]:
    """The Sidecar resources as scopes; ambiguous or partial selections are problems, as they
    would be undefined (or, here, unsupported) in Istio."""
    scopes: list[SidecarScope] = []
    namespace_wide: dict[str, Document] = {}
    picked: dict[str, Document] = {}  # service -> the selector Sidecar that picks it
    for doc in (d for d in documents if d.kind == "Sidecar"):
        spec: schema.SidecarSpec = doc.spec  # type: ignore[assignment]
        selector = dict(spec.workload_selector.labels) if spec.workload_selector else None
        if selector is None:
            if doc.namespace in namespace_wide:
                problems.append(f"{doc.where}: spec.workloadSelector: a second Sidecar without a workloadSelector "
                                f"in namespace {doc.namespace!r} (the first is {namespace_wide[doc.namespace].where}; "
                                "Istio leaves the choice undefined)")
                continue
            namespace_wide[doc.namespace] = doc
        else:
            chosen = _selected(doc, selector, services, problems, warnings)
            clash = [(name, picked[name]) for name in chosen if name in picked]
            if clash:
                name, other = clash[0]
                problems.append(f"{doc.where}: spec.workloadSelector.labels: selects the workloads of {name!r}, "
                                f"as {other.where} does (Istio leaves the choice undefined)")
                continue
            picked.update(dict.fromkeys(chosen, doc))
        hosts = _hosts(doc, spec, services, warnings)
        scopes.append(SidecarScope(doc.name, doc.namespace, selector, hosts, doc.where))
    return tuple(scopes)


def _selected(doc: Document, selector: dict[str, str], services: dict[str, ServiceModel],
              problems: list[str], warnings: list[str]) -> list[str]:
    chosen = []
    for svc in (s for s in services.values() if s.namespace == doc.namespace):
        hit = [v.name for v in svc.versions
               if selects(selector, v.labels)]
        if hit and len(hit) < len(svc.versions):
            missed = [v.name for v in svc.versions if v.name not in hit]
            problems.append(f"{doc.where}: spec.workloadSelector.labels: selects version(s) {', '.join(hit)} of "
                            f"{svc.name!r} but not {', '.join(missed)} (the sandbox scopes a service's sidecars "
                            "together: select all its versions or none)")
        elif hit:
            chosen.append(svc.name)
    if not chosen:
        warnings.append(f"{doc.where}: spec.workloadSelector.labels: selects no workload in namespace "
                        f"{doc.namespace!r}")
    return chosen


def _hosts(doc: Document, spec: schema.SidecarSpec, services: dict[str, ServiceModel],
           warnings: list[str]) -> tuple[EgressHost, ...] | None:
    if not spec.egress:
        return None
    found = []
    for i, listener in enumerate(spec.egress):
        for j, text in enumerate(listener.hosts):
            namespace, _, host = text.partition("/")
            entry = EgressHost(doc.namespace if namespace == "." else namespace, host)
            if not any(entry.matches(s.namespace, s.fqdn) for s in services.values()):
                warnings.append(f"{doc.where}: spec.egress[{i}].hosts[{j}]: {text!r} matches no service of the "
                                "Mesh (hosts are 'namespace/<name>.<namespace>.svc.cluster.local', or wildcards)")
            found.append(entry)
    return tuple(found)


def visibility_warnings(model: MeshModel, warnings: list[str]) -> None:
    """Warn where a Sidecar hides a service that a workload calls or that a visible route sends to."""
    for name in sorted(model.services):
        scope = model.sidecar_for(name)
        if scope is None or scope.hosts is None:
            continue
        visible = set(model.egress(name))
        where = scope.where
        for callee in model.callees(name):
            if callee not in visible:
                warnings.append(f"{where}: spec.egress: hides {callee!r} from {name!r}, whose demo app calls it "
                                "(those calls fall to its sidecar's outboundTrafficPolicy catch-all: 502 under "
                                "REGISTRY_ONLY, 503 under ALLOW_ANY, the sandbox reaching nothing outside)")
        for host in sorted(visible):
            hidden = sorted({d.service for r in model.routes.get(host, ()) for d in r.destinations} - visible)
            for other in hidden:
                warnings.append(f"{where}: spec.egress: hides {other!r} from {name!r}, but the route to {host!r} "
                                f"sends traffic to it (that share gets 503 from {name!r}'s sidecar, as in Istio)")
