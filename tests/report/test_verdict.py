"""`chaosmesh-qa verdict`: only a passed experiment exits 0, whatever `chaos run` said."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.report.verdict import verdict
from tests.support.cli import run_cli

HYPOTHESIS = {"title": "ok", "probes": [{"name": "p", "tolerance": True}]}


def journal(status: str = "completed", deviated: bool = False, before: bool | None = True, after: bool | None = True,
            run: list[dict[str, Any]] | None = None, rollbacks: list[dict[str, Any]] | None = None,
            hypothesis: bool = True, probe_status: str = "succeeded") -> dict[str, Any]:
    def phase(met: bool | None) -> dict[str, Any] | None:
        if met is None:
            return None
        return {"steady_state_met": met, "probes": [{"activity": {"name": "p", "tolerance": True}, "output": met,
                                                      "status": probe_status, "tolerance_met": met}]}

    return {"status": status, "deviated": deviated, "duration": 1.0,
            "experiment": {"title": "t", **({"steady-state-hypothesis": HYPOTHESIS} if hypothesis else {})},
            "steady_states": {"before": phase(before), "after": phase(after), "during": []},
            "run": run or [], "rollbacks": rollbacks or []}


def action(status: str) -> dict[str, Any]:
    return {"activity": {"name": "a"}, "status": status, "output": None}


@pytest.mark.parametrize(("doc", "outcome"), [
    (journal(), "passed"),
    (journal(deviated=True, after=False), "deviated"),
    (journal(before=False, after=None), "baseline-not-met"),  # `chaos run` exits 0 here
    (journal(status="failed", probe_status="failed", after=None), "probe-error"),
    (journal(run=[action("failed")]), "action-failed"),  # `chaos run` exits 0 here too
    (journal(rollbacks=[action("failed")]), "rollback-failed"),
    (journal(hypothesis=False, before=None, after=None), "inconclusive"),
    (journal(status="interrupted", after=None), "interrupted"),
    (journal(status="aborted", after=None), "aborted"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_outcomes(doc: dict[str, Any], outcome: str) -> None:
    assert verdict(doc).outcome == outcome


@pytest.mark.processes
@pytest.mark.parametrize(("doc", "code"), [(journal(), 0), (journal(before=False, after=None), 1),
                                           (journal(run=[action("failed")]), 1)], ids=["passed", "baseline", "action"])
def test_exit_code_is_zero_only_for_passed(tmp_path: Path, doc: dict[str, Any], code: int) -> None:
    path = tmp_path / "journal.json"
    path.write_text(json.dumps(doc))
    result = run_cli("verdict", str(path))
    assert result.returncode == code
    assert result.stdout.startswith("verdict: ")


@pytest.mark.processes
@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"no": "journal"})],
                         ids=["missing", "broken", "other"])
def test_unreadable_journal_is_one_line_exit_2(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "journal.json"
    if content is not None:
        path.write_text(content)
    result = run_cli("verdict", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(path) in result.stderr


def test_summary_says_how_each_fault_ended() -> None:
    from chaosmesh_qa.report.verdict import summary

    fault = {"fault_id": "abort-1", "kind": "abort", "target": {"service": "reviews"}}
    expired = {"fault_id": "latency-2", "kind": "latency", "target": {"service": "catalog"}}
    doc = journal(run=[{**action("succeeded"), "output": fault}, {**action("succeeded"), "output": expired}],
                  rollbacks=[{"activity": {"name": "heal"}, "status": "succeeded",
                              "output": {"healed": [{**fault, "ended": "healed"}], "count": 1}}])
    doc["chaosmesh_qa"] = {"traffic": {"faults": [{"fault_id": "latency-2", "ended_at": 1.0}]}}
    text = "\n".join(summary(verdict(doc)))
    assert "fault abort-1: abort on service=reviews — healed by the rollback 'heal'" in text
    assert "fault latency-2: latency on service=catalog — lease expired" in text


@pytest.mark.processes
@pytest.mark.parametrize(("doc", "where"), [
    ({"status": "completed", "experiment": {}, "run": [1]}, "run.0"),
    ({"status": "completed", "experiment": {"title": 3}}, "experiment.title"),
    ({"status": "completed", "experiment": {}, "steady_states": {"before": {"probes": [{"activity": 7}]}}},
     "steady_states.before.probes.0.activity"),
    ({"status": "completed", "experiment": {}, "chaosmesh_qa": {"recovery": [{}]}}, "chaosmesh_qa.recovery.0.measure"),
    ({"status": "completed", "experiment": {}, "chaosmesh_qa": {"traffic": {"faults": [{"x": 1}]}}},
     "chaosmesh_qa.traffic.faults.0.fault_id"),
])
def test_malformed_journal_is_one_line_naming_the_field(tmp_path: Path, doc: dict[str, Any], where: str) -> None:
    path = tmp_path / "journal.json"
    path.write_text(json.dumps(doc))
    result = run_cli("verdict", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert f"malformed journal: {where}" in result.stderr
