"""Gateways as real configurations write them: an expectation corpus, loaded without starting anything.

Each case is a mesh directory (two services, ``web`` in two versions and ``api``) plus the gateway
resources under test, in the shapes public repositories use for ingress: an Istio ``Gateway`` with
VirtualServices bound to it (``hosts: ["*"]`` or external host names, ``gateways: [mesh]`` and the
mixed form) and the Gateway API's ``Gateway`` + ``HTTPRoute``.  Each has its expected result:
accepted (with exactly the warnings listed, and the ingress virtual hosts it must produce), or
refused with one line naming file, resource, field and reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.loader import LoadedMesh
from chaosmesh_qa.mesh.model import HeaderChanges, StringMatch
from chaosmesh_qa.targets.local.envoy_validation import validate_with_envoy
from tests.support.corpus import BOOKINFO, WEB_SUBSETS, Case, Check, judge, write
from tests.support.manifests import CASES as MANIFEST_CASES

MESH = """apiVersion: chaosmesh-qa.io/v1alpha1
kind: Mesh
metadata: {name: gw}
spec:
  services:
  - name: web
    versions: [{name: v1}, {name: v2}]
    app:
      calls: [{service: api, path: /data}]
  - name: api
    versions: [{name: v1}]
---
""" + WEB_SUBSETS


def gateway(hosts: str = '["*"]', name: str = "public", extra: str = "", selector: str = "istio: ingressgateway",
            protocol: str = "HTTP", number: int = 80) -> str:
    return f"""apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: {name}
  namespace: default
spec:
  selector:
    {selector}
  servers:
  - port:
      number: {number}
      name: http
      protocol: {protocol}
    hosts: {hosts}
{extra}"""


def bound_vs(hosts: str = '["*"]', gateways: str = "[public]", name: str = "edge", dest: str = "web",
             subset: str = "") -> str:
    subset_line = f"\n        subset: {subset}" if subset else ""
    return f"""apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts: {hosts}
  gateways: {gateways}
  http:
  - match:
    - uri:
        prefix: /
    route:
    - destination:
        host: {dest}{subset_line}
        port:
          number: 8080
"""


def k8s_gateway(listeners: str = "  - {name: http, port: 80, protocol: HTTP}", cls: str = "istio",
                allowed: str = "") -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: shop
spec:
  gatewayClassName: {cls}
  listeners:
{listeners}{allowed}
"""


def http_route(rules: str, parent: str = "  - name: shop", hostnames: str = "", namespace: str = "") -> str:
    meta = f"\n  namespace: {namespace}" if namespace else ""
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop-routes{meta}
spec:
  parentRefs:
{parent}
{hostnames}  rules:
{rules}"""


SPLIT_RULES = """  - matches:
    - path: {type: PathPrefix, value: /shop}
    backendRefs:
    - {name: web, port: 8080, weight: 90}
    - {name: api, port: 8080, weight: 10}
"""


def _helm_gateway(loaded: LoadedMesh) -> None:
    """Istio's gateway Helm chart, release istio-ingress: its pods' labels, namespace and service account."""
    gateway = loaded.model.ingress_gateway
    assert (gateway.name, gateway.namespace, gateway.labels) == (
        "istio-ingress", "istio-ingress", {"app": "istio-ingress", "istio": "ingress"})
    assert loaded.model.ingress_spiffe == "spiffe://cluster.local/ns/istio-ingress/sa/istio-ingress"


def domains(expected: dict[str, list[str]]) -> Check:
    """A check: the ingress's virtual hosts and, for each, the services its routes reach in order."""

    def check(loaded: LoadedMesh) -> None:
        found = {h.name: [d.service for r in h.routes for d in r.destinations] for h in loaded.model.gateway_hosts}
        assert found == expected
    return check


def separate_routes(loaded: LoadedMesh) -> None:
    """The gateway VirtualService routes to web v1; the mesh one to web v2; neither sees the other."""
    model = loaded.model
    (host,) = model.gateway_hosts
    assert [d.subset for r in host.routes for d in r.destinations] == ["v1"]
    assert [d.subset for r in model.routes["web"] for d in r.destinations] == ["v2"]


def mixed(loaded: LoadedMesh) -> None:
    """``gateways: [mesh, public]``: the external host on the gateway, the service's host in the mesh."""
    assert [h.name for h in loaded.model.gateway_hosts] == ["shop.example.com"]
    assert [d.subset for r in loaded.model.routes["web"] for d in r.destinations] == ["v2"]


