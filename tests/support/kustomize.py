"""A kustomize base and a staging overlay, as teams keep per-environment mesh configuration.

``base/`` holds the whole mesh (the ``Mesh`` overlay, Deployments and Services for ``front`` and ``reviews`` v1/v2,
a DestinationRule and a VirtualService sending 100 to v1 and 0 to v2) and a kustomization listing it;
``overlays/staging/`` takes the base and patches ``reviews-v2`` to 2 replicas and the VirtualService to 50/50.
Used by tests/mesh/test_kustomize.py (loading) and tests/targets/local/test_kustomize_traffic.py (a sandbox).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.corpus import write

MESH = """apiVersion: chaosmesh-qa.io/v1alpha1
kind: Mesh
metadata: {name: shop}
spec:
  ingress: {service: front}
  services:
  - name: front
    app: {calls: [{service: reviews, path: /}]}
"""


def _deployment(name: str, app: str, version: str | None = None) -> str:
    labels = f"{{app: {app}" + (f", version: {version}}}" if version else "}")
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {labels}}}
  template:
    metadata: {{labels: {labels}}}
    spec: {{containers: [{{name: {app}, image: example.invalid/{app}:1}}]}}
"""


def _service(name: str) -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 8080}}]}}
"""


WORKLOADS = "---\n".join([_deployment("front", "front"), _deployment("reviews-v1", "reviews", "v1"),
                          _deployment("reviews-v2", "reviews", "v2"), _service("front"), _service("reviews")])
TRAFFIC = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 100}
    - {destination: {host: reviews, subset: v2}, weight: 0}
"""
BASE = {"base/mesh.yaml": MESH, "base/workloads.yaml": WORKLOADS, "base/traffic.yaml": TRAFFIC,
        "base/kustomization.yaml": "resources: [mesh.yaml, workloads.yaml, traffic.yaml]\n"}
STAGING = """resources: [../../base]
patches:
- target: {kind: Deployment, name: reviews-v2}
  patch: |-
    - {op: replace, path: /spec/replicas, value: 2}
- target: {group: networking.istio.io, kind: VirtualService, name: reviews}
  patch: |-
    - {op: replace, path: /spec/http/0/route/0/weight, value: 50}
    - {op: replace, path: /spec/http/0/route/1/weight, value: 50}
"""


def base_and_overlay(root: Path, staging: str = STAGING, name: str = "kustomization.yaml") -> Path:
    """``root`` with the base and the staging overlay; the overlay's directory (the mesh directory to load)."""
    write(root, {**BASE, f"overlays/staging/{name}": staging})
    return root / "overlays" / "staging"
