"""The manifest expectation corpus: Kubernetes workloads (and an overlay) as repositories ship them.

Builders for Deployment/Service/ServiceAccount text, the shop application (``OVERLAY`` + ``APP``), the checks
the accepted cases run on the loaded mesh, and ``CASES``.  Judged by tests/mesh/test_manifests.py; its
accepted cases are also rendered and validated by Envoy in tests/mesh/test_gateways.py.
"""

from __future__ import annotations

from chaosmesh_qa.mesh.loader import LoadedMesh
from tests.support.corpus import BOOKINFO, Case


def deployment(name: str, app: str, version: str | None = "v1", replicas: str = "2", account: str | None = None,
               selector: str | None = None, kind: str = "Deployment") -> str:
    labels = f"app: {app}" + (f", version: {version}" if version else "")
    sa = f"      serviceAccountName: {account}\n" if account else ""
    return f"""apiVersion: apps/v1
kind: {kind}
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{{selector or labels}}}
  template:
    metadata:
      labels: {{{labels}, tier: backend}}
    spec:
{sa}      containers:
      - name: main
        image: registry.example.invalid/{app}:1.2.3
        ports: [{{containerPort: 8080}}]
        env: [{{name: MODE, value: production}}]
"""


def service(name: str, app: str | None = None, ports: str = "[{name: http, port: 8080, targetPort: 8080}]") -> str:
    selector = f"\n  selector: {{app: {app or name}}}" if app != "" else ""
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:{selector}
  ports: {ports}
"""


def account(name: str) -> str:
    return f"apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}}}\n"


OVERLAY = """apiVersion: chaosmesh-qa.io/v1alpha1
kind: Mesh
metadata: {name: shop}
spec:
  ingress: {service: front}
  services:
  - name: front
    app:
      calls: [{service: cart, path: /cart}]
"""
APP = (deployment("front", "front", account="front") + "---\n" + service("front") + "---\n" + account("front")
       + "---\n" + deployment("cart-v1", "cart", replicas="3", account="cart") + "---\n"
       + deployment("cart-v2", "cart", "v2", replicas="1", account="cart") + "---\n" + service("cart")
       + "---\n" + account("cart"))
EXPORT = """apiVersion: v1
kind: Service
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"apiVersion":"v1","kind":"Service"}'
  creationTimestamp: "2026-01-05T10:00:00Z"
  labels: {app: cart}
  name: cart
  namespace: default
  resourceVersion: "48213"
  uid: 0d7c7a14-1111-4222-8333-944455556666
