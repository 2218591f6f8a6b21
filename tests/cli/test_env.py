"""``chaosmesh-qa env``: ``export`` lines that bash evaluates back into the values of ``status --json``.

The sandbox tests use the session's sandboxes (``kube``: ``up --kube-api``; ``sandbox``: a plain one) and start
bash (marked ``processes``); the quoting, the missing sandbox and ``up --kube-api``'s hint run in process.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.cli import env as env_module
from chaosmesh_qa.cli.env import export_lines, variables
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.local import sandbox as sandbox_module
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from tests.support.inprocess import assert_one_line_error, run_main
from tests.support.kube import KubeSandbox
from tests.support.sandbox import Sandbox

CLI = Path(sys.executable).parent / "chaosmesh-qa"
NASTY = "/tmp/it's a \"dir\" with $HOME, `cmd`, spaces\tand\nlines"
KUBE_STATUS: dict[str, Any] = {
    "state": "ready", "kube_api_url": "https://127.0.0.1:6443", "kubeconfig": f"{NASTY}/kubeconfig",
    "ingress_service": "frontend", "prometheus_url": "http://127.0.0.1:9090", "ingress_url": "http://127.0.0.1:8080",
    "tracing": {"url": "http://127.0.0.1:9411"}, "mesh_dir": "/m",
}


def evaluated(lines: str, cwd: Path) -> dict[str, str]:
    """The environment bash has after ``eval``-ing ``lines`` (as ``eval "$(chaosmesh-qa env)"`` does)."""
    script = 'eval "$1" || exit 3; python3 -c "import json, os; print(json.dumps(dict(os.environ)))"'
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSMESH_QA_") and k != "KUBECONFIG"}
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", lines], cwd=cwd, env=clean,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def cli_env(state_dir: Path, cwd: Path) -> str:
    """The real console script's ``env`` output, run as a user runs it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSMESH_QA_")}
    result = subprocess.run([str(CLI), "env", "--state-dir", str(state_dir)], cwd=cwd, env=clean, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert all(line.startswith("export ") for line in result.stdout.splitlines()), result.stdout
    return result.stdout


@pytest.mark.processes
def test_kube_api_sandbox_env_reproduces_its_status(kube: KubeSandbox, tmp_path: Path) -> None:
    status = kube.status()  # `status --json`
    values = evaluated(cli_env(kube.state_dir, tmp_path), tmp_path)
    assert values["CHAOSMESH_QA_TARGET"] == "kubernetes"
    assert values["KUBECONFIG"] == status["kubeconfig"] == str(kube.kubeconfig)
    assert values["CHAOSMESH_QA_INGRESS_SERVICE"] == status["ingress_service"] == "frontend"
    assert values["CHAOSMESH_QA_INGRESS_GATEWAY"] == status["ingress_gateway_workload"] == "istio-ingressgateway"
    assert values["CHAOSMESH_QA_PROMETHEUS_URL"] == status["prometheus_url"]
    assert values["CHAOSMESH_QA_INGRESS_URL"] == status["ingress_url"]
    assert values["CHAOSMESH_QA_STATE_DIR"] == str(kube.state_dir.absolute())
    assert values["CHAOSMESH_QA_TRACING_URL"] == status["tracing"]["url"]
    by_hand = kube.env()  # what the Kubernetes target's tests set by hand for an unchanged experiment
    names = ("CHAOSMESH_QA_TARGET", "KUBECONFIG", "CHAOSMESH_QA_PROMETHEUS_URL", "CHAOSMESH_QA_INGRESS_URL",
             "CHAOSMESH_QA_INGRESS_SERVICE", "CHAOSMESH_QA_INGRESS_GATEWAY", "CHAOSMESH_QA_TRACING_URL")
    assert {k: values[k] for k in names} == {k: by_hand[k] for k in names}


@pytest.mark.processes
def test_local_sandbox_env_points_at_the_local_target(sandbox: Sandbox, tmp_path: Path) -> None:
    status = sandbox.status()
    values = evaluated(cli_env(sandbox.state_dir, tmp_path), tmp_path)
    assert values["CHAOSMESH_QA_TARGET"] == "local"
    assert values["CHAOSMESH_QA_STATE_DIR"] == str(sandbox.state_dir.absolute())
    assert values["CHAOSMESH_QA_MESH"] == status["mesh_dir"]
    assert "KUBECONFIG" not in values and "CHAOSMESH_QA_PROMETHEUS_URL" not in values


@pytest.mark.processes
def test_bash_reads_back_any_value(tmp_path: Path) -> None:
    state = Path(NASTY)
    values = evaluated("\n".join(export_lines(KUBE_STATUS, state)), tmp_path)
    assert {name: values[name] for name, _ in variables(KUBE_STATUS, state)} == dict(variables(KUBE_STATUS, state))
    assert values["KUBECONFIG"] == f"{NASTY}/kubeconfig" and values["CHAOSMESH_QA_STATE_DIR"] == NASTY


def test_export_lines_are_shell_quoted() -> None:
    lines = export_lines(KUBE_STATUS, Path(NASTY))
    assert [line.split("=", 1)[0] for line in lines] == [
        "export CHAOSMESH_QA_TARGET", "export KUBECONFIG", "export CHAOSMESH_QA_INGRESS_SERVICE",
        "export CHAOSMESH_QA_PROMETHEUS_URL", "export CHAOSMESH_QA_INGRESS_URL", "export CHAOSMESH_QA_STATE_DIR",
        "export CHAOSMESH_QA_TRACING_URL"]
    for line, (name, value) in zip(lines, variables(KUBE_STATUS, Path(NASTY)), strict=True):
        assert shlex.split(line) == ["export", f"{name}={value}"]
    local = variables({"state": "ready", "mesh_dir": "/m"}, Path("/s"))
    assert local == [("CHAOSMESH_QA_TARGET", "local"), ("CHAOSMESH_QA_STATE_DIR", "/s"), ("CHAOSMESH_QA_MESH", "/m")]


def test_no_sandbox_is_one_line_exit_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = run_main("env", "--state-dir", str(state), cwd=tmp_path)
    assert_one_line_error(result, f"no sandbox running in {state}", "chaosmesh-qa up --kube-api")
    assert result.stdout == ""
    default = run_main("env", cwd=tmp_path)  # the default state directory, from where the command runs
    assert_one_line_error(default, str(tmp_path / ".chaosmesh-qa"))


def test_a_sandbox_not_ready_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env_module.sandbox, "status", lambda directory: {"state": "starting"})
    assert_one_line_error(run_main("env", "--state-dir", str(tmp_path), cwd=tmp_path), "starting, not ready")


