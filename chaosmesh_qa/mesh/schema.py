"""Pydantic schemas for the mesh definition's documents, as users write them.

``loader`` validates each YAML document against one of these by ``kind`` (the kinds whose module
holds its own schema: ``gateways``, ``httproutes``, ``authz``, ``serviceentries``); ``build``
then cross-checks the documents and applies Istio's defaults.  Every model accepts
unknown keys (``extra="allow"``) so that ``unsupported_fields`` can report each one
as a warning naming its field path: an Istio field we do not implement is never
silently ignored, and never a hard error either.  Known fields are typed strictly (as
Kubernetes reads them) with the value rules of ``values``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from chaosmesh_qa.mesh.localities import DEFAULT_REGION, TOPOLOGY_LABELS, check_locality, check_rule_locality
from chaosmesh_qa.mesh.values import (
    Duration,
    EgressHost,
    HeaderName,
    HttpPath,
    Int32,
    LabelMap,
    Name,
    NoNul,
    Percent,
    PositiveInt32,
    Text,
    UInt32,
    envoy_regex,
    is_http_path,
    join_path,
    parse_duration,
    retry_policies,
    show,
)

MAX_READY_TIMEOUT_S = 600.0
CALL_TARGET = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"


class Spec(BaseModel):
    """Base: camelCase aliases as in Istio's YAML, unknown keys kept for warnings.

    Strict like Kubernetes reading a typed field: no "8080" for a number, no 2.0 for an integer,
    no "on" for a boolean, no NaN or infinity.
    """

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True,
                              strict=True, allow_inf_nan=False)


class Metadata(Spec):
    name: Name
    namespace: Name = "default"
    labels: LabelMap = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # what `kubectl get -o yaml` adds: the server's bookkeeping, accepted and not used (nothing is lost)
    creation_timestamp: Any = None
    resource_version: Any = None
    uid: Any = None
    generation: Any = None
    managed_fields: Any = None
    self_link: Any = None


# --------------------------------------------------------------------------- Mesh kind


class UpstreamCall(Spec):
    service: Annotated[str, Field(pattern=CALL_TARGET)]  # a service of the Mesh, or a ServiceEntry's host
    path: HttpPath = "/"


class DemoApp(Spec):
    """Behaviour of the built-in demo app for one service (or one version of it)."""

    calls: list[UpstreamCall] | None = None
    parallel: bool | None = None
    latency_ms: Annotated[float, Field(ge=0, le=60_000)] | None = None
    error_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    error_status: Annotated[int, Field(ge=400, le=599)] | None = None
    response_bytes: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    propagate_headers: list[HeaderName] | None = None


class Version(Spec):
    name: Name
    replicas: Annotated[int, Field(ge=0, le=20)] = 1
    labels: LabelMap = Field(default_factory=dict)
    app: DemoApp | None = None
    # the replicas' localities, spread round-robin: 'zone' (in the Mesh's region), 'region/zone[/subzone]'
    zones: list[Annotated[str, AfterValidator(check_locality)]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _own_labels(self) -> Version:
        taken = sorted({"app", "version"} & self.labels.keys())
        if taken:
            raise ValueError(f"labels: {', '.join(map(repr, taken))} cannot be redefined (the pod's 'app' is the "
                             "service name, its 'version' the version name)")
        return self


class ServiceDef(Spec):
    name: Name
    namespace: Name = "default"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    target_port: Annotated[int, Field(ge=1, le=65535)] | None = None  # the pods' port; default: port
    service_account: Name | None = None
    versions: list[Version] = Field(default_factory=list)  # required unless manifests define the service
    app: DemoApp | None = None
    command: list[NoNul] | None = Field(default=None, min_length=1)
    health_path: HttpPath = "/healthz"
    ready_timeout: Duration | None = None

    @model_validator(mode="after")
    def _ready_timeout_bounded(self) -> ServiceDef:
        if self.ready_timeout is not None and parse_duration(self.ready_timeout) > MAX_READY_TIMEOUT_S:
            raise ValueError(f"readyTimeout: {self.ready_timeout!r} is longer than {MAX_READY_TIMEOUT_S:.0f}s "
                             "(a pod that takes longer to start is a broken pod)")
        return self

    @model_validator(mode="after")
    def _app_or_command(self) -> ServiceDef:
        if self.command is not None and (self.app is not None or any(v.app is not None for v in self.versions)):
            # a version's app would be silently ignored: the command replaces the demo app
            raise ValueError("set either 'app' (built-in demo app, here or in a version) or 'command', not both")
        return self


class Ingress(Spec):
    service: Name
    paths: list[HttpPath] = Field(default_factory=lambda: ["/"], min_length=1)


class ExternalStandIn(Spec):
    """The sandbox's stand-in for a ServiceEntry host (mesh.externals): the demo app's behaviour, or a command."""

    host: Annotated[str, Field(pattern=CALL_TARGET)]
    app: DemoApp | None = None  # calls, parallel and propagateHeaders do not apply to a stand-in
    command: list[NoNul] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _app_or_command(self) -> ExternalStandIn:
        if self.command is not None and self.app is not None:
            raise ValueError("set either 'app' (built-in demo app) or 'command', not both")
        if self.app is not None and self.app.calls:
            raise ValueError("app.calls: a stand-in for an external host calls nothing")
        return self


class MeshSpec(Spec):
    services: list[ServiceDef] = Field(default_factory=list)  # build requires services (or manifests)
    external: list[ExternalStandIn] = Field(default_factory=list)  # stand-ins for ServiceEntry hosts
    region: Annotated[str, AfterValidator(lambda v: check_locality(v, (1, 1)))] = DEFAULT_REGION  # of bare zones
    ingress: Ingress | None = None  # build requires it unless a Gateway drives the ingress


class MeshDoc(Spec):
    api_version: Literal["chaosmesh-qa.io/v1alpha1"]
    kind: Literal["Mesh"]
    metadata: Metadata
    spec: MeshSpec


# --------------------------------------------------------------------------- networking.istio.io


class StringMatch(Spec):
    exact: Text | None = None
    prefix: Annotated[Text, Field(min_length=1)] | None = None  # Envoy: a prefix is never empty
    regex: Annotated[str, AfterValidator(envoy_regex)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a string match needs exactly one of exact, prefix, regex")
        return self


class HTTPMatchRequest(Spec):
    uri: StringMatch | None = None
    headers: dict[HeaderName, StringMatch] = Field(default_factory=dict)
    source_labels: LabelMap | None = None  # the caller's pod labels (resolved per caller)
    source_namespace: Name | None = None

    @model_validator(mode="after")
    def _uri_is_a_path(self) -> HTTPMatchRequest:
        uri = self.uri
        for value in (uri.exact, uri.prefix) if uri is not None else ():
            if value is not None and not is_http_path(value):
                raise ValueError(f"uri: {show(value)} is not an HTTP path (starts with '/', no spaces or "
                                 "control characters, other characters percent-encoded)")
        return self


class PortSelector(Spec):
    number: Annotated[int, Field(ge=1, le=65535)]


class Destination(Spec):
    host: str = Field(min_length=1, max_length=255)
    subset: Name | None = None
    port: PortSelector | None = None  # must be the service's port


class HTTPRouteDestination(Spec):
    destination: Destination
    # relative: a destination gets weight / (sum of the route's weights), as Istio documents it
    weight: Int32 | None = None


class HTTPRetry(Spec):
    attempts: Annotated[int, Field(ge=0, le=100)]
    per_try_timeout: Duration | None = None
    retry_on: Annotated[str, AfterValidator(retry_policies)] | None = None

    @model_validator(mode="after")
    def _disabled_means_no_policy(self) -> HTTPRetry:
        if self.attempts == 0 and (self.per_try_timeout is not None or self.retry_on):
            # as Istio: a policy given with attempts 0 (retries off) is a mistake, not something to ignore
            raise ValueError("perTryTimeout or retryOn set while attempts is 0 (retries disabled)")
        return self


class FaultPercentage(Spec):
    value: Percent


class FaultDelay(Spec):
    fixed_delay: Duration
    percentage: FaultPercentage | None = None
    percent: Annotated[int, Field(ge=0, le=100)] | None = None  # deprecated in Istio, still honoured


class FaultAbort(Spec):
    http_status: Annotated[int, Field(ge=200, le=599)]
    percentage: FaultPercentage | None = None


class HTTPFaultInjection(Spec):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(Spec):
    destination: Destination
    percentage: FaultPercentage | None = None


class Delegate(Spec):
    name: Name
    namespace: Name | None = None  # default: the root VirtualService's


class HTTPRoute(Spec):
    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] | None = Field(default=None, min_length=1)  # required unless a delegate
    delegate: Delegate | None = None  # a root route: the named VirtualService's routes take its place
    retries: HTTPRetry | None = None
    timeout: Duration | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirror_percentage: FaultPercentage | None = None
    mirror_percent: Annotated[int, Field(ge=0, le=100)] | None = None  # deprecated in Istio, still honoured
    mirrors: list[HTTPMirrorPolicy] = Field(default_factory=list)

    @model_validator(mode="after")
    def _route_or_delegate(self) -> HTTPRoute:
        if self.delegate is None and self.route is None:
            raise ValueError("route: Field required (a route needs destinations, or a delegate)")
        if self.delegate is not None and self.route is not None:
            raise ValueError("route: not allowed in a route with a delegate (as in Istio: the delegate's routes "
                             "take its place)")
        return self


class VirtualServiceSpec(Spec):
    # none: a delegate, whose routes only apply where a root VirtualService's route names it (``mesh.delegates``)
    hosts: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(default_factory=list)
    gateways: list[Annotated[str, Field(min_length=1, max_length=253)]] | None = None  # None: [mesh]
    http: list[HTTPRoute] = Field(min_length=1)

    @model_validator(mode="after")
    def _delegate_rules(self) -> VirtualServiceSpec:
        if self.hosts:
            return self
        if self.gateways is not None:  # istiod's validation of a delegate
            raise ValueError("gateways: a VirtualService without hosts is a delegate, which has no gateways")
        if any(route.delegate is not None for route in self.http):
            raise ValueError("http: a delegate VirtualService (no hosts) cannot delegate again (as in Istio)")
        return self


class TCPSettings(Spec):
    max_connections: PositiveInt32 | None = None
    connect_timeout: Duration | None = None


class HTTPSettings(Spec):
    http1_max_pending_requests: PositiveInt32 | None = None
    http2_max_requests: PositiveInt32 | None = None
    max_requests_per_connection: Int32 | None = None
    max_retries: Int32 | None = None


class ConnectionPool(Spec):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(Spec):
    consecutive_5xx_errors: UInt32 | None = Field(default=None, alias="consecutive5xxErrors")
    consecutive_gateway_errors: UInt32 | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] | None = None


class LocalityDistribute(Spec):
    from_: Annotated[str, AfterValidator(check_rule_locality)] = Field(alias="from")
    to: dict[Annotated[str, AfterValidator(check_rule_locality)], int] = Field(min_length=1)


class LocalityFailover(Spec):
    from_: Annotated[str, Field(min_length=1)] = Field(alias="from")
    to: Annotated[str, Field(min_length=1)]


class LocalityLbSetting(Spec):
    """Checked as istiod's webhook checks it (pkg/config/validation ``ValidateLocalityLbSetting``)."""

    enabled: bool | None = None
    distribute: list[LocalityDistribute] = Field(default_factory=list)
    failover: list[LocalityFailover] = Field(default_factory=list)
    failover_priority: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _as_istiod_checks(self) -> LocalityLbSetting:
        problem = locality_lb_problem(self.distribute, self.failover, self.failover_priority)
        if problem:
            raise ValueError(problem)
        return self


