"""Listener, listener-filter, filter-chain, network-filter and HTTP-filter patches, in the order of istiod's
pilot/pkg/networking/core/envoyfilter/listener_patch.go.
Part of ``envoyfilters``, whose docstring says what istiod does and where.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from chaosmesh_qa.targets.local.envoy.envoyfilters.model import (
    FILTER_CHAIN_MESSAGE,
    HCM,
    HCM_MESSAGE,
    JSON,
    LISTENER_MESSAGE,
    MERGES,
    VIRTUAL_LISTENERS,
    EnvoyFilterObject,
    IstiodPanic,
    Patch,
    Patches,
    Proxy,
    Unresolvable,
    log,
)
from chaosmesh_qa.targets.local.envoy.envoyfilters.protomerge import (
    clone,
    descriptor,
    merge_any_with_any,
    merge_message,
    snake,
    type_name,
)
from chaosmesh_qa.targets.local.envoy.envoyfilters.route_patch import patch_route_configuration
from chaosmesh_qa.targets.local.envoy.envoyfilters.selection import (
    compile_patches,
    context_matches,
    ordered_ops,
)


def patch_listeners(listeners: Sequence[JSON], filters: Sequence[EnvoyFilterObject], proxy: Proxy) -> list[JSON]:
    """``listeners`` (LDS documents of ``proxy``) with the listener-class patches of ``filters`` applied.

    ``filters``: as ``filters_for`` returns them.  A sidecar listener's context is its
    ``traffic_direction`` (``INBOUND``: SIDECAR_INBOUND, ``OUTBOUND``: SIDECAR_OUTBOUND); every listener of
    a gateway is GATEWAY.  A route configuration inlined in an HTTP connection manager is patched first, in
    its listener's context (istiod builds the sidecar's inbound ones so, then patches the listeners).
    Added listeners follow the generated ones (those of SIDECAR_OUTBOUND or GATEWAY, then SIDECAR_INBOUND).
    """
    patches = compile_patches(filters, proxy)
    if not any(k in patches for k in ("LISTENER", "LISTENER_FILTER", "FILTER_CHAIN", "NETWORK_FILTER",
                                      "HTTP_FILTER", "ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")):
        return clone(list(listeners))
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
        work = [snake(clone(lis), LISTENER_MESSAGE) for lis in originals]
        for lis in work:  # istiod patches these while it builds the listener, before the listener pass
            _patch_inline_routes(context, patches, lis, proxy)
        built = clone(work)
        patched: list[JSON | None]
        try:
            patched, extra = _patch_listener_group(context, patches, work, skip_adds=bool(virtual))
        except IstiodPanic as exc:
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


def _patch_listener_group(context: str, patches: Patches, listeners: list[JSON],
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
            if context_matches(context, p) and p.value is not None and p.value.get("name"):
                added.append(clone(p.value))
    return out, added


def _patch_listener(context: str, patches: Patches, lis: JSON) -> bool:
    """Patches one listener in place; False: removed."""
    for p in patches.get("LISTENER", []):
        if not (context_matches(context, p) and _listener_matches(lis, p)):
            continue
        if p.operation == "REMOVE":
            return False
        if p.operation in MERGES and p.value is not None:
            merge_message(lis, p.value, descriptor(LISTENER_MESSAGE), p.operation == "MERGE_AND_REPLACE_LIST")
    _patch_listener_filters(context, patches.get("LISTENER_FILTER", []), lis)
    _patch_filter_chains(context, patches, lis)
    return True


def _listener_matches(lis: JSON, p: Patch) -> bool:
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


def _patch_listener_filters(context: str, patches: list[Patch], lis: JSON) -> None:
    for p in patches:
        if not (context_matches(context, p) and _listener_matches(lis, p)):
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
        items = ordered_ops(items, p, bool(wanted), partial(_named, wanted))
        if items or "listener_filters" in lis:
            lis["listener_filters"] = items


def _named(name: str, item: JSON) -> bool:
    return bool(item.get("name", "") == name)


def _patch_filter_chains(context: str, patches: Patches, lis: JSON) -> None:
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
        if (p.operation == "ADD" and p.value is not None and context_matches(context, p)
                and _listener_matches(lis, p) and p.value.get("filters")):
            chains.append(clone(p.value))
    kept = [c for c in chains if id(c) not in dropped]
    if kept or "filter_chains" in lis:
        lis["filter_chains"] = kept


def _patch_filter_chain(context: str, patches: Patches, lis: JSON, chain: JSON) -> bool:
    """Patches one filter chain in place; False: removed."""
    for p in patches.get("FILTER_CHAIN", []):
        if not (context_matches(context, p) and _listener_matches(lis, p) and _chain_matches(lis, chain, p)):
            continue
        if p.operation == "REMOVE":
            return False
        if p.operation in MERGES and p.value is not None:
            try:
                handled = _merge_listener_transport_socket(chain, p)
            except Unresolvable:
                continue
            if not handled:
                merge_message(chain, p.value, descriptor(FILTER_CHAIN_MESSAGE), p.operation == "MERGE_AND_REPLACE_LIST")
    _patch_network_filters(context, patches, lis, chain)
    return True


def _merge_listener_transport_socket(chain: JSON, p: Patch) -> bool:
    """A FILTER_CHAIN MERGE whose transport socket has the chain's socket's name merges only that socket."""
    theirs, ours = (p.value or {}).get("transport_socket"), chain.get("transport_socket")
    if not isinstance(theirs, dict) or not isinstance(ours, dict) or theirs.get("name", "") != ours.get("name", ""):
        return False
    if isinstance(ours.get("typed_config"), dict) and isinstance(theirs.get("typed_config"), dict):
        ours["typed_config"] = merge_any_with_any(ours["typed_config"], theirs["typed_config"], p)
    return True


def _chain_matches(lis: JSON, chain: JSON, p: Patch) -> bool:
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


def _filter_match(p: Patch) -> JSON | None:
    chain = (p.match.get("listener") or {}).get("filterChain")
    found = chain.get("filter") if isinstance(chain, dict) else None
    return found if isinstance(found, dict) else None


def _network_filter_matches(item: JSON, p: Patch) -> bool:
    wanted = _filter_match(p)
    return wanted is None or wanted.get("name", "") == item.get("name", "")


def _sub_filter_match(p: Patch) -> JSON | None:
    wanted = _filter_match(p)
    sub = wanted.get("subFilter") if wanted is not None else None
    return sub if isinstance(sub, dict) else None


def _http_filter_matches(item: JSON, p: Patch) -> bool:
    wanted = _sub_filter_match(p)
    return wanted is None or wanted.get("name", "") == item.get("name", "")


def _patch_network_filters(context: str, patches: Patches, lis: JSON, chain: JSON) -> None:
    for p in patches.get("NETWORK_FILTER", []):
        if not (context_matches(context, p) and _listener_matches(lis, p) and _chain_matches(lis, chain, p)):
            continue
        if p.operation not in MERGES:
            chain["filters"] = ordered_ops(chain["filters"], p, _filter_match(p) is not None,
                                            partial(_network_filter_matches, p=p))
    for item in chain["filters"]:
        _patch_network_filter(context, patches, lis, chain, item)


def _patch_network_filter(context: str, patches: Patches, lis: JSON, chain: JSON, item: JSON) -> None:
    for p in patches.get("NETWORK_FILTER", []):
        if (p.operation == "MERGE" and p.value is not None and context_matches(context, p)
                and _listener_matches(lis, p) and _chain_matches(lis, chain, p) and _network_filter_matches(item, p)):
            _merge_filter(item, p, rename=True)
    if item.get("name") == HCM:
        _patch_http_filters(context, patches, lis, chain, item)


def _patch_http_filters(context: str, patches: Patches, lis: JSON, chain: JSON, item: JSON) -> None:
    config = item.get("typed_config")
    if not isinstance(config, dict) or type_name(config.get("@type")) != HCM_MESSAGE:
        return  # istiod cannot read it as an HTTP connection manager: its HTTP filters stay as they are
    http_filters: list[JSON] = config.get("http_filters") or []
    for p in patches.get("HTTP_FILTER", []):
        if not (context_matches(context, p) and _listener_matches(lis, p) and _chain_matches(lis, chain, p)
                and _network_filter_matches(item, p)):
            continue
        if p.operation not in MERGES:
            http_filters = ordered_ops(http_filters, p, _sub_filter_match(p) is not None,
                                        partial(_http_filter_matches, p=p))
    for http_filter in http_filters:
        for p in patches.get("HTTP_FILTER", []):
            if (p.operation == "MERGE" and p.value is not None and context_matches(context, p)
                    and _listener_matches(lis, p) and _chain_matches(lis, chain, p)
                    and _network_filter_matches(item, p) and _http_filter_matches(http_filter, p)):
                _merge_filter(http_filter, p, rename=True)
    if http_filters or "http_filters" in config:
        config["http_filters"] = http_filters


def _merge_filter(existing: JSON, p: Patch, rename: bool) -> None:
    """istiod's filter MERGE: only the name and a ``typed_config`` of the filter's own type take effect."""
    value = p.value or {}
    if not isinstance(existing.get("typed_config"), dict):
        return  # istiod skips a filter without typed_config
    merged = None
    if isinstance(value.get("typed_config"), dict):
        try:
            merged = merge_any_with_any(existing["typed_config"], value["typed_config"], p)
        except Unresolvable:
            merged = existing["typed_config"]
    if rename and value.get("name"):
        existing["name"] = value["name"]
    if merged is not None:
        existing["typed_config"] = merged


def _patch_inline_routes(context: str, patches: Patches, lis: JSON, proxy: Proxy) -> None:
    if not any(k in patches for k in ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")):
        return
    chains = [*(lis.get("filter_chains") or []), *([lis["default_filter_chain"]]
                                                  if isinstance(lis.get("default_filter_chain"), dict) else [])]
    for chain in chains:
        for item in chain.get("filters") or []:
            config = item.get("typed_config")
            if isinstance(config, dict) and isinstance(config.get("route_config"), dict):
                patch_route_configuration(context, patches, config["route_config"], proxy)
