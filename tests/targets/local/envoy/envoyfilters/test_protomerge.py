"""MERGE as istiod does it (``envoyfilters.protomerge``): a protobuf merge of the patch into the generated
object, values read as istiod reads them.
"""

from __future__ import annotations

from tests.support.envoyfilters import (
    FAULT_TYPE,
    ROUTER,
    T,
    apply_clusters,
    apply_listeners,
    cluster,
    cp,
    filt,
    hcm_config,
    inbound,
    on_hcm,
)

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
