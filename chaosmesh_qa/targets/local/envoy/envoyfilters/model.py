"""The EnvoyFilter engine's data: the stored object, the proxy it is evaluated for, one config patch as
istiod reads it, the API's enumerations, and the exceptions that stand for istiod's panics and parse errors.
Part of ``envoyfilters``, whose docstring says what istiod does and where.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]
log = logging.getLogger(__package__)  # one logger for the package: chaosmesh_qa.targets.local.envoy.envoyfilters

ROOT_NAMESPACE = "istio-system"
HCM = "envoy.filters.network.http_connection_manager"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
VIRTUAL_LISTENERS = ("virtualInbound", "virtualOutbound")
MAX_PROXY_VERSION_LEN = 1024

APPLY_TO = ("INVALID", "LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION",
            "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG", "BOOTSTRAP", "LISTENER_FILTER")
CONTEXTS = ("ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "WAYPOINT")
OPERATIONS = ("INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE",
              "MERGE_AND_REPLACE_LIST")
ROUTE_ACTIONS = ("ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE")
FILTER_CLASSES = ("UNSPECIFIED", "AUTHN", "AUTHZ", "STATS")
MERGES = ("MERGE", "MERGE_AND_REPLACE_LIST")
INSERTS = ("INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST")
ORDERED = ("HTTP_FILTER", "NETWORK_FILTER", "HTTP_ROUTE", "LISTENER_FILTER")  # where INSERT_* stays INSERT_*

LISTENER_MESSAGE = "envoy.config.listener.v3.Listener"
FILTER_CHAIN_MESSAGE = "envoy.config.listener.v3.FilterChain"
ROUTE_CONFIGURATION_MESSAGE = "envoy.config.route.v3.RouteConfiguration"
VIRTUAL_HOST_MESSAGE = "envoy.config.route.v3.VirtualHost"
ROUTE_MESSAGE = "envoy.config.route.v3.Route"
CLUSTER_MESSAGE = "envoy.config.cluster.v3.Cluster"
HCM_MESSAGE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
MESSAGE_OF = {
    "LISTENER": LISTENER_MESSAGE, "FILTER_CHAIN": FILTER_CHAIN_MESSAGE,
    "NETWORK_FILTER": "envoy.config.listener.v3.Filter",
    "HTTP_FILTER": "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
    "LISTENER_FILTER": "envoy.config.listener.v3.ListenerFilter", "ROUTE_CONFIGURATION": ROUTE_CONFIGURATION_MESSAGE,
    "VIRTUAL_HOST": VIRTUAL_HOST_MESSAGE, "HTTP_ROUTE": ROUTE_MESSAGE, "CLUSTER": CLUSTER_MESSAGE,
    "EXTENSION_CONFIG": "envoy.config.core.v3.TypedExtensionConfig", "BOOTSTRAP": "envoy.config.bootstrap.v3.Bootstrap",
}

Kind = Literal["sidecar", "gateway"]


class EnvoyFilterInvalid(ValueError):
    """An EnvoyFilter spec the CRD schema or istiod's validation rejects; one line naming each field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class EnvoyFilterObject:
    """One stored EnvoyFilter; ``created_order`` stands for its creation time (smaller: older)."""

    namespace: str
    name: str
    spec: JSON
    created_order: int

    @property
    def priority(self) -> int:
        value = self.spec.get("priority", 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class Proxy:
    """The proxy patches are evaluated for.

    ``istio_version`` and ``metadata`` answer ``match.proxy`` (``ISTIO_VERSION`` and the raw node metadata);
    ``gateway_ports`` maps a gateway listener port to the service ports it serves (istiod's gateway port
    map, read by ``routeConfiguration.portNumber`` in the GATEWAY context).
    """

    namespace: str
    labels: Mapping[str, str]
    kind: Kind
    istio_version: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    gateway_ports: Mapping[int, frozenset[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("sidecar", "gateway"):
            raise ValueError(f"proxy kind {self.kind!r}: only sidecars and gateways are modelled")


@dataclass(frozen=True)
class Patch:
    source: str  # "namespace/name configPatches[i]"
    apply_to: str
    operation: str
    context: str
    match: JSON  # the EnvoyFilter's match, camelCase as in the CRD
    value: JSON | None  # canonical: snake_case, only the fields set, as istiod parses it


Patches = dict[str, list[Patch]]


class IstiodPanic(Exception):
    """Where istiod's patch code panics (and recovers, dropping that pass's patches)."""


class Unresolvable(Exception):
    """A typed config whose type is unknown: istiod's MergeAnyWithAny errors and keeps the filter's config."""
