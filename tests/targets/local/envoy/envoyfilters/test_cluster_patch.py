"""Patches of clusters (``envoyfilters.cluster_patch``): matches on Istio's cluster names, every operation
per context, transport socket merges.
"""

from __future__ import annotations

from typing import Any

from tests.support.envoyfilters import GATEWAY, JSON, T, apply_clusters, cluster, cp, filt

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
