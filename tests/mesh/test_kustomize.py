"""A mesh directory that is a kustomization is loaded as ``kubectl kustomize`` renders it (``mesh.kustomize``).

Each test writes a kustomize base and a staging overlay (``tests.support.kustomize``) and loads the overlay with
``load_mesh`` or ``chaosmesh-qa validate``: the overlay's patches are in force, a problem names the file the
resource came from, a kustomize failure is one line naming the kustomization.  kubectl renders: every test here
starts a process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.explain import explain
from chaosmesh_qa.mesh.kustomize import ORIGIN
from chaosmesh_qa.mesh.loader import raw_documents
from tests.support.cli import run_cli
from tests.support.corpus import write
from tests.support.kustomize import STAGING, base_and_overlay

pytestmark = pytest.mark.processes


def _problems(directory: Path) -> list[str]:
    with pytest.raises(InvalidMeshConfig) as raised:
        load_mesh(directory)
    assert all("\n" not in p for p in raised.value.problems)
    return raised.value.problems


def test_an_overlay_loads_with_its_patches_in_force(tmp_path: Path) -> None:
    loaded = load_mesh(base_and_overlay(tmp_path))
    model = loaded.model
    assert [(v.name, v.replicas) for v in model.services["reviews"].versions] == [("v1", 1), ("v2", 2)]
    assert [(d.subset, d.weight) for d in model.routes_for("reviews")[0].destinations] == [("v1", 50), ("v2", 50)]
    assert loaded.warnings == [] and loaded.notes == []
    assert loaded.files[0] == str(tmp_path / "overlays" / "staging" / "kustomization.yaml")
    assert sorted(loaded.files[1:]) == [str(tmp_path / "base" / f) for f in ("mesh.yaml", "traffic.yaml",
                                                                           "workloads.yaml")]


def test_the_base_alone_is_a_kustomization_too(tmp_path: Path) -> None:
    base_and_overlay(tmp_path)
    model = load_mesh(tmp_path / "base").model
    assert [(d.subset, d.weight) for d in model.routes_for("reviews")[0].destinations] == [("v1", 100), ("v2", 0)]


@pytest.mark.parametrize("name", ["kustomization.yml", "Kustomization"])
def test_every_name_kustomize_reads_is_detected(tmp_path: Path, name: str) -> None:
    model = load_mesh(base_and_overlay(tmp_path, name=name)).model
    assert model.services["reviews"].version("v2").replicas == 2


def test_a_problem_names_the_file_the_resource_came_from_without_a_line(tmp_path: Path) -> None:
    overlay = base_and_overlay(tmp_path, STAGING.replace("value: 2}", 'value: "2"}'))
    assert _problems(overlay)[0] == (f"{tmp_path}/base/workloads.yaml (kustomize): Deployment/reviews-v2: "
                                     "spec.replicas: Input should be a valid integer")


def test_the_overlays_own_resources_and_transformers_apply(tmp_path: Path) -> None:
    overlay = base_and_overlay(tmp_path, STAGING.replace("[../../base]", "[../../base, settings.yaml]")
                               + "namespace: shop\ncommonLabels: {team: payments}\n")
    write(overlay, {"settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {k: v}\n"})
    loaded = load_mesh(overlay)
    reviews = loaded.model.services["reviews"]
    assert reviews.namespace == "shop" and reviews.version("v1").labels["team"] == "payments"
    assert loaded.notes == [f"{overlay}: ignored, they do not shape the mesh: ConfigMap"]


def test_the_objects_as_written_are_the_rendered_ones_without_kustomizes_origin(tmp_path: Path) -> None:
    documents = raw_documents(base_and_overlay(tmp_path))  # what the Kubernetes API emulation stores
    assert len(documents) == 8
    assert not [d for d in documents if ORIGIN in (d["metadata"].get("annotations") or {})]
    routes = next(d for d in documents if d["kind"] == "VirtualService")["spec"]["http"][0]["route"]
    assert [r["weight"] for r in routes] == [50, 50]  # the overlay's, not the base file's


def test_a_generated_resource_names_the_kustomization(tmp_path: Path) -> None:
    overlay = base_and_overlay(tmp_path, STAGING + "configMapGenerator:\n- name: istio\n  namespace: istio-system\n"
                               "  options: {disableNameSuffixHash: true}\n"
                               "  literals: ['mesh=trustDomain: [not, a, string]']\n")
    assert _problems(overlay)[0].startswith(f"{overlay}/kustomization.yaml (kustomize): ConfigMap/istio: "
                                            "data.mesh.trustDomain:")


def test_a_kustomize_failure_is_one_line_naming_the_kustomization(tmp_path: Path) -> None:
    overlay = base_and_overlay(tmp_path, STAGING.replace("[../../base]", "[../../base, missing.yaml]"))
    result = run_cli("validate", "--mesh", str(overlay))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"chaosmesh-qa: {overlay}/kustomization.yaml: kustomize: accumulating "
                                    "resources:")
    assert "missing.yaml" in result.stderr and "Traceback" not in result.stderr


def test_an_invalid_kustomization_is_named_with_kustomizes_reason(tmp_path: Path) -> None:
    overlay = base_and_overlay(tmp_path, STAGING + "unknownField: 1\n")
    assert _problems(overlay) == [f"{overlay}/kustomization.yaml: kustomize: invalid Kustomization: json: unknown "
                                  'field "unknownField"']


def test_without_kubectl_the_problem_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overlay = base_and_overlay(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert _problems(overlay) == [f"{overlay}/kustomization.yaml: kustomize: kubectl not found on PATH (it renders "
                                  "kustomizations: install Debian's kubernetes-client)"]


def test_explain_names_the_file_each_rendered_resource_came_from(tmp_path: Path) -> None:
    findings = explain(base_and_overlay(tmp_path))["findings"]
    locations = {f["location"] for f in findings if f["message"].startswith("reviews:")}
    assert f"{tmp_path}/base/traffic.yaml (kustomize): VirtualService/reviews: spec.http[0].retries" in locations
