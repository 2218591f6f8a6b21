"""The shipped experiments, run with the real `chaos` CLI: they pass on the default mesh and fail on broken twins.

Each run brings up its own sandbox through the sandbox control (and tears it down), drives Locust
traffic through the traffic control, injects its fault, and is judged by `chaosmesh-qa verdict`.
pod-kill-failover's two runs are the session's `passing_run` / `broken_run` (`chaosmesh-qa run`, which
runs the same `chaos` CLI underneath), shared with the report and explain tests.
An experiment that passes on a mesh without the policy it relies on is a bug.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.report.verdict import load_journal, verdict
from chaosmesh_qa.targets.local.sandbox import down, is_running
from chaosmesh_qa.targets.local.state import SandboxPaths
from tests.support.runs import CASES, Run, run_experiment

pytestmark = pytest.mark.processes


@pytest.mark.parametrize(("name", "mesh", "expected"), CASES,
                         ids=[f"{n}-on-{m or 'default-mesh'}" for n, m, _ in CASES])
def test_experiment_verdict(name: str, mesh: str | None, expected: str, tmp_path: Path,
                            request: pytest.FixtureRequest) -> None:
    if name == "pod-kill-failover":
        shared: Run = request.getfixturevalue("broken_run" if mesh else "passing_run")
        running, journal, log = shared.sandbox_left_running, shared.journal, shared.directory / "chaostoolkit.log"
    else:
        journal, log = tmp_path / "journal.json", tmp_path / "chaos.log"
        try:
            run_experiment(name, mesh, tmp_path)
        finally:
            running = is_running(SandboxPaths(tmp_path / "state"))
            down(tmp_path / "state")  # whatever happened to the run, leave no sandbox behind
    assert not running, "the sandbox the run started is gone"
    result = verdict(load_journal(journal), journal)
    assert result.outcome == expected, (result.reasons, log.read_text()[-3000:])
    if expected == "baseline-not-met":
        assert not _faults(result.journal), "nothing is injected into a mesh already off its steady state"
        return
    extra = result.journal["chaosmesh_qa"]
    assert extra["traffic"]["phases"]["during"]["requests"] > 0, "traffic flowed through the fault"
    assert [f["kind"] for f in _faults(result.journal)], "the fault was injected"
    assert extra["healed_at_end"] == [], "rollbacks healed everything before the safety control looked"
    timeline = extra["recovery"][-1]["timeline"]  # the recovery timeline is in the journal
    assert {"fault_start", "first_breach", "detection", "recovered", "heal"} <= set(timeline)
    assert timeline["fault_start"] is not None


def _faults(journal: dict) -> list[dict]:  # type: ignore[type-arg]
    return [r["output"] for r in journal["run"] if isinstance(r.get("output"), dict) and "fault_id" in r["output"]]
