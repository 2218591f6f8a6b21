"""ServiceEntry documents: hosts outside the sandbox's services, known to the model and never sent traffic.

``loader`` validates a ``ServiceEntry`` (``networking.istio.io`` v1, v1beta1, v1alpha3) with ``ServiceEntrySpec``
(``KIND``): ``hosts``, ``ports``, ``location``, ``resolution`` and ``endpoints`` are read and checked as istiod's
webhook checks them; its other fields are warned as unsupported, as everywhere.  ``build.build_model`` asks
``declared_hosts`` for the hosts (the ``hosts.HostResolver`` then accepts a VirtualService or DestinationRule that
names one) and puts ``external_hosts`` into ``MeshModel.external_hosts``: one ``ExternalHost`` per ServiceEntry
host, with the routes of the VirtualService and the policy of the DestinationRule that name it.  The sandbox runs
no workload for them and sends no traffic to them (a later issue may run stand-ins from this data): a call to one
is not a hop of the mesh, so the mTLS verdict never sees one.  A host that is also a service of the mesh stays
that service (a warning says so).  A ``MESH_INTERNAL`` entry that ``workloadentries`` runs as a service of the mesh
is no external host; one it cannot run is one (running nothing), its ``not_run`` saying why.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from chaosmesh_qa.mesh import schema
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.hosts import HostResolver
from chaosmesh_qa.mesh.localities import check_locality
from chaosmesh_qa.mesh.model import AppBehaviour, ExternalHost, Route, ServiceModel, TrafficPolicy
from chaosmesh_qa.mesh.values import DNS_LABEL, LabelMap, Text, UInt32, show

_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
_ACCOUNT = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"  # a ServiceAccount name (a DNS subdomain)
_HOST = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*\.?", re.ASCII)
# istiod's protocol names (pkg/config/protocol: compared ignoring case; empty means sniffed)
PROTOCOLS = ("HTTP", "HTTPS", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB", "TCP", "TLS", "UDP", "MONGO", "REDIS",
             "MYSQL")
SANDBOX_NOTE = ("the sandbox runs no stand-in for it (only MESH_EXTERNAL hosts with DNS or STATIC resolution and an "
                "HTTP port get one): calls to it are not run, and they are no hop of the mesh for the verdicts")


def _entry_host(value: str) -> str:
    if value == "*":
        raise ValueError("'*' is not allowed in a ServiceEntry (as in Istio): name the hosts, or '*.<domain>'")
    if len(value) > 255 or not _HOST.fullmatch(value):
        raise ValueError(f"{show(value)} is not a host name: a DNS name, or '*.<domain>'")
    return value


def _protocol(value: str) -> str:
    if value and value.upper() not in PROTOCOLS:
        raise ValueError(f"{show(value)} is not a protocol istiod knows ({', '.join(PROTOCOLS)}, any case)")
    return value


class ServicePort(schema.Spec):
    number: Annotated[int, Field(ge=1, le=65535)]
    name: Annotated[str, Field(pattern=DNS_LABEL)]  # required by istiod (a DNS label)
    protocol: Annotated[str, AfterValidator(_protocol)] = ""
    target_port: Annotated[int, Field(ge=1, le=65535)] | None = None


class WorkloadEntry(schema.Spec):
    """A workload entry: a ServiceEntry's inline endpoint, or the spec of a ``WorkloadEntry`` (``workloadentries``)."""

    address: Annotated[Text, Field(min_length=1, max_length=255)]
    ports: dict[str, Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=dict)  # port name -> number
    labels: LabelMap = Field(default_factory=dict)
    weight: UInt32 | None = None
    locality: Annotated[str, AfterValidator(check_locality)] | None = None  # region/zone/subzone
    service_account: Annotated[str, Field(pattern=_ACCOUNT)] | None = None  # its identity (MESH_INTERNAL)


class EntrySelector(schema.Spec):
    labels: LabelMap = Field(min_length=1)


