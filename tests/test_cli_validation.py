"""The real ``chaosmesh-qa`` command on bad input: one line on stderr, exit 2, nothing started.

Every mesh here is invalid, so ``up`` must stop at validation: no sandbox is ever started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from tests.support.editing import replace

pytestmark = pytest.mark.processes

CLI = Path(sys.executable).parent / "chaosmesh-qa"
PREFIX = "chaosmesh-qa: "


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSMESH_QA_")}
    return subprocess.run([str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def edited(old: str, new: str, file: str = "traffic.yaml") -> Callable[[Path], None]:
    return replace(file, old, new)


def _remove_yaml(root: Path) -> None:
    for path in root.glob("*.yaml"):
        path.unlink()


BAD_MESHES = [
    pytest.param(edited("weight: 20", "weight: -20"), "spec.http[1].route[1].weight", id="weights"),
    pytest.param(edited("timeout: 1s", "timeout: 2 seconds"), "spec.http[0].timeout: malformed duration",
                 id="duration"),
    pytest.param(edited("{service: inventory, path: /stock}", "{service: payments}", "mesh.yaml"),
                 "unknown service 'payments'", id="unknown-call"),
    pytest.param(edited("kind: PeerAuthentication", "kind: PeerAuthenticator", "security.yaml"),
                 "kind: unknown kind 'PeerAuthenticator'", id="unknown-kind"),
    pytest.param(edited("    timeout: 2s\n", "    timeout: 2s: x\n"), "traffic.yaml:", id="yaml-syntax"),
    pytest.param(edited("name: shop", "name: shop\x07", "mesh.yaml"), "unacceptable character",
                 id="yaml-bad-character"),
    pytest.param(edited('x-canary: {exact: "true"}', 'x-canary: {regex: "(true"}'), "invalid regex",
                 id="regex"),
    pytest.param(_remove_yaml, "no *.yaml files", id="empty-dir"),
]


def assert_one_line_failure(result: subprocess.CompletedProcess[str], fragment: str = "") -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stderr.endswith("\n")
    assert lines[0].startswith(PREFIX), lines[0]
    assert fragment in lines[0], lines[0]
    return lines[0]


def assert_nothing_started(state_dir: Path) -> None:
    assert not (state_dir / "control.sock").exists()
    assert not (state_dir / "supervisor.pid").exists()
    assert not state_dir.exists() or list(state_dir.iterdir()) == []


@pytest.mark.parametrize(("edit", "fragment"), BAD_MESHES)
def test_up_on_bad_mesh_exits_2_with_one_line(tmp_path: Path, edit: Callable[[Path], None],
                                               fragment: str) -> None:
    mesh = tmp_path / "mesh"
    shutil.copytree(default_mesh_dir(), mesh)
    edit(mesh)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    result = run("up", "--mesh", str(mesh), "--state-dir", str(state_dir), cwd=tmp_path)
    if result.returncode == 0:  # the mesh was accepted after all: stop what started before failing
        run("down", "--state-dir", str(state_dir), cwd=tmp_path)
    line = assert_one_line_failure(result, fragment)
    assert str(mesh) in line
    assert result.stdout == ""
    assert_nothing_started(state_dir)
    assert not (tmp_path / ".chaosmesh-qa").exists()


def test_validate_on_bad_mesh_exits_2(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh"
    shutil.copytree(default_mesh_dir(), mesh)
    edited("weight: 80", "weight: -80")(mesh)
    result = run("validate", "--mesh", str(mesh), cwd=tmp_path)
    assert_one_line_failure(result, "spec.http[1].route[0].weight")


def test_up_on_missing_mesh_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    result = run("up", "--mesh", str(tmp_path / "nope"), "--state-dir", str(state_dir), cwd=tmp_path)
    assert_one_line_failure(result, "mesh directory does not exist")
    assert_nothing_started(state_dir)


@pytest.mark.parametrize(("args", "fragment"), [
    pytest.param(["up", "--timeout", "-5"], "'--timeout'", id="negative-timeout"),
    pytest.param(["up", "--timeout", "soon"], "'--timeout'", id="non-numeric-timeout"),
    pytest.param(["up", "--bogus"], "--bogus", id="unknown-option"),
    pytest.param(["frobnicate"], "frobnicate", id="unknown-command"),
])
def test_bad_argument_exits_2_with_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    state_dir = tmp_path / "state"
    result = run(*args, "--state-dir", str(state_dir), cwd=tmp_path)
    assert_one_line_failure(result, fragment)
    assert_nothing_started(state_dir)
    assert not (tmp_path / ".chaosmesh-qa").exists()


def test_validate_default_mesh_exits_0(tmp_path: Path) -> None:
    result = run("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("mesh 'shop' is valid: 4 services, 8 pods")
    explicit = run("validate", "--mesh", str(default_mesh_dir()), cwd=tmp_path)
    assert (explicit.returncode, explicit.stdout) == (0, result.stdout)


def test_validate_prints_warnings_but_succeeds(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh"
    shutil.copytree(default_mesh_dir(), mesh)
    edited("    timeout: 1s\n", "    timeout: 1s\n    corsPolicy: {allowOrigins: [{exact: x}]}\n")(mesh)
    result = run("validate", "--mesh", str(mesh), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"warning: {mesh / 'traffic.yaml'}: VirtualService/inventory: spec.http[0].corsPolicy: "
        "unsupported field, ignored: no CORS response headers are added"]
