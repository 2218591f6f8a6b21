"""Istio ``Sidecar`` resources: every sidecar knows every service unless ``egress.hosts`` scopes it down.

Checks the resolved model (``MeshModel.egress``, Istio's precedence) and the strict input rules:
bad hosts and ambiguous selections are one line naming file, resource and field; hosts that match
nothing, and Sidecars that hide a called service or a route destination, are warnings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from tests.support.editing import append, mesh_with, replace

EVERY = ["catalog", "frontend", "inventory", "reviews"]


def sidecar(name: str, body: str, namespace: str = "default") -> str:
    return (f"---\napiVersion: networking.istio.io/v1\nkind: Sidecar\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}")


def test_without_a_sidecar_every_workload_knows_every_service(tmp_path: Path) -> None:
    model = load_mesh(mesh_with(tmp_path)).model
    assert all(model.egress(name) == EVERY for name in EVERY)


def test_precedence_selector_then_namespace_then_root(tmp_path: Path) -> None:
    mesh = mesh_with(tmp_path, append("sidecars.yaml", "".join([
        sidecar("mesh-default", "  egress:\n  - hosts: ['*/reviews.default.svc.cluster.local']\n",
                namespace="istio-system"),
        sidecar("catalog", "  workloadSelector: {labels: {app: catalog}}\n"
                           "  egress:\n  - hosts: [./inventory.default.svc.cluster.local]\n"),
    ])))
    loaded = load_mesh(mesh)
    model = loaded.model
    assert model.egress("catalog") == ["inventory"]
    assert model.egress("frontend") == ["reviews"]  # the root namespace's Sidecar
    assert model.callees("catalog") == ["inventory"]
    # frontend's demo app calls catalog, which the mesh-wide Sidecar hides: said, not refused
    assert any("Sidecar/mesh-default: spec.egress: hides 'catalog' from 'frontend'" in w for w in loaded.warnings)


def test_namespace_wide_sidecar_with_wildcards_and_no_egress(tmp_path: Path) -> None:
    mesh = mesh_with(tmp_path, append("sidecars.yaml", "".join([
        sidecar("default", "  egress:\n  - hosts: ['./*.default.svc.cluster.local']\n    port: {number: 8080}\n"),
        sidecar("reviews", "  workloadSelector: {labels: {app: reviews}}\n"),  # no egress: everything
    ])))
    loaded = load_mesh(mesh)
    assert loaded.model.egress("frontend") == EVERY and loaded.model.egress("reviews") == EVERY
    assert any(w.endswith("Sidecar/default: spec.egress[0].port: unsupported field, ignored") for w in loaded.warnings)


def test_route_destination_hidden_by_a_sidecar_is_a_warning(tmp_path: Path) -> None:
    mesh = mesh_with(tmp_path,
                     replace("traffic.yaml", "    - destination: {host: inventory}\n    timeout: 1s",
                             "    - destination: {host: inventory}\n      weight: 50\n"
                             "    - destination: {host: reviews}\n      weight: 50\n    timeout: 1s"),
                     append("sidecars.yaml", sidecar(
                         "catalog", "  workloadSelector: {labels: {app: catalog}}\n"
                                    "  egress:\n  - hosts: ['*/inventory.default.svc.cluster.local']\n")))
    warnings = load_mesh(mesh).warnings
    assert any("hides 'reviews' from 'catalog', but the route to 'inventory' sends traffic to it" in w
               for w in warnings), warnings


@pytest.mark.parametrize(("body", "field", "reason"), [
    ("  egress:\n  - hosts: [catalog]\n", "spec.egress[0].hosts[0]", "not of the form 'namespace/dnsName'"),
    ("  egress:\n  - hosts: ['Default/*']\n", "spec.egress[0].hosts[0]", "namespace 'Default' is not"),
    ("  egress:\n  - hosts: ['./cata log']\n", "spec.egress[0].hosts[0]", "is not '*', '*.<suffix>'"),
    ("  egress:\n  - hosts: ['./a.*.local']\n", "spec.egress[0].hosts[0]", "is not '*', '*.<suffix>'"),
    ("  egress:\n  - hosts: []\n", "spec.egress[0].hosts", "at least 1 item"),
    ("  egress:\n  - hosts: './*'\n", "spec.egress[0].hosts", "valid list"),
    ("  workloadSelector: {labels: {}}\n", "spec.workloadSelector.labels", "at least 1 item"),
    ("  workloadSelector: {labels: {version: v2}}\n", "spec.workloadSelector.labels",
     "selects version(s) v2 of 'reviews' but not v1"),
])
def test_bad_sidecar_is_one_line_naming_the_field(tmp_path: Path, body: str, field: str, reason: str) -> None:
    mesh = mesh_with(tmp_path, append("sidecars.yaml", sidecar("bad", body)))
    with pytest.raises(InvalidMeshConfig) as caught:
        load_mesh(mesh)
    message = str(caught.value)
    assert "\n" not in message and "sidecars.yaml: Sidecar/bad: " + field in message and reason in message, message


def test_ambiguous_sidecars_are_refused(tmp_path: Path) -> None:
    twice = mesh_with(tmp_path / "a", append("sidecars.yaml", sidecar("one", "  egress:\n  - hosts: ['*/*']\n")
                                             + sidecar("two", "  egress:\n  - hosts: ['*/*']\n")))
    with pytest.raises(InvalidMeshConfig, match=r"Sidecar/two: spec.workloadSelector: a second Sidecar without"):
        load_mesh(twice)
    overlap = mesh_with(tmp_path / "b", append("sidecars.yaml", "".join(
        sidecar(name, f"  workloadSelector: {{labels: {labels}}}\n")
        for name, labels in (("by-app", "{app: catalog}"), ("by-version", "{app: catalog, version: v1}")))))
    with pytest.raises(InvalidMeshConfig, match=r"Sidecar/by-version: spec.workloadSelector.labels: selects the "
                                                r"workloads of 'catalog', as .*Sidecar/by-app does"):
        load_mesh(overlap)


def test_hosts_matching_nothing_warn(tmp_path: Path) -> None:
    mesh = mesh_with(tmp_path, append("sidecars.yaml", sidecar(
        "default", "  egress:\n  - hosts: [istio-system/*, ./payments.default.svc.cluster.local, ~/*]\n")))
    warnings = load_mesh(mesh).warnings
    assert sum("matches no service of the Mesh" in w for w in warnings) == 3, warnings
