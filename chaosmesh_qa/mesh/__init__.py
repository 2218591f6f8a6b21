"""The mesh model: the team's Mesh + Istio YAML, validated and resolved with Istio's defaults."""

from chaosmesh_qa.mesh.loader import LoadedMesh, load_mesh
from chaosmesh_qa.mesh.model import MeshModel

__all__ = ["LoadedMesh", "MeshModel", "load_mesh"]
