"""The resolved mesh model: validated documents cross-checked, with Istio's defaults applied.

``build.build_model`` makes it from the validated documents; the local control plane and
(later) the probes and expectation checks read the resulting ``MeshModel``.  Everything here is
plain frozen data: what a route, subset or policy *means*, not how Envoy spells it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chaosmesh_qa.mesh.ingressgateway import DEFAULT as DEFAULT_INGRESS_GATEWAY
from chaosmesh_qa.mesh.ingressgateway import IngressGateway
from chaosmesh_qa.mesh.localities import LocalityLbSetting
from chaosmesh_qa.mesh.meshconfig import DEFAULT_TRUST_DOMAIN, MeshConfig, TrustDomains
from chaosmesh_qa.mesh.security_model import AuthzPolicy, PeerAuthPolicy

TRUST_DOMAIN = DEFAULT_TRUST_DOMAIN  # Istio's default; a mesh's own is its `istio` ConfigMap's (mesh.meshconfig)
CLUSTER_DOMAIN = "cluster.local"  # Kubernetes' DNS suffix of Services (<svc>.<ns>.svc.<cluster domain>)
ROOT_NAMESPACE = "istio-system"
DEFAULT_READY_TIMEOUT_S = 30.0  # how long a pod may take to become ready, unless its service says otherwise

# Istio's default route retry policy when a VirtualService sets none.
ISTIO_DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
ISTIO_DEFAULT_ATTEMPTS = 2
ISTIO_UNLIMITED = 2**32 - 1


@dataclass(frozen=True)
class AppBehaviour:
    """What the built-in demo app does for one version of a service."""

    calls: tuple[tuple[str, str], ...] = ()  # (service, path)
    parallel: bool = False
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    response_bytes: int = 0
    propagate_headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class VersionModel:
    name: str
    replicas: int
    labels: dict[str, str]  # every label its pods carry (a manifest's template labels, as they are)
    behaviour: AppBehaviour
    workload: str = ""  # the Deployment or StatefulSet that runs it ("<service>-<version>" when none is declared)
    workload_kind: str = "Deployment"  # "StatefulSet": pods named <workload>-<ordinal>, a replacement keeps the name
    # each replica's locality, 'region/zone/subzone' (mesh.localities); empty: the pods have none
    localities: tuple[str, ...] = ()

    def locality(self, replica: int) -> str:
        """The locality of the version's ``replica``-th pod ('' if it has none)."""
        return self.localities[replica % len(self.localities)] if self.localities else ""


@dataclass(frozen=True)
class ServiceModel:
    name: str
    namespace: str
    port: int
    service_account: str
    versions: tuple[VersionModel, ...]
    command: tuple[str, ...] | None  # "{mesh}" already replaced by the mesh directory
    health_path: str
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S  # how long a pod may take to become ready
    target_port: int | None = None  # the pods' (workload's) port, when the Service maps its port to another
    selector: dict[str, str] = field(default_factory=dict)  # the Service's spec.selector ({} means app=<name>)
    trust_domain: str = TRUST_DOMAIN  # the mesh's: its workloads' SPIFFE identities are in it
    # a MESH_INTERNAL ServiceEntry's hosts (mesh.workloadentries): the names it is called by, instead of the
    # Kubernetes names of a Service (it has none)
    hosts: tuple[str, ...] = ()

    @property
    def pod_selector(self) -> dict[str, str]:
        """The labels that select this service's pods: the Service's own selector (a Mesh document's service
        selects ``app: <name>``)."""
        return self.selector or {"app": self.name}

    @property
    def pod_port(self) -> int:
        """The port the workload serves on (a Service's ``targetPort``): what portLevelMtls and the sidecar's
        inbound listener (``inbound|<port>||``) are keyed by in Istio."""
        return self.target_port or self.port

    @property
    def fqdn(self) -> str:
        """Its host in Istio's registry: a Service's FQDN, a MESH_INTERNAL ServiceEntry's first host."""
        return self.hosts[0] if self.hosts else f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"

    @property
    def host_names(self) -> tuple[str, ...]:
        """The names Istio knows it by: a Service's name, ``name.namespace``, ``name.namespace.svc`` and FQDN; a
        MESH_INTERNAL ServiceEntry's hosts."""
        return self.hosts or (self.name, f"{self.name}.{self.namespace}", f"{self.name}.{self.namespace}.svc",
                              f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}")

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def version(self, name: str) -> VersionModel:
        return next(v for v in self.versions if v.name == name)

    def workload_name(self, version: str) -> str:
        return self.version(version).workload or f"{self.name}-{version}"


