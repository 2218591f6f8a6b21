"""``chaosmesh_qa.mesh`` builds its schema (pydantic models, ~0.4 s) only when a mesh is loaded: every `chaos run`
imports the actions, probes and controls, which need a little of this package (localities for the fault policy) and,
on the sandbox, never load a mesh in the run's process (its supervisor does).  Measured: the activity modules'
import fell from 0.44 s to 0.04 s when the package stopped importing its loader eagerly.  (The mesh QA verdicts, such
as ``probes.routing``, read the declared mesh and import its model.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from chaosmesh_qa import mesh
from chaosmesh_qa.mesh.loader import LoadedMesh, load_mesh
from chaosmesh_qa.mesh.model import MeshModel

RUN_SIDE = ("chaosmesh_qa.actions", "chaosmesh_qa.probes.recovery", "chaosmesh_qa.probes.prometheus",
            "chaosmesh_qa.probes.client", "chaosmesh_qa.controls.sandbox",
            "chaosmesh_qa.controls.traffic", "chaosmesh_qa.controls.safety", "chaosmesh_qa.targets.local.target")


def test_the_packages_names_are_the_loaders() -> None:
    assert (mesh.load_mesh, mesh.LoadedMesh, mesh.MeshModel) == (load_mesh, LoadedMesh, MeshModel)
    with pytest.raises(AttributeError, match="has no attribute 'loader_of_meshes'"):
        _ = mesh.loader_of_meshes


@pytest.mark.processes
def test_a_runs_modules_import_no_mesh_schema() -> None:
    code = (f"import sys; import {', '.join(RUN_SIDE)}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic' or m == 'chaosmesh_qa.mesh.schema'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
