"""Istio ``EnvoyFilter`` objects applied to generated Envoy configuration, with istiod's own semantics.

The local control plane (``controlplane``) calls this for a team's own EnvoyFilters and for those the
Kubernetes API emulation receives: ``filters_for`` picks the EnvoyFilters that reach one proxy and puts
them in istiod's order; ``patch_listeners``, ``patch_clusters`` and ``patch_route_configurations`` apply
their config patches to the listeners, clusters and route configurations rendered for that proxy (the
plain JSON documents of ``listeners``, ``clusters`` and ``routes``); ``validate`` rejects what the
EnvoyFilter CRD's schema or istiod's validation webhook rejects.  Everything here is pure: inputs are
copied, never changed, and nothing is started.

What istiod does, and where (istio/istio; istio/api for the API):

* selection and order (pilot/pkg/model/push_context.go ``EnvoyFilters``, policyattachment.go): root-namespace
  filters reach every proxy, others only the proxies of their namespace; ``workloadSelector`` labels must be
  a subset of the proxy's; a filter with ``targetRefs`` reaches only Gateway-API gateways it names; order is
  priority, then root namespace first, then creation, then ``name.namespace``.  Patches are grouped by
  ``applyTo`` in that order (model/envoyfilter.go); ``INSERT_*`` on anything but a listener, network or HTTP
  filter or an HTTP route becomes ``ADD``; ``match.proxy`` (version regex, node metadata) is checked here.
* listeners (pilot/pkg/networking/core/envoyfilter/listener_patch.go): per listener, LISTENER
  merges/removes, then LISTENER_FILTER, then per filter chain FILTER_CHAIN merges/removes, NETWORK_FILTER
  list operations then merges, and for the HTTP connection manager HTTP_FILTER list operations then merges;
  added filter chains come after the chain patches, added listeners after all listener patches.
* clusters (cluster_patch.go, core/cluster.go for the contexts): merges and removes per cluster, added
  clusters per context after the generated ones.
* route configurations (rc_patch.go, core/httproute.go for the contexts): ROUTE_CONFIGURATION merges, then
  per virtual host VIRTUAL_HOST removes/merges/replaces and per route HTTP_ROUTE removes/merges, then adds.
* MERGE (pkg/proto/merge, networking/util ``MergeAnyWithAny``): protobuf merge driven by Envoy's own
  descriptors (the ``xds-protos`` package): messages merged field by field, repeated fields appended
  (``MERGE_AND_REPLACE_LIST``: replaced), map entries replaced whole, scalars replaced when set, setting one
  member of a oneof clears the others, a ``Duration`` replaced.  A filter MERGE merges ``typed_config``
  with ``typed_config`` of the same type and may rename the filter; nothing else of its value applies.
  A patch value is read as istiod reads it (pkg/config/xds ``BuildXDSObjectFromStruct``, non-strict):
  camelCase or snake_case, unknown fields (such as the v2 ``config`` of a filter) dropped; one whose types
  do not parse is skipped.

Where istiod panics and recovers (a filter MERGE whose ``typed_config`` type differs from the filter's),
the patches of that pass do not take effect: here all of them, for that listener context or that cluster
(istiod keeps what it changed in place before the panic).  ``EXTENSION_CONFIG`` (ECDS, which the local
control plane does not serve) and ``BOOTSTRAP`` (never applied by istiod) patches change nothing here;
``unsupported_patches`` names them.  Waypoints are not modelled: ``WAYPOINT`` patches match no proxy.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, Literal

import re2
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

JSON = dict[str, Any]
log = logging.getLogger(__name__)

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
_MERGES = ("MERGE", "MERGE_AND_REPLACE_LIST")
_INSERTS = ("INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST")
_ORDERED = ("HTTP_FILTER", "NETWORK_FILTER", "HTTP_ROUTE", "LISTENER_FILTER")  # where INSERT_* stays INSERT_*

_LISTENER = "envoy.config.listener.v3.Listener"
_FILTER_CHAIN = "envoy.config.listener.v3.FilterChain"
_ROUTE_CONFIGURATION = "envoy.config.route.v3.RouteConfiguration"
_VIRTUAL_HOST = "envoy.config.route.v3.VirtualHost"
_ROUTE = "envoy.config.route.v3.Route"
_CLUSTER = "envoy.config.cluster.v3.Cluster"
_HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_MESSAGE_OF = {
    "LISTENER": _LISTENER, "FILTER_CHAIN": _FILTER_CHAIN, "NETWORK_FILTER": "envoy.config.listener.v3.Filter",
    "HTTP_FILTER": "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
    "LISTENER_FILTER": "envoy.config.listener.v3.ListenerFilter", "ROUTE_CONFIGURATION": _ROUTE_CONFIGURATION,
    "VIRTUAL_HOST": _VIRTUAL_HOST, "HTTP_ROUTE": _ROUTE, "CLUSTER": _CLUSTER,
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
class _Patch:
    source: str  # "namespace/name configPatches[i]"
    apply_to: str
    operation: str
    context: str
    match: JSON  # the EnvoyFilter's match, camelCase as in the CRD
    value: JSON | None  # canonical: snake_case, only the fields set, as istiod parses it


_Patches = dict[str, list[_Patch]]


class _Panic(Exception):
    """Where istiod's patch code panics (and recovers, dropping that pass's patches)."""


class _Unresolvable(Exception):
    """A typed config whose type is unknown: istiod's MergeAnyWithAny errors and keeps the filter's config."""


# --------------------------------------------------------------------------- selection


def filters_for(objects: Iterable[EnvoyFilterObject], proxy: Proxy,
                root_namespace: str = ROOT_NAMESPACE) -> list[EnvoyFilterObject]:
    """The EnvoyFilters that reach ``proxy``, in the order istiod applies them."""
    candidates = [o for o in objects if (root_namespace and o.namespace == root_namespace)
                  or (o.namespace == proxy.namespace and proxy.namespace != root_namespace)]
    chosen = [o for o in candidates if _attaches(o, proxy)]
    return sorted(chosen, key=lambda o: (o.priority, 0 if o.namespace == root_namespace else 1, o.created_order,
                                         f"{o.name}.{o.namespace}"))


def _attaches(obj: EnvoyFilterObject, proxy: Proxy) -> bool:
    refs = obj.spec.get("targetRefs") or []
    gateway = proxy.labels.get(GATEWAY_NAME_LABEL)
    if gateway is None or not refs:  # not a Gateway-API gateway: a filter with targetRefs is ignored
        return not refs and _selected(obj.spec, proxy)
    for ref in refs:
        if (isinstance(ref, dict) and obj.namespace == proxy.namespace
                and ref.get("namespace", "") in ("", proxy.namespace)
                and ref.get("group") == "gateway.networking.k8s.io" and ref.get("kind") == "Gateway"
                and ref.get("name") == gateway):
            return True
    return False


def _selected(spec: JSON, proxy: Proxy) -> bool:
    selector = spec.get("workloadSelector") or {}
    labels = selector.get("labels") or {} if isinstance(selector, dict) else {}
    return all(proxy.labels.get(k) == v for k, v in labels.items())


def _proxy_matches(match: JSON, proxy: Proxy) -> bool:
    wanted = match.get("proxy")
    if not isinstance(wanted, dict):
        return True
    version = wanted.get("proxyVersion") or ""
    if version:
        if len(version) > MAX_PROXY_VERSION_LEN:
            return False  # istiod fails closed rather than compile it
        try:
            pattern = re2.compile(version)
        except re2.error:
            pattern = None  # istiod ignores a regex that does not compile (validation rejects it)
        if pattern is not None and (not proxy.istio_version or not pattern.search(proxy.istio_version)):
            return False
    metadata = wanted.get("metadata")
    return all(proxy.metadata.get(k) == v for k, v in (metadata.items() if isinstance(metadata, dict) else ()))


def _compile(filters: Iterable[EnvoyFilterObject], proxy: Proxy) -> _Patches:
    """The proxy's patches by ``applyTo``, in order (istiod's MergedEnvoyFilterWrapper)."""
    out: _Patches = {}
    for obj in filters:
        for i, raw in enumerate(obj.spec.get("configPatches") or []):
            source = f"EnvoyFilter {obj.namespace}/{obj.name} configPatches[{i}]"
            patch = raw.get("patch") if isinstance(raw, dict) else None
            if not isinstance(patch, dict):
                continue
            apply_to, operation = raw.get("applyTo", "INVALID"), patch.get("operation", "INVALID")
            match = raw.get("match") if isinstance(raw.get("match"), dict) else {}
            context = match.get("context", "ANY")
            if apply_to not in _MESSAGE_OF or operation not in OPERATIONS[1:] or context not in CONTEXTS:
                log.warning("%s: skipped: applyTo %r, operation %r or context %r is not valid",
                            source, apply_to, operation, context)
                continue
            value = patch.get("value")
            canonical = None
            if value is not None:
                try:
                    canonical = _canonical(apply_to, value)
                except ValueError as exc:
                    log.warning("%s: skipped, as istiod does: %s", source, exc)
                    continue
            elif operation != "REMOVE":
                log.warning("%s: skipped: %s without a value", source, operation)
                continue
            if not _proxy_matches(match, proxy):
                continue
            if operation in _INSERTS and apply_to not in _ORDERED:
                operation = "ADD"
            out.setdefault(apply_to, []).append(_Patch(source, apply_to, operation, context, match, canonical))
    return out


def unsupported_patches(filters: Iterable[EnvoyFilterObject]) -> list[str]:
    """One line per patch this engine applies to nothing although istiod would apply it somewhere (ECDS)."""
    return [f"EnvoyFilter {o.namespace}/{o.name} configPatches[{i}]: applyTo EXTENSION_CONFIG patches ECDS "
            "resources, which the local control plane does not serve"
            for o in filters for i, raw in enumerate(o.spec.get("configPatches") or [])
            if isinstance(raw, dict) and raw.get("applyTo") == "EXTENSION_CONFIG"]


def _context_matches(context: str, patch: _Patch) -> bool:
    return patch.context in (context, "ANY")


# --------------------------------------------------------------------------- listeners


def patch_listeners(listeners: Sequence[JSON], filters: Sequence[EnvoyFilterObject], proxy: Proxy) -> list[JSON]:
    """``listeners`` (LDS documents of ``proxy``) with the listener-class patches of ``filters`` applied.

    ``filters``: as ``filters_for`` returns them.  A sidecar listener's context is its
    ``traffic_direction`` (``INBOUND``: SIDECAR_INBOUND, ``OUTBOUND``: SIDECAR_OUTBOUND); every listener of
    a gateway is GATEWAY.  A route configuration inlined in an HTTP connection manager is patched first, in
    its listener's context (istiod builds the sidecar's inbound ones so, then patches the listeners).
    Added listeners follow the generated ones (those of SIDECAR_OUTBOUND or GATEWAY, then SIDECAR_INBOUND).
    """
    patches = _compile(filters, proxy)
    if not any(k in patches for k in ("LISTENER", "LISTENER_FILTER", "FILTER_CHAIN", "NETWORK_FILTER",
                                      "HTTP_FILTER", "ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")):
        return _clone(list(listeners))
    groups: dict[tuple[str, str], list[int]] = {}
    if proxy.kind == "gateway":
        groups[("GATEWAY", "")] = []
    else:
        groups[("SIDECAR_OUTBOUND", "")] = []
        groups[("SIDECAR_INBOUND", "")] = []
    for index, listener in enumerate(listeners):
        context = _listener_context(listener, proxy)
        virtual = listener.get("name") if listener.get("name") in VIRTUAL_LISTENERS else ""
        groups.setdefault((context, str(virtual)), []).append(index)
    result: list[JSON | None] = [None] * len(listeners)
    added: list[JSON] = []
    for (context, virtual), indices in groups.items():
        originals = [listeners[i] for i in indices]
        work = [_snake(_clone(lis), _LISTENER) for lis in originals]
        for lis in work:  # istiod patches these while it builds the listener, before the listener pass
            _patch_inline_routes(context, patches, lis, proxy)
        built = _clone(work)
        patched: list[JSON | None]
        try:
            patched, extra = _patch_listener_group(context, patches, work, skip_adds=bool(virtual))
        except _Panic as exc:
            log.error("%s: so no listener patch of context %s takes effect (istiod panics and recovers)",
                      exc, context)
            patched, extra = list(built), []
        for i, done in zip(indices, patched, strict=True):
            result[i] = done
        added.extend(extra)
    return [lis for lis in result if lis is not None] + added


def _listener_context(listener: JSON, proxy: Proxy) -> str:
    if proxy.kind == "gateway":
        return "GATEWAY"
    direction = listener.get("traffic_direction", listener.get("trafficDirection"))
    if direction in ("INBOUND", 1):
        return "SIDECAR_INBOUND"
    if direction in ("OUTBOUND", 2):
        return "SIDECAR_OUTBOUND"
    raise ValueError(f"sidecar listener {listener.get('name')!r} has no traffic_direction: its EnvoyFilter "
                     "context (SIDECAR_INBOUND or SIDECAR_OUTBOUND) is unknown")


def _patch_listener_group(context: str, patches: _Patches, listeners: list[JSON],
                          skip_adds: bool) -> tuple[list[JSON | None], list[JSON]]:
    out: list[JSON | None] = []
    for lis in listeners:
        keep = bool(lis.get("name")) and _patch_listener(context, patches, lis)
        out.append(lis if keep else None)
    added = []
    if not skip_adds:
        for p in patches.get("LISTENER", []):
            if p.operation != "ADD" or (p.context == "ANY" and context not in ("SIDECAR_OUTBOUND", "GATEWAY")):
                continue  # an ADD without context adds to sidecar outbound and gateways only
            if _context_matches(context, p) and p.value is not None and p.value.get("name"):
                added.append(_clone(p.value))
    return out, added


def _patch_listener(context: str, patches: _Patches, lis: JSON) -> bool:
    """Patches one listener in place; False: removed."""
    for p in patches.get("LISTENER", []):
        if not (_context_matches(context, p) and _listener_matches(lis, p)):
            continue
        if p.operation == "REMOVE":
            return False
        if p.operation in _MERGES and p.value is not None:
            _merge_message(lis, p.value, _descriptor(_LISTENER), p.operation == "MERGE_AND_REPLACE_LIST")
    _patch_listener_filters(context, patches.get("LISTENER_FILTER", []), lis)
    _patch_filter_chains(context, patches, lis)
    return True


def _listener_matches(lis: JSON, p: _Patch) -> bool:
    wanted = p.match.get("listener")
    if not isinstance(wanted, dict):
        return True
    if wanted.get("name") and wanted["name"] != lis.get("name"):
        return False
    if p.apply_to != "LISTENER" and lis.get("name") in VIRTUAL_LISTENERS:
        return True  # their port is matched on the filter chains' destination_port
    port = wanted.get("portNumber") or 0
    if port:
        actual = ((lis.get("address") or {}).get("socket_address") or {}).get("port_value")
        if actual is None or int(actual) != port:
            return False
    return True


def _ordered_ops(items: list[Any], p: _Patch, has_match: bool, matches: Callable[[Any], bool]) -> list[Any]:
    """ADD, INSERT_* , REPLACE and REMOVE on a list of named objects (filters), as istiod does them."""
    value = p.value
    if p.operation == "REMOVE":
        return [e for e in items if not matches(e)] if has_match else items
    if value is None:
        return items
    new = _clone(value)
    first = next((i for i, e in enumerate(items) if matches(e)), None) if has_match else None
    if p.operation == "ADD":
        return [*items, new]
    if p.operation == "INSERT_FIRST":
        return [new, *items]
    if p.operation == "INSERT_AFTER":
        if not has_match:
            return [*items, new]
        return items if first is None else [*items[:first + 1], new, *items[first + 1:]]
    if p.operation == "INSERT_BEFORE":
        if not has_match:
            return [new, *items]
        return items if first is None else [*items[:first], new, *items[first:]]
    if p.operation == "REPLACE":
        return items if first is None else [*items[:first], new, *items[first + 1:]]
    return items


def _patch_listener_filters(context: str, patches: list[_Patch], lis: JSON) -> None:
    for p in patches:
        if not (_context_matches(context, p) and _listener_matches(lis, p)):
            continue
        wanted = (p.match.get("listener") or {}).get("listenerFilter") or ""
        items = lis.get("listener_filters") or []
        if p.operation == "MERGE":
            if wanted and p.value is not None:
                # istiod merges into every listener filter of the listener, matched or not, and never
                # renames one (it writes the name into its own copy of the patch value)
                for existing in items:
                    _merge_filter(existing, p, rename=False)
            continue
        items = _ordered_ops(items, p, bool(wanted), partial(_named, wanted))
        if items or "listener_filters" in lis:
            lis["listener_filters"] = items


def _named(name: str, item: JSON) -> bool:
    return bool(item.get("name", "") == name)


def _patch_filter_chains(context: str, patches: _Patches, lis: JSON) -> None:
    chains: list[JSON] = lis.get("filter_chains") or []
    dropped: set[int] = set()
    for chain in chains:
        if not chain.get("filters"):
            dropped.add(id(chain))  # istiod skips a chain without filters, then drops it
        elif not _patch_filter_chain(context, patches, lis, chain):
            dropped.add(id(chain))
    default = lis.get("default_filter_chain")
    if isinstance(default, dict) and default.get("filters") and not _patch_filter_chain(context, patches, lis,
                                                                                            default):
        del lis["default_filter_chain"]
    for p in patches.get("FILTER_CHAIN", []):
        if (p.operation == "ADD" and p.value is not None and _context_matches(context, p)
                and _listener_matches(lis, p) and p.value.get("filters")):
            chains.append(_clone(p.value))
    kept = [c for c in chains if id(c) not in dropped]
    if kept or "filter_chains" in lis:
        lis["filter_chains"] = kept


def _patch_filter_chain(context: str, patches: _Patches, lis: JSON, chain: JSON) -> bool:
    """Patches one filter chain in place; False: removed."""
    for p in patches.get("FILTER_CHAIN", []):
        if not (_context_matches(context, p) and _listener_matches(lis, p) and _chain_matches(lis, chain, p)):
            continue
        if p.operation == "REMOVE":
            return False
        if p.operation in _MERGES and p.value is not None:
            try:
                handled = _merge_listener_transport_socket(chain, p)
            except _Unresolvable:
                continue
            if not handled:
                _merge_message(chain, p.value, _descriptor(_FILTER_CHAIN), p.operation == "MERGE_AND_REPLACE_LIST")
    _patch_network_filters(context, patches, lis, chain)
    return True


def _merge_listener_transport_socket(chain: JSON, p: _Patch) -> bool:
    """A FILTER_CHAIN MERGE whose transport socket has the chain's socket's name merges only that socket."""
    theirs, ours = (p.value or {}).get("transport_socket"), chain.get("transport_socket")
    if not isinstance(theirs, dict) or not isinstance(ours, dict) or theirs.get("name", "") != ours.get("name", ""):
        return False
    if isinstance(ours.get("typed_config"), dict) and isinstance(theirs.get("typed_config"), dict):
        ours["typed_config"] = _merge_any_with_any(ours["typed_config"], theirs["typed_config"], p)
    return True


def _chain_matches(lis: JSON, chain: JSON, p: _Patch) -> bool:
    wanted = p.match.get("listener")
    if not isinstance(wanted, dict):
        return True
    fcm = chain.get("filter_chain_match") or {}
    port = wanted.get("portNumber") or 0
    if lis.get("name") in VIRTUAL_LISTENERS and port and fcm.get("destination_port") != port:
        return False
    match = wanted.get("filterChain")
    if not isinstance(match, dict):
        return True
    if match.get("name") and match["name"] != chain.get("name", ""):
        return False
    if match.get("sni") and match["sni"] not in (fcm.get("server_names") or []):
        return False
    if match.get("transportProtocol") and fcm.get("transport_protocol") != match["transportProtocol"]:
        return False
    if match.get("applicationProtocols"):
        if "filter_chain_match" not in chain:
            return False
        if any(a not in (fcm.get("application_protocols") or []) for a in match["applicationProtocols"].split(",")):
            return False
    destination = match.get("destinationPort") or 0
    return not destination or fcm.get("destination_port") == destination


def _filter_match(p: _Patch) -> JSON | None:
    chain = (p.match.get("listener") or {}).get("filterChain")
    found = chain.get("filter") if isinstance(chain, dict) else None
    return found if isinstance(found, dict) else None


def _network_filter_matches(item: JSON, p: _Patch) -> bool:
    wanted = _filter_match(p)
    return wanted is None or wanted.get("name", "") == item.get("name", "")


def _sub_filter_match(p: _Patch) -> JSON | None:
    wanted = _filter_match(p)
    sub = wanted.get("subFilter") if wanted is not None else None
    return sub if isinstance(sub, dict) else None


def _http_filter_matches(item: JSON, p: _Patch) -> bool:
    wanted = _sub_filter_match(p)
    return wanted is None or wanted.get("name", "") == item.get("name", "")


def _patch_network_filters(context: str, patches: _Patches, lis: JSON, chain: JSON) -> None:
    for p in patches.get("NETWORK_FILTER", []):
        if not (_context_matches(context, p) and _listener_matches(lis, p) and _chain_matches(lis, chain, p)):
            continue
        if p.operation not in _MERGES:
            chain["filters"] = _ordered_ops(chain["filters"], p, _filter_match(p) is not None,
                                            partial(_network_filter_matches, p=p))
    for item in chain["filters"]:
        _patch_network_filter(context, patches, lis, chain, item)


def _patch_network_filter(context: str, patches: _Patches, lis: JSON, chain: JSON, item: JSON) -> None:
    for p in patches.get("NETWORK_FILTER", []):
        if (p.operation == "MERGE" and p.value is not None and _context_matches(context, p)
                and _listener_matches(lis, p) and _chain_matches(lis, chain, p) and _network_filter_matches(item, p)):
            _merge_filter(item, p, rename=True)
    if item.get("name") == HCM:
        _patch_http_filters(context, patches, lis, chain, item)


def _patch_http_filters(context: str, patches: _Patches, lis: JSON, chain: JSON, item: JSON) -> None:
    config = item.get("typed_config")
    if not isinstance(config, dict) or _type_name(config.get("@type")) != _HCM_TYPE:
        return  # istiod cannot read it as an HTTP connection manager: its HTTP filters stay as they are
    http_filters: list[JSON] = config.get("http_filters") or []
    for p in patches.get("HTTP_FILTER", []):
        if not (_context_matches(context, p) and _listener_matches(lis, p) and _chain_matches(lis, chain, p)
                and _network_filter_matches(item, p)):
            continue
        if p.operation not in _MERGES:
            http_filters = _ordered_ops(http_filters, p, _sub_filter_match(p) is not None,
                                        partial(_http_filter_matches, p=p))
    for http_filter in http_filters:
        for p in patches.get("HTTP_FILTER", []):
            if (p.operation == "MERGE" and p.value is not None and _context_matches(context, p)
                    and _listener_matches(lis, p) and _chain_matches(lis, chain, p)
                    and _network_filter_matches(item, p) and _http_filter_matches(http_filter, p)):
                _merge_filter(http_filter, p, rename=True)
    if http_filters or "http_filters" in config:
        config["http_filters"] = http_filters


def _merge_filter(existing: JSON, p: _Patch, rename: bool) -> None:
    """istiod's filter MERGE: only the name and a ``typed_config`` of the filter's own type take effect."""
    value = p.value or {}
    if not isinstance(existing.get("typed_config"), dict):
        return  # istiod skips a filter without typed_config
    merged = None
    if isinstance(value.get("typed_config"), dict):
        try:
            merged = _merge_any_with_any(existing["typed_config"], value["typed_config"], p)
        except _Unresolvable:
            merged = existing["typed_config"]
    if rename and value.get("name"):
        existing["name"] = value["name"]
    if merged is not None:
        existing["typed_config"] = merged


def _patch_inline_routes(context: str, patches: _Patches, lis: JSON, proxy: Proxy) -> None:
    if not any(k in patches for k in ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")):
        return
    chains = [*(lis.get("filter_chains") or []), *([lis["default_filter_chain"]]
                                                  if isinstance(lis.get("default_filter_chain"), dict) else [])]
    for chain in chains:
        for item in chain.get("filters") or []:
            config = item.get("typed_config")
            if isinstance(config, dict) and isinstance(config.get("route_config"), dict):
                _patch_route_configuration(context, patches, config["route_config"], proxy)


# --------------------------------------------------------------------------- clusters


def patch_clusters(clusters: Sequence[JSON], filters: Sequence[EnvoyFilterObject], proxy: Proxy,
                   inbound_services: Mapping[str, Sequence[str]] | None = None) -> list[JSON]:
    """``clusters`` (CDS documents of ``proxy``) with the CLUSTER patches of ``filters`` applied.

    Context, as istiod builds them: every cluster of a gateway is GATEWAY; on a sidecar ``inbound|…`` clusters
    and ``InboundPassthroughCluster`` are SIDECAR_INBOUND, every other one (``outbound|…``, ``BlackHoleCluster``,
    ``PassthroughCluster``) SIDECAR_OUTBOUND.  Bootstrap (static) clusters are never patched: leave them out.
    ``cluster.service``/``subset``/``portNumber`` read Istio cluster names (``direction|port|subset|host``);
    ``inbound_services``: the service hostnames an inbound cluster serves, by cluster name (istiod matches
    ``cluster.service`` on them for inbound clusters).  Added clusters follow the generated ones.
    """
    patches = _compile(filters, proxy).get("CLUSTER", [])
    if not patches:
        return _clone(list(clusters))
    out = []
    for original in clusters:
        name = str(original.get("name", ""))
        context = _cluster_context(name, proxy)
        try:
            patched = _patch_cluster(context, patches, _snake(_clone(original), _CLUSTER),
                                     list((inbound_services or {}).get(name, ())))
        except _Panic as exc:
            log.error("cluster %s: patches did not take effect, as in istiod: %s", name, exc)
            patched = _clone(original)
        if patched is not None:
            out.append(patched)
    for context in (("GATEWAY",) if proxy.kind == "gateway" else ("SIDECAR_OUTBOUND", "SIDECAR_INBOUND")):
        for p in patches:
            if p.operation != "ADD" or p.value is None or (p.context == "ANY" and context == "SIDECAR_INBOUND"):
                continue
            if _context_matches(context, p):
                out.append(_clone(p.value))
    return out


def _cluster_context(name: str, proxy: Proxy) -> str:
    if proxy.kind == "gateway":
        return "GATEWAY"
    inbound = name.startswith(("inbound|", "inbound_.", "InboundPassthroughCluster"))
    return "SIDECAR_INBOUND" if inbound else "SIDECAR_OUTBOUND"


def _patch_cluster(context: str, patches: list[_Patch], cluster: JSON, hosts: list[str]) -> JSON | None:
    for p in patches:
        matched = _context_matches(context, p) and _cluster_matches(cluster, p, hosts)
        if p.operation == "REMOVE" and matched:
            return None
        if p.operation not in _MERGES or not matched or p.value is None:
            continue
        try:
            handled = _merge_cluster_transport_socket(cluster, p)
        except _Unresolvable:
            continue
        if not handled:
            _merge_message(cluster, p.value, _descriptor(_CLUSTER), p.operation == "MERGE_AND_REPLACE_LIST")
    return cluster


def _merge_cluster_transport_socket(cluster: JSON, p: _Patch) -> bool:
    """A CLUSTER MERGE with a transport socket changes only the cluster's transport socket (istiod)."""
    theirs = (p.value or {}).get("transport_socket")
    if not isinstance(theirs, dict):
        return False
    target = None
    matches = cluster.get("transport_socket_matches") or []
    if matches:
        for entry in matches:
            socket = entry.get("transport_socket")
            if isinstance(socket, dict) and socket.get("name", "") == theirs.get("name", ""):
                target = socket
                break
        if target is None:
            return True  # no socket of that name among the matches: istiod drops the patch
    elif (isinstance(cluster.get("transport_socket"), dict)
          and cluster["transport_socket"].get("name", "") == theirs.get("name", "")):
        target = cluster["transport_socket"]
    if target is None:
        cluster["transport_socket"] = _clone(theirs)
    elif isinstance(target.get("typed_config"), dict) and isinstance(theirs.get("typed_config"), dict):
        target["typed_config"] = _merge_any_with_any(target["typed_config"], theirs["typed_config"], p)
    return True


