"""Patches of listeners (``envoyfilters.listener_patch``): every operation on HTTP filters, network filters,
filter chains, listeners and listener filters, the matches that must not apply, and the contexts, as istiod.
"""

from __future__ import annotations

import copy
import logging

import pytest

from chaosmesh_qa.targets.local.envoy import envoyfilters as ef
from chaosmesh_qa.targets.local.envoy.envoyfilters import Proxy
from chaosmesh_qa.targets.local.envoy.listeners import outbound_listener
from tests.support.envoyfilters import (
    FAULT,
    FAULT_TYPE,
    GATEWAY,
    HCM,
    HCM_TYPE,
    IDENTITY,
    JSON,
    OUTBOUND_FAULT,
    ROUTER,
    T,
    apply_clusters,
    apply_listeners,
    cluster,
    cp,
    fault_value,
    filt,
    hcm_config,
    http_filters,
    inbound,
    insert_fault,
    on_hcm,
    outbound,
)

# --------------------------------------------------------------------------- HTTP_FILTER


@pytest.mark.parametrize(("operation", "sub", "expected"), [
    ("INSERT_BEFORE", ROUTER, [FAULT, "team.fault", ROUTER]),
    ("INSERT_BEFORE", None, ["team.fault", FAULT, ROUTER]),  # no sub filter: at the front
    ("INSERT_BEFORE", "envoy.filters.http.absent", [FAULT, ROUTER]),  # nothing to insert before
    ("INSERT_AFTER", FAULT, [FAULT, "team.fault", ROUTER]),
    ("INSERT_AFTER", None, [FAULT, ROUTER, "team.fault"]),  # no sub filter: at the end
    ("INSERT_AFTER", "envoy.filters.http.absent", [FAULT, ROUTER]),
    ("INSERT_FIRST", ROUTER, ["team.fault", FAULT, ROUTER]),  # first, whatever the sub filter
    ("ADD", ROUTER, [FAULT, ROUTER, "team.fault"]),  # at the end, even after the router
    ("REPLACE", FAULT, ["team.fault", ROUTER]),
    ("REPLACE", None, [FAULT, ROUTER]),  # REPLACE needs a sub filter
    ("REMOVE", FAULT, [ROUTER]),
    ("REMOVE", None, [FAULT, ROUTER]),  # REMOVE needs a sub filter
])
def test_http_filter_list_operations(operation: str, sub: str | None, expected: list[str]) -> None:
    out = apply_listeners([inbound("PERMISSIVE")], filt(insert_fault(operation, sub)))
    assert http_filters(out[0], 0) == expected
    assert http_filters(out[0], 1) == expected  # both chains (TLS and plaintext) of a permissive listener


def test_http_filter_merge_merges_typed_config_of_the_same_type() -> None:
    merge = cp("HTTP_FILTER", "MERGE", {"typedConfig": {"@type": FAULT_TYPE, "abort": {"httpStatus": 429}}},
               context="SIDECAR_INBOUND", listener=on_hcm(FAULT))
    out = apply_listeners([inbound()], filt(merge))
    fault = hcm_config(out[0])["http_filters"][0]
    assert fault["name"] == FAULT
    assert fault["typed_config"]["abort"] == {"http_status": 429, "percentage": {"numerator": 0,
                                                                                "denominator": "HUNDRED"}}
    assert fault["typed_config"]["delay"]["fixed_delay"] == "0.001s"  # untouched fields stay


def test_http_filter_merge_renames_and_ignores_everything_but_name_and_typed_config() -> None:
    merge = cp("HTTP_FILTER", "MERGE", {"name": "renamed", "isOptional": True}, context="SIDECAR_OUTBOUND",
               listener=on_hcm(OUTBOUND_FAULT))
    fault = hcm_config(apply_listeners([outbound()], filt(merge))[0])["http_filters"][0]
    assert fault["name"] == "renamed" and fault["disabled"] is True and "is_optional" not in fault


