"""``scaffold.new_mesh_dir``: mesh directories from manifests and Istio YAML that the loader accepts, the ingress
guessed from what the manifests say, and nothing written (not even the staging directory) when the result would
not load.  In process, nothing starts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.scaffold import new_mesh_dir
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "examples" / "bookinfo" / "mesh" / "platform" / "bookinfo.yaml"


def _mesh_document(path: Path) -> dict:  # type: ignore[type-arg]
    return next(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Mesh")


def test_manifests_only_get_an_overlay_and_a_guessed_ingress(tmp_path: Path) -> None:
    source = tmp_path / "My Manifests"
    source.mkdir()
    shutil.copy(PLATFORM, source)
    made = new_mesh_dir(source, tmp_path / "out")
    assert made.ingress == "productpage" and made.services == ["productpage", "details", "reviews", "ratings"]
    assert any(note.startswith("ingress service: productpage (the first service read") for note in made.notes)
    mesh = _mesh_document(made.mesh_file)
    assert mesh["metadata"]["name"] == "my-manifests"
    assert [s["name"] for s in mesh["spec"]["services"]] == made.services
    assert all(s == {"name": s["name"], "app": {"calls": []}} for s in mesh["spec"]["services"])
    model = load_mesh(made.out_dir).model
    assert model.ingress_service == "productpage"
    assert [v.name for v in model.services["reviews"].versions] == ["v1", "v2", "v3"]


def test_the_front_door_is_read_from_an_ingress_or_a_load_balancer(tmp_path: Path) -> None:
    source = tmp_path / "k8s"
    source.mkdir()
    text = PLATFORM.read_text()
    details = "  name: details\n  labels: {app: details, service: details}\nspec:\n"
    assert details in text
    (source / "app.yaml").write_text(text.replace(details, details + "  type: LoadBalancer\n", 1))
    assert new_mesh_dir(source, tmp_path / "lb").ingress == "details"
    (source / "ingress.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules:\n  - http:\n"
        "      paths:\n      - path: /\n        pathType: Prefix\n"
        "        backend: {service: {name: reviews, port: {number: 9080}}}\n")
    made = new_mesh_dir(source, tmp_path / "ing")
    assert made.ingress == "reviews"
    assert any("Ingress" in warning for warning in made.warnings)  # the loader says it is not served
    assert new_mesh_dir(source, tmp_path / "chosen", ingress="ratings", name="shop").ingress == "ratings"
    assert _mesh_document(tmp_path / "chosen" / "mesh.yaml")["metadata"]["name"] == "shop"


def test_istio_yaml_alone_names_the_services_and_their_versions(tmp_path: Path) -> None:
    source = tmp_path / "istio"
    source.mkdir()
    shutil.copy(default_mesh_dir() / "traffic.yaml", source)
    made = new_mesh_dir(source, tmp_path / "out", ingress="catalog")
    assert made.services == ["reviews", "catalog", "inventory"]
    model = load_mesh(made.out_dir).model
    assert [v.name for v in model.services["reviews"].versions] == ["v1", "v2"]  # the DestinationRule's subsets
    assert model.routes_for("reviews")[0].destinations[0].subset == "v2"  # the VirtualService applies as written


def test_a_gateway_drives_the_ingress(tmp_path: Path) -> None:
    source = tmp_path / "k8s"
    shutil.copytree(ROOT / "examples" / "bookinfo" / "mesh", source, ignore=shutil.ignore_patterns("overlay.yaml"))
    made = new_mesh_dir(source, tmp_path / "out")
    assert made.ingress is None and "ingress" not in _mesh_document(made.mesh_file)["spec"]
    assert sorted(str(p) for p in made.copied) == sorted(
        str(p.relative_to(source)) for p in source.rglob("*.yaml"))
    with pytest.raises(InvalidArgument, match=r"^--ingress: the Gateway in istio/gateway.yaml drives the ingress"):
        new_mesh_dir(source, tmp_path / "again", ingress="productpage")


def test_a_result_that_would_not_load_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "k8s"
    source.mkdir()
    shutil.copy(PLATFORM, source)
    (source / "vs.yaml").write_text(  # a route to a host outside the mesh: the loader refuses it
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [reviews]\n"
        "  http:\n  - route:\n    - destination: {host: api.example.com}\n")
    with pytest.raises(InvalidArgument, match=r"^--from: the result would not load: .*vs.yaml.*api.example.com") as err:
        new_mesh_dir(source, tmp_path / "out")
    assert str(source) in str(err.value) and ".new-" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k8s"]  # neither out nor its staging directory


def test_a_name_file_already_taken_is_not_overwritten(tmp_path: Path) -> None:
    source = tmp_path / "k8s"
    source.mkdir()
    shutil.copy(PLATFORM, source / "mesh.yaml")  # the team's own file of that name
    made = new_mesh_dir(source, tmp_path / "out")
    assert made.mesh_file.name == "chaosmesh-qa-mesh.yaml"
    assert (made.out_dir / "mesh.yaml").read_text() == PLATFORM.read_text()


def test_an_empty_output_directory_is_used(tmp_path: Path) -> None:
    source = tmp_path / "k8s"
    source.mkdir()
    shutil.copy(PLATFORM, source)
    (tmp_path / "out").mkdir()
    assert new_mesh_dir(source, tmp_path / "out").mesh_file == tmp_path / "out" / "mesh.yaml"