def parse_cluster_name(name: str) -> tuple[str, int, str, str]:
    """``(direction, port, subset, host)`` of an Istio cluster name (``outbound|80|v1|reviews.default.svc…``,
    or its DNS SRV form ``outbound_.80_.v1_.reviews…``); empty parts (and port 0) where it is not one."""
    sep = "_." if name.startswith(("outbound_", "inbound_")) else "|"
    direction, found, rest = name.partition(sep)
    if not found:
        return "", 0, "", ""
    port_text, found, rest = rest.partition(sep)
    if not found:
        return direction, 0, "", ""
    port = int(port_text) if port_text.isdigit() else 0
    subset, found, rest = rest.partition(sep)
    if not found:
        return direction, port, "", ""
    return (direction, port, subset, "") if sep in rest else (direction, port, subset, rest)


def _cluster_matches(cluster: JSON, p: _Patch, hosts: list[str]) -> bool:
    wanted = p.match.get("cluster")
    if not isinstance(wanted, dict):
        return True
    if wanted.get("name"):
        return bool(wanted["name"] == cluster.get("name"))
    direction, port, subset, host = parse_cluster_name(str(cluster.get("name", "")))
    candidates = hosts if direction == "inbound" and hosts else [host]
    if wanted.get("subset") and wanted["subset"] != subset:
        return False
    if wanted.get("service") and wanted["service"] not in candidates:
        return False
    return not wanted.get("portNumber") or wanted["portNumber"] == port


