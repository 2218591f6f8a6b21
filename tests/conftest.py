"""Shared fixtures: the real CLI, one embedded sandbox for the whole session, and two real pod-kill runs.

The runs are `chaosmesh-qa run experiments/pod-kill-failover.json` on the default mesh (passes) and on its
broken twin (no retries, no outlier detection: deviates), each with its own sandbox started and stopped by the
experiment's sandbox control.  The experiment, report and explain tests all judge these same two runs, so
the suite runs the experiment twice, not six times (``tests.report.runs.real_run``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.report.runs import BROKEN_MESH, Run, real_run

CLI = [sys.executable, "-m", "chaosmesh_qa"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class Sandbox:
    """A running sandbox started with `chaosmesh-qa up`, stopped with `down`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def up(self, *extra: str) -> None:
        result = run_cli("up", "--state-dir", str(self.state_dir), *extra)
        assert result.returncode == 0, result.stderr

    def down(self) -> None:
        result = run_cli("down", "--state-dir", str(self.state_dir))
        assert result.returncode == 0, result.stderr

    def status(self) -> dict[str, Any]:
        result = run_cli("status", "--json", "--state-dir", str(self.state_dir))
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    @property
    def ingress_url(self) -> str:
        return str(self.status()["ingress_url"])


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("sandbox") / "state")
    box.up()
    try:
        yield box
    finally:
        box.down()


@pytest.fixture(scope="session")
def passing_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield from real_run(tmp_path_factory.mktemp("passing-run"), None)


@pytest.fixture(scope="session")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield from real_run(tmp_path_factory.mktemp("broken-run"), BROKEN_MESH)
