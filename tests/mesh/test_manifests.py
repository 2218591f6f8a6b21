"""Workloads from Kubernetes manifests, read as ``kubectl apply -f DIR -R`` reads a directory.

The corpus mixes Deployment/StatefulSet/Service/ServiceAccount/Namespace with Istio kinds and a
``Mesh`` overlay, in the shapes real repositories use (one file per kind, one big rendered file,
``kubectl get -o yaml`` exports with status and metadata noise), each with its expected result.
The shipped Mesh-only inputs must load as before.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from tests.support.cli import run_cli
from tests.support.corpus import BOOKINFO, Case, judge
from tests.support.manifests import APP, CASES, OVERLAY, bookinfo

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_manifest_corpus(case: Case, tmp_path: Path) -> None:
    judge(case, tmp_path / "mesh")


def test_bookinfo_example_builds_its_workloads_from_manifests() -> None:
    bookinfo(load_mesh(BOOKINFO))


@pytest.mark.parametrize("mesh", [default_mesh_dir(), *sorted((ROOT / "experiments" / "meshes").iterdir()),
                                  ROOT / "examples" / "own-service" / "mesh"], ids=lambda p: p.name)
def test_mesh_only_inputs_load_as_before(mesh: Path) -> None:
    loaded = load_mesh(mesh)
    assert loaded.notes == [] and loaded.model.gateway_hosts == ()
    assert loaded.model.ingress_services() == [loaded.model.ingress_service]


@pytest.mark.processes
def test_cli_names_the_manifest_field_on_one_line(tmp_path: Path) -> None:
    root = tmp_path / "mesh"
    root.mkdir()
    (root / "app.yaml").write_text(APP.replace("replicas: 3", "replicas: 30") + "---\n" + OVERLAY)
    result = run_cli("validate", "--mesh", str(root))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "app.yaml: Deployment/cart-v1: spec.replicas:" in result.stderr


def test_a_statefulset_with_its_headless_governing_service_runs_under_its_routed_service() -> None:
    """The locked-down cluster profile: a StatefulSet and the headless Service its ``serviceName`` names, which
    selects the same pods as the routed Service (Kubernetes allows it; the sandbox ran each pod under one
    Service and refused it).  The headless one draws a warning and adds nothing; the version remembers its
    workload is a StatefulSet (its pods are named by ordinal); two services may share one service account."""
    loaded = load_mesh(ROOT / "tests" / "profiles" / "locked-down")
    inventory = loaded.model.services["inventory"]
    assert [(v.workload, v.workload_kind, v.replicas) for v in inventory.versions] == [("inventory", "StatefulSet", 2)]
    assert loaded.model.services["catalog"].versions[0].workload_kind == "Deployment"
    assert "inventory-headless" not in loaded.model.services
    assert any("Service/inventory-headless: spec.clusterIP: None (headless) selects the pods of Service inventory"
               in w for w in loaded.warnings)
    assert {s.name for s in loaded.model.services.values() if s.service_account == "backend"} == {"catalog", "reviews"}