class ServiceEntrySpec(schema.Spec):
    hosts: list[Annotated[str, AfterValidator(_entry_host)]] = Field(min_length=1)
    ports: list[ServicePort] = Field(default_factory=list)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] = "MESH_EXTERNAL"
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] = "NONE"
    endpoints: list[WorkloadEntry] = Field(default_factory=list)
    workload_selector: EntrySelector | None = None  # WorkloadEntries (and pods) of its namespace: MESH_INTERNAL

    @model_validator(mode="after")
    def _as_istiod_checks(self) -> ServiceEntrySpec:
        if self.workload_selector is not None and self.endpoints:
            raise ValueError("only one of workloadSelector or endpoints can be set (istiod refuses both)")
        for kind, values in (("name", [p.name for p in self.ports]), ("number", [str(p.number) for p in self.ports])):
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"ports: port {kind} {', '.join(twice)} given twice (istiod refuses it)")
        if self.endpoints and self.resolution in ("NONE", "DYNAMIC_DNS"):
            raise ValueError(f"endpoints: not allowed with resolution {self.resolution} (istiod refuses it)")
        if self.resolution == "DNS_ROUND_ROBIN" and len(self.endpoints) > 1:
            raise ValueError("endpoints: at most one with resolution DNS_ROUND_ROBIN (istiod refuses more)")
        names = {p.name for p in self.ports}
        for i, endpoint in enumerate(self.endpoints):
            unknown = sorted(set(endpoint.ports) - names)
            if unknown:
                raise ValueError(f"endpoints[{i}].ports: {', '.join(map(repr, unknown))} is no port name of this "
                                 "ServiceEntry's ports")
        return self


KIND = ("ServiceEntry",
        ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"),
        ServiceEntrySpec)


def declared_hosts(documents: list[Document], resolver: HostResolver, warnings: list[str],
                   not_run: dict[str, str] | None = None) -> dict[str, ExternalHost]:
    """Each ServiceEntry host (lower-case, the first entry to declare it) as an ``ExternalHost`` without routes
    or policy; a host that names a service of the mesh is left to that service, with a warning."""
    found: dict[str, ExternalHost] = {}
    for doc in (d for d in documents if d.kind == "ServiceEntry"):
        spec: ServiceEntrySpec = doc.spec  # type: ignore[assignment]
        for i, written in enumerate(spec.hosts):
            host = written.lower().rstrip(".")
            if host in resolver.internal_hosts:
                continue  # a MESH_INTERNAL entry run as a service of the mesh (mesh.workloadentries)
            if resolver.matching(host):
                warnings.append(f"{doc.where}: spec.hosts[{i}]: {written!r} names a service of the mesh: the sandbox "
                                "keeps that service and ignores this host of the ServiceEntry")
                continue
            if host in found:
                continue  # istiod merges the entries of one host; the first one read describes it here
            found[host] = entry = ExternalHost(
                host=host, namespace=doc.namespace, where=doc.where, location=spec.location,
                resolution=spec.resolution, ports=tuple((p.number, p.protocol.upper(), p.name) for p in spec.ports),
                endpoints=tuple(e.address for e in spec.endpoints), not_run=(not_run or {}).get(doc.where, ""))
            if entry.location == "MESH_INTERNAL":
                continue  # mesh.workloadentries warned why it is not run
            if not entry.runs:
                warnings.append(f"{doc.where}: spec.hosts[{i}]: {written!r} is kept in the model, but "
                                f"{_why_not(entry)}")
            elif len(entry.http_ports()) < len(entry.ports):
                other = [str(n) for n, _, _ in entry.ports if n not in entry.http_ports()]
                warnings.append(f"{doc.where}: spec.ports: port(s) {', '.join(other)} of {written!r} are not HTTP: "
                                "the sandbox's stand-in serves its HTTP port(s) only")
    return found


def _why_not(entry: ExternalHost) -> str:
    """Why the sandbox runs no stand-in for an entry's host, in one clause."""
    if entry.location == "MESH_INTERNAL":
        return f"MESH_INTERNAL, not run as a service of the mesh: {entry.not_run or 'see the warnings'}"
    if entry.host.startswith("*"):
        return "a wildcard host has no stand-in in the sandbox (name the host)"
    if entry.resolution not in ("DNS", "STATIC", "DNS_ROUND_ROBIN"):
        return f"resolution {entry.resolution} is not run by the sandbox (DNS and STATIC are)"
    return "it has no HTTP port, and the sandbox's stand-ins serve HTTP only (TLS and TCP ports are not run)"


