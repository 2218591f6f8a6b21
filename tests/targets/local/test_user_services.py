"""A team's own service, started by `command` on `{port}`, runs inside the mesh behind its sidecar."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import Sandbox
from tests.mesh.editing import mesh_with, replace
from tests.mesh_client import get, hops


def test_command_service_is_served_through_its_sidecar(tmp_path: Path) -> None:
    mesh = mesh_with(tmp_path, replace("mesh.yaml", '''    app:
      responseBytes: 64''', f'''    healthPath: /
    command: ["{sys.executable}", "-m", "http.server", "{{port}}", "--bind", "127.0.0.1",
              "--directory", "{tmp_path}"]'''))
    (tmp_path / "stock").write_text("hello from the team's own service")  # catalog calls GET /stock
    box = Sandbox(tmp_path / "state")
    box.up("--mesh", str(mesh))
    try:
        code, tree = get(box.ingress_url + "/")
        inventory = next(h for h in hops(tree) if h["service"] == "inventory")
        assert code == 200 and inventory["status"] == 200
        assert "hello from the team's own service" in inventory["body"]
        pods = [p for p in box.status()["pods"] if p["service"] == "inventory"]
        assert len(pods) == 2 and all(p["state"] == "ready" and p["pids"]["app"] for p in pods)
    finally:
        box.down()
