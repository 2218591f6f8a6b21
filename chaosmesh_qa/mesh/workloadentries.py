"""MESH_INTERNAL ServiceEntries as services of the mesh: their workload entries run as pods with a sidecar.

Istio makes a ``MESH_INTERNAL`` ServiceEntry a service of the mesh (pilot's serviceentry registry): its endpoints
are its inline ``endpoints`` or the ``WorkloadEntry`` objects of its namespace that its ``workloadSelector``
selects, each with its labels, locality, weight and, from its ``serviceAccount``, the identity that auto mTLS and
the callers' SAN check use.  ``loader`` validates a ``WorkloadEntry`` (``networking.istio.io`` v1, v1beta1,
v1alpha3) with ``KIND``; ``build.build_model`` calls ``internal_services`` right after the Mesh's own services:
each entry that can run becomes a ``ServiceModel`` named after the ServiceEntry, with its hosts (``hosts``: the
names callers use, the host resolver's and the sidecars' routes), one version per canonical revision of its
entries' labels (``version``, else ``latest``) and one replica per entry.  The Mesh's ``external[]`` stand-in for
one of its hosts gives its demo app's behaviour or its command (``serviceentries.with_stand_ins``), and
``resolve_calls`` turns a demo app's call to one of its hosts into a call to the service, so that its callers'
hops are hops of the mesh for the verdicts and faults.  Not modelled, each with one warning: the entries' real
addresses (every replica runs on loopback, as every pod of the sandbox), their weights, pods the selector also
picks and a second host's own service (every host of the entry names the one service).  An entry without
``serviceAccount`` nor the ``security.istio.io/tlsMode`` label, which Istio's auto mTLS sends plaintext, gets that
label set to ``disabled`` (as istiod computes it), and the callers' clusters send its version plaintext.  An
entry that cannot run (wildcard host, resolution NONE, no HTTP port, no workload entry) stays an
``ExternalHost`` that runs nothing, with why in its ``not_run``.
"""

from __future__ import annotations

from dataclasses import replace

from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.hosts import HostResolver
from chaosmesh_qa.mesh.identity import canonical_revision
from chaosmesh_qa.mesh.model import AppBehaviour, ServiceModel, VersionModel, selects
from chaosmesh_qa.mesh.serviceentries import ServiceEntrySpec, WorkloadEntry

KIND = ("WorkloadEntry",
        ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"),
        WorkloadEntry)
TLS_MODE_LABEL = "security.istio.io/tlsMode"
_RUN_RESOLUTIONS = ("STATIC", "DNS", "DNS_ROUND_ROBIN")
_HTTP = ("", "HTTP", "HTTP2", "GRPC")


def internal_services(documents: list[Document], services: dict[str, ServiceModel], not_run: dict[str, str],
                      warnings: list[str]) -> dict[str, ServiceModel]:
    """One ``ServiceModel`` per MESH_INTERNAL ServiceEntry the sandbox runs (by the entry's name); the others are
    left to ``serviceentries.declared_hosts``, with why in ``not_run`` (by the entry's ``where``)."""
    entries = [d for d in documents if d.kind == "WorkloadEntry"]
    selected: set[int] = set()
    found: dict[str, ServiceModel] = {}
    for doc in (d for d in documents if d.kind == "ServiceEntry"):
        spec: ServiceEntrySpec = doc.spec  # type: ignore[assignment]
        if spec.location != "MESH_INTERNAL":
            if spec.workload_selector is not None:
                warnings.append(f"{doc.where}: spec.workloadSelector: applies to MESH_INTERNAL entries only (as in "
                                "Istio): ignored for this MESH_EXTERNAL one")
            continue
        chosen = [e for e in entries if spec.workload_selector is not None and e.namespace == doc.namespace
                  and selects(spec.workload_selector.labels, e.spec.labels)]  # type: ignore[attr-defined]
        selected.update(id(e) for e in chosen)
        service = _service(doc, spec, chosen, services, found, not_run, warnings)
        if service is not None:
            found[service.name] = service
    for doc in entries:
        if id(doc) not in selected:
            warnings.append(f"{doc.where}: spec.labels: no MESH_INTERNAL ServiceEntry of namespace {doc.namespace!r} "
                            "selects this WorkloadEntry: it is not run (nothing could call it)")
    return found