spec:
  clusterIP: 10.96.12.7
  clusterIPs: [10.96.12.7]
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ports:
  - {name: http, port: 8080, protocol: TCP, targetPort: 8080}
  selector: {app: cart}
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
"""


def basket_selects_the_cart_pods(loaded: LoadedMesh) -> None:
    assert loaded.model.services["basket"].selector == {"app": "cart"}
    assert loaded.model.workload_labels("basket", "v2") == {"app": "cart", "version": "v2", "tier": "backend"}


def workloads(loaded: LoadedMesh) -> None:
    model = loaded.model
    cart = model.services["cart"]
    assert [(v.name, v.replicas) for v in cart.versions] == [("v1", 3), ("v2", 1)]
    assert cart.service_account == "cart" and cart.port == 8080 and cart.namespace == "default"
    assert cart.spiffe_id == "spiffe://cluster.local/ns/default/sa/cart"
    assert model.workload_labels("cart", "v2") == {"app": "cart", "version": "v2", "tier": "backend"}
    assert model.services["front"].versions[0].behaviour.calls == (("cart", "/cart"),)
    assert model.services["cart"].versions[0].behaviour.calls == ()  # no overlay entry: the demo app's defaults


def version_behaviour(loaded: LoadedMesh) -> None:
    cart = loaded.model.services["cart"]
    assert cart.version("v2").behaviour.latency_ms == 50 and cart.version("v1").behaviour.latency_ms == 0


def bookinfo(loaded: LoadedMesh) -> None:
    model = loaded.model
    assert sorted(model.services) == ["details", "productpage", "ratings", "reviews"]
    assert [v.name for v in model.services["reviews"].versions] == ["v1", "v2", "v3"]
    assert {s.port for s in model.services.values()} == {9080}
    assert model.services["reviews"].service_account == "bookinfo-reviews"
    assert model.callees("productpage") == ["details", "reviews"]
    assert {c for v in model.services["reviews"].versions for c, _ in v.behaviour.calls} == {"ratings"}
    assert model.services["reviews"].version("v1").behaviour.calls == ()
    assert model.ingress_services() == ["productpage"]
    assert loaded.notes == [f"{BOOKINFO}: ignored, they do not shape the mesh: ConfigMap, HorizontalPodAutoscaler"]


CASES = [
    Case("separate-files-and-overlay", {"mesh.yaml": OVERLAY, "k8s/front.yaml": APP}, check=workloads),
    Case("one-rendered-file", {"rendered.yaml": OVERLAY + "---\n" + APP}, check=workloads),
    Case("nested-directories", {"overlay/mesh.yaml": OVERLAY, "base/apps/app.yaml": APP}, check=workloads),
    Case("overlay-per-version-behaviour",
         {"mesh.yaml": OVERLAY + "  - name: cart\n    versions:\n    - name: v2\n      app: {latencyMs: 50}\n",
          "app.yaml": APP}, check=version_behaviour),
    Case("kubectl-export-noise-accepted",
         {"mesh.yaml": OVERLAY, "app.yaml": APP.replace(service("cart"), EXPORT)}, check=workloads),
    Case("namespace-and-statefulset",
         {"mesh.yaml": OVERLAY, "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n"
          "  labels: {istio-injection: enabled}\n",
          "app.yaml": APP.replace("kind: Deployment\nmetadata:\n  name: cart-v2", "kind: StatefulSet\nmetadata:\n"
                                  "  name: cart-v2")}, check=workloads),
    Case("namespace-without-injection",
         {"mesh.yaml": OVERLAY, "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n",
          "app.yaml": APP},
         warnings=("Namespace/default: metadata.labels: no istio-injection=enabled",), check=workloads),
    Case("pod-opted-out-of-injection",
         {"mesh.yaml": OVERLAY, "app.yaml": APP.replace("labels: {app: cart, version: v2, tier: backend}",
                                                         "labels: {app: cart, version: v2, tier: backend}\n"
                                                         "      annotations: {sidecar.istio.io/inject: 'false'}")},
         warnings=("Deployment/cart-v2: spec.template.metadata: sidecar.istio.io/inject is 'false'",)),
    Case("unused-kinds-listed-once",
         {"mesh.yaml": OVERLAY, "app.yaml": APP, "extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
          "data: {k: v}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\napiVersion: policy/v1\n"
          "kind: PodDisruptionBudget\nmetadata: {name: cart}\nspec: {minAvailable: 1}\n"},
         notes=("ignored, they do not shape the mesh: ConfigMap x2, PodDisruptionBudget",), check=workloads),
    Case("manifests-with-istio-kinds",
         {"mesh.yaml": OVERLAY, "app.yaml": APP, "istio.yaml": """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart}
spec:
  host: cart.default.svc.cluster.local
  subsets:
  - {name: stable, labels: {version: v1}}
  - {name: canary, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart}
spec:
  hosts: [cart]
  http:
  - route:
    - {destination: {host: cart, subset: stable}, weight: 90}
    - {destination: {host: cart, subset: canary}, weight: 10}
