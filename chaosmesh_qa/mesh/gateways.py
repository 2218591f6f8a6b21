"""Gateways: Istio ``Gateway`` + gateway-bound VirtualServices, Gateway API ``Gateway`` + ``HTTPRoute``.

``loader`` asks ``spec_for`` which schema validates a gateway kind; ``build`` makes one
``Ingress`` from the validated Gateways, asks it which gateways a VirtualService is bound to
(``bindings``: ``gateways`` absent means ``[mesh]``, as in Istio), hands it the routes of the
gateway-bound ones (``add_virtual_service``, oldest first: the routes of several for one host are appended in
that order, as istiod merges them on a gateway) and the HTTPRoutes (``add_http_routes``, their
rules built by ``httproutes``), and puts
``hosts()`` into ``MeshModel.gateway_hosts``: the ingress gateway's virtual hosts, kept apart from
the mesh routes as Istio keeps them.  The sandbox has one ingress gateway and one ingress
listener: every HTTP server or listener is served on it (docs/reference/mesh.md, "Gateways"); which gateway it is
(name, namespace, labels) the Istio Gateways' selectors say (``ingressgateway``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from chaosmesh_qa.mesh import ingressgateway, schema
from chaosmesh_qa.mesh.documents import Document
from chaosmesh_qa.mesh.httproutes import (
    HTTPRouteSpec,
    K8sGatewaySpec,
    host_name,
    is_service_parent,
    rules,
)
from chaosmesh_qa.mesh.model import GatewayHost, Route, ServiceModel, ServiceView
from chaosmesh_qa.mesh.values import LabelMap, show

ISTIO_VERSIONS = ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")
K8S_GROUP = "gateway.networking.k8s.io"
K8S_VERSIONS = (f"{K8S_GROUP}/v1", f"{K8S_GROUP}/v1beta1")
HTTP_PROTOCOLS = ("HTTP", "HTTP2")
_IGNORED_K8S_KINDS = ("GatewayClass", "ReferenceGrant")


def _server_host(value: str) -> str:
    namespace, slash, host = value.rpartition("/")
    if slash and not re.fullmatch(r"\*|\.|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
        raise ValueError(f"{show(value)}: namespace {show(namespace)} is not a namespace name, '*' or '.'")
    host_name(host)
    return value


# --------------------------------------------------------------------------- Istio Gateway


class Port(schema.Spec):
    number: Annotated[int, Field(ge=1, le=65535)]
    protocol: str
    name: str = ""


class Server(schema.Spec):
    port: Port
    hosts: list[Annotated[str, AfterValidator(_server_host)]] = Field(min_length=1)
    tls: dict[str, Any] | None = None
    name: str | None = None


class GatewaySpec(schema.Spec):
    selector: LabelMap = Field(default_factory=dict)
    servers: list[Server] = Field(min_length=1)


def spec_for(kind: str, api_version: object) -> type[schema.Spec] | str | None:
    """The spec schema of a gateway kind, a one-line reason it is refused, ``"ignored"``, or None."""
    if kind == "Gateway" and api_version in ISTIO_VERSIONS:
        return GatewaySpec
    if not isinstance(api_version, str) or api_version.rpartition("/")[0] != K8S_GROUP:
        if kind in ("Gateway", "HTTPRoute"):
            expected = (*ISTIO_VERSIONS, *K8S_VERSIONS) if kind == "Gateway" else K8S_VERSIONS
            return f"apiVersion: {show(api_version)} is not a {kind} API version (expected one of " \
                   f"{', '.join(expected)})"
        return None
    if kind in _IGNORED_K8S_KINDS:
        return "ignored"
    if kind not in ("Gateway", "HTTPRoute"):
        return f"Gateway API kind {show(kind)} is not supported (supported: Gateway, HTTPRoute)"
    if api_version not in K8S_VERSIONS:
        return (f"apiVersion: {show(api_version)} is not a {kind} API version "
                f"(expected one of {', '.join(K8S_VERSIONS)})")
    return K8sGatewaySpec if kind == "Gateway" else HTTPRouteSpec


def intersect(a: str, b: str) -> str | None:
    """The hosts two host patterns have in common, as the more specific of them (None: none)."""
    if a == b or b == "*":
        return a
    if a == "*":
        return b
    if a.startswith("*.") and b.endswith(a[1:]):
        return b
    if b.startswith("*.") and a.endswith(b[1:]):
        return a
    return None


@dataclass
class _Listener:
    """A server (Istio) or listener (Gateway API) the sandbox serves: its host and who may bind."""

    gateway: str  # "<ns>/<name>"
    host: str
    route_namespace: str  # '*': any
    name: str = ""
    port: int = 0


@dataclass
class _Domain:
    owner: str
    kind: str  # "VirtualService" or "HTTPRoute"
    routes: list[tuple[tuple[Any, ...], Route]] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)  # the newer VirtualServices whose routes follow the owner's


class Ingress:
    """The ingress gateway's virtual hosts, from every Gateway of the mesh directory."""

    def __init__(self, documents: list[Document], problems: list[str], warnings: list[str]) -> None:
        self.istio: dict[str, list[_Listener]] = {}
        self.k8s: dict[str, list[_Listener]] = {}
        self.where: dict[str, str] = {}
        self.used: set[str] = set()
        self.domains: dict[str, _Domain] = {}
        # the sandbox's one ingress gateway: the one the Istio Gateways select (Istio's default one without any)
        self.gateway = ingressgateway.selected_by(
            [(d.where, dict(d.spec.selector)) for d in documents if d.kind == "Gateway"
             and isinstance(d.spec, GatewaySpec)], problems)
        for doc in documents:
            if doc.kind == "Gateway" and isinstance(doc.spec, GatewaySpec):
                self._istio_gateway(doc, problems, warnings)
            elif doc.kind == "Gateway" and isinstance(doc.spec, K8sGatewaySpec):
                self._k8s_gateway(doc, problems, warnings)

    # ------------------------------------------------------------------ gateways

    def _istio_gateway(self, doc: Document, problems: list[str], warnings: list[str]) -> None:
        spec: GatewaySpec = doc.spec  # type: ignore[assignment]
        key = f"{doc.namespace}/{doc.name}"
        if key in self.istio:
            problems.append(f"{doc.where}: metadata.name: a second Gateway {key} (the first is in {self.where[key]})")
            return
        if any(self.gateway.labels.get(k) != v for k, v in spec.selector.items()):
            return  # selected_by said which gateway the sandbox runs instead
        served: list[_Listener] = []
        for i, server in enumerate(spec.servers):
            if not self._served(doc.where, f"spec.servers[{i}]", server.port.protocol, server.tls, warnings):
                continue
            for host in server.hosts:
                namespace, _, name = host.rpartition("/")
                allowed = {"": "*", ".": doc.namespace}.get(namespace, namespace)
                served.append(_Listener(key, name, allowed, server.name or "", server.port.number))
        self._ports(doc.where, served, warnings)
        self.istio[key], self.where[key] = served, doc.where

    def _k8s_gateway(self, doc: Document, problems: list[str], warnings: list[str]) -> None:
        spec: K8sGatewaySpec = doc.spec  # type: ignore[assignment]
        key = f"{doc.namespace}/{doc.name}"
        if spec.gateway_class_name != "istio":
            problems.append(f"{doc.where}: spec.gatewayClassName: {spec.gateway_class_name!r} is not served by the "
                            "sandbox (its ingress gateway is Istio's: gatewayClassName 'istio')")
            return
        served: list[_Listener] = []
        for i, listener in enumerate(spec.listeners):
            if not self._served(doc.where, f"spec.listeners[{i}]", listener.protocol, listener.tls, warnings):
                continue
            scope = listener.allowed_routes.namespaces if listener.allowed_routes else None
            allowed = "*" if scope is not None and scope.from_ == "All" else doc.namespace
            served.append(_Listener(key, listener.hostname or "*", allowed, listener.name, listener.port))
        self._ports(doc.where, served, warnings)
        self.k8s[key], self.where[key] = served, doc.where

    @staticmethod
    def _served(where: str, path: str, protocol: str, tls: dict[str, Any] | None, warnings: list[str]) -> bool:
        if protocol == "HTTPS":
            warnings.append(f"{where}: {path}.protocol: HTTPS is served as plain HTTP by the sandbox's ingress "
                            "(no TLS termination; certificates are not read)")
            return True
        if protocol not in HTTP_PROTOCOLS:
            warnings.append(f"{where}: {path}.protocol: {protocol!r} is not served (the sandbox's ingress serves "
                            "HTTP only): routes bound to it get no traffic")
            return False
        if tls and tls.get("httpsRedirect") is True:
            warnings.append(f"{where}: {path}.tls.httpsRedirect: not done: requests are routed as plain HTTP")
        return True

    @staticmethod
    def _ports(where: str, served: list[_Listener], warnings: list[str]) -> None:
        ports = sorted({s.port for s in served})
        if len(ports) > 1:
            warnings.append(f"{where}: ports {', '.join(map(str, ports))} are all served on the sandbox's one "
                            "ingress listener (the ingress URL): a route bound to one also answers on the others")

    # ------------------------------------------------------------------ VirtualServices

    def bindings(self, doc: Document, gateways: list[str] | None, problems: list[str]) -> tuple[bool, list[str]]:
        """(bound to the mesh, the Istio Gateways it is bound to) for a VirtualService."""
        if gateways is None:
            return True, []
        mesh, bound = False, []
        for i, name in enumerate(gateways):
            if name == "mesh":
                mesh = True
                continue
            key = name if "/" in name else f"{doc.namespace}/{name}"
            if key not in self.istio:
                problems.append(f"{doc.where}: spec.gateways[{i}]: no Gateway {key!r} in the mesh directory "
                                "(networking.istio.io; a Gateway API Gateway takes HTTPRoutes)")
                continue
            bound.append(key)
        return mesh, bound

    def serves(self, gateways: list[str], host: str) -> bool:
        return any(intersect(host, s.host) for g in gateways for s in self.istio[g])

    def add_virtual_service(self, doc: Document, hosts: list[str], gateways: list[str], routes: tuple[Route, ...],
                            problems: list[str], mesh_bound: bool = False) -> None:
        """Bind a VirtualService's routes to the hosts its gateways serve.  In the mixed form
        (``[mesh, gw]``) a host no gateway serves is a mesh host only, as in Istio."""
        for i, host in enumerate(hosts):
            found = [d for g in gateways for s in self.istio[g]
                     if s.route_namespace in ("*", doc.namespace) and (d := intersect(host, s.host))]
            if not found and not mesh_bound:
                names = ", ".join(gateways)
                problems.append(f"{doc.where}: spec.hosts[{i}]: {host!r} matches no host that Gateway {names} "
                                f"serves to namespace {doc.namespace!r} (Istio would not bind it)")
            for domain in dict.fromkeys(found):
                if not self._claim(doc, domain, "VirtualService", f"spec.hosts[{i}]", problems):
                    continue
                self.domains[domain].routes.extend(((), r) for r in routes)
        self.used.update(gateways)

    def _claim(self, doc: Document, domain: str, kind: str, path: str, problems: list[str]) -> bool:
        current = self.domains.get(domain)
        if current is None:
            self.domains[domain] = _Domain(doc.where, kind)
            return True
        if kind == current.kind == "HTTPRoute":
            return True  # Gateway API merges the rules of every HTTPRoute for a host, by precedence
        if current.owner == doc.where or doc.where in current.merged:
            return False
        if kind == current.kind == "VirtualService":
            # istiod appends the routes of every VirtualService bound to a gateway host, oldest first (its
            # buildGatewayHTTPRouteConfig): the VirtualServices come here in age order
            current.merged.append(doc.where)
            return True
        problems.append(f"{doc.where}: {path}: host {domain!r} on the ingress gateway is already routed by "
                        f"{current.owner} (a VirtualService and an HTTPRoute for one host: keep one kind per host)")
        return False

    # ------------------------------------------------------------------ HTTPRoutes

    def add_http_routes(self, documents: list[Document], services: dict[str, ServiceModel],
                        problems: list[str], views: dict[str, ServiceView] | None = None) -> None:
        """The HTTPRoutes with a Gateway parent (those with a Service parent only are ``meshroutes``')."""
        for doc in sorted((d for d in documents if d.kind == "HTTPRoute"), key=lambda d: (d.namespace, d.name)):
            spec: HTTPRouteSpec = doc.spec  # type: ignore[assignment]
            if all(is_service_parent(ref) for ref in spec.parent_refs):
                continue
            listeners = self._parents(doc, spec, problems)
            built = rules(doc, spec, services, problems, views)
            if built is None:
                continue
            hostnames = spec.hostnames or ["*"]
            for i, hostname in enumerate(hostnames):
                found = [d for s in listeners if (d := intersect(hostname, s.host))]
                if listeners and not found:
                    problems.append(f"{doc.where}: spec.hostnames[{i}]: {hostname!r} matches no hostname of the "
                                    "listeners it attaches to (Gateway API would not attach it)")
                for domain in dict.fromkeys(found):
                    if self._claim(doc, domain, "HTTPRoute", f"spec.hostnames[{i}]", problems):
                        self.domains[domain].routes.extend(built)

    def _parents(self, doc: Document, spec: HTTPRouteSpec, problems: list[str]) -> list[_Listener]:
        found: list[_Listener] = []
        for i, ref in enumerate(spec.parent_refs):
            where = f"{doc.where}: spec.parentRefs[{i}]"
            if is_service_parent(ref):
                continue  # mesh routing (GAMMA): meshroutes
            if (ref.kind or "Gateway") != "Gateway" or (ref.group or K8S_GROUP) != K8S_GROUP:
                group = K8S_GROUP if ref.group is None else ref.group
                problems.append(f"{where}.kind: {ref.kind!r} of group {group!r} is not a parent the sandbox supports "
                                "(a Gateway, or a Service: group '' and kind Service)")
                continue
            key = f"{ref.namespace or doc.namespace}/{ref.name}"
            if key not in self.k8s:
                problems.append(f"{where}.name: no Gateway {key!r} (gateway.networking.k8s.io) in the mesh directory")
                continue
            listeners = [s for s in self.k8s[key] if (ref.section_name in (None, s.name))
                         and (ref.port in (None, s.port))]
            if not listeners:
                problems.append(f"{where}: Gateway {key} has no served listener with sectionName "
                                f"{ref.section_name!r} and port {ref.port!r}")
            elif not (chosen := [s for s in listeners if s.route_namespace in ("*", doc.namespace)]):
                problems.append(f"{where}: the listeners of Gateway {key} admit routes of their own namespace only "
                                "(allowedRoutes.namespaces.from: Same)")
            else:
                found.extend(chosen)
            self.used.add(key)
        return found

