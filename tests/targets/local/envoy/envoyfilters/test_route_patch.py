"""Patches of route configurations, virtual hosts and routes (``envoyfilters.route_patch``), matched on
Istio's names for them.
"""

from __future__ import annotations

from typing import Any

from chaosmesh_qa.targets.local.envoy import envoyfilters as ef
from chaosmesh_qa.targets.local.envoy.envoyfilters import Proxy
from tests.support.envoyfilters import (
    JSON,
    apply_routes,
    cp,
    filt,
    route_config,
    route_names,
)

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