class LoadBalancer(Spec):
    simple: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "LEAST_CONN"] | None = None
    locality_lb_setting: LocalityLbSetting | None = None


def locality_lb_problem(distribute: list[LocalityDistribute], failover: list[LocalityFailover],
                        priorities: list[str]) -> str:
    """What istiod refuses in a ``localityLbSetting`` (one line, naming the field), or ``""``."""
    if distribute and failover:
        return "distribute, failover: cannot be given together (as in Istio)"
    topology = [p for p in priorities if p in TOPOLOGY_LABELS]
    if failover and topology:
        return f"failoverPriority: {topology[0]!r} cannot be given with failover (as in Istio)"
    for i, rule in enumerate(distribute):
        bad = [loc for loc, weight in rule.to.items() if not 1 <= weight <= 100]
        if bad:
            return f"distribute[{i}].to[{bad[0]!r}]: weight must be in 1..100 (as in Istio)"
        total = sum(rule.to.values())
        if total != 100:
            return f"distribute[{i}].to: weights sum to {total}, expected 100 (as in Istio)"
        overlap = _overlapping(list(rule.to))
        if overlap:
            return f"distribute[{i}].to: {overlap}"
    overlap = _overlapping([rule.from_ for rule in distribute])
    if overlap:
        return f"distribute[].from: {overlap}"
    for i, pair in enumerate(failover):
        if pair.from_ == pair.to:
            return f"failover[{i}]: from and to are the same region {pair.to!r} (as in Istio)"
        if any(c in pair.from_ + pair.to for c in "/*"):
            return f"failover[{i}]: from and to are regions, without '/' or '*' (as in Istio)"
    return ""