# --------------------------------------------------------------------------- route configurations


def patch_route_configurations(route_configurations: Sequence[JSON], filters: Sequence[EnvoyFilterObject],
                               proxy: Proxy) -> list[JSON]:
    """``route_configurations`` (RDS documents of ``proxy``) with the route-class patches of ``filters`` applied.

    RDS route configurations are SIDECAR_OUTBOUND on a sidecar and GATEWAY on a gateway (istiod's sidecar
    inbound ones are inlined in their listener: ``patch_listeners`` patches those).  Sidecar matches read the
    port from the name as istiod does (``80``, ``inbound|80||``); gateway ones from ``http.80`` or
    ``https.443.name.gateway.namespace``.
    """
    patches = _compile(filters, proxy)
    context = "GATEWAY" if proxy.kind == "gateway" else "SIDECAR_OUTBOUND"
    out = []
    for original in route_configurations:
        work = _snake(_clone(original), _ROUTE_CONFIGURATION)
        out.append(_patch_route_configuration(context, patches, work, proxy))
    return out


def _patch_route_configuration(context: str, patches: _Patches, rc: JSON, proxy: Proxy) -> JSON:
    for p in patches.get("ROUTE_CONFIGURATION", []):
        if (p.operation in _MERGES and p.value is not None and _context_matches(context, p)
                and _route_configuration_matches(context, rc, p, proxy)):
            _merge_message(rc, p.value, _descriptor(_ROUTE_CONFIGURATION), p.operation == "MERGE_AND_REPLACE_LIST")
    hosts: list[JSON] = rc.get("virtual_hosts") or []
    removed: set[str] = set()
    for index in range(len(hosts)):
        if _patch_virtual_host(context, patches, rc, hosts, index, proxy):
            removed.add(hosts[index].get("name", ""))
    for p in patches.get("VIRTUAL_HOST", []):
        if (p.operation == "ADD" and p.value is not None and _context_matches(context, p)
                and _route_configuration_matches(context, rc, p, proxy)):
            hosts.append(_clone(p.value))
    if removed:  # istiod removes by name, after the adds: an added host of a removed name goes too
        hosts = [h for h in hosts if h.get("name", "") not in removed]
    if hosts or "virtual_hosts" in rc:
        rc["virtual_hosts"] = hosts
    return rc