def test_http_filter_merge_of_another_type_drops_the_context_patches_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    """istiod's merge panics on mismatched types; its recovery keeps the listeners as generated."""
    router_type = {"@type": f"{T}envoy.extensions.filters.http.router.v3.Router"}
    bad = cp("HTTP_FILTER", "MERGE", {"typedConfig": router_type}, context="SIDECAR_INBOUND", listener=on_hcm(FAULT))
    listeners = [outbound(), inbound()]
    with caplog.at_level(logging.ERROR, logger=ef.__name__):
        out = apply_listeners(listeners, filt(insert_fault(), insert_fault(context="SIDECAR_OUTBOUND"), bad))
    assert http_filters(out[1]) == [FAULT, ROUTER]  # inbound: nothing of the pass took effect
    assert http_filters(out[0]) == [OUTBOUND_FAULT, "team.fault", ROUTER]  # outbound is another pass
    assert "EnvoyFilter shop/f configPatches[2]" in caplog.text and "Router" in caplog.text


def test_merge_and_replace_list_does_nothing_to_filters() -> None:
    patch = cp("HTTP_FILTER", "MERGE_AND_REPLACE_LIST", {"typedConfig": {"@type": FAULT_TYPE,
                                                                         "abort": {"httpStatus": 429}}},
               listener=on_hcm(FAULT))
    assert apply_listeners([inbound()], filt(patch)) == [inbound()]


@pytest.mark.parametrize("patch", [
    insert_fault(context="SIDECAR_OUTBOUND"),  # wrong context
    insert_fault(context="GATEWAY"),
    insert_fault(filter_name="envoy.filters.network.tcp_proxy"),  # wrong network filter
    insert_fault(filter_name="envoy.http_connection_manager"),  # the deprecated name: istiod compares exactly
    insert_fault(sub="envoy.filters.http.ratelimit"),  # wrong sub filter
    insert_fault(portNumber=15001),  # wrong port
    insert_fault(name="virtualInbound"),  # wrong listener name
    insert_fault(filterChain={"filter": {"name": HCM, "subFilter": {"name": ROUTER}}, "sni": "catalog.shop"}),
    insert_fault(filterChain={"filter": {"name": HCM, "subFilter": {"name": ROUTER}}, "name": "absent"}),
    insert_fault(filterChain={"filter": {"name": HCM, "subFilter": {"name": ROUTER}}, "destinationPort": 8080}),
    insert_fault(filterChain={"filter": {"name": HCM, "subFilter": {"name": ROUTER}},
                              "applicationProtocols": "h2"}),
])
def test_a_match_the_listener_does_not_have_changes_nothing(patch: JSON) -> None:
    assert apply_listeners([inbound()], filt(patch)) == [inbound()]


def test_matches_that_hold_apply() -> None:
    for listener_match in (on_hcm(ROUTER, portNumber=15006), on_hcm(ROUTER, name="inbound"),
                           {"filterChain": {"filter": {"name": HCM, "subFilter": {"name": ROUTER}},
                                            "transportProtocol": "tls"}}):
        patch = cp("HTTP_FILTER", "INSERT_BEFORE", fault_value(), context="ANY", listener=listener_match)
        out = apply_listeners([inbound("PERMISSIVE")], filt(patch))
        assert "team.fault" in http_filters(out[0], 0), listener_match
    tls_only = cp("HTTP_FILTER", "INSERT_BEFORE", fault_value(), listener={
        "filterChain": {"transportProtocol": "raw_buffer", "filter": {"name": HCM, "subFilter": {"name": ROUTER}}}})
    out = apply_listeners([inbound("PERMISSIVE")], filt(tls_only))
    assert "team.fault" not in http_filters(out[0], 0) and "team.fault" in http_filters(out[0], 1)


def test_a_namespace_filter_does_not_reach_another_namespace_and_a_selector_must_match() -> None:
    assert apply_listeners([inbound()], filt(insert_fault(), namespace="billing")) == [inbound()]
    assert apply_listeners([inbound()], filt(insert_fault(), workloadSelector={"labels": {"app": "x"}})) == [
        inbound()]
    out = apply_listeners([inbound()], filt(insert_fault(), namespace="istio-system"))
    assert "team.fault" in http_filters(out[0])