"""}, check=lambda loaded: workloads(loaded)),
    Case("manifests-and-mesh-defined-service",
         {"mesh.yaml": OVERLAY + "  - name: legacy\n    versions: [{name: v1}]\n", "app.yaml": APP},
         check=lambda loaded: workloads(loaded) if "legacy" in loaded.model.services else None),
    Case("overlay-sets-replicas",
         {"mesh.yaml": OVERLAY + "  - name: cart\n    versions: [{name: v1, replicas: 5}]\n", "app.yaml": APP},
         error=("mesh.yaml: Mesh/shop: spec.services[1].versions[0].replicas:", "set by the Deployment")),
    Case("overlay-sets-port",
         {"mesh.yaml": OVERLAY + "  - name: cart\n    port: 9090\n", "app.yaml": APP},
         error=("Mesh/shop: spec.services[1].port:", "set by", "Service/cart", "gives only")),
    Case("overlay-unknown-version",
         {"mesh.yaml": OVERLAY + "  - name: cart\n    versions: [{name: v9, app: {latencyMs: 5}}]\n", "app.yaml": APP},
         error=("spec.services[1].versions[0].name:", "has no version 'v9' (its workloads' versions: v1, v2)")),
    Case("mesh-only-service-without-versions",
         {"mesh.yaml": OVERLAY + "  - name: payments\n", "app.yaml": APP},
         error=("Mesh/shop: spec.services[1].versions:",
                "required (no Deployment or StatefulSet with a Service named 'payments'")),
    Case("deployment-without-service",
         {"mesh.yaml": OVERLAY, "app.yaml": APP + "---\n" + deployment("batch", "batch")},
         warnings=("Deployment/batch: spec.template.metadata.labels: no Service selects these pods",)),
    Case("service-selecting-nothing",
         {"mesh.yaml": OVERLAY, "app.yaml": APP + "---\n" + service("search")},
         warnings=("Service/search: spec.selector: selects no Deployment or StatefulSet",)),
    Case("selector-does-not-match-template",
         {"mesh.yaml": OVERLAY, "app.yaml": APP.replace("matchLabels: {app: cart, version: v2}",
                                                         "matchLabels: {app: kart}")},
         error=("Deployment/cart-v2: spec.selector.matchLabels:", "does not match spec.template.metadata.labels")),
    Case("two-deployments-one-version",
         {"mesh.yaml": OVERLAY, "app.yaml": APP + "---\n" + deployment("cart-v1b", "cart", account="cart")},
         error=("Deployment/cart-v1b: spec.template.metadata.labels.version:", "'v1' is also the version")),
    Case("versions-with-different-accounts",
         {"mesh.yaml": OVERLAY, "app.yaml": APP.replace("cart-v2\nspec:\n  replicas: 1\n", "cart-v2\nspec:\n"
                                                         "  replicas: 1\n").replace(
             "      serviceAccountName: cart\n", "      serviceAccountName: cart-canary\n", 1)},
         error=("Service/cart: spec.selector:", "different service accounts (cart, cart-canary)")),
    Case("service-account-not-in-directory",
         {"mesh.yaml": OVERLAY, "app.yaml": APP.replace("---\n" + account("cart"), "")},
         warnings=("Service/cart: ServiceAccount 'cart' is not in the mesh directory",)),
    # Kubernetes keeps a pod's labels as its template gives them: a Service named unlike its pods selects them
    Case("app-label-differs-from-service",
         {"mesh.yaml": OVERLAY.replace("service: cart", "service: basket"),
          "app.yaml": APP.replace(service("cart"), service("basket", "cart"))},
         check=basket_selects_the_cart_pods),
    Case("service-with-two-ports",
         {"mesh.yaml": OVERLAY, "app.yaml": APP.replace(service("cart"), service(
             "cart", ports="[{name: grpc, port: 9090}, {name: http-web, port: 8080}]"))},
         warnings=("Service/cart: spec.ports: only port 8080 is served",), check=workloads),
    Case("bare-pod-refused",
         {"mesh.yaml": OVERLAY, "app.yaml": APP + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: debug}\n"
          "spec: {containers: [{name: c, image: busybox}]}\n"},
         error=("app.yaml: Pod/debug: kind:", "a bare Pod is not run")),
    Case("networkpolicy-warned",
         {"mesh.yaml": OVERLAY, "app.yaml": APP + "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
          "metadata: {name: deny-all}\nspec: {podSelector: {}}\n"},
         warnings=("NetworkPolicy/deny-all: kind: NetworkPolicy is not enforced by the local target's sandbox",)),
    Case("replicas-as-string",
         {"mesh.yaml": OVERLAY, "app.yaml": APP.replace('replicas: 3', 'replicas: "3"')},
         error=("app.yaml: Deployment/cart-v1: spec.replicas:", "valid integer")),
    Case("service-without-api-version",
         {"mesh.yaml": OVERLAY, "app.yaml": APP.replace("apiVersion: v1\nkind: Service\nmetadata:\n  name: cart",
                                                         "kind: Service\nmetadata:\n  name: cart")},
         error=("Service/cart: apiVersion:", "None is not a Service API version (expected v1)")),
    Case("deployment-wrong-api-version",
         {"mesh.yaml": OVERLAY, "app.yaml": APP.replace("apps/v1\nkind: Deployment\nmetadata:\n  name: front",
                                                         "extensions/v1beta1\nkind: Deployment\nmetadata:\n"
                                                         "  name: front")},
         error=("Deployment/front: apiVersion:", "expected apps/v1")),
]