def with_stand_ins(external: dict[str, ExternalHost], doc: Document, spec: schema.MeshSpec,
                   services: dict[str, ServiceModel], problems: list[str], warnings: list[str]) -> None:
    """The Mesh's ``external`` stand-ins onto their hosts, and the demo apps' calls to hosts checked: a call names a
    service of the mesh or a host whose stand-in runs."""
    for i, stand_in in enumerate(spec.external):
        host = stand_in.host.lower()
        entry = external.get(host)
        if entry is None and _internal_overlay(stand_in, doc, services):
            continue
        if entry is None:
            problems.append(f"{doc.where}: spec.external[{i}].host: {stand_in.host!r} is no ServiceEntry host")
            continue
        behaviour, command = _stand_in(stand_in, doc)
        external[host] = replace(entry, behaviour=behaviour, command=command)
        if command is not None and entry.policy is not None and entry.policy.tls_mode == "SIMPLE":
            warnings.append(f"{entry.policy_by}: spec.trafficPolicy.tls.mode: SIMPLE (TLS origination toward "
                            f"{host!r}) is not done toward a command stand-in: its sidecars send it plaintext HTTP")
    for i, svc in enumerate(spec.services):
        apps = [("app", svc.app), *((f"versions[{j}].app", v.app) for j, v in enumerate(svc.versions))]
        for field_path, demo in apps:
            for k, call in enumerate(demo.calls or [] if demo else []):
                if call.service in services or "." not in call.service or any(
                        call.service in s.hosts for s in services.values()):  # a MESH_INTERNAL entry's host
                    continue
                entry = external.get(call.service)
                if entry is None or not entry.runs:
                    why = "no ServiceEntry declares it" if entry is None else _why_not(entry)
                    problems.append(f"{doc.where}: spec.services[{i}].{field_path}.calls[{k}].service: "
                                    f"{call.service!r}: unknown service or host ({why})")


def _stand_in(stand_in: schema.ExternalStandIn, doc: Document) -> tuple[AppBehaviour, tuple[str, ...] | None]:
    """A Mesh ``external`` entry's demo-app behaviour, and its command with ``{mesh}`` made the mesh directory."""
    settings = stand_in.app.model_dump(exclude_none=True, exclude={"calls", "parallel", "propagate_headers"}) \
        if stand_in.app else {}
    mesh_dir = str(Path(doc.file).parent.absolute())
    command = tuple(a.replace("{mesh}", mesh_dir) for a in stand_in.command) if stand_in.command else None
    return AppBehaviour(**settings), command


def _internal_overlay(stand_in: schema.ExternalStandIn, doc: Document, services: dict[str, ServiceModel]) -> bool:
    """The Mesh's stand-in settings onto the service of a MESH_INTERNAL entry's host (False: no such host)."""
    name = next((n for n, s in services.items() if stand_in.host.lower() in s.hosts), None)
    if name is None:
        return False
    behaviour, command = _stand_in(stand_in, doc)
    svc = services[name]
    services[name] = replace(svc, command=command, versions=tuple(replace(v, behaviour=behaviour)
                                                                  for v in svc.versions))
    return True


def with_routes(external: dict[str, ExternalHost], host: str, routes: tuple[Route, ...], where: str,
                path: str, warnings: list[str]) -> None:
    """Record a VirtualService's routes for an external host (the oldest VirtualService keeps it, as for a
    service of the mesh); one warning says the sandbox does not send that traffic."""
    entry = external[host]
    if entry.routed_by:
        warnings.append(f"{where}: {path}: host {host!r} is also routed by {entry.routed_by}, which is older: "
                        "as istiod does for sidecars, that one takes effect and this one is ignored for it")
        return
    external[host] = replace(entry, routes=routes, routed_by=where)
    if not entry.runs:
        warnings.append(f"{where}: {path}: {host!r} is an external host ({entry.where}): its routes are kept in the "
                        f"model, but {SANDBOX_NOTE}")


def with_policy(external: dict[str, ExternalHost], host: str, policy: TrafficPolicy, tls: schema.ClientTLS | None,
                where: str, warnings: list[str]) -> None:
    """Record a DestinationRule's traffic policy (TLS origination included: ``tls``'s settings) for an external
    host."""
    entry = external[host]
    if entry.policy_by:
        return  # a more specific rule (or an older one) already applies
    settings = tls_settings(tls) if tls is not None else ()
    external[host] = replace(entry, policy=policy, policy_by=where, tls_settings=settings)
    if not entry.runs:
        warnings.append(f"{where}: spec.host: {host!r} is an external host ({entry.where}): its traffic policy is "
                        f"kept in the model, but {SANDBOX_NOTE}")
    elif policy.tls_mode == "MUTUAL":
        warnings.append(f"{where}: spec.trafficPolicy.tls.mode: MUTUAL (TLS origination with a client certificate "
                        f"toward {host!r}) is not done by the sandbox: its sidecars send the stand-in plaintext HTTP")


def tls_settings(tls: schema.ClientTLS) -> tuple[tuple[str, str], ...]:
    """The settings a ``tls`` block gives besides its mode, by their YAML names (lists joined by commas)."""
    found = []
    for name, info in type(tls).model_fields.items():
        value = getattr(tls, name)
        if name != "mode" and value not in (None, []):
            found.append((info.alias or name, ",".join(value) if isinstance(value, list) else str(value)))
    return tuple(found)
