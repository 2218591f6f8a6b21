"""The README's first experiment, read from the README, runs end to end as the README says: the real `chaos run` on
the default mesh (the experiment's sandbox control starts it and stops it), then `chaosmesh-qa verdict`: passed.

Like tests/experiments (``tests.support.runs.run_experiment``), the run gets its own state directory and leaves no
sandbox behind whatever happens.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from chaosmesh_qa.targets.local.sandbox import down, is_running
from chaosmesh_qa.targets.local.state import SandboxPaths
from tests.docs.pages import README, blocks
from tests.support.cli import CHAOS, run_cli

# The slow suite: make test validates this experiment with `chaos validate` (tests/docs/test_tutorials.py) and runs
# the shipped pod-kill-failover it is cut from end to end (tests/experiments).
pytestmark = [pytest.mark.processes, pytest.mark.slow]


def test_the_readmes_first_experiment_passes_on_the_default_mesh(tmp_path: Path) -> None:
    [experiment] = [b for b in blocks(README) if b.title == "first-experiment.json"]
    (tmp_path / "first-experiment.json").write_text(experiment.text, encoding="utf-8")
    state = tmp_path / ".chaosmesh-qa"  # the default state directory, where the README's reader runs it
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSMESH_QA_")}
    try:
        run = subprocess.run([CHAOS, "--no-version-check", "run", "first-experiment.json"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    finally:
        left_running = is_running(SandboxPaths(state))
        down(state)
    assert not left_running, "the sandbox the run started is gone"
    log = (tmp_path / "chaostoolkit.log").read_text(encoding="utf-8")[-3000:]
    verdict = run_cli("verdict", "journal.json", cwd=tmp_path)
    assert verdict.returncode == 0, (verdict.stdout + verdict.stderr, log)
    assert run.returncode == 0, (run.stdout[-2000:], log)
    assert verdict.stdout.startswith("verdict: PASSED  —  Losing a catalog replica under load is invisible"), (
        verdict.stdout)
    assert "time to recover (client): " in verdict.stdout and "(budget 1 s, within)" in verdict.stdout
