"""Traffic through the sandbox's ingress gateway, per gateway route, measured with real requests.

One sandbox for the module, built from Kubernetes manifests: ``web`` (v1, v2), ``api`` and
``caller`` (which calls web).  An Istio ``Gateway`` with two bound VirtualServices
(``shop.example.com`` → web v1; any other host, ``/caller`` → caller) and a mesh VirtualService
sending web's mesh traffic to v2, to show gateway and mesh routes kept apart as in Istio; a
Gateway API ``Gateway`` for ``api.example.com`` with an ``HTTPRoute`` (header match, 1:1 split,
PathPrefix by whole segments, a RequestHeaderModifier that a mesh route downstream matches).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.corpus import WEB_SUBSETS, write
from tests.support.sandbox import Served, serve

pytestmark = pytest.mark.processes


def _workload(name: str, version: str) -> str:
    return f"""---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}-{version}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}, version: {version}}}}}
  template:
    metadata: {{labels: {{app: {name}, version: {version}}}}}
    spec:
      containers: [{{name: {name}, image: example.invalid/{name}:1}}]
"""


def _service(name: str) -> str:
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n" \
           "  ports: [{name: http, port: 8080}]\n"


MANIFESTS = "".join([_workload("web", "v1"), _workload("web", "v2"), _workload("api", "v1"),
                     _workload("caller", "v1"), _service("web"), _service("api"), _service("caller")])
OVERLAY = """apiVersion: chaosmesh-qa.io/v1alpha1
kind: Mesh
metadata: {name: gateways}
spec:
  services:
  - name: caller
    app: {calls: [{service: web, path: /from-caller}], propagateHeaders: [x-route]}
"""
ISTIO = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.example.com]
  gateways: [public]
  http:
  - route: [{destination: {host: web, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: any-host}
spec:
  hosts: ["*"]
  gateways: [public]
  http:
  - match: [{uri: {prefix: /caller}}]
    route: [{destination: {host: caller}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - match: [{headers: {x-route: {exact: canary}}}]
    route: [{destination: {host: web, subset: v1}}]
  - route: [{destination: {host: web, subset: v2}}]
---
""" + WEB_SUBSETS
GATEWAY_API = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: api}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, hostname: api.example.com, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api}
spec:
  parentRefs: [{name: api}]
  rules:
  - matches:
    - headers: [{name: x-canary, value: "yes"}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: canary}]}
    backendRefs: [{name: caller, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /data}
    backendRefs:
    - {name: web, port: 8080, weight: 1}
    - {name: api, port: 8080, weight: 1}
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("gateway-traffic")
    files = {"k8s/apps.yaml": MANIFESTS, "mesh.yaml": OVERLAY, "istio/gateway.yaml": ISTIO,
             "gateway-api.yaml": GATEWAY_API}
    yield from serve(write(work / "mesh", files), work / "state")


def _get(client: httpx.Client, box: Served, host: str, path: str, headers: dict[str, str] | None = None) -> Any:
    response = client.get(box.url + path, headers={"Host": host, **(headers or {})})
    return response.status_code, response.json() if response.status_code == 200 else None


def test_external_host_goes_to_its_gateway_route_not_the_mesh_route(box: Served) -> None:
    with httpx.Client(timeout=5) as client:
        seen = Counter()
        for _ in range(40):
            status, body = _get(client, box, "shop.example.com", "/")
            seen[(status, body and body["service"], body and body["version"])] += 1
    assert seen == Counter({(200, "web", "v1"): 40})  # the mesh VirtualService (web -> v2) is not applied


def test_mesh_traffic_keeps_the_mesh_route(box: Served) -> None:
    with httpx.Client(timeout=5) as client:
        versions = Counter()
        for _ in range(40):
            status, body = _get(client, box, "anything.example.org", "/caller")
            assert status == 200 and body["service"] == "caller"
            versions[body["upstreams"][0]["version"]] += 1
    assert versions == Counter({"v2": 40})


def test_unrouted_host_or_path_is_404(box: Served) -> None:
    with httpx.Client(timeout=5) as client:
        assert _get(client, box, "anything.example.org", "/")[0] == 404
        assert _get(client, box, "api.example.com", "/database")[0] == 404  # PathPrefix takes whole segments


def test_httproute_split_and_header_match(box: Served) -> None:
    with httpx.Client(timeout=5) as client:
        split = Counter(_get(client, box, "api.example.com", "/data/1")[1]["service"] for _ in range(400))
        canary = Counter((body["service"], body["upstreams"][0]["version"]) for _, body in (
            _get(client, box, "api.example.com:8080", "/", {"x-canary": "yes", "x-route": "other"})
            for _ in range(40)))
        plain = _get(client, box, "api.example.com", "/")[0]
    assert abs(split["web"] / 400 - 0.5) <= 0.1, split  # 1:1 weights, 5 standard deviations is 0.125
    assert split["web"] + split["api"] == 400
    # the host's port does not matter (Gateway hosts have none); the rule's RequestHeaderModifier sets
    # x-route, which caller forwards and web's mesh route matches (v1); without x-canary no rule takes "/"
    assert canary == Counter({("caller", "v1"): 40}) and plain == 404


def test_httproute_precedence_longest_path_before_headers(box: Served) -> None:
    """Gateway API precedence: the /data rule (longer path) wins over the header rule (path "/")."""
    with httpx.Client(timeout=5) as client:
        seen = Counter(_get(client, box, "api.example.com", "/data", {"x-canary": "yes"})[1]["service"]
                       for _ in range(100))
    assert set(seen) == {"web", "api"}, seen  # the 1:1 split, not the header rule's caller


def test_status_names_every_gateway_destination_as_called_by_the_ingress(box: Served) -> None:
    services = box.status()["services"]
    for name in ("web", "api", "caller"):
        assert "ingress" in services[name]["callers"], services[name]