@dataclass(frozen=True)
class ServiceView:
    """A Service whose selector picks some of another Service's pods (a per-version Service, such as Bookinfo's
    ``reviews-v1``) that an HTTPRoute names as a backend: the sandbox runs those pods under ``parent`` and reaches
    them as its subset named after this Service (``manifests.workloads`` finds them, ``meshroutes`` routes them)."""

    name: str
    namespace: str
    port: int
    selector: dict[str, str]
    parent: str
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class StringMatch:
    kind: Literal["exact", "prefix", "regex"]
    value: str


@dataclass(frozen=True)
class RouteMatch:
    uri: StringMatch | None
    headers: tuple[tuple[str, StringMatch], ...]
    # conditions on the caller (``sourceLabels``, ``sourceNamespace``): resolved per caller by
    # ``mesh.callers`` before a caller's routes are rendered
    source_labels: tuple[tuple[str, str], ...] = ()
    source_namespace: str | None = None
    query_params: tuple[tuple[str, StringMatch], ...] = ()  # an HTTPRoute's queryParams (exact or regex)


@dataclass(frozen=True)
class WeightedDestination:
    service: str
    subset: str | None
    weight: int


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    retry_on: str  # Envoy's retry_on: named policies only
    per_try_timeout_s: float | None
    retriable_status_codes: tuple[int, ...] = ()  # the status codes a VirtualService's retryOn listed


@dataclass(frozen=True)
class StaticFault:
    """A fault declared in a VirtualService (as opposed to one injected at run time)."""

    delay_s: float | None
    delay_percent: float
    abort_status: int | None
    abort_percent: float


@dataclass(frozen=True)
class Mirror:
    """A VirtualService ``mirror``/``mirrors`` entry: a copy of the request, its answer dropped."""

    service: str
    subset: str | None
    percent: float  # Istio's default: 100


@dataclass(frozen=True)
class Route:
    matches: tuple[RouteMatch, ...]  # empty: matches everything
    destinations: tuple[WeightedDestination, ...]
    retries: RetryPolicy
    timeout_s: float | None  # None: no timeout (Istio's default)
    fault: StaticFault | None
    mirrors: tuple[Mirror, ...] = ()
    where: str = field(default="", compare=False)  # "<file>: VirtualService/<name>: spec.http[i]", for messages
    headers: HeaderChanges | None = None  # request headers changed before forwarding (HTTPRoute filter)


