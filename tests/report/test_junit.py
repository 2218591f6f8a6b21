"""JUnit XML of real runs: valid for the JUnit format CI reporters read, and saying why in verdict's words.

Checked twice: against ``junit.xsd`` (the documented element/attribute set, written for these tests)
with ``xmlschema``, and read back with ``junitparser`` as a CI reporter would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xmlschema
from junitparser import Error, Failure, JUnitXml, Skipped

from chaosmesh_qa.report.verdict import load_journal, verdict
from tests.support.runs import Run

pytestmark = pytest.mark.processes

SCHEMA = xmlschema.XMLSchema(Path(__file__).with_name("junit.xsd"))
PROBES = ["recovered-within-1s", "outlier-detection-ejected-the-dead-pod", "client-error-ratio-last-5s",
          "client-p99-last-5s"]


def _cases(run: Run) -> dict[str, object]:
    SCHEMA.validate(run.junit)
    suites = list(JUnitXml.fromfile(str(run.junit)))
    assert [s.name for s in suites] == ["pod-kill-failover"]
    return {case.name: case for case in suites[0]}


def test_passing_run_one_testcase_per_probe_and_phase_and_the_verdict(passing_run: Run) -> None:
    cases = _cases(passing_run)
    expected = [f"{phase} method: {probe}" for phase in ("before", "after") for probe in PROBES] + ["verdict"]
    assert list(cases) == expected
    assert all(case.is_passed for case in cases.values())  # type: ignore[attr-defined]
    suite = next(iter(JUnitXml.fromfile(str(passing_run.junit))))
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (9, 0, 0, 0)
    journal = load_journal(passing_run.directory / "journal.json")
    assert abs(float(cases["verdict"].time) - journal["duration"]) < 0.01  # type: ignore[attr-defined]


def test_broken_twin_failing_testcase_names_the_probe_and_the_measured_value(broken_run: Run) -> None:
    cases = _cases(broken_run)
    journal = load_journal(broken_run.directory / "journal.json")
    result = verdict(journal)
    assert result.outcome == "deviated"
    failed_run = next(p for p in journal["steady_states"]["after"]["probes"] if not p["tolerance_met"])
    name, measured = failed_run["activity"]["name"], failed_run["output"]
    failing = {n: c for n, c in cases.items() if any(isinstance(r, Failure) for r in c.result)}  # type: ignore[attr-defined]
    assert set(failing) == {f"after method: {name}", "verdict"}
    probe_failure = next(r for r in failing[f"after method: {name}"].result if isinstance(r, Failure))  # type: ignore[attr-defined]
    assert probe_failure.message.startswith(f"{name}: got {json.dumps(measured)}, tolerance ")
    assert f"measured: {json.dumps(measured)}" in probe_failure.text
    verdict_failure = next(r for r in failing["verdict"].result if isinstance(r, Failure))  # type: ignore[attr-defined]
    assert verdict_failure.type == "deviated"
    assert all(reason in verdict_failure.message for reason in result.reasons)  # verdict's own words
    # Chaos Toolkit stops an after-method check at its first failing probe: the rest are skipped, and say so
    others = [c for n, c in cases.items() if n.startswith("after method:") and n != f"after method: {name}"]
    assert others and all(isinstance(c.result[0], Skipped) for c in others)  # type: ignore[attr-defined]
    assert not any(isinstance(r, Error) for c in cases.values() for r in c.result)  # type: ignore[attr-defined]