def test_gateway_listeners_are_the_gateway_context() -> None:
    gateway_listener = outbound_listener("0.0.0.0_8080", 8080, "ingress")
    out = apply_listeners([gateway_listener], filt(insert_fault(context="GATEWAY"), namespace="istio-system"),
                          proxy=GATEWAY)
    assert http_filters(out[0]) == [OUTBOUND_FAULT, "team.fault", ROUTER]
    out = apply_listeners([gateway_listener], filt(insert_fault(context="SIDECAR_OUTBOUND"),
                                                   namespace="istio-system"), proxy=GATEWAY)
    assert http_filters(out[0]) == [OUTBOUND_FAULT, ROUTER]


def test_a_sidecar_listener_without_traffic_direction_is_refused() -> None:
    listener = inbound()
    del listener["traffic_direction"]
    with pytest.raises(ValueError, match="traffic_direction"):
        apply_listeners([listener], filt(insert_fault()))


def test_inputs_are_not_changed_and_outputs_share_nothing() -> None:
    listeners = [inbound("PERMISSIVE"), outbound()]
    before = copy.deepcopy(listeners)
    out = apply_listeners(listeners, filt(insert_fault(context="ANY")))
    assert listeners == before
    assert out[0]["filter_chains"][0]["filters"][0] is not out[0]["filter_chains"][1]["filters"][0]
    patch = cp("CLUSTER", "MERGE", {"connectTimeout": "5s"})
    clusters = [cluster("outbound|80||catalog")]
    assert apply_clusters(clusters, filt(patch))[0]["connect_timeout"] == "5s"
    assert clusters == [cluster("outbound|80||catalog")]


# --------------------------------------------------------------------------- NETWORK_FILTER