def _service(doc: Document, spec: ServiceEntrySpec, chosen: list[Document], services: dict[str, ServiceModel],
             found: dict[str, ServiceModel], not_run: dict[str, str], warnings: list[str]) -> ServiceModel | None:
    hosts = tuple(h.lower().rstrip(".") for h in spec.hosts)
    http = [p for p in spec.ports if p.protocol.upper() in _HTTP]
    endpoints: list[tuple[str, WorkloadEntry]] = [(f"spec.endpoints[{i}]", e) for i, e in enumerate(spec.endpoints)]
    endpoints = endpoints or [(d.where, d.spec) for d in chosen if isinstance(d.spec, WorkloadEntry)]
    known = HostResolver({**services, **found})  # an older MESH_INTERNAL entry's host is taken too
    taken = next((h for h in hosts if known.matching(h)), None)
    why = ("a wildcard host is not run by the sandbox (name the host)" if any(h.startswith("*") for h in hosts)
           else f"its host {taken!r} names a service of the mesh (Istio merges the endpoints of one host; not "
                "modelled)" if taken
           else f"resolution {spec.resolution} is not run by the sandbox (STATIC and DNS are)"
           if spec.resolution not in _RUN_RESOLUTIONS
           else "it has no HTTP port (the sandbox's workloads serve HTTP only)" if not http
           else f"metadata.name {doc.name!r} is also a service of the mesh: the sandbox names the entry's service "
                "after it (rename one)" if doc.name in services or doc.name in found
           else "its workloadSelector selects no WorkloadEntry of its namespace: it has no endpoint (Istio's "
                "callers get 503 UH; pods it may select are not run for it)" if spec.workload_selector is not None
                and not chosen
           else "it has no endpoints and no workloadSelector" if not endpoints else "")
    if why:
        not_run[doc.where] = why
        warnings.append(f"{doc.where}: spec.location: MESH_INTERNAL is kept in the model but not run as a service "
                        f"of the mesh: {why}")
        return None
    port = http[0]
    if len(spec.ports) > 1:
        warnings.append(f"{doc.where}: spec.ports: only port {port.number} ({port.name}) is served (the sandbox runs "
                        "one HTTP port per service); calls to the others fail")
    first = endpoints[0][1]
    target = first.ports.get(port.name) or port.target_port
    versions: dict[str, list[tuple[str, WorkloadEntry]]] = {}
    for where, entry in endpoints:
        versions.setdefault(canonical_revision(entry.labels), []).append((where, entry))
    _warnings(doc, spec, [e for _, e in endpoints], services, warnings)
    if len({e.ports.get(port.name) for _, e in endpoints}) > 1:
        warnings.append(f"{doc.where}: workload entries' ports: they map port {port.name!r} differently: the sandbox's "
                        f"pods serve one port, the first entry's ({target or port.number})")
    accounts = sorted({e.service_account for _, e in endpoints if e.service_account})
    selector = dict(spec.workload_selector.labels) if spec.workload_selector is not None else {"app": doc.name}
    models = []
    for name, group in versions.items():
        labels = dict(group[0][1].labels) if spec.workload_selector is not None else \
            {"app": doc.name, **group[0][1].labels}
        if not group[0][1].service_account and TLS_MODE_LABEL not in labels:
            labels[TLS_MODE_LABEL] = "disabled"  # as istiod computes it: auto mTLS sends such an entry plaintext
        localities = tuple(e.locality or "" for _, e in group) if any(e.locality for _, e in group) else ()
        models.append(VersionModel(name, len(group), labels, AppBehaviour(), workload=f"{doc.name}-{name}",
                                   workload_kind="WorkloadEntry", localities=localities))
        if any(e.labels != group[0][1].labels for _, e in group[1:]):
            warnings.append(f"{doc.where}: {group[1][0]}.labels: the workload entries of version {name!r} carry "
                            "different labels: the sandbox gives them those of the first one")
    return ServiceModel(name=doc.name, namespace=doc.namespace, port=port.number,
                        service_account=accounts[0] if accounts else "default", versions=tuple(models),
                        command=None, health_path="/healthz",
                        target_port=target if target and target != port.number else None,
                        selector=selector, hosts=hosts)


def _warnings(doc: Document, spec: ServiceEntrySpec, entries: list[WorkloadEntry],
              services: dict[str, ServiceModel], warnings: list[str]) -> None:
    """One line for each thing Istio does with these entries that the sandbox does not."""
    addresses = ", ".join(sorted({e.address for e in entries}))
    warnings.append(f"{doc.where}: spec.hosts: run as a service of the mesh (MESH_INTERNAL): each workload entry is "
                    f"a pod with its own sidecar on 127.0.0.1; the entries' addresses ({addresses}) are not used")
    if len({e.weight for e in entries}) > 1:
        warnings.append(f"{doc.where}: workload entries' weight: not modelled (the sandbox balances its endpoints "
                        "equally)")
    accounts = sorted({e.service_account or "" for e in entries})
    if len(accounts) > 1:
        warnings.append(f"{doc.where}: workload entries' serviceAccount: {', '.join(a or '(none)' for a in accounts)}"
                        ": the sandbox gives a service one identity, the first named")
    if any(not e.service_account and e.labels.get(TLS_MODE_LABEL) != "istio" for e in entries):
        warnings.append(f"{doc.where}: a workload entry without serviceAccount (nor {TLS_MODE_LABEL}: istio): as "
                        "Istio's auto mTLS, the callers send it plaintext (its pods get the label "
                        f"{TLS_MODE_LABEL}: disabled); the sandbox still gives it a sidecar, identity 'default'")
    if spec.workload_selector is not None:
        pods = sorted(name for name, svc in services.items() if svc.namespace == doc.namespace and any(
            selects(spec.workload_selector.labels, v.labels) for v in svc.versions))
        if pods:
            warnings.append(f"{doc.where}: spec.workloadSelector: also selects the pods of {', '.join(pods)}: Istio "
                            "sends this host's traffic to them too; the sandbox sends it to the workload entries "
                            "only")
    if len(spec.hosts) > 1:
        warnings.append(f"{doc.where}: spec.hosts: Istio makes one service per host; the sandbox makes one service "
                        f"{doc.name!r} that every host names (their routes and policies are that service's)")


def resolve_calls(services: dict[str, ServiceModel]) -> dict[str, ServiceModel]:
    """The services with their demo apps' calls to a MESH_INTERNAL entry's host made calls to its service."""
    named = {h: n for n, s in services.items() for h in s.hosts}
    if not named:
        return services
    return {name: replace(svc, versions=tuple(
        replace(v, behaviour=replace(v.behaviour, calls=tuple((named.get(c, c), p) for c, p in v.behaviour.calls)))
        for v in svc.versions)) for name, svc in services.items()}