def _patch_virtual_host(context: str, patches: _Patches, rc: JSON, hosts: list[JSON], index: int,
                        proxy: Proxy) -> bool:
    """Patches ``hosts[index]`` in place (REPLACE swaps it); True: removed."""
    for p in patches.get("VIRTUAL_HOST", []):
        if not (_context_matches(context, p) and _route_configuration_matches(context, rc, p, proxy)
                and _virtual_host_matches(hosts[index], p)):
            continue
        if p.operation == "REMOVE":
            return True
        if p.operation in _MERGES and p.value is not None:
            _merge_message(hosts[index], p.value, _descriptor(_VIRTUAL_HOST), p.operation == "MERGE_AND_REPLACE_LIST")
        elif p.operation == "REPLACE" and p.value is not None:
            hosts[index] = _clone(p.value)
    _patch_http_routes(context, patches, rc, hosts[index], proxy)
    return False


def _patch_http_routes(context: str, patches: _Patches, rc: JSON, host: JSON, proxy: Proxy) -> None:
    routes: list[JSON | None] = list(host.get("routes") or [])
    for index in range(len(routes)):
        for p in patches.get("HTTP_ROUTE", []):
            route = routes[index]
            if route is None or not (_context_matches(context, p)
                                     and _route_configuration_matches(context, rc, p, proxy)
                                     and _virtual_host_matches(host, p) and _route_matches(route, p)):
                continue
            if p.operation == "REMOVE":
                routes[index] = None
            elif p.operation in _MERGES and p.value is not None:
                _merge_message(route, p.value, _descriptor(_ROUTE), p.operation == "MERGE_AND_REPLACE_LIST")
    for p in patches.get("HTTP_ROUTE", []):
        if (p.value is None or p.operation not in ("ADD", *_INSERTS) or not _context_matches(context, p)
                or not _route_configuration_matches(context, rc, p, proxy) or not _virtual_host_matches(host, p)):
            continue
        has_match = _route_match(p) is not None
        if p.operation == "INSERT_FIRST":  # with a route match, only when some route matches; always first
            if not has_match or any(r is not None and _route_matches(r, p) for r in routes):
                routes.insert(0, _clone(p.value))
            continue
        routes = _ordered_ops(routes, p, has_match, partial(_live_route_matches, p=p))
    kept = [r for r in routes if r is not None]
    if kept or "routes" in host:
        host["routes"] = kept