@dataclass(frozen=True)
class HeaderChanges:
    """Request headers set (replacing), added (appended) and removed on a route, names lower-case."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class CircuitBreaker:
    max_connections: int = ISTIO_UNLIMITED
    max_pending_requests: int = ISTIO_UNLIMITED
    max_requests: int = ISTIO_UNLIMITED
    max_retries: int = ISTIO_UNLIMITED
    max_requests_per_connection: int = 0  # 0: unlimited


@dataclass(frozen=True)
class OutlierPolicy:
    consecutive_5xx: int
    consecutive_gateway_errors: int
    interval_s: float
    base_ejection_time_s: float
    max_ejection_percent: int


@dataclass(frozen=True)
class TrafficPolicy:
    load_balancer: str = "LEAST_REQUEST"
    circuit_breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    connect_timeout_s: float = 10.0
    outlier: OutlierPolicy | None = None
    # SIMPLE / MUTUAL: TLS origination with the rule's own certificates, not the mesh identity: toward a service of
    # the mesh the sandbox sends plaintext instead (the hop is not mutual TLS either way; ``peerauth.tls_warnings``)
    tls_mode: Literal["ISTIO_MUTUAL", "DISABLE", "SIMPLE", "MUTUAL"] = "ISTIO_MUTUAL"
    # False: no DestinationRule set tls.mode, so Istio's auto mTLS decides per endpoint (plaintext
    # toward a workload whose PeerAuthentication mode is DISABLE, mTLS toward the others)
    tls_explicit: bool = False
    locality_lb: LocalityLbSetting | None = None  # loadBalancer.localityLbSetting; None: Istio's default (enabled)


@dataclass(frozen=True)
class SubsetModel:
    name: str
    labels: dict[str, str]
    policy: TrafficPolicy


@dataclass(frozen=True)
class EgressHost:
    """One Sidecar ``egress.hosts`` entry: a namespace (``*``, ``~`` or a name) and ``*``, ``*.suffix`` or an FQDN."""

    namespace: str
    host: str

    def matches(self, namespace: str, fqdn: str) -> bool:
        if self.namespace not in ("*", namespace):
            return False
        return self.host in ("*", fqdn) or (self.host.startswith("*.") and fqdn.endswith(self.host[1:]))


@dataclass(frozen=True)
class SidecarScope:
    """An Istio ``Sidecar`` resource: which services the selected workloads' sidecars know."""

    name: str
    namespace: str
    selector: dict[str, str] | None
    hosts: tuple[EgressHost, ...] | None  # None: no egress given, every service (Istio's default)
    where: str = ""  # "<file>: Sidecar/<name>", for messages


@dataclass(frozen=True)
class GatewayHost:
    """One virtual host of the ingress gateway: a host it serves and the gateway routes for it
    (a Gateway-bound VirtualService's, or the HTTPRoutes' merged by precedence), apart from the
    mesh routes as in Istio."""

    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class ExternalHost:
    """A host a ServiceEntry declares that is no service of the mesh (``mesh.serviceentries``): what Istio would
    apply toward it, kept for a stand-in to serve it later.  The sandbox sends no traffic to it."""

    host: str  # as the ServiceEntry gives it, lower-case ('*.<domain>' for a wildcard entry)
    namespace: str
    where: str  # "<file>: ServiceEntry/<name>", for messages
    location: str  # MESH_EXTERNAL or MESH_INTERNAL
    resolution: str  # NONE, STATIC, DNS, DNS_ROUND_ROBIN or DYNAMIC_DNS
    ports: tuple[tuple[int, str, str], ...]  # (number, protocol, name)
    endpoints: tuple[str, ...] = ()  # the entry's endpoint addresses
    # the oldest VirtualService's routes for it; a destination's ``service`` is a mesh service's name or the host
    # as the route writes it
    routes: tuple[Route, ...] = ()
    routed_by: str = ""  # "<file>: VirtualService/<name>"
    policy: TrafficPolicy | None = None  # its DestinationRule's top-level policy (tls_mode SIMPLE: TLS origination)
    policy_by: str = ""  # "<file>: DestinationRule/<name>"
    tls_settings: tuple[tuple[str, str], ...] = ()  # its tls block's settings: ("sni", ...), ("credentialName", ...)
    # the sandbox's stand-in for it (mesh.externals): the demo app's behaviour, or the team's own command
    behaviour: AppBehaviour = field(default_factory=AppBehaviour)
    command: tuple[str, ...] | None = None
    not_run: str = ""  # a MESH_INTERNAL entry: why it is not run as a service of the mesh (mesh.workloadentries)

    def http_ports(self) -> tuple[int, ...]:
        """The ports callers reach through their sidecar's HTTP routes (HTTP, HTTP2, GRPC, or a protocol left to
        sniffing); the others (HTTPS, TLS, TCP...) are not run by the sandbox."""
        return tuple(n for n, protocol, _ in self.ports if protocol in ("", "HTTP", "HTTP2", "GRPC"))

    @property
    def originates_tls(self) -> bool:
        """The sidecars originate TLS toward its stand-in: its DestinationRule's ``tls.mode`` is SIMPLE and the stand-in
        is the demo app (which then serves HTTPS with a certificate of the sandbox's CA for the host)."""
        return self.policy is not None and self.policy.tls_mode == "SIMPLE" and self.command is None

    @property
    def runs(self) -> bool:
        """Whether the sandbox runs a stand-in for it: a MESH_EXTERNAL, DNS or STATIC, non-wildcard host with an
        HTTP port (``mesh.externals``)."""
        return (self.location == "MESH_EXTERNAL" and self.resolution in ("DNS", "STATIC", "DNS_ROUND_ROBIN")
                and not self.host.startswith("*") and bool(self.http_ports()))


