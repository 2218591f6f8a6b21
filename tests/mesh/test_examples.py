"""examples/own-service stays what its README says: the default mesh plus the team's program, and a variant."""

from __future__ import annotations

from pathlib import Path

from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own-service"


def test_example_meshes_are_the_default_mesh_plus_storefront() -> None:
    default = load_mesh(default_mesh_dir()).model
    for name, flag in (("mesh", ()), ("mesh-drops-trace-headers", ("--drop-trace-headers",))):
        loaded = load_mesh(EXAMPLE / name)
        assert not loaded.warnings, loaded.warnings
        model = loaded.model
        for policy in ("security.yaml", "traffic.yaml"):
            assert (EXAMPLE / name / policy).read_text() == (default_mesh_dir() / policy).read_text()
        assert set(model.services) == {*default.services, "storefront"} and model.ingress_service == "storefront"
        assert all(model.services[s] == default.services[s] for s in default.services)
        command = model.services["storefront"].command
        assert command == ("python3", f"{EXAMPLE / name}/../storefront.py", "{port}", *flag)
