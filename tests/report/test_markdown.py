"""The Markdown summary of real runs: verdict per experiment, time to recover vs budget, the failing probe."""

from __future__ import annotations

import pytest

from chaosmesh_qa.report.verdict import load_journal
from tests.support.runs import Run

pytestmark = pytest.mark.processes


def test_passing_summary(passing_run: Run) -> None:
    text = passing_run.markdown.read_text()
    journal = load_journal(passing_run.directory / "journal.json")
    recovery = journal["chaosmesh_qa"]["recovery"][-1]
    assert text.startswith("### ✅ chaosmesh-qa: 1 of 1 experiment(s) passed")
    assert f"| pod-kill-failover | ✅ passed | {recovery['time_to_recover_s']:.2f} s (within 1 s) | — |" in text
    before = journal["chaosmesh_qa"]["traffic"]["phases"]["before"]
    assert (f"| pod-kill-failover | before | {before['requests']} | {before['error_ratio']:.4f} | "
            f"{before['p50_ms']:.1f} | {before['p99_ms']:.1f} |") in text
    assert len(text.splitlines()) < 20, "short enough for a PR comment"


def test_broken_summary_names_the_failing_probe_and_its_value(broken_run: Run) -> None:
    text = broken_run.markdown.read_text()
    journal = load_journal(broken_run.directory / "journal.json")
    failed = next(p for p in journal["steady_states"]["after"]["probes"] if not p["tolerance_met"])
    assert text.startswith("### ❌ chaosmesh-qa: 0 of 1 experiment(s) passed")
    row = next(line for line in text.splitlines() if line.startswith("| pod-kill-failover | ❌ deviated |"))
    assert "OVER 1 s" in row
    assert f"after method: {failed['activity']['name']}: got {failed['output']}" in row
    during = journal["chaosmesh_qa"]["traffic"]["phases"]["during"]
    assert f"| during | {during['requests']} | {during['error_ratio']:.4f} |" in text