def _route_configuration_matches(context: str, rc: JSON, p: _Patch, proxy: Proxy) -> bool:
    wanted = p.match.get("routeConfiguration")
    if not isinstance(wanted, dict):
        return True
    name = str(rc.get("name", ""))
    if wanted.get("name") and wanted["name"] != name:
        return False
    port = wanted.get("portNumber") or 0
    if context != "GATEWAY":
        if name.startswith("inbound"):
            listener_port = parse_cluster_name(name)[1]
        else:
            listener_port = int(name) if name.isdigit() else 0
        return not port or port == listener_port
    route_port, port_name, gateway = parse_gateway_route_name(name)
    if wanted.get("portName") and wanted["portName"] != port_name:
        return False
    if wanted.get("gateway") and wanted["gateway"] != gateway:
        return False
    if port:
        served = proxy.gateway_ports.get(route_port)
        return port in served if served is not None else port == route_port
    return True


def parse_gateway_route_name(name: str) -> tuple[int, str, str]:
    """``(port, port name, "namespace/gateway")`` of a gateway RDS name (``http.80``,
    ``https.443.https-port.gateway.namespace``); 0 and empty strings where it has none."""
    if name.startswith("http."):
        rest = name[len("http."):]
        return (int(rest) if rest.isdigit() else 0), "", ""
    if name.startswith("https.") and name.count(".") == 4:
        port_text, port_name, gateway, namespace = name[len("https."):].split(".")
        return (int(port_text) if port_text.isdigit() else 0), port_name, f"{namespace}/{gateway}"
    return 0, "", ""


