"""Generated meshes of real size: a call tree of N services with fan-out, for tests and the bench.

``write_tree(directory, services=20, replicas=3)`` writes a mesh directory (``mesh.yaml``,
``security.yaml``, ``traffic.yaml``) that ``load_mesh`` reads like any hand-written one:

* services ``s00`` .. ``s<N-1>``, each calling its children ``fanout*i+1 .. fanout*i+fanout``
  in parallel, so one request at the ingress (``s00``) crosses every service once;
* ``replicas`` pods per service; ``s01`` is split into a canary (v1 and v2, 80/20 by weight,
  ``x-canary: true`` to v2) with the same number of pods;
* mTLS STRICT everywhere, and an ALLOW policy per service that admits only its parent.

Used by ``tests/targets/local/test_scale.py`` and the bench.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CANARY = "s01"


def service_name(index: int) -> str:
    return f"s{index:02d}"


def children(index: int, services: int, fanout: int) -> list[int]:
    return [c for c in range(fanout * index + 1, fanout * index + fanout + 1) if c < services]


def tree(services: int = 20, replicas: int = 3, fanout: int = 3, name: str = "tree") -> list[list[dict[str, Any]]]:
    """The mesh's three YAML files as lists of documents: mesh, security, traffic."""
    if services < 2 or replicas < 1 or fanout < 1:
        raise ValueError("a generated tree needs at least 2 services, 1 replica and a fan-out of 1")
    entries = []
    for i in range(services):
        calls = [{"service": service_name(c), "path": f"/{service_name(c)}"} for c in children(i, services, fanout)]
        entry: dict[str, Any] = {"name": service_name(i), "port": 8080,
                                 "versions": [{"name": "v1", "replicas": replicas}],
                                 "app": {"parallel": True, "calls": calls, "propagateHeaders": ["x-canary"]}
                                 if calls else {"responseBytes": 64}}
        if service_name(i) == CANARY and replicas >= 2:
            entry["versions"] = [{"name": "v1", "replicas": replicas - 1}, {"name": "v2", "replicas": 1}]
        entries.append(entry)
    mesh = [{"apiVersion": "chaosmesh-qa.io/v1alpha1", "kind": "Mesh", "metadata": {"name": name},
             "spec": {"ingress": {"service": service_name(0), "paths": ["/"]}, "services": entries}}]
    security: list[dict[str, Any]] = [{
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}}]
    for i in range(services):
        for child in children(i, services, fanout):
            security.append({
                "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": f"{service_name(child)}-callers"},
                "spec": {"selector": {"matchLabels": {"app": service_name(child)}}, "action": "ALLOW",
                         "rules": [{"from": [{"source": {
                             "principals": [f"cluster.local/ns/default/sa/{service_name(i)}"]}}]}]}})
    traffic: list[dict[str, Any]] = []
    if replicas >= 2:
        traffic = [
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": CANARY},
             "spec": {"hosts": [CANARY], "http": [
                 {"name": "canary-header", "match": [{"headers": {"x-canary": {"exact": "true"}}}],
                  "route": [{"destination": {"host": CANARY, "subset": "v2"}}]},
                 {"name": "weighted", "route": [{"destination": {"host": CANARY, "subset": "v1"}, "weight": 80},
                                                {"destination": {"host": CANARY, "subset": "v2"}, "weight": 20}]},
             ]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": CANARY},
             "spec": {"host": CANARY, "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                  {"name": "v2", "labels": {"version": "v2"}}]}},
        ]
    return [mesh, security, traffic]


def write_tree(directory: Path, services: int = 20, replicas: int = 3, fanout: int = 3) -> Path:
    """Write a generated tree mesh into ``directory`` (created); returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for filename, documents in zip(("mesh.yaml", "security.yaml", "traffic.yaml"),
                                   tree(services, replicas, fanout), strict=True):
        if documents:
            (directory / filename).write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return directory
