"""The generated suites pass through the real `chaos` where their meshes keep their promises: the default mesh's game
day (ten experiments, each bringing its own sandbox up and down, ~2.5 min on 2 cores) and the external-payments
host outage (~20 s).  Judged by the budgets the generator writes (recovery, p99): a module of
tests/support/workers.py's ``BUDGETS``, apart from tests/scaffold/test_suite.py's in-process checks and twin runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chaosmesh_qa.targets.local.sandbox import down, is_running
from chaosmesh_qa.targets.local.state import SandboxPaths
from tests.support.cli import run_cli
from tests.support.generated import DEFAULT_SUITE, MESHES, write_suite

pytestmark = pytest.mark.processes


def test_the_generated_host_outage_passes_on_its_mesh(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, MESHES / "external-payments")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    try:
        process = run_cli("run", str(suite / "outage-api-payments-example-com.json"), "--out", str(tmp_path / "out"),
                          env={"CHAOSMESH_QA_STATE_DIR": str(state)}, timeout=300)
    finally:
        down(state)
    assert process.returncode == 0 and "1 of 1 experiment(s) passed" in process.stdout, process.stdout[-3000:]



@pytest.mark.timeout(900)  # ten experiments: ~150 s alone on 2 cores, twice that beside a test worker
def test_the_generated_game_day_passes_on_the_default_mesh(tmp_path: Path) -> None:
    """The generated suite through the installed console script and the real `chaos`: every experiment passes on the
    default mesh, none is stopped by the day's stop conditions, and no sandbox is left behind."""
    suite = write_suite(tmp_path)
    state, out = tmp_path / "state", tmp_path / "out"
    state.mkdir(mode=0o700)
    command = [str(Path(sys.executable).with_name("chaosmesh-qa")), "gameday", str(suite / "gameday.yaml"),
               "--out", str(out)]
    env = {**os.environ, "CHAOSMESH_QA_STATE_DIR": str(state), "CHAOSMESH_QA_MESH": ""}
    env.pop("CHAOSMESH_QA_TARGET", None)
    try:
        process = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
                                 stdin=subprocess.DEVNULL)
    finally:
        running = is_running(SandboxPaths(state))
        down(state)
    output = process.stdout + process.stderr
    outcomes = [line for line in process.stdout.splitlines()
                if re.search(r"\[\d+/\d+\] [\w-]+: (PASSED|FAILED|DEVIATED|BASELINE|INTERRUPTED|ABORTED)", line)]
    assert process.returncode == 0, "\n".join(outcomes) + output[-3000:]
    assert not running, "every entry stops the sandbox it started"
    total = len(DEFAULT_SUITE)
    assert f"game day generated-shop: PASSED — {total} of {total} experiment(s) passed" in process.stdout, \
        output[-3000:]
    assert "STOPPED" not in process.stdout