def _vhost_match(p: _Patch) -> JSON | None:
    found = (p.match.get("routeConfiguration") or {}).get("vhost")
    return found if isinstance(found, dict) else None


def _route_match(p: _Patch) -> JSON | None:
    vhost = _vhost_match(p)
    found = vhost.get("route") if vhost is not None else None
    return found if isinstance(found, dict) else None


def _virtual_host_matches(host: JSON, p: _Patch) -> bool:
    wanted = _vhost_match(p)
    if wanted is None:
        return True
    return ((not wanted.get("name") or wanted["name"] == host.get("name"))
            and (not wanted.get("domainName") or wanted["domainName"] in (host.get("domains") or [])))


def _live_route_matches(route: JSON | None, p: _Patch) -> bool:
    return route is not None and _route_matches(route, p)


def _route_matches(route: JSON, p: _Patch) -> bool:
    wanted = _route_match(p)
    if wanted is None:
        return True
    if wanted.get("name") and wanted["name"] != route.get("name", ""):
        return False
    action = wanted.get("action", "ANY")
    for key, kind in (("route", "ROUTE"), ("redirect", "REDIRECT"), ("direct_response", "DIRECT_RESPONSE")):
        if action != "ANY" and key in route:
            return bool(action == kind)
    return True  # another action (filter_action, non_forwarding_action) or ANY: istiod matches it


# --------------------------------------------------------------------------- protobuf merge on JSON


def _clone(value: Any) -> Any:
    """A deep copy of a JSON document that shares nothing, even where the original shares a sub-document
    (``inbound_listener``'s filter chains share one HTTP connection manager: each is patched on its own)."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clone(v) for v in value]
    return value



@cache
def _descriptor(full_name: str) -> Descriptor:
    """Envoy's descriptor of ``full_name``, importing the ``xds-protos`` modules of its package on first use."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        pass
    parts = full_name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        package = ".".join(parts[:end])
        try:
            module = importlib.import_module(package)
        except ImportError:
            continue
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if info.name.endswith("_pb2"):
                importlib.import_module(f"{package}.{info.name}")
        break
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        raise _Unresolvable(f"unknown type {full_name}") from None


def _type_name(type_url: Any) -> str:
    return type_url.rsplit("/", 1)[-1] if isinstance(type_url, str) else ""


def _load_types(value: Any) -> None:
    if isinstance(value, dict):
        if isinstance(value.get("@type"), str):
            with contextlib.suppress(_Unresolvable):  # the parser names it
                _descriptor(_type_name(value["@type"]))
        for item in value.values():
            _load_types(item)
    elif isinstance(value, list):
        for item in value:
            _load_types(item)


def _canonical(apply_to: str, value: Any) -> JSON:
    """The patch value as istiod reads it: its ``applyTo`` message, unknown fields ignored, snake_case, set
    fields only.  ValueError: it does not parse (what validation reports)."""
    if not isinstance(value, dict):
        raise ValueError(f"value must be an object, not {type(value).__name__}")
    _load_types(value)
    message = message_factory.GetMessageClass(_descriptor(_MESSAGE_OF[apply_to]))()
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        text = " ".join(str(exc).split())
        if "Can not find message descriptor by type_url" in text or "Invalid type url" in text:
            text = f"referenced type unknown: {text}"
        raise ValueError(text) from None
    return json_format.MessageToDict(message, preserving_proto_field_name=True, unquote_int64_if_possible=True)


_DURATIONS = ("google.protobuf.Duration", "google.protobuf.Timestamp")
_WRAPPERS = frozenset(f"google.protobuf.{n}Value" for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32",
                                                              "Bool", "String", "Bytes"))
_SPECIAL_JSON = frozenset({*_DURATIONS, *_WRAPPERS, "google.protobuf.Struct", "google.protobuf.Value",
                           "google.protobuf.ListValue", "google.protobuf.FieldMask", "google.protobuf.Empty",
                           "google.protobuf.Any"})


def _is_map(fd: FieldDescriptor) -> bool:
    return bool(fd.message_type is not None and fd.message_type.GetOptions().map_entry)


def _real_oneof_siblings(fd: FieldDescriptor) -> list[FieldDescriptor]:
    oneof = fd.containing_oneof
    if oneof is None or (len(oneof.fields) == 1 and oneof.name == f"_{fd.name}"):  # proto3 optional
        return []
    return [f for f in oneof.fields if f is not fd]


def _snake(document: JSON, full_name: str) -> JSON:
    """``document`` with the lowerCamelCase field names Envoy's JSON allows renamed to their proto names."""
    with contextlib.suppress(_Unresolvable):
        _snake_message(document, _descriptor(full_name))
    return document


