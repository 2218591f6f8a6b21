"""The resolved mesh model applies Istio's defaults and precedence rules."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from chaosmesh_qa.mesh import MeshModel, load_mesh
from chaosmesh_qa.mesh.model import CircuitBreaker, OutlierPolicy, RouteMatch, StringMatch, WeightedDestination
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir

UNLIMITED = 2**32 - 1
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


def load(tmp_path: Path, **files: str | None) -> MeshModel:
    """The default mesh with files replaced (``name_yaml="..."``) or removed (``name_yaml=None``)."""
    root = tmp_path / "mesh"
    shutil.copytree(default_mesh_dir(), root)
    for key, text in files.items():
        path = root / key.replace("_yaml", ".yaml")
        if text is None:
            path.unlink()
        else:
            path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_mesh(root).model


@pytest.fixture(scope="module")
def shop() -> MeshModel:
    return load_mesh(default_mesh_dir()).model


# --------------------------------------------------------------------------- routes


def test_service_without_virtualservice_gets_istio_default_route(shop: MeshModel) -> None:
    assert "frontend" not in shop.routes
    (route,) = shop.routes_for("frontend")
    assert route.matches == ()
    assert route.destinations == (WeightedDestination("frontend", None, 100),)
    assert route.retries.attempts == 2
    assert route.retries.retry_on == DEFAULT_RETRY_ON
    assert route.retries.per_try_timeout_s is None
    assert route.timeout_s is None
    assert route.fault is None


def test_reviews_header_match_then_weighted_canary(shop: MeshModel) -> None:
    canary, weighted = shop.routes_for("reviews")
    assert canary.matches == (RouteMatch(uri=None, headers=(("x-canary", StringMatch("exact", "true")),)),)
    assert canary.destinations == (WeightedDestination("reviews", "v2", 100),)
    assert weighted.matches == ()
    assert weighted.destinations == (WeightedDestination("reviews", "v1", 80),
                                     WeightedDestination("reviews", "v2", 20))
    for route in (canary, weighted):  # the VirtualService sets no retries or timeout: Istio's defaults
        assert (route.retries.attempts, route.retries.retry_on) == (2, DEFAULT_RETRY_ON)
        assert route.timeout_s is None


def test_virtualservice_retries_and_timeout_by_fqdn_host(shop: MeshModel) -> None:
    (route,) = shop.routes_for("catalog")  # hosts: [catalog.default.svc.cluster.local]
    assert route.destinations == (WeightedDestination("catalog", None, 100),)
    assert route.retries.attempts == 3
    assert route.retries.per_try_timeout_s == 0.5
    assert route.retries.retry_on == "connect-failure,refused-stream,unavailable,reset,5xx"
    assert route.timeout_s == 2.0
    (inventory,) = shop.routes_for("inventory")
    assert inventory.timeout_s == 1.0
    assert inventory.retries.attempts == 2


def test_retries_without_retry_on_and_fault_without_percentage(tmp_path: Path) -> None:
    model = load(tmp_path, traffic_yaml="""
        apiVersion: networking.istio.io/v1beta1
        kind: VirtualService
        metadata: {name: inventory}
        spec:
          hosts: [inventory.default]
          http:
          - match: [{uri: {prefix: /stock}}]
            route: [{destination: {host: inventory}, weight: 40}]
            retries: {attempts: 0}
            fault: {delay: {fixedDelay: 250ms}}
          - route: [{destination: {host: inventory}, weight: 0}]
        """)
    route, catch_all = model.routes_for("inventory")
    assert route.matches[0].uri == StringMatch("prefix", "/stock")
    for lone in (route, catch_all):  # a single destination gets all the traffic, whatever its weight
        assert lone.destinations == (WeightedDestination("inventory", None, 100),)
    assert (route.retries.attempts, route.retries.retry_on) == (0, DEFAULT_RETRY_ON)
    assert route.fault is not None
    assert (route.fault.delay_s, route.fault.delay_percent) == (0.25, 100.0)
    assert (route.fault.abort_status, route.fault.abort_percent) == (None, 0.0)


# --------------------------------------------------------------------------- destination rules


def test_no_connection_pool_means_unlimited_circuit_breaker(shop: MeshModel) -> None:
    for service in ("frontend", "reviews", "catalog"):
        breaker = shop.policies[service].circuit_breaker
        assert (breaker.max_connections, breaker.max_pending_requests, breaker.max_requests,
                breaker.max_retries) == (UNLIMITED,) * 4
        assert breaker.max_requests_per_connection == 0
    frontend = shop.policies["frontend"]
    assert (frontend.load_balancer, frontend.connect_timeout_s, frontend.outlier, frontend.tls_mode) == (
        "LEAST_REQUEST", 10.0, None, "ISTIO_MUTUAL")


def test_destination_rule_settings(shop: MeshModel) -> None:
    assert shop.policies["inventory"].circuit_breaker == CircuitBreaker(16, 8, 16, 3, 0)
    catalog = shop.policies["catalog"]
    assert catalog.load_balancer == "ROUND_ROBIN"
    assert catalog.outlier == OutlierPolicy(3, 3, 1.0, 5.0, 50)


def test_outlier_detection_defaults(tmp_path: Path) -> None:
    model = load(tmp_path, traffic_yaml="""
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: catalog}
        spec:
          host: catalog
          trafficPolicy: {outlierDetection: {consecutive5xxErrors: 7}}
        """)
    assert model.policies["catalog"].outlier == OutlierPolicy(7, 0, 10.0, 30.0, 10)


def test_subset_traffic_policy_overrides_top_level(tmp_path: Path) -> None:
    model = load(tmp_path, traffic_yaml="""
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: reviews}
        spec:
          host: reviews
          trafficPolicy:
            loadBalancer: {simple: ROUND_ROBIN}
            connectionPool:
              tcp: {maxConnections: 64, connectTimeout: 2s}
            outlierDetection: {consecutive5xxErrors: 2}
          subsets:
          - name: v1
            labels: {version: v1}
          - name: v2
            labels: {version: v2}
            trafficPolicy:
              loadBalancer: {simple: RANDOM}
              connectionPool:
                http: {http2MaxRequests: 10}
              tls: {mode: DISABLE}
        """)
    top = model.policies["reviews"]
    v1, v2 = model.subsets["reviews"]["v1"].policy, model.subsets["reviews"]["v2"].policy
    assert v1 == top  # no subset policy: the top level applies as is
    assert (top.load_balancer, top.circuit_breaker.max_connections, top.connect_timeout_s) == (
        "ROUND_ROBIN", 64, 2.0)
    assert v2.load_balancer == "RANDOM"
    assert v2.tls_mode == "DISABLE"
    # the subset's connectionPool replaces the top-level one whole: unset fields are Istio's defaults
    assert v2.circuit_breaker == CircuitBreaker(max_requests=10)
    assert v2.connect_timeout_s == 10.0
    assert v2.outlier == top.outlier  # not set on the subset: inherited
    assert model.subset_of("reviews", "v2") == ["v2"]


# --------------------------------------------------------------------------- security

NAMESPACED_MESH = """
    apiVersion: chaosmesh-qa.io/v1alpha1
    kind: Mesh
    metadata: {name: ns}
    spec:
      ingress: {service: frontend}
      services:
      - name: frontend
        versions: [{name: v1}]
        app: {calls: [{service: reviews}, {service: ledger}]}
      - name: reviews
        versions: [{name: v1}, {name: v2}]
      - name: ledger
        namespace: finance
        versions: [{name: v1}]
    """


def peer_auth(name: str, namespace: str, mode: str, selector: str = "") -> str:
    return (f"---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\n"
            f"spec:\n  mtls: {{mode: {mode}}}\n" + (f"  selector: {{matchLabels: {selector}}}\n" if selector else ""))


def test_without_peer_authentication_mode_is_permissive(tmp_path: Path) -> None:
    model = load(tmp_path, security_yaml=None)
    assert model.peer_auth == ()
    assert {model.mtls_mode(s, v.name) for s, svc in model.services.items() for v in svc.versions} == {"PERMISSIVE"}


def test_default_mesh_is_strict_everywhere(shop: MeshModel) -> None:
    assert {shop.mtls_mode(s, v.name) for s, svc in shop.services.items() for v in svc.versions} == {"STRICT"}


def test_peer_authentication_workload_beats_namespace_beats_mesh(tmp_path: Path) -> None:
    model = load(tmp_path, mesh_yaml=NAMESPACED_MESH, traffic_yaml=None, security_yaml="".join([
        peer_auth("mesh", "istio-system", "STRICT"),
        peer_auth("ns", "default", "DISABLE"),
        peer_auth("reviews-v2", "default", "PERMISSIVE", "{app: reviews, version: v2}"),
        peer_auth("reviews-unset", "default", "UNSET", "{app: reviews, version: v1}"),
        peer_auth("elsewhere", "finance", "PERMISSIVE", "{app: reviews}"),
    ]))
    assert model.mtls_mode("reviews", "v2") == "PERMISSIVE"  # workload level
    assert model.mtls_mode("reviews", "v1") == "DISABLE"  # UNSET inherits: namespace level
    assert model.mtls_mode("frontend", "v1") == "DISABLE"  # namespace level
    assert model.mtls_mode("ledger", "v1") == "STRICT"  # mesh level (root namespace istio-system)


def test_authorization_policy_scope(shop: MeshModel, tmp_path: Path) -> None:
    assert [p.name for p in shop.authz_for("inventory", "v1")] == ["inventory-callers"]
    assert shop.authz_for("catalog", "v1") == []
    policy = ("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
              "metadata: {{name: {name}, namespace: {ns}}}\nspec:\n  {selector}action: DENY\n"
              "  rules: [{{to: [{{operation: {{paths: [/admin*], methods: [POST]}}}}]}}]\n")
    model = load(tmp_path, mesh_yaml=NAMESPACED_MESH, traffic_yaml=None, security_yaml="".join([
        policy.format(name="root-ledger", ns="istio-system", selector="selector: {matchLabels: {app: ledger}}\n  "),
        policy.format(name="root-all", ns="istio-system", selector=""),
        policy.format(name="default-ns", ns="default", selector=""),
        policy.format(name="finance-reviews", ns="finance", selector="selector: {matchLabels: {app: reviews}}\n  "),
    ]))
    # a root-namespace selector matches workloads in every namespace, and only those
    assert sorted(p.name for p in model.authz_for("ledger", "v1")) == ["root-all", "root-ledger"]
    assert sorted(p.name for p in model.authz_for("reviews", "v1")) == ["default-ns", "root-all"]
    (rule,) = model.authz_for("ledger", "v1")[0].rules
    assert rule.sources == ()
    assert (rule.operations[0].paths, rule.operations[0].methods) == (("/admin*",), ("POST",))


def test_call_graph(shop: MeshModel) -> None:
    assert shop.callees("frontend") == ["catalog", "reviews"]
    assert shop.callers("frontend") == ["ingress"]
    assert shop.callers("inventory") == ["catalog"]
    assert shop.services["catalog"].spiffe_id == "spiffe://cluster.local/ns/default/sa/catalog"
    assert shop.services["reviews"].version("v2").behaviour.latency_ms == 2
    assert shop.services["frontend"].version("v1").behaviour.propagate_headers == ("x-canary",)