def hosts(ingress: Ingress, warnings: list[str]) -> tuple[GatewayHost, ...]:
    """The ingress gateway's virtual hosts, most specific domain first; a Gateway no route binds is warned."""
    for key in sorted({*ingress.istio, *ingress.k8s} - ingress.used):
        warnings.append(f"{ingress.where[key]}: no VirtualService or HTTPRoute is bound to it: the ingress answers "
                        "404 for its hosts")
    return tuple(
        GatewayHost(domain, (domain,), tuple(route for _, route in sorted(entry.routes, key=lambda kr: kr[0])))
        for domain, entry in ingress.domains.items()
    )


def front(doc: Document, ingress: schema.Ingress | None, hosts: tuple[GatewayHost, ...],
          problems: list[str]) -> tuple[str, tuple[str, ...]]:
    """The ingress's front service and paths: the Mesh's ``spec.ingress``, or the first gateway route's
    destination (what probes measure at the front door)."""
    if ingress is not None:
        if hosts:
            problems.append(f"{doc.where}: spec.ingress: a Gateway drives the ingress gateway here (host "
                            f"{hosts[0].name!r}); remove spec.ingress")
        return ingress.service, tuple(ingress.paths)
    first = next((d.service for h in hosts for r in h.routes for d in r.destinations), None)
    if first is None:
        problems.append(f"{doc.where}: spec.ingress: no ingress: give spec.ingress.service, or a Gateway with a "
                        "VirtualService or HTTPRoute bound to it")
        return "", ("/",)
    return first, ("/",)
