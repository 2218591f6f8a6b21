"""One sandbox with the Kubernetes API emulation (``up --kube-api``) for the emulation's tests."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox

FORBIDDEN = "update:configmaps"  # the 403 test hook, on a verb no other test of the module needs


class KubeSandbox(Sandbox):
    @property
    def kubeconfig(self) -> Path:
        return Path(self.status()["kubeconfig"])

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert not check or result.returncode == 0, result.stderr
        return result

    def calls(self) -> list[dict[str, Any]]:
        path = self.state_dir / "kube-api-calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def kube_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    box = KubeSandbox(tmp_path_factory.mktemp("kube-sandbox") / "state")
    box.up("--kube-api", "--kube-api-forbid", FORBIDDEN)
    try:
        yield box
    finally:
        box.down()
