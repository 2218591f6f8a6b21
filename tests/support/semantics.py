"""The Istio-semantics mesh: ``MESH`` (frontend -> reviews, details, ratings) and its Istio configurations.

``SUBSETS`` (the DestinationRules every case builds on) and ``SEMANTICS`` (every silent-difference case of
issue 10 at once); ``write_mesh`` writes a mesh directory of ``MESH`` plus one Istio text.  Used by
tests/mesh/test_istio_semantics.py (the corpus and the generated configuration) and
tests/targets/local/test_istio_semantics_traffic.py (a sandbox on ``SEMANTICS``).
"""

from __future__ import annotations

from pathlib import Path

MESH = """\
apiVersion: chaosmesh-qa.io/v1alpha1
kind: Mesh
metadata: {name: semantics}
spec:
  ingress: {service: frontend}
  services:
  - name: frontend
    versions: [{name: v1}]
    app:
      parallel: true
      calls:
      - {service: reviews, path: /r}
      - {service: details, path: /d}
      - {service: mobile, path: /m}
      - {service: ratings, path: /x}
      propagateHeaders: [x-deny, x-slow]
  - name: mobile
    versions: [{name: v1}]
    app:
      calls: [{service: reviews, path: /r}]
  - name: reviews
    versions: [{name: v1}, {name: v2}]
  - name: details
    versions: [{name: v1}, {name: v2}]
  - name: ratings
    versions: [{name: v1}]
"""

SUBSETS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

# Every silent-difference case at once: what the traffic test runs.
SEMANTICS = SUBSETS + """\
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: details-plaintext}
spec:
  selector: {matchLabels: {app: details}}
  mtls: {mode: DISABLE}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
  creationTimestamp: "2026-11-01T10:00:00Z"
  resourceVersion: "4711"
  uid: 0b7c3a52-3f2e-4c36-9a49-0d7a1f1a2b3c
  generation: 3
  managedFields:
  - {manager: kubectl-client-side-apply, operation: Update}
spec:
  hosts: [reviews]
  http:
  - match:
    - sourceLabels: {app: frontend}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 1
    - destination: {host: reviews, subset: v2}
      weight: 3
  - route:
    - destination: {host: reviews, subset: v1}
status:
  observedGeneration: 3
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: details, subset: v1, port: {number: 8080}}
    mirror: {host: details, subset: v2}
    mirrorPercentage: {value: 100.0}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match:
    - headers: {x-slow: {exact: "1"}}
    fault:
      delay: {fixedDelay: 500ms, percent: 50}
    route:
    - destination: {host: ratings}
  - route:
    - destination: {host: ratings}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings}
spec:
  selector: {matchLabels: {app: ratings}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings}
spec:
  selector: {matchLabels: {app: ratings}}
  rules:
  - to:
    - operation: {methods: ["*"], paths: ["/x*"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-deny-flagged}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules:
  - when:
    - key: request.headers[X-Deny]
      values: ["*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress-blocked, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/blocked*"]}
"""


def write_mesh(root: Path, istio: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mesh.yaml").write_text(MESH)
    (root / "istio.yaml").write_text(istio)
    return root