@dataclass(frozen=True)
class MeshModel:
    name: str
    services: dict[str, ServiceModel]
    ingress_service: str
    ingress_paths: tuple[str, ...]
    routes: dict[str, tuple[Route, ...]]  # by destination service; absent: default route
    policies: dict[str, TrafficPolicy]  # by service (DestinationRule top level, or defaults)
    subsets: dict[str, dict[str, SubsetModel]]
    peer_auth: tuple[PeerAuthPolicy, ...]
    authz: tuple[AuthzPolicy, ...]
    sidecars: tuple[SidecarScope, ...] = ()
    gateway_hosts: tuple[GatewayHost, ...] = ()  # empty: the ingress fronts ingress_service
    trust_domains: TrustDomains = field(default_factory=TrustDomains)  # the `istio` ConfigMap's, else Istio's
    external_hosts: dict[str, ExternalHost] = field(default_factory=dict)  # ServiceEntry hosts: never sent traffic
    ingress_gateway: IngressGateway = DEFAULT_INGRESS_GATEWAY  # the one the Istio Gateways select
    service_views: dict[str, ServiceView] = field(default_factory=dict)  # per-version Services HTTPRoutes name

    @property
    def mesh_config(self) -> MeshConfig:
        """The MeshConfig settings the sandbox reads (the `istio` ConfigMap's, else Istio's defaults)."""
        found = self.trust_domains
        return found if isinstance(found, MeshConfig) else MeshConfig(local=found.local, aliases=found.aliases)

    @property
    def root_namespace(self) -> str:
        """Where mesh-wide policies live: the MeshConfig's ``rootNamespace`` (Istio's default ``istio-system``)."""
        return self.mesh_config.root_namespace

    @property
    def ingress_spiffe(self) -> str:
        """The ingress gateway's identity (its service account), in the mesh's trust domain."""
        gateway = self.ingress_gateway
        return self.trust_domains.spiffe(gateway.namespace, gateway.service_account)

    def ingress_services(self) -> list[str]:
        """The services the ingress gateway sends traffic to."""
        if not self.gateway_hosts:
            return [self.ingress_service]
        return sorted({d.service for h in self.gateway_hosts for r in h.routes for d in r.destinations})

    def workload_labels(self, service: str, version: str) -> dict[str, str]:
        """The labels the pods of one version carry: what selectors (subsets, policies, Sidecars) match."""
        return dict(self.services[service].version(version).labels)

    def routes_for(self, service: str) -> tuple[Route, ...]:
        """The HTTP routes callers apply toward ``service`` (Istio's default when no VirtualService)."""
        return self.routes.get(service) or (
            Route((), (WeightedDestination(service, None, 100),), default_retries(), None, None),
        )

    def mtls_mode(self, service: str, version: str) -> str:
        """Effective PeerAuthentication mode for a workload: workload > namespace > mesh; PERMISSIVE.

        Among policies of one level that select the workload, the oldest applies (Istio's rule; ``peer_auth``
        is in age order: a mesh directory's file and document order, a cluster's creation time); a selected
        policy's ``portLevelMtls`` entry for the workload's port (``pod_port``) overrides its mode.
        """
        svc = self.services[service]
        labels = self.workload_labels(service, version)
        ranked: list[tuple[int, int, str]] = []  # (level, -age order, mode): the oldest wins a tie, as in Istio
        for order, policy in enumerate(self.peer_auth):
            selected = bool(policy.selector) and policy.namespace == svc.namespace \
                and selects(policy.selector or {}, labels)
            port_mode = dict(policy.port_modes).get(svc.pod_port, "UNSET") if selected else "UNSET"
            if policy.mode == "UNSET" and port_mode == "UNSET":
                continue
            if selected:
                ranked.append((3, -order, port_mode if port_mode != "UNSET" else policy.mode))
            elif not policy.selector and policy.namespace == svc.namespace:
                ranked.append((2, -order, policy.mode))
            elif not policy.selector and policy.namespace == self.root_namespace:
                ranked.append((1, -order, policy.mode))
        return max(ranked)[2] if ranked else "PERMISSIVE"

    def authz_for(self, service: str, version: str) -> list[AuthzPolicy]:
        """AuthorizationPolicies that apply to a workload: its namespace's and the root namespace's.

        As in Istio, a selector restricts a policy to matching workloads; in the root namespace
        it matches workloads of every namespace.
        """
        svc = self.services[service]
        labels = self.workload_labels(service, version)
        return [
            p for p in self.authz
            if p.namespace in (self.root_namespace, svc.namespace) and (not p.selector or selects(p.selector, labels))
        ]

    def callees(self, service: str) -> list[str]:
        """Services that ``service`` calls: its demo app's calls (for any of its versions); for a
        ``command`` service, whose calls are its own code's business, every other service its
        sidecar knows (``egress``)."""
        if self.services[service].command is not None:
            return [name for name in self.egress(service) if name != service]
        names = {callee for v in self.services[service].versions for callee, _ in v.behaviour.calls}
        return sorted(names & set(self.services))  # external hosts: external_callees

    def sidecar_for(self, service: str) -> SidecarScope | None:
        """The Sidecar resource that applies to ``service``'s workloads, by Istio's precedence: one
        whose selector picks them in their namespace, else their namespace's selector-less one,
        else the root namespace's.  ``build`` makes sure a selector picks all of a service's
        versions or none, and that the choice is never ambiguous."""
        svc = self.services[service]
        labels = [self.workload_labels(service, v.name) for v in svc.versions]
        ranked = sorted(
            ((2 if s.selector else 1 if s.namespace == svc.namespace else 0), s.name, s) for s in self.sidecars
            if (s.selector and s.namespace == svc.namespace and all(selects(s.selector, la) for la in labels))
            or (not s.selector and s.namespace in (svc.namespace, self.root_namespace))
        )
        return ranked[-1][2] if ranked else None

    def egress(self, service: str) -> list[str]:
        """Services whose routes and clusters ``service``'s sidecars get: every service, as in
        Istio, unless a Sidecar resource's ``egress.hosts`` scopes it down."""
        scope = self.sidecar_for(service)
        if scope is None or scope.hosts is None:
            return sorted(self.services)
        return sorted(name for name, svc in self.services.items()
                      if any(h.matches(svc.namespace, svc.fqdn) for h in scope.hosts))

    def external_callees(self, service: str) -> list[str]:
        """The external hosts (ServiceEntries' whose stand-in runs) that ``service``'s demo app calls; for a
        ``command`` service, every one (what it calls is its own code's business)."""
        running = [h for h, e in self.external_hosts.items() if e.runs]
        if self.services[service].command is not None:
            return running
        return sorted({c for v in self.services[service].versions for c, _ in v.behaviour.calls if c in running})

    def external_callers(self, host: str) -> list[str]:
        """The services that call an external host (``external_callees``)."""
        return sorted(s for s in self.services if host in self.external_callees(s))

    def callers(self, service: str) -> list[str]:
        found = [s for s in self.services if service in self.callees(s)]
        if service in self.ingress_services():
            found.append("ingress")
        return sorted(found)

    def subset_of(self, service: str, version: str) -> list[str]:
        labels = self.workload_labels(service, version)
        return [s.name for s in self.subsets.get(service, {}).values() if selects(s.labels, labels)]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def default_retries() -> RetryPolicy:
    return RetryPolicy(ISTIO_DEFAULT_ATTEMPTS, ISTIO_DEFAULT_RETRY_ON, None)