def _snake_message(document: JSON, desc: Descriptor) -> None:
    if desc.full_name in _SPECIAL_JSON:
        if desc.full_name == "google.protobuf.Any":
            _snake_any(document)
        return
    by_json = {f.json_name: f for f in desc.fields}
    for key in list(document):
        fd = desc.fields_by_name.get(key) or by_json.get(key)
        if fd is None:
            continue
        if fd.name != key and fd.name not in document:
            document[fd.name] = document.pop(key)
        value = document.get(fd.name)
        if fd.message_type is None:
            continue
        if _is_map(fd):
            inner = fd.message_type.fields_by_name["value"].message_type
            if inner is not None and isinstance(value, dict):
                for item in value.values():
                    _snake_value(item, inner)
        elif fd.is_repeated and isinstance(value, list):
            for item in value:
                _snake_value(item, fd.message_type)
        else:
            _snake_value(value, fd.message_type)


def _snake_value(value: Any, desc: Descriptor) -> None:
    if isinstance(value, dict):
        _snake_message(value, desc)


def _snake_any(document: JSON) -> None:
    try:
        inner = _descriptor(_type_name(document.get("@type")))
    except _Unresolvable:
        return
    if inner.full_name not in _SPECIAL_JSON:
        _snake_message(document, inner)


def _merge_message(dst: JSON, src: JSON, desc: Descriptor, replace_lists: bool) -> None:
    """Merge canonical ``src`` into ``dst`` (in place) as Istio's ``merge.Merge`` merges protobuf messages."""
    for key, value in src.items():
        fd = desc.fields_by_name.get(key)
        if fd is None:
            continue
        for sibling in _real_oneof_siblings(fd):  # setting a oneof member clears the others
            dst.pop(sibling.name, None)
            dst.pop(sibling.json_name, None)
        if fd.json_name in dst and fd.name not in dst:
            dst[fd.name] = dst.pop(fd.json_name)
        current = dst.get(fd.name)
        if _is_map(fd):
            entries = current if isinstance(current, dict) else {}
            entries.update(_clone(value))  # a map entry is replaced, not merged
            dst[fd.name] = entries
        elif fd.is_repeated:
            items = current if isinstance(current, list) and not replace_lists else []
            dst[fd.name] = items + _clone(value)
        elif fd.message_type is not None:
            dst[fd.name] = _merge_value(current, value, fd.message_type, replace_lists)
        else:
            dst[fd.name] = _clone(value)


def _merge_value(current: Any, value: Any, desc: Descriptor, replace_lists: bool) -> Any:
    """One message-typed field: ``current`` (``dst``'s, or None) merged with the set ``value``."""
    name = desc.full_name
    if name in _DURATIONS:
        return value  # Istio replaces a Duration (and a Timestamp merges to the same)
    if name in _WRAPPERS:
        # a wrapper holding its default has no field set: merging it keeps what is there
        return current if current is not None and value in (0, "", "0", False) else value
    if name == "google.protobuf.Struct":
        return {**current, **_clone(value)} if isinstance(current, dict) else _clone(value)
    if name == "google.protobuf.ListValue":
        return (current if isinstance(current, list) and not replace_lists else []) + _clone(value)
    if name == "google.protobuf.Value":
        if isinstance(value, dict):
            return {**current, **_clone(value)} if isinstance(current, dict) else _clone(value)
        if isinstance(value, list):
            return (current if isinstance(current, list) and not replace_lists else []) + _clone(value)
        return value
    if name == "google.protobuf.FieldMask":
        return f"{current},{value}" if isinstance(current, str) and current and value else value
    if name == "google.protobuf.Empty":
        return current if isinstance(current, dict) else {}
    if name == "google.protobuf.Any":
        if any(k != "@type" for k in value):  # type_url and value bytes both replaced
            return _clone(value)
        kept = {k: v for k, v in current.items() if k != "@type"} if isinstance(current, dict) else {}
        return {"@type": value.get("@type"), **kept}  # empty bytes are not set: only the type_url changes
    target = current if isinstance(current, dict) else {}
    _merge_message(target, value, desc, replace_lists)
    return target


def _merge_any_with_any(current: JSON, value: JSON, p: _Patch) -> JSON:
    """Istio's ``MergeAnyWithAny``: two typed configs of one type merged; another type makes istiod panic."""
    ours, theirs = _descriptor(_type_name(current.get("@type"))), _descriptor(_type_name(value.get("@type")))
    if ours.full_name != theirs.full_name:
        raise _Panic(f"{p.source}: MERGE of a {theirs.full_name} typed_config into a {ours.full_name} one")
    merged = _clone(current)
    inner = {k: v for k, v in value.items() if k != "@type"}
    if ours.full_name in _SPECIAL_JSON:
        if "value" in inner:
            merged["value"] = _merge_value(merged.get("value"), inner["value"], ours, False)
        return merged
    _merge_message(merged, inner, ours, False)
    return merged


# --------------------------------------------------------------------------- validation

_U32 = "uint32"
_I32 = "int32"
_STRING_MAP = "map<string,string>"
_OBJECT = "object"
_Schema = Any

_SUB_FILTER = {"name": str}
_FILTER = {"name": str, "subFilter": _SUB_FILTER}
_LISTENER_MATCH = {"portNumber": _U32, "portName": str, "listenerFilter": str, "name": str,
                   "filterChain": {"name": str, "sni": str, "transportProtocol": str, "applicationProtocols": str,
                                   "filter": _FILTER, "destinationPort": _U32}}
_ROUTE_MATCH = {"portNumber": _U32, "portName": str, "gateway": str, "name": str,
                "vhost": {"name": str, "domainName": str, "route": {"name": str, "action": ROUTE_ACTIONS}}}
_CLUSTER_MATCH = {"portNumber": _U32, "service": str, "subset": str, "name": str}
_WAYPOINT_MATCH = {"portNumber": _U32, "route": {"name": str}, "filter": _FILTER}
_MATCH = {"context": CONTEXTS, "proxy": {"proxyVersion": str, "metadata": _STRING_MAP},
          "listener": _LISTENER_MATCH, "routeConfiguration": _ROUTE_MATCH, "cluster": _CLUSTER_MATCH,
          "waypoint": _WAYPOINT_MATCH}
_CONFIG_PATCH = {"applyTo": APPLY_TO, "match": _MATCH,
                 "patch": {"operation": OPERATIONS, "value": _OBJECT, "filterClass": FILTER_CLASSES}}
_TARGET_REF = {"group": str, "kind": str, "name": str, "namespace": str}
_SPEC = {"workloadSelector": {"labels": _STRING_MAP}, "targetRefs": [_TARGET_REF], "configPatches": [_CONFIG_PATCH],
         "priority": _I32}


def validate(spec: Any) -> None:
    """Raise ``EnvoyFilterInvalid`` for what the EnvoyFilter CRD's schema (with kubectl's strict field
    validation) or istiod's validation webhook (pkg/config/validation/envoyfilter) rejects; warnings pass."""
    problems: list[str] = []
    _check(spec, _SPEC, "spec", problems)
    if isinstance(spec, dict):
        _check_spec(spec, problems)
    if problems:
        raise EnvoyFilterInvalid(problems)