def split(loaded: LoadedMesh) -> None:
    (host,) = loaded.model.gateway_hosts
    (route,) = host.routes
    assert [(d.service, d.weight) for d in route.destinations] == [("web", 90), ("api", 10)]
    uri = route.matches[0].uri
    assert uri is not None and uri.kind == "regex"
    assert loaded.model.ingress_services() == ["api", "web"] and loaded.model.ingress_service == "web"


def thirds(loaded: LoadedMesh) -> None:
    (host,) = loaded.model.gateway_hosts
    assert [d.weight for d in host.routes[0].destinations] == [33, 67]


def precedence(loaded: LoadedMesh) -> None:
    (host,) = loaded.model.gateway_hosts
    uris = [r.matches[0].uri for r in host.routes]
    assert uris[0] == StringMatch("exact", "/login")  # Exact first, then the longest prefix, then "/"
    assert uris[1] is not None and "shop" in uris[1].value
    assert uris[2] is None


def header_and_method(loaded: LoadedMesh) -> None:
    (host,) = loaded.model.gateway_hosts
    headers = dict(host.routes[0].matches[0].headers)
    assert headers == {"x-canary": StringMatch("exact", "yes"), ":method": StringMatch("exact", "GET")}


def query_params(loaded: LoadedMesh) -> None:
    (host,) = loaded.model.gateway_hosts
    assert host.routes[0].matches[0].query_params == (("debug", StringMatch("exact", "1")),
                                                       ("v", StringMatch("regex", "[0-9]+")))


def header_changes(loaded: LoadedMesh) -> None:
    (host,) = loaded.model.gateway_hosts
    assert host.routes[0].headers == HeaderChanges((("x-from", "gw"),), (("x-tag", "a"),), ("x-debug",))


