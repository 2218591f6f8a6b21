"""What ``chaosmesh-qa new --fault KIND -o x.json`` writes, through the real Chaos Toolkit: ``chaos validate``
accepts it for every kind, and ``chaos run x.json`` then ``chaosmesh-qa verdict journal.json`` pass on the default
mesh, as the shipped experiments do (tests/experiments; the same environment as ``tests.support.runs``): pod-kill
in the default lane, every kind in the slow lane.  Each run brings up its own sandbox through the experiment's
sandbox control, and tears it down.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from chaosmesh_qa.report.verdict import load_journal, verdict
from chaosmesh_qa.targets.local.sandbox import down, is_running
from chaosmesh_qa.targets.local.state import SandboxPaths
from chaosmesh_qa.targets.policy import FAULT_KINDS
from tests.support.cli import CHAOS, run_cli

pytestmark = pytest.mark.processes


def scaffold(kind: str, work: Path) -> Path:
    """``chaosmesh-qa new --fault KIND -o KIND.json`` in ``work``, and nothing else on the command line."""
    result = run_cli("new", "--fault", kind, "-o", f"{kind}.json", cwd=work, env={"CHAOSMESH_QA_MESH": ""})
    assert result.returncode == 0, result.stderr
    return work / f"{kind}.json"


def chaos(*args: str, work: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHAOSMESH_QA_STATE_DIR": str(work / "state"), "CHAOSMESH_QA_MESH": "",
           "CHAOSMESH_QA_TIMELINE": str(work / "timeline.jsonl")}
    env.pop("CHAOSMESH_QA_TARGET", None)
    return subprocess.run([CHAOS, "--no-version-check", "--log-file", str(work / "chaos.log"), *args], cwd=work,
                          env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_chaos_validate_accepts_every_kind(tmp_path: Path, kind: str) -> None:
    experiment = scaffold(kind, tmp_path)
    result = chaos("validate", str(experiment), work=tmp_path)
    assert result.returncode == 0, (result.stderr, (tmp_path / "chaos.log").read_text()[-2000:])
    assert "experiment syntax and semantic look valid" in (tmp_path / "chaos.log").read_text()


def run_to_verdict(kind: str, work: Path) -> None:
    experiment = scaffold(kind, work)
    try:
        chaos("run", "--journal-path", "journal.json", str(experiment), work=work)
    finally:
        running = is_running(SandboxPaths(work / "state"))
        down(work / "state")  # whatever happened to the run, leave no sandbox behind
    assert not running, "the sandbox the run started is gone"
    judged = run_cli("verdict", "journal.json", cwd=work)
    result = verdict(load_journal(work / "journal.json"), work / "journal.json")
    assert result.outcome == "passed", (result.reasons, (work / "chaos.log").read_text()[-3000:])
    assert judged.returncode == 0, judged.stdout
    extra = result.journal["chaosmesh_qa"]
    assert extra["traffic"]["phases"]["during"]["requests"] > 0, "traffic flowed through the fault"
    assert extra["healed_at_end"] == [], "nothing was left injected"
    faults = [r["output"] for r in result.journal["run"] if isinstance(r.get("output"), dict)
              and "fault_id" in r["output"]]
    assert [f["kind"] for f in faults] == [kind]


def test_pod_kill_experiment_passes_on_the_default_mesh(tmp_path: Path) -> None:
    run_to_verdict("pod-kill", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", [k for k in FAULT_KINDS if k != "pod-kill"])
def test_every_kind_passes_on_the_default_mesh(tmp_path: Path, kind: str) -> None:
    run_to_verdict(kind, tmp_path)