def _check(value: Any, schema: _Schema, path: str, problems: list[str]) -> bool:
    """The CRD's structural schema; False (and a problem) when ``value`` is not of it."""
    if schema is str:
        ok = isinstance(value, str)
        if not ok:
            problems.append(f"{path}: {value!r} is not a string")
        return ok
    if schema in (_U32, _I32):
        low, high = (0, 2**32 - 1) if schema == _U32 else (-(2**31), 2**31 - 1)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{path}: {value!r} is not an integer from {low} to {high}")
            return False
        return True
    if isinstance(schema, tuple):
        if value not in schema:
            problems.append(f"{path}: {value!r} is not one of {', '.join(schema)}")
            return False
        return True
    if schema == _OBJECT:
        if not isinstance(value, dict):
            problems.append(f"{path}: {value!r} is not an object")
            return False
        return True
    if schema == _STRING_MAP:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            problems.append(f"{path}: must map strings to strings")
            return False
        return True
    if isinstance(schema, list):
        if not isinstance(value, list):
            problems.append(f"{path}: {value!r} is not a list")
            return False
        return all([_check(item, schema[0], f"{path}[{i}]", problems) for i, item in enumerate(value)
                    if item is not None])  # a null list item: istiod's "null config patch" names it
    if not isinstance(value, dict):
        problems.append(f"{path}: {value!r} is not an object")
        return False
    ok = True
    for key, item in value.items():
        if key not in schema:
            problems.append(f"{path}.{key}: unknown field (known: {', '.join(schema)})")
            ok = False
        elif item is not None:
            ok = _check(item, schema[key], f"{path}.{key}", problems) and ok
    return ok


def _check_spec(spec: JSON, problems: list[str]) -> None:
    labels = (spec.get("workloadSelector") or {}).get("labels") if isinstance(spec.get("workloadSelector"),
                                                                             dict) else None
    if isinstance(labels, dict):
        for key, value in labels.items():
            path = f"spec.workloadSelector.labels[{key!r}]"
            if key == "":
                problems.append(f"{path}: empty key is not supported in selector")
            if "*" in str(key) or "*" in str(value):
                problems.append(f"{path}: wildcard is not supported in selector")
            if isinstance(value, str) and len(value) > 63:
                problems.append(f"{path}: longer than 63 characters")
        if len(labels) > 256:
            problems.append("spec.workloadSelector.labels: more than 256 labels")
    refs = spec.get("targetRefs")
    if isinstance(refs, list):
        if spec.get("workloadSelector") is not None and refs:
            problems.append("spec: only one of targetRefs or workloadSelector can be set")
        if len(refs) > 16:
            problems.append("spec.targetRefs: more than 16 items")
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict):
                continue
            for key in ("kind", "name"):
                if not ref.get(key):
                    problems.append(f"spec.targetRefs[{i}].{key}: required")
            if ref.get("namespace"):
                problems.append(f"spec.targetRefs[{i}].namespace: cross namespace referencing is not currently "
                                "supported")
    patches = spec.get("configPatches")
    for i, patch in enumerate(patches if isinstance(patches, list) else []):
        path = f"spec.configPatches[{i}]"
        if patch is None:
            problems.append(f"{path}: null config patch")
        elif isinstance(patch, dict):
            _check_config_patch(patch, path, problems)


def _check_config_patch(cp: JSON, path: str, problems: list[str]) -> None:
    match = cp.get("match") if isinstance(cp.get("match"), dict) else None
    objects = [k for k in ("listener", "routeConfiguration", "cluster", "waypoint") if (match or {}).get(k) is not None]
    if len(objects) > 1:
        problems.append(f"{path}.match: only one of {', '.join(objects)} can be set")
    context = (match or {}).get("context", "ANY")
    if (context == "WAYPOINT") != ("waypoint" in objects):
        problems.append(f"{path}.match: only support waypointMatch when context is WAYPOINT")
    if context == "WAYPOINT":
        return  # istiod does not validate waypoint patches further
    apply_to = cp.get("applyTo", "INVALID")
    if apply_to == "INVALID":
        problems.append(f"{path}.applyTo: missing")
        return
    patch = cp.get("patch")
    if not isinstance(patch, dict):
        problems.append(f"{path}.patch: missing")
        return
    operation = patch.get("operation", "INVALID")
    if operation == "INVALID":
        problems.append(f"{path}.patch.operation: missing")
        return
    if operation != "REMOVE" and patch.get("value") is None:
        problems.append(f"{path}.patch.value: missing, and {operation} needs one")
        return
    version = ((match or {}).get("proxy") or {}).get("proxyVersion") or ""
    if isinstance(version, str) and version and len(version) <= MAX_PROXY_VERSION_LEN:
        try:
            re2.compile(version)
        except re2.error as exc:
            problems.append(f"{path}.match.proxy.proxyVersion: invalid regex: {exc}")
            return
    if match is not None and objects:
        expected = {"LISTENER": "listener", "FILTER_CHAIN": "listener", "NETWORK_FILTER": "listener",
                    "HTTP_FILTER": "listener", "ROUTE_CONFIGURATION": "routeConfiguration",
                    "VIRTUAL_HOST": "routeConfiguration", "HTTP_ROUTE": "routeConfiguration",
                    "CLUSTER": "cluster"}.get(str(apply_to))
        if expected is not None and objects[0] != expected:
            problems.append(f"{path}.match.{objects[0]}: applyTo {apply_to} needs a match on {expected}")
            if expected == "listener":
                return
        if expected == "listener" and not _check_filter_match(match, str(apply_to), path, problems):
            return
    if apply_to in _MESSAGE_OF and isinstance(patch.get("value"), dict):
        try:
            _canonical(str(apply_to), patch["value"])
        except ValueError as exc:
            problems.append(f"{path}.patch.value: not a valid {_MESSAGE_OF[str(apply_to)]}: {exc}")


def _check_filter_match(match: JSON, apply_to: str, path: str, problems: list[str]) -> bool:
    chain = (match.get("listener") or {}).get("filterChain")
    wanted = chain.get("filter") if isinstance(chain, dict) else None
    if not isinstance(wanted, dict):
        return True
    where = f"{path}.match.listener.filterChain.filter"
    if not wanted.get("name"):
        problems.append(f"{where}.name: filter match has no name to match on")
        return False
    sub = wanted.get("subFilter")
    if isinstance(sub, dict):
        if apply_to != "HTTP_FILTER":
            problems.append(f"{where}.subFilter: subfilter match can be used with applyTo HTTP_FILTER only")
            return False
        if wanted["name"] not in (HCM, "envoy.http_connection_manager"):
            problems.append(f"{where}.name: subfilter match requires filter match with {HCM}")
            return False
        if not sub.get("name"):
            problems.append(f"{where}.subFilter.name: subfilter match has no name to match on")
            return False
    return True
