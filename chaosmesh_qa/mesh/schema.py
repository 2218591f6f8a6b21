"""Pydantic schemas for the mesh definition's documents, as users write them.

``loader`` validates each YAML document against one of these by ``kind``; ``model``
then cross-checks the documents and applies Istio's defaults.  Every model accepts
unknown keys (``extra="allow"``) so that ``unsupported_fields`` can report each one
as a warning naming its field path: an Istio field we do not implement is never
silently ignored, and never a hard error either.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float:
    """Parse an Istio duration (``250ms``, ``1s``, ``1.5m``) into seconds."""
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"malformed duration {value!r} (expected e.g. '250ms', '1s', '2m')")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_duration)]
Name = Annotated[str, Field(pattern=DNS_LABEL)]
Percent = Annotated[float, Field(ge=0, le=100)]


class Spec(BaseModel):
    """Base: camelCase aliases as in Istio's YAML, unknown keys kept for warnings."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Metadata(Spec):
    name: Name
    namespace: Name = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------- Mesh kind


class UpstreamCall(Spec):
    service: Name
    path: str = Field(default="/", pattern=r"^/")


class DemoApp(Spec):
    """Behaviour of the built-in demo app for one service (or one version of it)."""

    calls: list[UpstreamCall] | None = None
    parallel: bool | None = None
    latency_ms: Annotated[float, Field(ge=0, le=60_000)] | None = None
    error_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    error_status: Annotated[int, Field(ge=400, le=599)] | None = None
    response_bytes: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    propagate_headers: list[str] | None = None


class Version(Spec):
    name: Name
    replicas: Annotated[int, Field(ge=0, le=20)] = 1
    labels: dict[str, str] = Field(default_factory=dict)
    app: DemoApp | None = None


class ServiceDef(Spec):
    name: Name
    namespace: Name = "default"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    service_account: Name | None = None
    versions: list[Version] = Field(min_length=1)
    app: DemoApp | None = None
    command: list[str] | None = Field(default=None, min_length=1)
    health_path: str = Field(default="/healthz", pattern=r"^/")

    @model_validator(mode="after")
    def _app_or_command(self) -> ServiceDef:
        if self.command is not None and (self.app is not None or any(v.app is not None for v in self.versions)):
            # a version's app would be silently ignored: the command replaces the demo app
            raise ValueError("set either 'app' (built-in demo app, here or in a version) or 'command', not both")
        return self


class Ingress(Spec):
    service: Name
    paths: list[Annotated[str, Field(pattern=r"^/")]] = Field(default_factory=lambda: ["/"], min_length=1)


class MeshSpec(Spec):
    services: list[ServiceDef] = Field(min_length=1)
    ingress: Ingress


class MeshDoc(Spec):
    api_version: Literal["chaosmesh-qa.io/v1alpha1"]
    kind: Literal["Mesh"]
    metadata: Metadata
    spec: MeshSpec


# --------------------------------------------------------------------------- networking.istio.io


class StringMatch(Spec):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a string match needs exactly one of exact, prefix, regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from None
        return self


class HTTPMatchRequest(Spec):
    uri: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)


class Destination(Spec):
    host: str = Field(min_length=1)
    subset: Name | None = None


class HTTPRouteDestination(Spec):
    destination: Destination
    weight: Annotated[int, Field(ge=0, le=100)] | None = None


class HTTPRetry(Spec):
    attempts: Annotated[int, Field(ge=0, le=100)]
    per_try_timeout: Duration | None = None
    retry_on: str | None = None


class FaultPercentage(Spec):
    value: Percent


class FaultDelay(Spec):
    fixed_delay: Duration
    percentage: FaultPercentage | None = None


class FaultAbort(Spec):
    http_status: Annotated[int, Field(ge=200, le=599)]
    percentage: FaultPercentage | None = None


class HTTPFaultInjection(Spec):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPRoute(Spec):
    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(min_length=1)
    retries: HTTPRetry | None = None
    timeout: Duration | None = None
    fault: HTTPFaultInjection | None = None


class VirtualServiceSpec(Spec):
    hosts: list[str] = Field(min_length=1)
    http: list[HTTPRoute] = Field(min_length=1)


class TCPSettings(Spec):
    max_connections: Annotated[int, Field(ge=1)] | None = None
    connect_timeout: Duration | None = None


class HTTPSettings(Spec):
    http1_max_pending_requests: Annotated[int, Field(ge=1)] | None = None
    http2_max_requests: Annotated[int, Field(ge=1)] | None = None
    max_requests_per_connection: Annotated[int, Field(ge=0)] | None = None
    max_retries: Annotated[int, Field(ge=0)] | None = None


class ConnectionPool(Spec):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(Spec):
    consecutive_5xx_errors: Annotated[int, Field(ge=0)] | None = Field(default=None, alias="consecutive5xxErrors")
    consecutive_gateway_errors: Annotated[int, Field(ge=0)] | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] | None = None


class LoadBalancer(Spec):
    simple: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "LEAST_CONN"] | None = None


class ClientTLS(Spec):
    mode: Literal["ISTIO_MUTUAL", "DISABLE"]


class TrafficPolicy(Spec):
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLS | None = None


class Subset(Spec):
    name: Name
    labels: dict[str, str] = Field(min_length=1)
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(Spec):
    host: str = Field(min_length=1)
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)


# --------------------------------------------------------------------------- security.istio.io


class WorkloadSelector(Spec):
    match_labels: dict[str, str] = Field(default_factory=dict)


class PeerAuthMTLS(Spec):
    mode: Literal["STRICT", "PERMISSIVE", "DISABLE", "UNSET"] = "UNSET"


class PeerAuthenticationSpec(Spec):
    selector: WorkloadSelector | None = None
    mtls: PeerAuthMTLS | None = None


class Source(Spec):
    principals: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)


class Operation(Spec):
    paths: list[str] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list)


class RuleFrom(Spec):
    source: Source


class RuleTo(Spec):
    operation: Operation


class Rule(Spec):
    from_: list[RuleFrom] = Field(default_factory=list, alias="from")
    to: list[RuleTo] = Field(default_factory=list)


class AuthorizationPolicySpec(Spec):
    selector: WorkloadSelector | None = None
    action: Literal["ALLOW", "DENY"] = "ALLOW"
    rules: list[Rule] = Field(default_factory=list)


class IstioDoc(Spec):
    api_version: str
    kind: str
    metadata: Metadata
    spec: dict[str, Any]


# kind -> (accepted apiVersions, spec schema)
ISTIO_KINDS: dict[str, tuple[tuple[str, ...], type[Spec]]] = {
    "VirtualService": (
        ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"),
        VirtualServiceSpec,
    ),
    "DestinationRule": (
        ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"),
        DestinationRuleSpec,
    ),
    "PeerAuthentication": (("security.istio.io/v1", "security.istio.io/v1beta1"), PeerAuthenticationSpec),
    "AuthorizationPolicy": (("security.istio.io/v1", "security.istio.io/v1beta1"), AuthorizationPolicySpec),
}


def unsupported_fields(model: BaseModel, path: str) -> list[str]:
    """Field paths of every key present in the input that the schema does not know."""
    found: list[str] = []
    for key in model.model_extra or {}:
        found.append(f"{path}.{key}" if path else key)
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        sub = f"{path}.{field.alias or name}" if path else (field.alias or name)
        found.extend(_walk(value, sub))
    return found


def _walk(value: Any, path: str) -> list[str]:
    if isinstance(value, BaseModel):
        return unsupported_fields(value, path)
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _walk(item, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _walk(item, f"{path}.{key}")]
    return []
