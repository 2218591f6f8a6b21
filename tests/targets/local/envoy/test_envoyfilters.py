"""The EnvoyFilter engine (``envoy.envoyfilters``) against istiod's semantics: selection and order, every
operation on every object class it patches, matches that must not apply, MERGE as a protobuf merge, and
validation.  Pure: nothing is started, except the one test marked ``processes`` that has the real
``envoy --mode validate`` judge a patched sidecar inbound listener.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.targets.local.envoy import envoyfilters as ef
from chaosmesh_qa.targets.local.envoy.envoyfilters import EnvoyFilterInvalid, EnvoyFilterObject, Proxy
from chaosmesh_qa.targets.local.envoy.listeners import (
    SANDBOX_FAULT_FILTER,
    PodIdentity,
    bootstrap,
    inbound_listener,
    outbound_listener,
)

JSON = dict[str, Any]
HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
FAULT = SANDBOX_FAULT_FILTER  # the filter before the router in the inbound listeners these tests patch
OUTBOUND_FAULT = "envoy.filters.http.fault"  # ... and in the outbound and gateway ones (Istio's name)
T = "type.googleapis.com/"
FAULT_TYPE = f"{T}envoy.extensions.filters.http.fault.v3.HTTPFault"
HCM_TYPE = f"{T}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
SIDECAR = Proxy("shop", {"app": "catalog", "version": "v1"}, "sidecar", istio_version="1.29.1",
                metadata={"CLUSTER_ID": "Kubernetes"})
GATEWAY = Proxy("istio-system", {"istio": "ingressgateway"}, "gateway")
IDENTITY = PodIdentity("spiffe://cluster.local/ns/shop/sa/catalog", "/pki/catalog.crt", "/pki/catalog.key",
                       "/pki/ca.crt")


# --------------------------------------------------------------------------- helpers


def filt(*patches: JSON, namespace: str = "shop", name: str = "f", order: int = 0, **spec: Any) -> EnvoyFilterObject:
    return EnvoyFilterObject(namespace, name, {"configPatches": list(patches), **spec}, order)


def cp(apply_to: str, operation: str, value: JSON | None = None, **match: Any) -> JSON:
    patch: JSON = {"operation": operation}
    if value is not None:
        patch["value"] = value
    return {"applyTo": apply_to, "match": match, "patch": patch} if match else {"applyTo": apply_to, "patch": patch}


def on_hcm(sub: str | None = None, filter_name: str = HCM, **listener: Any) -> JSON:
    """A listener match on the HTTP connection manager (and one of its HTTP filters)."""
    wanted: JSON = {"name": filter_name}
    if sub is not None:
        wanted["subFilter"] = {"name": sub}
    return {"filterChain": {"filter": wanted}, **listener}


def inbound(mode: str = "STRICT") -> JSON:
    return inbound_listener(15006, mode, IDENTITY, [])


def outbound() -> JSON:
    return outbound_listener("outbound", 15001, "outbound")


def apply_listeners(listeners: list[JSON], *objects: EnvoyFilterObject, proxy: Proxy = SIDECAR) -> list[JSON]:
    return ef.patch_listeners(listeners, ef.filters_for(objects, proxy), proxy)


def http_filters(listener: JSON, chain: int = 0) -> list[str]:
    hcm = next(f for f in listener["filter_chains"][chain]["filters"] if f["name"] == HCM)
    return [h["name"] for h in hcm["typed_config"]["http_filters"]]


def hcm_config(listener: JSON, chain: int = 0) -> JSON:
    return next(f for f in listener["filter_chains"][chain]["filters"] if f["name"] == HCM)["typed_config"]


def fault_value(name: str = "team.fault", status: int = 418) -> JSON:
    return {"name": name, "typedConfig": {"@type": FAULT_TYPE,
                                          "abort": {"httpStatus": status, "percentage": {"numerator": 100}}}}


def insert_fault(operation: str = "INSERT_BEFORE", sub: str | None = ROUTER, context: str = "SIDECAR_INBOUND",
                 **listener: Any) -> JSON:
    return cp("HTTP_FILTER", operation, fault_value(), context=context, listener=on_hcm(sub, **listener))


def cluster(name: str, **extra: Any) -> JSON:
    return {"name": name, "type": "EDS", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN", **extra}


def apply_clusters(clusters: list[JSON], *objects: EnvoyFilterObject, proxy: Proxy = SIDECAR,
                   **kwargs: Any) -> list[JSON]:
    return ef.patch_clusters(clusters, ef.filters_for(objects, proxy), proxy, **kwargs)


def route_config(name: str = "80") -> JSON:
    return {"name": name, "virtual_hosts": [
        {"name": "catalog.shop.svc.cluster.local:80", "domains": ["catalog", "catalog.shop.svc.cluster.local"],
         "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": "outbound|80||catalog"}}]},
        {"name": "reviews.shop.svc.cluster.local:80", "domains": ["reviews"],
         "routes": [{"name": "moved", "match": {"prefix": "/old"}, "redirect": {"path_redirect": "/new"}},
                    {"name": "default", "match": {"prefix": "/"}, "route": {"cluster": "outbound|80||reviews"}}]},
    ]}


def apply_routes(rcs: list[JSON], *objects: EnvoyFilterObject, proxy: Proxy = SIDECAR) -> list[JSON]:
    return ef.patch_route_configurations(rcs, ef.filters_for(objects, proxy), proxy)


def route_names(rc: JSON, host: int = 0) -> list[str]:
    return [r.get("name", "?") for r in rc["virtual_hosts"][host]["routes"]]


# --------------------------------------------------------------------------- selection and order


def test_root_namespace_filters_reach_every_proxy_others_only_their_namespace() -> None:
    root = filt(namespace="istio-system", name="root")
    own = filt(namespace="shop", name="own")
    other = filt(namespace="billing", name="other")
    assert [o.name for o in ef.filters_for([other, own, root], SIDECAR)] == ["root", "own"]
    assert [o.name for o in ef.filters_for([other, own, root], GATEWAY)] == ["root"]  # gateway lives in the root
    assert [o.name for o in ef.filters_for([root], SIDECAR, root_namespace="mesh-root")] == []


def test_workload_selector_must_be_a_subset_of_the_proxy_labels() -> None:
    def chosen(labels: dict[str, str] | None) -> bool:
        selected = filt() if labels is None else filt(workloadSelector={"labels": labels})
        return bool(ef.filters_for([selected], SIDECAR))

    assert chosen(None)
    assert chosen({})
    assert chosen({"app": "catalog"})
    assert chosen({"app": "catalog", "version": "v1"})
    assert not chosen({"app": "catalog", "version": "v2"})
    assert not chosen({"app": "catalog", "tier": "web"})
    root = filt(namespace="istio-system", workloadSelector={"labels": {"app": "reviews"}})
    assert ef.filters_for([root], SIDECAR) == []  # the root namespace does not widen a selector


def test_target_refs_only_reach_the_gateway_api_gateway_they_name() -> None:
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web"}
    with_ref = filt(targetRefs=[ref])
    assert ef.filters_for([with_ref], SIDECAR) == []  # istiod ignores a targetRefs policy on a sidecar
    web = Proxy("shop", {"gateway.networking.k8s.io/gateway-name": "web"}, "gateway")
    other = Proxy("shop", {"gateway.networking.k8s.io/gateway-name": "api"}, "gateway")
    assert ef.filters_for([with_ref], web) == [with_ref]
    assert ef.filters_for([with_ref], other) == []
    assert ef.filters_for([filt()], web) != []  # no targetRefs: the selector (none) decides


def test_order_is_priority_then_root_namespace_then_creation_then_name() -> None:
    objects = [
        filt(namespace="shop", name="b-late", order=5),
        filt(namespace="shop", name="a-late", order=5),
        filt(namespace="shop", name="early", order=1),
        filt(namespace="istio-system", name="root-late", order=9),
        filt(namespace="shop", name="first", order=7, priority=-10),
        filt(namespace="istio-system", name="root-last", order=0, priority=10),
    ]
    assert [o.name for o in ef.filters_for(objects, SIDECAR)] == [
        "first", "root-late", "early", "a-late", "b-late", "root-last"]


def test_patches_apply_in_filter_order_each_seeing_the_previous_result() -> None:
    """Two INSERT_BEFORE router: the later filter's lands between the earlier's and the router."""
    first = filt(insert_fault(), name="first", order=1)
    second = filt(cp("HTTP_FILTER", "INSERT_BEFORE", fault_value("second"), context="SIDECAR_INBOUND",
                     listener=on_hcm(ROUTER)), name="second", order=2)
    out = apply_listeners([inbound()], second, first)
    assert http_filters(out[0]) == [FAULT, "team.fault", "second", ROUTER]
    prioritised = filt(cp("HTTP_FILTER", "INSERT_BEFORE", fault_value("second"), context="SIDECAR_INBOUND",
                          listener=on_hcm(ROUTER)), name="second", order=2, priority=-1)
    assert http_filters(apply_listeners([inbound()], prioritised, first)[0]) == [FAULT, "second", "team.fault",
                                                                                   ROUTER]


def test_proxy_match_on_version_regex_and_metadata() -> None:
    def applies(proxy_match: JSON) -> bool:
        patch = insert_fault()
        patch["match"]["proxy"] = proxy_match
        return "team.fault" in http_filters(apply_listeners([inbound()], filt(patch))[0])

    assert applies({"proxyVersion": r"^1\.29.*"})
    assert not applies({"proxyVersion": r"^1\.28.*"})
    assert applies({"metadata": {"CLUSTER_ID": "Kubernetes"}})
    assert not applies({"metadata": {"CLUSTER_ID": "remote"}})
    assert not applies({"proxyVersion": "1" * 1025})  # too long: istiod fails closed


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


# --------------------------------------------------------------------------- MERGE as a protobuf merge


def test_merge_semantics_repeated_appended_maps_replaced_scalars_set_wrappers_oneofs() -> None:
    base = cluster("outbound|80|v1|catalog.shop.svc.cluster.local",
                   circuit_breakers={"thresholds": [{"max_connections": 10}]},
                   metadata={"filter_metadata": {"istio": {"a": "1", "b": "2"}}},
                   per_connection_buffer_limit_bytes=1024,
                   common_lb_config={"healthy_panic_threshold": {"value": 0}})
    patch = cp("CLUSTER", "MERGE", {
        "circuitBreakers": {"thresholds": [{"maxRequests": 5}]},  # repeated: appended
        "metadata": {"filterMetadata": {"istio": {"c": "3"}}},  # map entry: replaced whole
        "perConnectionBufferLimitBytes": 0,  # a wrapper at its default has nothing set: kept
        "lbPolicy": "ROUND_ROBIN",  # a scalar at its default is not set: kept
        "connectTimeout": "2.5s",  # a Duration: replaced
        "type": "STRICT_DNS",  # a oneof member: replaces type (and would clear cluster_type)
        "dnsLookupFamily": "V4_ONLY",
    })
    base["lb_policy"] = "LEAST_REQUEST"
    out = apply_clusters([base], filt(patch))[0]
    assert out["circuit_breakers"]["thresholds"] == [{"max_connections": 10}, {"max_requests": 5}]
    assert out["metadata"]["filter_metadata"] == {"istio": {"c": "3"}}
    assert out["per_connection_buffer_limit_bytes"] == 1024
    assert out["lb_policy"] == "LEAST_REQUEST"
    assert out["connect_timeout"] == "2.500s"  # as protobuf writes it
    assert out["type"] == "STRICT_DNS" and out["dns_lookup_family"] == "V4_ONLY"
    custom = cluster("outbound|80||catalog", cluster_type={"name": "envoy.clusters.aggregate"})
    del custom["type"]
    out = apply_clusters([custom], filt(cp("CLUSTER", "MERGE", {"type": "STATIC"})))[0]
    assert out["type"] == "STATIC" and "cluster_type" not in out


def test_merge_and_replace_list_replaces_repeated_fields_of_a_cluster() -> None:
    base = cluster("outbound|80||catalog", circuit_breakers={"thresholds": [{"max_connections": 10}]})
    patch = cp("CLUSTER", "MERGE_AND_REPLACE_LIST", {"circuitBreakers": {"thresholds": [{"maxRequests": 5}]}})
    assert apply_clusters([base], filt(patch))[0]["circuit_breakers"]["thresholds"] == [{"max_requests": 5}]


def test_patch_values_are_read_as_istiod_reads_them() -> None:
    """camelCase and snake_case both; unknown fields (the v2 ``config`` of a filter) dropped."""
    value = {"name": "team.fault", "config": {"abort": {"http_status": 500}},
             "typed_config": {"@type": FAULT_TYPE, "delay": {"fixedDelay": "1s"}}}
    patch = cp("HTTP_FILTER", "INSERT_BEFORE", value, listener=on_hcm(ROUTER))
    added = hcm_config(apply_listeners([inbound()], filt(patch))[0])["http_filters"][1]
    assert added == {"name": "team.fault", "typed_config": {"@type": FAULT_TYPE, "delay": {"fixed_delay": "1s"}}}
    unknown_type = cp("HTTP_FILTER", "ADD", {"name": "x", "typedConfig": {"@type": f"{T}team.Unknown"}})
    assert apply_listeners([inbound()], filt(unknown_type)) == [inbound()]  # istiod skips that patch


def test_camel_case_in_generated_documents_lines_up_with_the_patch() -> None:
    generated = {"name": "outbound|80||catalog", "connectTimeout": "1s",
                 "circuitBreakers": {"thresholds": [{"maxConnections": 1}]}}
    patch = cp("CLUSTER", "MERGE", {"circuit_breakers": {"thresholds": [{"max_connections": 2}]}})
    out = apply_clusters([generated], filt(patch))[0]
    assert out == {"name": "outbound|80||catalog", "connect_timeout": "1s",
                   "circuit_breakers": {"thresholds": [{"max_connections": 1}, {"max_connections": 2}]}}


# --------------------------------------------------------------------------- CLUSTER


def test_cluster_matches_read_istio_cluster_names() -> None:
    clusters = [cluster("outbound|80|v1|reviews.shop.svc.cluster.local"),
                cluster("outbound|80||reviews.shop.svc.cluster.local"),
                cluster("outbound|9080||ratings.shop.svc.cluster.local"),
                cluster("BlackHoleCluster"), cluster("inbound|8080||"), cluster("InboundPassthroughCluster")]

    def merged(context: str = "ANY", **cluster_match: Any) -> list[str]:
        match: JSON = {"context": context}
        if cluster_match:
            match["cluster"] = cluster_match
        out = apply_clusters(clusters, filt(cp("CLUSTER", "MERGE", {"connectTimeout": "9s"}, **match)),
                             inbound_services={"inbound|8080||": ["catalog.shop.svc.cluster.local"]})
        return [c["name"] for c in out if c["connect_timeout"] == "9s"]

    assert merged(service="reviews.shop.svc.cluster.local") == [
        "outbound|80|v1|reviews.shop.svc.cluster.local", "outbound|80||reviews.shop.svc.cluster.local"]
    assert merged(subset="v1") == ["outbound|80|v1|reviews.shop.svc.cluster.local"]
    assert merged(portNumber=9080) == ["outbound|9080||ratings.shop.svc.cluster.local"]
    assert merged(portNumber=8080, service="catalog.shop.svc.cluster.local") == ["inbound|8080||"]
    assert merged(name="BlackHoleCluster") == ["BlackHoleCluster"]
    assert merged(service="absent.shop.svc.cluster.local") == []
    assert merged("SIDECAR_INBOUND") == ["inbound|8080||", "InboundPassthroughCluster"]
    assert len(merged("SIDECAR_OUTBOUND")) == 4  # BlackHoleCluster is outbound
    assert merged("GATEWAY") == []


def test_cluster_remove_and_add_per_context() -> None:
    clusters = [cluster("outbound|80||catalog"), cluster("inbound|8080||")]
    removed = apply_clusters(clusters, filt(cp("CLUSTER", "REMOVE", cluster={"portNumber": 80})))
    assert [c["name"] for c in removed] == ["inbound|8080||"]
    new = {"name": "team-cluster", "type": "STATIC", "connectTimeout": "1s"}
    assert [c["name"] for c in apply_clusters(clusters, filt(cp("CLUSTER", "ADD", new)))][-1] == "team-cluster"
    added = apply_clusters([], filt(cp("CLUSTER", "ADD", new, context="SIDECAR_INBOUND"),
                                    cp("CLUSTER", "INSERT_BEFORE", {**new, "name": "second"})))
    assert [c["name"] for c in added] == ["second", "team-cluster"]  # outbound adds, then inbound ones
    assert apply_clusters([], filt(cp("CLUSTER", "ADD", new, context="GATEWAY"))) == []
    assert [c["name"] for c in apply_clusters([], filt(cp("CLUSTER", "ADD", new), namespace="istio-system"),
                                              proxy=GATEWAY)] == ["team-cluster"]
    assert apply_clusters(clusters, filt(cp("CLUSTER", "REPLACE", new))) == clusters  # not a cluster operation


def test_cluster_merge_of_a_transport_socket() -> None:
    tls_type = f"{T}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    base = cluster("outbound|80||catalog", transport_socket={"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": tls_type, "sni": "catalog"}})
    merge = cp("CLUSTER", "MERGE", {"connectTimeout": "7s", "transportSocket": {
        "name": "envoy.transport_sockets.tls", "typedConfig": {"@type": tls_type, "allowRenegotiation": True}}})
    out = apply_clusters([base], filt(merge))[0]
    assert out["transport_socket"]["typed_config"] == {"@type": tls_type, "sni": "catalog", "allow_renegotiation": True}
    assert out["connect_timeout"] == "1s"  # only the socket is merged
    plain = apply_clusters([cluster("outbound|80||catalog")], filt(merge))[0]
    assert plain["transport_socket"]["name"] == "envoy.transport_sockets.tls"  # none there: set
    matched = cluster("outbound|80||catalog", transport_socket_matches=[
        {"name": "tlsMode-istio", "match": {}, "transport_socket": {"name": "other", "typed_config": {
            "@type": tls_type}}}])
    assert apply_clusters([matched], filt(merge)) == [matched]  # no socket of that name: patch dropped


def test_cluster_transport_socket_merge_of_another_type_leaves_that_cluster_as_generated() -> None:
    tls_type = f"{T}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    raw = f"{T}envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
    base = cluster("outbound|80||catalog", transport_socket={"name": "s", "typed_config": {"@type": tls_type}})
    other = cluster("outbound|80||reviews")
    patches = filt(cp("CLUSTER", "MERGE", {"connectTimeout": "3s"}),
                   cp("CLUSTER", "MERGE", {"transportSocket": {"name": "s", "typedConfig": {"@type": raw}}}))
    out = apply_clusters([base, other], patches)
    assert out[0] == base and out[1]["connect_timeout"] == "3s"


# --------------------------------------------------------------------------- route configurations, hosts, routes


def test_route_configuration_merge_only() -> None:
    merge = cp("ROUTE_CONFIGURATION", "MERGE", {"requestHeadersToRemove": ["x-debug"]},
               context="SIDECAR_OUTBOUND", routeConfiguration={"portNumber": 80})
    assert apply_routes([route_config()], filt(merge))[0]["request_headers_to_remove"] == ["x-debug"]
    for operation in ("ADD", "REMOVE", "REPLACE"):
        patch = cp("ROUTE_CONFIGURATION", operation, {"name": "x"})
        assert apply_routes([route_config()], filt(patch)) == [route_config()]
    for wrong in ({"portNumber": 8080}, {"name": "9090"}):
        patch = cp("ROUTE_CONFIGURATION", "MERGE", {"validateClusters": True}, routeConfiguration=wrong)
        assert apply_routes([route_config()], filt(patch)) == [route_config()]
    inbound_rc = cp("ROUTE_CONFIGURATION", "MERGE", {"validateClusters": True}, context="SIDECAR_INBOUND")
    assert apply_routes([route_config()], filt(inbound_rc)) == [route_config()]  # RDS is outbound on a sidecar


def test_virtual_host_operations() -> None:
    host = {"name": "extra", "domains": ["extra.example"]}

    def hosts(*patches: JSON) -> list[str]:
        return [h["name"] for h in apply_routes([route_config()], filt(*patches))[0]["virtual_hosts"]]

    catalog, reviews = "catalog.shop.svc.cluster.local:80", "reviews.shop.svc.cluster.local:80"
    assert hosts(cp("VIRTUAL_HOST", "ADD", host)) == [catalog, reviews, "extra"]
    assert hosts(cp("VIRTUAL_HOST", "INSERT_FIRST", host)) == [catalog, reviews, "extra"]  # becomes ADD
    assert hosts(cp("VIRTUAL_HOST", "REMOVE", routeConfiguration={"vhost": {"name": reviews}})) == [catalog]
    assert hosts(cp("VIRTUAL_HOST", "REMOVE", routeConfiguration={"vhost": {"domainName": "reviews"}})) == [catalog]
    assert hosts(cp("VIRTUAL_HOST", "REMOVE", routeConfiguration={"vhost": {"name": "absent"}})) == [catalog, reviews]
    assert hosts(cp("VIRTUAL_HOST", "REPLACE", host, routeConfiguration={"vhost": {"name": catalog}})) == [
        "extra", reviews]
    # istiod removes by name after the adds: an added host of a removed name goes too
    assert hosts(cp("VIRTUAL_HOST", "REMOVE", routeConfiguration={"vhost": {"name": reviews}}),
                 cp("VIRTUAL_HOST", "ADD", {"name": reviews, "domains": ["r"]})) == [catalog]
    merged = apply_routes([route_config()], filt(cp("VIRTUAL_HOST", "MERGE", {"domains": ["catalog.local"]},
                                                    routeConfiguration={"vhost": {"name": catalog}})))
    assert merged[0]["virtual_hosts"][0]["domains"] == ["catalog", "catalog.shop.svc.cluster.local", "catalog.local"]


def test_http_route_operations() -> None:
    new = {"name": "new", "match": {"prefix": "/x"}, "directResponse": {"status": 200}}

    def names(operation: str, route: JSON | None, host: str = "reviews.shop.svc.cluster.local:80") -> list[str]:
        vhost: JSON = {"name": host}
        if route is not None:
            vhost["route"] = route
        out = apply_routes([route_config()], filt(cp("HTTP_ROUTE", operation, new,
                                                      routeConfiguration={"vhost": vhost})))
        return route_names(out[0], 1)

    assert names("INSERT_BEFORE", {"name": "default"}) == ["moved", "new", "default"]
    assert names("INSERT_AFTER", {"name": "moved"}) == ["moved", "new", "default"]
    assert names("INSERT_BEFORE", None) == ["new", "moved", "default"]
    assert names("INSERT_AFTER", None) == ["moved", "default", "new"]
    assert names("INSERT_FIRST", {"name": "default"}) == ["new", "moved", "default"]
    assert names("INSERT_FIRST", {"name": "absent"}) == ["moved", "default"]  # needs the route to exist
    assert names("INSERT_BEFORE", {"name": "absent"}) == ["moved", "default"]
    assert names("ADD", {"name": "absent"}) == ["moved", "default", "new"]
    assert names("REMOVE", {"name": "moved"}) == ["default"]
    assert names("REMOVE", {"action": "REDIRECT"}) == ["default"]
    assert names("REMOVE", {"action": "ROUTE"}) == ["moved"]
    assert names("REMOVE", {"action": "DIRECT_RESPONSE"}) == ["moved", "default"]
    assert names("REPLACE", {"name": "moved"}) == ["moved", "default"]  # not a route operation
    assert names("REMOVE", {"name": "moved"}, host="absent") == ["moved", "default"]


def test_http_route_merge_replaces_the_action_oneof() -> None:
    patch = cp("HTTP_ROUTE", "MERGE", {"directResponse": {"status": 503}, "route": None},
               routeConfiguration={"vhost": {"route": {"name": "default", "action": "ROUTE"}}})
    out = apply_routes([route_config()], filt(patch))[0]
    for host in (0, 1):
        default = next(r for r in out["virtual_hosts"][host]["routes"] if r["name"] == "default")
        assert default == {"name": "default", "match": {"prefix": "/"}, "direct_response": {"status": 503}}
    assert out["virtual_hosts"][1]["routes"][0]["redirect"] == {"path_redirect": "/new"}


def test_gateway_route_configuration_matches_read_gateway_rds_names() -> None:
    rcs = [{"name": "http.8080", "virtual_hosts": []},
           {"name": "https.443.https.web-gateway.shop", "virtual_hosts": []}]
    gateway = Proxy("istio-system", {"istio": "ingressgateway"}, "gateway", gateway_ports={8080: frozenset({80})})

    def merged(**rc_match: Any) -> list[str]:
        patch = cp("ROUTE_CONFIGURATION", "MERGE", {"validateClusters": True}, context="GATEWAY",
                   routeConfiguration=rc_match)
        out = ef.patch_route_configurations(rcs, [filt(patch, namespace="istio-system")], gateway)
        return [rc["name"] for rc in out if rc.get("validate_clusters")]

    assert merged(portNumber=80) == ["http.8080"]  # the service port the gateway port serves
    assert merged(portNumber=8080) == []
    assert merged(portNumber=443, portName="https", gateway="shop/web-gateway") == ["https.443.https.web-gateway.shop"]
    assert merged(gateway="other/web-gateway") == []
    assert ef.parse_gateway_route_name("https.443.https.web-gateway.shop") == (443, "https", "shop/web-gateway")
    assert ef.parse_gateway_route_name("http.80") == (80, "", "")
    assert ef.parse_gateway_route_name("outbound") == (0, "", "")


def test_parse_cluster_name() -> None:
    assert ef.parse_cluster_name("outbound|80|v1|reviews.shop.svc.cluster.local") == (
        "outbound", 80, "v1", "reviews.shop.svc.cluster.local")
    assert ef.parse_cluster_name("outbound_.80_.v1_.reviews.shop.svc.cluster.local") == (
        "outbound", 80, "v1", "reviews.shop.svc.cluster.local")
    assert ef.parse_cluster_name("inbound|8080||") == ("inbound", 8080, "", "")
    assert ef.parse_cluster_name("catalog_v1") == ("", 0, "", "")
    assert ef.parse_cluster_name("BlackHoleCluster") == ("", 0, "", "")


# --------------------------------------------------------------------------- validation


def valid_spec() -> JSON:
    return {"workloadSelector": {"labels": {"app": "catalog"}}, "priority": 10,
            "configPatches": [insert_fault(), cp("CLUSTER", "MERGE", {"connectTimeout": "2s"},
                                                 cluster={"service": "catalog.shop.svc.cluster.local"}),
                              cp("HTTP_ROUTE", "REMOVE", routeConfiguration={"vhost": {"route": {"name": "x"}}}),
                              cp("EXTENSION_CONFIG", "ADD", {"name": "ecds"})]}


def test_a_valid_spec_passes() -> None:
    ef.validate(valid_spec())
    ef.validate({})


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s["configPatches"][0]["patch"].update(operation="INSERT"),
     "spec.configPatches[0].patch.operation: 'INSERT' is not one of INVALID, MERGE, ADD, REMOVE, INSERT_BEFORE"),
    (lambda s: s["configPatches"][0].update(applyTo="FILTER"),
     "spec.configPatches[0].applyTo: 'FILTER' is not one of"),
    (lambda s: s["configPatches"][0]["match"].update(context="INBOUND"),
     "spec.configPatches[0].match.context: 'INBOUND' is not one of ANY, SIDECAR_INBOUND"),
    (lambda s: s["configPatches"][0].update(apply_to="HTTP_FILTER"),
     "spec.configPatches[0].apply_to: unknown field"),
    (lambda s: s.update(selector={}), "spec.selector: unknown field"),
    (lambda s: s["configPatches"][0]["match"]["listener"].update(portNumber=-1),
     "spec.configPatches[0].match.listener.portNumber: -1 is not an integer from 0 to 4294967295"),
    (lambda s: s.update(priority="high"), "spec.priority: 'high' is not an integer"),
    (lambda s: s["configPatches"].append(None), "spec.configPatches[4]: null config patch"),
    (lambda s: s["configPatches"][0].pop("applyTo"), "spec.configPatches[0].applyTo: missing"),
    (lambda s: s["configPatches"][0].pop("patch"), "spec.configPatches[0].patch: missing"),
    (lambda s: s["configPatches"][0]["patch"].pop("operation"), "spec.configPatches[0].patch.operation: missing"),
    (lambda s: s["configPatches"][0]["patch"].pop("value"),
     "spec.configPatches[0].patch.value: missing, and INSERT_BEFORE needs one"),
    (lambda s: s["configPatches"][0]["patch"].update(value=[1]), "spec.configPatches[0].patch.value: [1] is not an"),
    (lambda s: s["configPatches"][0]["match"].update(proxy={"proxyVersion": "1.(2"}),
     "spec.configPatches[0].match.proxy.proxyVersion: invalid regex"),
    (lambda s: s["configPatches"][0]["match"]["listener"]["filterChain"]["filter"].pop("name"),
     "spec.configPatches[0].match.listener.filterChain.filter.name: filter match has no name to match on"),
    (lambda s: s["configPatches"][0].update(applyTo="NETWORK_FILTER"),
     "spec.configPatches[0].match.listener.filterChain.filter.subFilter: subfilter match can be used with applyTo "
     "HTTP_FILTER only"),
    (lambda s: s["configPatches"][0]["match"]["listener"]["filterChain"]["filter"].update(name="envoy.tcp_proxy"),
     "filter.name: subfilter match requires filter match with envoy.filters.network.http_connection_manager"),
    (lambda s: s["configPatches"][0]["match"]["listener"]["filterChain"]["filter"].update(subFilter={}),
     "filter.subFilter.name: subfilter match has no name to match on"),
    (lambda s: s["configPatches"][1].update(applyTo="LISTENER"),
     "spec.configPatches[1].match.cluster: applyTo LISTENER needs a match on listener"),
    (lambda s: s["configPatches"][2].update(applyTo="CLUSTER"),
     "spec.configPatches[2].match.routeConfiguration: applyTo CLUSTER needs a match on cluster"),
    (lambda s: s["configPatches"][1]["match"].update(listener={}),
     "spec.configPatches[1].match: only one of listener, cluster can be set"),
    (lambda s: s["configPatches"][1]["match"].update(context="WAYPOINT"),
     "spec.configPatches[1].match: only support waypointMatch when context is WAYPOINT"),
    (lambda s: s["configPatches"][1]["patch"].update(value={"connectTimeout": "soon"}),
     "spec.configPatches[1].patch.value: not a valid envoy.config.cluster.v3.Cluster:"),
    (lambda s: s["configPatches"][0]["patch"]["value"]["typedConfig"].update({"@type": f"{T}team.Unknown"}),
     "spec.configPatches[0].patch.value: not a valid envoy.extensions.filters.network.http_connection_manager.v3."
     "HttpFilter: referenced type unknown"),
    (lambda s: s.update(targetRefs=[{"kind": "Gateway", "name": "web"}]),
     "spec: only one of targetRefs or workloadSelector can be set"),
    (lambda s: s.update(workloadSelector={"labels": {"app": "cat*"}}),
     "spec.workloadSelector.labels['app']: wildcard is not supported in selector"),
    (lambda s: (s.pop("workloadSelector"), s.update(targetRefs=[{"kind": "Gateway", "name": "w", "namespace": "x"}])),
     "spec.targetRefs[0].namespace: cross namespace referencing is not currently supported"),
])
def test_validation_rejects_what_istio_rejects(edit: Any, message: str) -> None:
    spec = valid_spec()
    edit(spec)
    with pytest.raises(EnvoyFilterInvalid) as info:
        ef.validate(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_validation_of_a_waypoint_patch_stops_at_the_schema() -> None:
    ef.validate({"configPatches": [{"applyTo": "HTTP_FILTER", "match": {"context": "WAYPOINT", "waypoint": {
        "filter": {"name": "x"}}}, "patch": {"operation": "ADD"}}]})  # istiod checks no further


def test_extension_config_patches_are_named_as_unsupported() -> None:
    objects = [filt(*valid_spec()["configPatches"])]
    assert ef.unsupported_patches(objects) == [
        "EnvoyFilter shop/f configPatches[3]: applyTo EXTENSION_CONFIG patches ECDS resources, which the local "
        "control plane does not serve"]


# --------------------------------------------------------------------------- Envoy as the judge


@pytest.mark.processes
def test_envoy_accepts_an_inbound_listener_with_a_fault_filter_inserted_before_the_router(tmp_path: Path) -> None:
    from chaosmesh_qa.targets.local.envoy_validation import EnvoyJudge, PodConfig
    from chaosmesh_qa.targets.local.pki import MeshPKI

    pki = MeshPKI.create(tmp_path / "pki")
    files = pki.identity(IDENTITY.spiffe_id, "catalog")
    identity = PodIdentity(files.spiffe_id, files.cert, files.key, pki.ca_path)
    listener = inbound_listener(15006, "PERMISSIVE", identity, [])
    patch = cp("HTTP_FILTER", "INSERT_BEFORE", fault_value(FAULT, 418), context="SIDECAR_INBOUND",
               listener=on_hcm(ROUTER, portNumber=15006))
    ef.validate({"configPatches": [patch]})
    [patched] = apply_listeners([listener], filt(patch))
    assert http_filters(patched, 0) == http_filters(patched, 1) == [FAULT, FAULT, ROUTER]
    boot = bootstrap("catalog-v1", "catalog", str(tmp_path / "admin.sock"), 15090, str(tmp_path / "xds.sock"),
                     app_port=8080)
    boot.pop("dynamic_resources")
    static = boot.pop("static_resources")
    judge = EnvoyJudge(tmp_path / "judge")
    judge.add_pod(PodConfig("envoyfilter: pod catalog-v1", boot, [*static["listeners"], patched],
                            static["clusters"]))
    assert judge.run() == []
    broken = copy.deepcopy(patched)
    hcm_config(broken)["http_filters"][1]["typed_config"]["abort"]["http_status"] = 99  # Envoy wants 200-599
    judge.add_pod(PodConfig("envoyfilter: pod broken", boot, [*static["listeners"], broken], static["clusters"]))
    assert [r.label for r in judge.run()] == ["envoyfilter: pod broken"]  # the judge does judge