CASES = [
    # ---------------------------------------------------------------- Istio Gateway + VirtualService
    Case("bookinfo-style-any-host", {"mesh.yaml": MESH, "gateway.yaml": gateway() + "---\n" + bound_vs()},
         check=domains({"*": ["web"]})),
    Case("external-hostname",
         {"mesh.yaml": MESH, "gw.yaml": gateway('["shop.example.com"]') + "---\n" + bound_vs('["shop.example.com"]')},
         check=domains({"shop.example.com": ["web"]})),
    Case("any-host-vs-on-named-servers",
         {"mesh.yaml": MESH, "gw.yaml": gateway('["a.example.com", "b.example.com"]') + "---\n" + bound_vs()},
         check=domains({"a.example.com": ["web"], "b.example.com": ["web"]})),
    Case("wildcard-server-host",
         {"mesh.yaml": MESH, "gw.yaml": gateway('["*.example.com"]') + "---\n" + bound_vs('["shop.example.com"]')},
         check=domains({"shop.example.com": ["web"]})),
    Case("namespaced-server-host", {"mesh.yaml": MESH, "gw.yaml": gateway('["default/*"]') + "---\n" + bound_vs()},
         check=domains({"*": ["web"]})),
    Case("gateway-and-mesh-vs-same-host-not-duplicates",
         {"mesh.yaml": MESH, "gw.yaml": gateway() + "---\n" + bound_vs('["web"]', subset="v1"),
          "mesh-vs.yaml": bound_vs('["web"]', "[mesh]", name="web-mesh", subset="v2")},
         check=separate_routes),
    Case("mixed-mesh-and-gateway",
         {"mesh.yaml": MESH, "gw.yaml": gateway('["shop.example.com"]') + "---\n"
          + bound_vs('["shop.example.com", "web"]', "[mesh, public]", subset="v2")},
         check=mixed),
    Case("gateways-mesh-explicit-is-plain-mesh-vs",
         {"mesh.yaml": MESH.replace("  services:", "  ingress: {service: web}\n  services:"),
          "vs.yaml": bound_vs('["web"]', "[mesh]", subset="v2")},
         check=lambda loaded: loaded.model.gateway_hosts == () and loaded.model.ingress_services() == ["web"]),
    Case("vs-host-outside-gateway-hosts",
         {"mesh.yaml": MESH, "gw.yaml": gateway('["shop.example.com"]') + "---\n" + bound_vs('["admin.example.org"]')},
         error=("gw.yaml: VirtualService/edge: spec.hosts[0]:", "matches no host that Gateway default/public serves")),
    Case("gateway-wrong-api-version",
         {"mesh.yaml": MESH, "gw.yaml": gateway().replace("networking.istio.io/v1beta1", "networking.istio.io/v2")},
         error=("gw.yaml: Gateway/public: apiVersion:", "'networking.istio.io/v2' is not a Gateway API version")),
    Case("unknown-gateway", {"mesh.yaml": MESH, "gw.yaml": gateway() + "---\n" + bound_vs(gateways="[private]")},
         error=("VirtualService/edge: spec.gateways[0]:", "no Gateway 'default/private'")),
    Case("server-host-of-another-namespace",
         {"mesh.yaml": MESH, "gw.yaml": gateway('["shop/*"]') + "---\n" + bound_vs()},
         error=("VirtualService/edge: spec.hosts[0]:", "to namespace 'default'")),
    Case("two-gateway-vs-for-one-host-merged-oldest-first",  # istiod appends their routes in creation order
         {"mesh.yaml": MESH,
          "gw.yaml": gateway() + "---\n" + bound_vs() + "---\n" + bound_vs(name="edge2", dest="api")},
         check=domains({"*": ["web", "api"]})),
    # the sandbox runs one ingress gateway: the first Gateway's (Istio's default one), which the second's misses
    Case("selectors-of-two-gateways",
         {"mesh.yaml": MESH, "gw.yaml": gateway() + "---\n" + gateway(name="internal", selector="istio: ingress")
          + "---\n" + bound_vs()},
         error=("Gateway/internal: spec.selector: istio=ingress selects no gateway of the sandbox (its one ingress "
                "gateway, istio-ingressgateway, has the labels app=istio-ingressgateway, istio=ingressgateway)",)),
    Case("selector-of-the-helm-installed-gateway",
         {"mesh.yaml": MESH, "gw.yaml": gateway(selector="istio: ingress") + "---\n" + bound_vs()},
         check=lambda loaded: _helm_gateway(loaded)),
    Case("https-server-served-plain",
         {"mesh.yaml": MESH, "gw.yaml": gateway(protocol="HTTPS", number=443,
                                                extra="    tls: {mode: SIMPLE, credentialName: shop-cert}\n")
          + "---\n" + bound_vs()},
         warnings=("spec.servers[0].protocol: HTTPS is served as plain HTTP",), check=domains({"*": ["web"]})),
    Case("tcp-server-not-served",
         {"mesh.yaml": MESH.replace("  services:", "  ingress: {service: web}\n  services:"),
          "gw.yaml": gateway(protocol="TCP", number=3306)},
         warnings=("'TCP' is not served", "no VirtualService or HTTPRoute is bound to it")),
    Case("two-ports-one-listener",
         {"mesh.yaml": MESH, "gw.yaml": gateway(extra="  - port: {number: 8080, name: http-alt, protocol: HTTP}\n"
                                                      "    hosts: [\"*\"]\n") + "---\n" + bound_vs()},
         warnings=("ports 80, 8080 are all served on the sandbox's one ingress listener",)),
    Case("mesh-ingress-and-gateway",
         {"mesh.yaml": MESH.replace("  services:", "  ingress: {service: web}\n  services:"),
          "gw.yaml": gateway() + "---\n" + bound_vs()},
         error=("Mesh/gw: spec.ingress:", "a Gateway drives the ingress gateway here")),
    Case("no-ingress-at-all", {"mesh.yaml": MESH},
         error=("Mesh/gw: spec.ingress:", "no ingress")),
    # ---------------------------------------------------------------- Gateway API
    Case("httproute-weighted-split", {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(SPLIT_RULES)},
         check=split),
    Case("httproute-relative-weights",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(
             SPLIT_RULES.replace("weight: 90", "weight: 1").replace("weight: 10", "weight: 2"))},
         check=thirds),
    Case("httproute-precedence-across-routes",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(
             "  - backendRefs: [{name: api, port: 8080}]\n" + SPLIT_RULES) + "---\n" + http_route(
             "  - matches: [{path: {type: Exact, value: /login}}]\n    backendRefs: [{name: web, port: 8080}]\n"
         ).replace("shop-routes", "login")},
         check=precedence),
    Case("httproute-header-and-method",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(
             "  - matches:\n    - headers: [{name: X-Canary, value: 'yes'}]\n      method: GET\n"
             "    backendRefs: [{name: web, port: 8080}]\n")},
         check=header_and_method),
    Case("httproute-listener-hostname",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway("  - {name: http, port: 80, protocol: HTTP, hostname: "
                                                    "'*.example.com'}") + "---\n"
          + http_route(SPLIT_RULES, hostnames="  hostnames: [shop.example.com]\n")},
         check=domains({"shop.example.com": ["web", "api"]})),
    Case("httproute-hostname-outside-listener",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway("  - {name: http, port: 80, protocol: HTTP, hostname: "
                                                    "shop.example.com}") + "---\n"
          + http_route(SPLIT_RULES, hostnames="  hostnames: [admin.example.com]\n")},
         error=("HTTPRoute/shop-routes: spec.hostnames[0]:", "matches no hostname of the listeners")),
    Case("httproute-header-modifier",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(
             SPLIT_RULES + "    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n"
                           "        set: [{name: X-From, value: gw}]\n        add: [{name: x-tag, value: a}]\n"
                           "        remove: [x-debug]\n")},
         check=header_changes),
    Case("httproute-filter-refused",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(
             SPLIT_RULES + "    filters:\n    - type: RequestRedirect\n"
                           "      requestRedirect: {scheme: https, statusCode: 301}\n")},
         error=("HTTPRoute/shop-routes: spec.rules[0].filters[0].type:", "'RequestRedirect' is not supported")),
    Case("httproute-header-modifier-twice",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(
             SPLIT_RULES + "    filters:\n" + "    - type: RequestHeaderModifier\n"
                           "      requestHeaderModifier: {remove: [x-debug]}\n" * 2)},
         error=("spec.rules[0].filters[1].type:", "RequestHeaderModifier given twice")),
    Case("httproute-service-parent-without-group-refused",  # the API server defaults group to Gateway API's
         {"mesh.yaml": MESH, "gw.yaml": http_route(SPLIT_RULES, parent="  - {kind: Service, name: web}")},
         error=("HTTPRoute/shop-routes: spec.parentRefs[0].kind:", "'Service' of group 'gateway.networking.k8s.io'"
                " is not a parent")),
    Case("httproute-backend-port-mismatch",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(SPLIT_RULES.replace("port: 8080,",
                                                                                                   "port: 9080,", 1))},
         error=("spec.rules[0].backendRefs[0].port:", "9080 is not the port of service 'web' (8080)")),
    Case("httproute-query-params",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(
             "  - matches:\n    - queryParams: [{name: debug, value: '1'}, {type: RegularExpression, name: v, "
             "value: '[0-9]+'}]\n    backendRefs: [{name: web, port: 8080}]\n")},
         check=query_params),
    Case("httproute-query-param-twice",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(
             "  - matches:\n    - queryParams: [{name: debug, value: '1'}, {name: debug, value: '2'}]\n"
             "    backendRefs: [{name: web, port: 8080}]\n")},
         error=("spec.rules[0].matches[0].queryParams[1].name:", "'debug' is matched twice")),
    Case("gateway-class-not-istio", {"mesh.yaml": MESH, "gw.yaml": k8s_gateway(cls="nginx")},
         error=("Gateway/shop: spec.gatewayClassName:", "'nginx' is not served")),
    Case("grpcroute-refused",
         {"mesh.yaml": MESH, "gw.yaml": "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n"
                                        "metadata: {name: rpc}\nspec: {parentRefs: [{name: shop}]}\n"},
         error=("GRPCRoute/rpc: kind:", "Gateway API kind 'GRPCRoute' is not supported")),
    Case("httproute-other-namespace-not-admitted",
         {"mesh.yaml": MESH, "gw.yaml": k8s_gateway() + "---\n" + http_route(
             SPLIT_RULES, parent="  - {name: shop, namespace: default}", namespace="team")},
         error=("HTTPRoute/shop-routes: spec.parentRefs[0]:", "allowedRoutes.namespaces.from: Same")),
    # an Istio Gateway and a Gateway API Gateway of the same namespace/name are two objects, not a duplicate
    Case("istio-and-gateway-api-gateways-share-a-name",
         {"mesh.yaml": MESH, "istio.yaml": gateway(name="shop", hosts='["shop.example.com"]') + "---\n"
                       + bound_vs(hosts='["shop.example.com"]', gateways="[shop]"),
          "k8s.yaml": k8s_gateway() + "---\n" + http_route(SPLIT_RULES)}),
    Case("gatewayclass-ignored",
         {"mesh.yaml": MESH, "gw.yaml": "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n"
                                        "metadata: {name: istio}\nspec: {controllerName: istio.io/gateway-controller}\n"
          "---\n" + k8s_gateway() + "---\n" + http_route(SPLIT_RULES)},
         notes=("ignored, they do not shape the mesh: GatewayClass",), check=split),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gateway_corpus(case: Case, tmp_path: Path) -> None:
    judge(case, tmp_path / "mesh")


@pytest.mark.processes
def test_every_accepted_case_passes_envoy(tmp_path: Path) -> None:
    """What the control plane renders for each accepted case (and bookinfo) is taken by the real Envoy."""
    models = [("bookinfo", load_mesh(BOOKINFO).model)]
    for case in CASES + MANIFEST_CASES:
        if not case.error:
            models.append((case.id, load_mesh(write(tmp_path / case.id, case.files)).model))
    assert len(models) > 20
    assert validate_with_envoy(models) == []