def _overlapping(localities: list[str]) -> str:
    """Istio's rule for a list of localities: '*' only once and at the end, and none covering another."""
    for i, loc in enumerate(localities):
        for other in localities[:i]:
            if other == "*":
                return f"{loc!r} overlaps '*' (as in Istio)"
            a, b = loc.rstrip("/*").split("/"), other.rstrip("/*").split("/")
            if a[:len(b)] == b or b[:len(a)] == a:
                return f"{loc!r} overlaps {other!r} (as in Istio)"
    return ""


class ClientTLS(Spec):
    # SIMPLE / MUTUAL: TLS origination with the rule's own certificates (typically toward an external host)
    mode: Literal["ISTIO_MUTUAL", "DISABLE", "SIMPLE", "MUTUAL"]
    client_certificate: Text | None = None
    private_key: Text | None = None
    ca_certificates: Text | None = None
    ca_crl: Text | None = None
    credential_name: Text | None = None
    sni: Text | None = None
    subject_alt_names: list[Text] = Field(default_factory=list)
    insecure_skip_verify: bool | None = None

    @model_validator(mode="after")
    def _as_istiod_checks(self) -> ClientTLS:
        files = [f for f in ("client_certificate", "private_key", "ca_certificates", "ca_crl") if getattr(self, f)]
        if self.mode in ("SIMPLE", "MUTUAL") and self.credential_name and files:
            raise ValueError("credentialName: cannot be given with clientCertificate, privateKey, caCertificates or "
                             "caCrl (as in Istio)")
        if self.mode == "MUTUAL" and not self.credential_name and not (self.client_certificate and self.private_key):
            raise ValueError("mode MUTUAL: clientCertificate and privateKey (or credentialName) are required (as in "
                             "Istio)")
        return self


