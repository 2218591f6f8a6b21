"""The mesh model: the team's Mesh + Istio YAML, validated and resolved with Istio's defaults.

``load_mesh``, ``LoadedMesh`` and ``MeshModel`` are imported on first use (PEP 562): the schema's pydantic models
take ~0.4 s to build, and the modules that only need a small part of this package (``localities`` for the fault
policy, ``yamlfiles``, ``meshconfig``) are imported by every experiment's actions and probes, which never load a
mesh in the run's process when the target is the sandbox (its supervisor does).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaosmesh_qa.mesh.loader import LoadedMesh, load_mesh
    from chaosmesh_qa.mesh.model import MeshModel

__all__ = ["LoadedMesh", "MeshModel", "load_mesh"]
_HOMES = {"LoadedMesh": "chaosmesh_qa.mesh.loader", "load_mesh": "chaosmesh_qa.mesh.loader",
          "MeshModel": "chaosmesh_qa.mesh.model"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