def test_up_with_kube_api_prints_how_to_get_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``up`` itself is replaced (no sandbox starts here): what it prints once the sandbox is ready."""
    state = tmp_path / "my state"
    kube = {**KUBE_STATUS, "mesh": "shop", "startup_s": 1.0, "pods": [], "metrics_ready": True}

    def ready(mesh_dir: Path, state_dir: Path, timeout: float, ttl: float, delay: float, wait: bool,
              entry: Any, scrape: int) -> tuple[dict[str, Any], Any]:
        is_kube = "chaosmesh_qa.emulation.kubeapi" in entry  # what `up --kube-api` starts
        status = kube if is_kube else {k: v for k, v in kube.items() if k not in ("kube_api_url", "kubeconfig")}
        return status, load_mesh(default_mesh_dir())

    monkeypatch.setattr(sandbox_module, "up", ready)
    result = run_main("up", "--kube-api", "--state-dir", str(state), cwd=tmp_path)
    assert result.code == 0, result
    hint = next(line for line in result.stdout.splitlines() if "chaosmesh-qa env" in line)
    command = hint.split("eval ", 1)[1].split("  (", 1)[0]
    assert shlex.split(command) == [f"$(chaosmesh-qa env --state-dir {shlex.quote(str(state))})"]
    plain = run_main("up", "--state-dir", str(state), cwd=tmp_path)
    assert "chaosmesh-qa env" not in plain.stdout  # a plain sandbox: nothing to rehearse on a cluster