class PortTrafficPolicy(Spec):
    port: PortSelector
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None


class TrafficPolicy(Spec):
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None
    port_level_settings: list[PortTrafficPolicy] = Field(default_factory=list)


class Subset(Spec):
    name: Name
    labels: Annotated[LabelMap, Field(min_length=1)]
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(Spec):
    host: str = Field(min_length=1, max_length=255)
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)


class SidecarWorkloadSelector(Spec):
    labels: Annotated[LabelMap, Field(min_length=1)]


class IstioEgressListener(Spec):
    hosts: list[EgressHost] = Field(min_length=1)


class SidecarSpec(Spec):
    workload_selector: SidecarWorkloadSelector | None = None
    egress: list[IstioEgressListener] = Field(default_factory=list)


# --------------------------------------------------------------------------- security.istio.io


class WorkloadSelector(Spec):
    match_labels: LabelMap = Field(default_factory=dict)


class PeerAuthMTLS(Spec):
    mode: Literal["STRICT", "PERMISSIVE", "DISABLE", "UNSET"] = "UNSET"


class PeerAuthenticationSpec(Spec):
    selector: WorkloadSelector | None = None
    mtls: PeerAuthMTLS | None = None
    port_level_mtls: dict[str, PeerAuthMTLS] = Field(default_factory=dict)  # keys: the workload's port numbers


class IstioDoc(Spec):
    api_version: str
    kind: str
    metadata: Metadata
    spec: dict[str, Any]  # validated by the kind's own spec schema, never walked for warnings
    status: Any = None  # written by the cluster (`kubectl get -o yaml`): accepted, not used


# kind -> (accepted apiVersions, spec schema); the AuthorizationPolicy and ServiceEntry schemas are in ``authz`` and
# ``serviceentries`` (``loader.ISTIO_KINDS`` has every kind)
ISTIO_KINDS: dict[str, tuple[tuple[str, ...], type[Spec]]] = {
    "VirtualService": (
        ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"),
        VirtualServiceSpec,
    ),
    "DestinationRule": (
        ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"),
        DestinationRuleSpec,
    ),
    "Sidecar": (
        ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"),
        SidecarSpec,
    ),
    "PeerAuthentication": (("security.istio.io/v1", "security.istio.io/v1beta1"), PeerAuthenticationSpec),
}


def unsupported_fields(model: BaseModel, path: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Field paths of every key present in the input that the schema does not know.

    ``skip`` names fields not to walk into (raw mappings another schema validates).
    """
    found: list[str] = []
    for key in model.model_extra or {}:
        found.append(join_path(path, key))
    for name, field in type(model).model_fields.items():
        if name in skip:
            continue
        value = getattr(model, name)
        found.extend(_walk(value, join_path(path, field.alias or name)))
    return found


def _walk(value: Any, path: str) -> list[str]:
    if isinstance(value, BaseModel):
        return unsupported_fields(value, path)
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _walk(item, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [p for key, item in value.items() if isinstance(item, BaseModel | list | dict)
                for p in _walk(item, join_path(path, key))]
    return []