TCP = {"name": "team.tcp", "typedConfig": {"@type": f"{T}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                            "statPrefix": "t", "cluster": "x"}}
RBAC_NET = {"name": "envoy.filters.network.rbac", "typedConfig": {
    "@type": f"{T}envoy.extensions.filters.network.rbac.v3.RBAC", "statPrefix": "r"}}


def network_filters(listener: JSON) -> list[str]:
    return [f["name"] for f in listener["filter_chains"][0]["filters"]]


@pytest.mark.parametrize(("operation", "filter_name", "expected"), [
    ("INSERT_BEFORE", HCM, ["envoy.filters.network.rbac", HCM]),
    ("INSERT_BEFORE", None, ["envoy.filters.network.rbac", HCM]),
    ("INSERT_AFTER", HCM, [HCM, "envoy.filters.network.rbac"]),
    ("INSERT_FIRST", "envoy.filters.network.absent", ["envoy.filters.network.rbac", HCM]),
    ("INSERT_BEFORE", "envoy.filters.network.absent", [HCM]),
    ("ADD", None, [HCM, "envoy.filters.network.rbac"]),
    ("REPLACE", HCM, ["envoy.filters.network.rbac"]),
    ("REMOVE", HCM, []),
    ("REMOVE", None, [HCM]),
])
def test_network_filter_list_operations(operation: str, filter_name: str | None, expected: list[str]) -> None:
    listener_match: JSON = {"filterChain": {"filter": {"name": filter_name}}} if filter_name else {}
    patch = cp("NETWORK_FILTER", operation, RBAC_NET, context="SIDECAR_OUTBOUND",
               **({"listener": listener_match} if listener_match else {}))
    out = apply_listeners([outbound()], filt(patch))
    assert network_filters(out[0]) == expected  # a chain emptied by REMOVE stays (istiod keeps it)


def test_network_filter_merge_merges_the_connection_manager() -> None:
    patch = cp("NETWORK_FILTER", "MERGE", {"typedConfig": {"@type": HCM_TYPE, "statPrefix": "patched",
                                                           "commonHttpProtocolOptions": {"idleTimeout": "30s"}}},
               context="SIDECAR_OUTBOUND", listener={"filterChain": {"filter": {"name": HCM}}})
    config = hcm_config(apply_listeners([outbound()], filt(patch))[0])
    assert config["stat_prefix"] == "patched"
    assert config["common_http_protocol_options"] == {"idle_timeout": "30s"}
    assert [h["name"] for h in config["http_filters"]] == [OUTBOUND_FAULT, ROUTER]


def test_added_network_filters_are_merged_by_later_merges_and_http_patches_reach_an_added_hcm() -> None:
    add = cp("NETWORK_FILTER", "ADD", TCP, context="SIDECAR_OUTBOUND")
    rename = cp("NETWORK_FILTER", "MERGE", {"name": "team.tcp2"}, listener={"filterChain": {"filter": {
        "name": "team.tcp"}}})
    out = apply_listeners([outbound()], filt(add, rename))
    assert network_filters(out[0]) == [HCM, "team.tcp2"]


# --------------------------------------------------------------------------- FILTER_CHAIN and LISTENER


def test_filter_chain_remove_add_and_merge() -> None:
    remove = cp("FILTER_CHAIN", "REMOVE", context="SIDECAR_INBOUND",
                listener={"filterChain": {"transportProtocol": "raw_buffer"}})
    out = apply_listeners([inbound("PERMISSIVE")], filt(remove))
    assert [c["filter_chain_match"]["transport_protocol"] for c in out[0]["filter_chains"]] == ["tls"]
    chain = {"name": "extra", "filterChainMatch": {"destinationPort": 9000}, "filters": [TCP]}
    out = apply_listeners([inbound()], filt(cp("FILTER_CHAIN", "ADD", chain, context="SIDECAR_INBOUND")))
    assert out[0]["filter_chains"][-1]["filter_chain_match"] == {"destination_port": 9000}
    no_filters = cp("FILTER_CHAIN", "ADD", {"name": "empty"}, context="SIDECAR_INBOUND")
    assert len(apply_listeners([inbound()], filt(no_filters))[0]["filter_chains"]) == 1  # istiod drops it
    merge = cp("FILTER_CHAIN", "MERGE", {"name": "named"}, context="SIDECAR_INBOUND")
    assert apply_listeners([inbound()], filt(merge))[0]["filter_chains"][0]["name"] == "named"


def test_filter_chain_merge_of_a_transport_socket_merges_only_that_socket() -> None:
    tls = {"name": "envoy.transport_sockets.tls", "typedConfig": {
        "@type": f"{T}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "commonTlsContext": {"alpnProtocols": ["h2"]}}}
    patch = cp("FILTER_CHAIN", "MERGE", {"name": "ignored", "transportSocket": tls}, context="SIDECAR_INBOUND")
    chain = apply_listeners([inbound()], filt(patch))[0]["filter_chains"][0]
    context = chain["transport_socket"]["typed_config"]
    assert context["require_client_certificate"] is True  # merged into, not replaced
    assert context["common_tls_context"]["alpn_protocols"] == ["h2"]
    assert context["common_tls_context"]["tls_certificates"][0]["certificate_chain"]["filename"] == IDENTITY.cert
    assert "name" not in chain  # the rest of the patch value does not apply


def test_listener_merge_remove_and_add() -> None:
    merge = cp("LISTENER", "MERGE", {"perConnectionBufferLimitBytes": 32768, "listenerFilters": [
        {"name": "envoy.filters.listener.http_inspector", "typedConfig": {
            "@type": f"{T}envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}]},
               context="SIDECAR_INBOUND")
    out = apply_listeners([inbound("PERMISSIVE"), outbound()], filt(merge))
    assert out[0]["per_connection_buffer_limit_bytes"] == 32768
    assert [f["name"] for f in out[0]["listener_filters"]] == ["envoy.filters.listener.tls_inspector",
                                                               "envoy.filters.listener.http_inspector"]
    assert "per_connection_buffer_limit_bytes" not in out[1]
    remove = cp("LISTENER", "REMOVE", listener={"portNumber": 15001})
    assert [lis["name"] for lis in apply_listeners([inbound(), outbound()], filt(remove))] == ["inbound"]
    new = {"name": "extra", "address": {"socketAddress": {"address": "127.0.0.1", "portValue": 9000}},
           "trafficDirection": "OUTBOUND"}
    added = apply_listeners([inbound()], filt(cp("LISTENER", "ADD", new)))  # context ANY: outbound and gateways
    assert [lis["name"] for lis in added] == ["inbound", "extra"]
    assert added[1]["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 9000}}
    assert [lis["name"] for lis in apply_listeners([], filt(cp("LISTENER", "INSERT_FIRST", new,
                                                               context="SIDECAR_INBOUND")))] == ["extra"]
    assert apply_listeners([], filt(cp("LISTENER", "ADD", new, context="GATEWAY"))) == []


def test_merge_and_replace_list_replaces_lists_of_a_listener() -> None:
    patch = cp("LISTENER", "MERGE_AND_REPLACE_LIST", {"listenerFilters": [
        {"name": "envoy.filters.listener.http_inspector", "typedConfig": {
            "@type": f"{T}envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}]})
    out = apply_listeners([inbound("PERMISSIVE")], filt(patch))
    assert [f["name"] for f in out[0]["listener_filters"]] == ["envoy.filters.listener.http_inspector"]
    assert len(out[0]["filter_chains"]) == 2


def test_listener_filter_operations() -> None:
    inspector = {"name": "envoy.filters.listener.http_inspector", "typedConfig": {
        "@type": f"{T}envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}
    tls = "envoy.filters.listener.tls_inspector"

    def names(operation: str, wanted: str | None) -> list[str]:
        match = {"listener": {"listenerFilter": wanted}} if wanted else {}
        out = apply_listeners([inbound("PERMISSIVE")], filt(cp("LISTENER_FILTER", operation, inspector, **match)))
        return [f["name"] for f in out[0].get("listener_filters", [])]

    assert names("INSERT_BEFORE", tls) == ["envoy.filters.listener.http_inspector", tls]
    assert names("INSERT_AFTER", tls) == [tls, "envoy.filters.listener.http_inspector"]
    assert names("ADD", None) == [tls, "envoy.filters.listener.http_inspector"]
    assert names("REPLACE", tls) == ["envoy.filters.listener.http_inspector"]
    assert names("REMOVE", tls) == []
    assert names("REMOVE", None) == [tls]


def test_listener_filter_merge_reaches_every_listener_filter_as_in_istiod() -> None:
    """istiod merges a LISTENER_FILTER MERGE (which needs a listenerFilter match) into every listener filter with
    a typed_config, and never renames one."""
    tls_type = f"{T}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
    value = {"name": "renamed", "typedConfig": {"@type": tls_type, "enableJa3Fingerprinting": True}}
    merge = cp("LISTENER_FILTER", "MERGE", value, listener={"listenerFilter": "envoy.filters.listener.absent"})
    [tls] = apply_listeners([inbound("PERMISSIVE")], filt(merge))[0]["listener_filters"]
    assert tls == {"name": "envoy.filters.listener.tls_inspector",
                   "typed_config": {"@type": tls_type, "enable_ja3_fingerprinting": True}}
    no_match = cp("LISTENER_FILTER", "MERGE", value)
    assert apply_listeners([inbound("PERMISSIVE")], filt(no_match)) == [inbound("PERMISSIVE")]


def test_a_listener_pass_that_panics_keeps_its_inline_route_patches() -> None:
    router_type = {"@type": f"{T}envoy.extensions.filters.http.router.v3.Router"}
    bad = cp("HTTP_FILTER", "MERGE", {"typedConfig": router_type}, listener=on_hcm(FAULT))
    route = cp("HTTP_ROUTE", "MERGE", {"route": {"timeout": "3s"}})
    out = apply_listeners([inbound()], filt(bad, route, insert_fault()))
    assert http_filters(out[0]) == [FAULT, ROUTER]
    assert hcm_config(out[0])["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["timeout"] == "3s"


def test_only_sidecars_and_gateways_are_modelled() -> None:
    with pytest.raises(ValueError, match="waypoint"):
        Proxy("shop", {}, "waypoint")  # type: ignore[arg-type]


def test_a_route_configuration_inlined_in_an_inbound_listener_is_patched_in_its_context() -> None:
    patch = cp("HTTP_ROUTE", "INSERT_FIRST", {"name": "teapot", "match": {"prefix": "/tea"},
                                              "directResponse": {"status": 418}},
               context="SIDECAR_INBOUND", routeConfiguration={"vhost": {"name": "local_app"}})
    out = apply_listeners([inbound(), outbound()], filt(patch))
    routes = hcm_config(out[0])["route_config"]["virtual_hosts"][0]["routes"]
    assert [r.get("name") for r in routes] == ["teapot", None]
    assert routes[0]["direct_response"] == {"status": 418}
    assert "route_config" not in hcm_config(out[1])
