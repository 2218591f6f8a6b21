"""Fixtures for the Kubernetes target: the embedded mesh serving the Kubernetes API emulation (`up --kube-api`)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.targets.kubernetes.reaper import stop_local_reapers
from tests.conftest import Sandbox, run_cli


class KubeSandbox(Sandbox):
    """A sandbox with the Kubernetes API emulation, and the configuration of a kubernetes target on it."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.kubeconfig = state_dir / "kubeconfig"
        self.calls = state_dir / "kube-api-calls.jsonl"

    def configuration(self, **extra: Any) -> dict[str, Any]:
        status = self.status()
        return {"chaosmesh_qa_target": "kubernetes", "chaosmesh_qa_kubeconfig": str(self.kubeconfig),
                "chaosmesh_qa_prometheus_url": status["prometheus_url"], "chaosmesh_qa_ingress_url":
                status["ingress_url"], "chaosmesh_qa_ingress_service": "frontend", **extra}

    def env(self) -> dict[str, str]:
        """The environment that switches an unchanged experiment file to this emulated cluster."""
        config = self.configuration()
        return {**os.environ, "CHAOSMESH_QA_TARGET": "kubernetes", "KUBECONFIG": str(self.kubeconfig),
                "CHAOSMESH_QA_PROMETHEUS_URL": config["chaosmesh_qa_prometheus_url"],
                "CHAOSMESH_QA_INGRESS_URL": config["chaosmesh_qa_ingress_url"],
                "CHAOSMESH_QA_INGRESS_SERVICE": "frontend"}

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    def call_log(self, since: int = 0) -> list[dict[str, Any]]:
        lines = self.calls.read_text().splitlines() if self.calls.exists() else []
        return [json.loads(line) for line in lines[since:] if line.strip()]


def start(state_dir: Path, *extra: str) -> KubeSandbox:
    box = KubeSandbox(state_dir)
    result = run_cli("up", "--kube-api", "--wait-metrics", "--state-dir", str(state_dir), *extra)
    assert result.returncode == 0, result.stderr
    return box


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    box = start(tmp_path_factory.mktemp("kube") / "state")
    try:
        yield box
    finally:
        stop_local_reapers()
        box.down()
