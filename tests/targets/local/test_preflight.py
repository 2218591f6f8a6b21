"""Preflight on a made-up /proc: each short limit is refused with one line naming it and the fix.

No process is started; ``test_scale`` refuses a real short limit through the CLI.
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from chaosmesh_qa.errors import SandboxStartError
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.generate import write_tree
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.local import preflight

PLENTY_MB = 64 * 1024


def _proc(root: Path, mem_available_mb: int = PLENTY_MB, port_range: str = "32768 60999",
          file_nr: str = "1000 0 9000000", listening: tuple[int, ...] = ()) -> Path:
    (root / "sys/fs").mkdir(parents=True)
    (root / "sys/net/ipv4").mkdir(parents=True)
    (root / "net").mkdir()
    (root / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {mem_available_mb * 1024} kB\n")
    (root / "sys/net/ipv4/ip_local_port_range").write_text(port_range + "\n")
    (root / "sys/fs/file-nr").write_text(file_nr + "\n")
    rows = [f"{i}: 0100007F:{port:04X} 00000000:0000 0A" for i, port in enumerate(listening)]
    (root / "net/tcp").write_text("  sl  local_address rem_address st\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> MeshModel:
    return load_mesh(write_tree(tmp_path_factory.mktemp("tree"), 20, 3)).model


def _refusal(tree: MeshModel, proc: Path) -> str:
    with pytest.raises(SandboxStartError) as info:
        preflight.check(tree, proc)
    message = str(info.value)
    assert "\n" not in message and message.startswith("preflight: ") and message.endswith("nothing was started")
    return message


def test_enough_of_everything_passes_and_says_what_the_mesh_needs(tree: MeshModel, tmp_path: Path) -> None:
    needs = preflight.check(tree, _proc(tmp_path))
    assert (needs.pods, needs.envoys) == (60, 61)
    assert needs.supervisor_fds < 1024  # fits the soft limit of a default system


def test_too_little_memory_is_refused(tree: MeshModel, tmp_path: Path) -> None:
    message = _refusal(tree, _proc(tmp_path, mem_available_mb=500))
    assert "MemAvailable) is 500 MB" in message and "60 pods" in message and "fewer replicas" in message


def test_a_narrow_ephemeral_port_range_is_refused(tree: MeshModel, tmp_path: Path) -> None:
    message = _refusal(tree, _proc(tmp_path, port_range="40000 40899", listening=(40001, 40002, 50000)))
    assert "ip_local_port_range 40000-40899) has 898 free" in message
    assert "`sysctl -w net.ipv4.ip_local_port_range=" in message


def test_a_full_file_table_is_refused(tree: MeshModel, tmp_path: Path) -> None:
    message = _refusal(tree, _proc(tmp_path, file_nr="9000 0 10000"))
    assert "fs.file-max) is 10000 with 9000 in use" in message and "`sysctl -w fs.file-max=" in message


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        raised, _ = preflight.raise_open_files_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised >= min(hard, 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
