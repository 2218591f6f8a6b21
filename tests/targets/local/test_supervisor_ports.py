"""A starting pod's ports stay held until its servers have bound them, so that no other process (another sandbox
starting at the same moment) binds one in between; a team's own program's port is released before it starts.

No process is started: the pod is a stand-in whose ``start`` tries the binds another process would make.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from chaosmesh_qa.targets.local.state import SandboxPaths
from chaosmesh_qa.targets.local.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[3]


def _free_to_others(port: int) -> bool:
    """Whether a process that does not set SO_REUSEADDR could bind ``port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        try:
            other.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class StandInPod:
    def __init__(self, spec: object) -> None:
        self.spec = spec
        self.free_while_starting: dict[str, bool] = {}

    async def start(self, session: object) -> None:
        ports = self.spec.ports  # type: ignore[attr-defined]
        self.free_while_starting = {name: _free_to_others(getattr(ports, name))
                                    for name in ("stats", "inbound", "outbound", "app")}


def _started(mesh: Path, service: str, tmp_path: Path) -> tuple[StandInPod, Supervisor]:
    supervisor = Supervisor(SandboxPaths(tmp_path), mesh)
    supervisor.model = load_mesh(mesh).model
    pod = StandInPod(supervisor._new_pod_spec(service, "v1"))
    supervisor.http = lambda: None  # type: ignore[method-assign,assignment,return-value]
    asyncio.run(supervisor._start_pod(pod))  # type: ignore[arg-type]
    return pod, supervisor


def test_the_ports_of_a_starting_pod_are_nobody_elses_until_it_has_started(tmp_path: Path) -> None:
    pod, _ = _started(default_mesh_dir(), "catalog", tmp_path)
    assert pod.free_while_starting == {"stats": False, "inbound": False, "outbound": False, "app": False}
    ports = pod.spec.ports  # type: ignore[attr-defined]
    assert all(_free_to_others(getattr(ports, name)) for name in ("stats", "inbound", "outbound", "app")), \
        "released once started"


def test_a_teams_own_program_gets_its_port_released_before_it_starts(tmp_path: Path) -> None:
    pod, _ = _started(ROOT / "examples" / "own-service" / "mesh", "storefront", tmp_path)
    assert pod.free_while_starting == {"stats": False, "inbound": False, "outbound": False, "app": True}
