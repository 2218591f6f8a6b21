"""JUnit XML for CI test tabs (Jenkins, GitLab, GitHub reporters), written by ``chaosmesh-qa run --junit``.

One ``<testsuite>`` per experiment; one ``<testcase>`` per steady-state probe before the method and
after it, and one named ``verdict``.  A probe that missed its tolerance is a ``<failure>`` naming
the probe, the measured value and the tolerance; one that could not measure is an ``<error>``; one
the run never reached is ``<skipped>``.  The verdict testcase fails for every outcome but *passed*,
with the words of ``chaosmesh-qa verdict`` (``report.verdict``).  The element and attribute set is
the common JUnit format those reporters read (``testsuites`` > ``testsuite`` > ``properties``,
``testcase`` > ``failure``/``error``/``skipped``, ``system-out``).  With ``--gate`` a suite
``regression gate: NAME`` per experiment has one testcase per compared figure (a significant
regression is a ``<failure>``); a game day adds a suite ``game day: NAME`` (its status, the stop
condition and the resilience score with its formula).
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from chaosmesh_qa.report.baseline import Gate
from chaosmesh_qa.report.model import NO_JOURNAL, NOT_RUN, DaySummary, ExperimentReport, ProbeResult, as_json

PHASE_LABEL = {"before": "before method", "after": "after method"}


def write_junit(reports: list[ExperimentReport], path: Path, gates: Sequence[Gate] = (),
                day: DaySummary | None = None) -> None:
    root = junit_tree(reports, gates, day)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def junit_tree(reports: list[ExperimentReport], gates: Sequence[Gate] = (),
               day: DaySummary | None = None) -> ET.Element:
    root = ET.Element("testsuites", name=f"chaosmesh-qa game day {day.name}" if day else "chaosmesh-qa")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    suites = ([_day_suite(day)] if day else []) + [_suite(r) for r in reports] + [_gate_suite(g) for g in gates]
    for suite in suites:
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        total_time += float(suite.get("time", "0"))
    root.attrib.update({k: str(v) for k, v in totals.items()})
    root.set("time", f"{total_time:.3f}")
    return root


def _suite(report: ExperimentReport) -> ET.Element:
    journal = report.journal
    suite = ET.Element("testsuite", name=report.name)
    if journal.get("start"):
        suite.set("timestamp", str(journal["start"])[:19])
    suite.set("hostname", str(journal.get("node") or socket.gethostname()))
    properties = ET.SubElement(suite, "properties")
    for name, value in (("title", report.title), ("outcome", report.outcome),
                        ("chaos-status", journal.get("status")),
                        *((f"target-{k}", v) for k, v in sorted((report.extra.get("target") or {}).items())
                          if isinstance(v, str | bool)),
                        ("directory", report.directory),
                        ("journal", report.directory / "journal.json"), ("timeline", report.timeline_path()),
                        *(("note", note) for note in report.notes)):
        if value not in (None, ""):
            ET.SubElement(properties, "property", name=name, value=str(value))
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    classname = f"chaosmesh-qa.{report.name}"
    for probe in report.probes():
        suite.append(_probe_case(classname, probe))
        counts["tests"] += 1
        counts[{"failed": "failures", "error": "errors", "not-run": "skipped"}.get(probe.status, "tests")] += (
            0 if probe.status == "passed" else 1)
    case = ET.SubElement(suite, "testcase", classname=classname, name="verdict", time=f"{report.duration_s:.3f}")
    counts["tests"] += 1
    if report.outcome == NOT_RUN:
        ET.SubElement(case, "skipped", message=report.error)
        counts["skipped"] += 1
    elif report.outcome == NO_JOURNAL:
        ET.SubElement(case, "error", message=f"{NO_JOURNAL}: {report.error}", type=NO_JOURNAL).text = report.error
        counts["errors"] += 1
    elif not report.passed:
        message = f"verdict: {report.outcome}" + (f" — {'; '.join(report.reasons)}" if report.reasons else "")
        ET.SubElement(case, "failure", message=message, type=report.outcome).text = "\n".join(report.summary_lines())
        counts["failures"] += 1
    ET.SubElement(case, "system-out").text = "\n".join(report.summary_lines())
    suite.attrib.update({k: str(v) for k, v in counts.items()})
    suite.set("time", f"{report.duration_s:.3f}")
    return suite


def _probe_case(classname: str, probe: ProbeResult) -> ET.Element:
    case = ET.Element("testcase", classname=classname, name=f"{PHASE_LABEL[probe.phase]}: {probe.name}",
                      time=f"{probe.duration_s:.3f}")
    detail = (f"probe {probe.name} ({probe.provider}), steady state {PHASE_LABEL[probe.phase]}\n"
              f"measured: {as_json(probe.output)}\ntolerance: {as_json(probe.tolerance)}")
    if probe.status == "failed":
        ET.SubElement(case, "failure", message=probe.message, type="tolerance-missed").text = detail
    elif probe.status == "error":
        ET.SubElement(case, "error", message=probe.message, type="probe-error").text = probe.message
    elif probe.status == "not-run":
        ET.SubElement(case, "skipped", message=probe.message)
    else:
        ET.SubElement(case, "system-out").text = detail
    return case


def _counted(suite: ET.Element) -> ET.Element:
    cases = suite.findall("testcase")
    suite.attrib.update({"tests": str(len(cases)), "time": "0.000", **{
        key: str(sum(case.find(tag) is not None for case in cases))
        for key, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped"))}})
    return suite


def _gate_suite(gate: Gate) -> ET.Element:
    suite = ET.Element("testsuite", name=f"regression gate: {gate.experiment}")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("baseline", gate.baseline_path), ("baseline-runs", gate.baseline_runs),
                        ("current-runs", gate.current_runs),
                        *(("context-changed", change) for change in gate.context_changes())):
        ET.SubElement(properties, "property", name=name, value=str(value))
    classname = f"chaosmesh-qa.gate.{gate.experiment}"
    if gate.error:
        case = ET.SubElement(suite, "testcase", classname=classname, name="baseline", time="0")
        ET.SubElement(case, "skipped", message=gate.error)
    for check in gate.checks:
        case = ET.SubElement(suite, "testcase", classname=classname, name=check.key, time="0")
        if check.status == "regression":
            ET.SubElement(case, "failure", message=check.message(), type="regression").text = check.message()
        elif check.status == "not-compared":
            ET.SubElement(case, "skipped", message=check.message())
        else:
            ET.SubElement(case, "system-out").text = check.message()
    return _counted(suite)


def _day_suite(day: DaySummary) -> ET.Element:
    suite = ET.Element("testsuite", name=f"game day: {day.name}")
    if day.started:
        suite.set("timestamp", day.started[:19])
    properties = ET.SubElement(suite, "properties")
    for name, value in (("suite", day.suite), ("status", day.status), ("reason", day.reason),
                        ("resilience-score", f"{day.score:.1f}"), ("score-formula", day.formula)):
        ET.SubElement(properties, "property", name=name, value=str(value))
    classname = f"chaosmesh-qa.gameday.{day.name}"
    stop = ET.SubElement(suite, "testcase", classname=classname, name="stop conditions", time="0")
    if day.stop:
        ET.SubElement(stop, "failure", message=f"game day stopped: {day.reason}", type="stopped").text = "\n".join(
            f"{key}: {value}" for key, value in day.stop.items())
    else:
        ET.SubElement(stop, "system-out").text = "no stop condition tripped"
    score = ET.SubElement(suite, "testcase", classname=classname, name="resilience score", time="0")
    lines = [f"resilience score {day.score:.1f} / 100 ({day.status})", f"formula: {day.formula}"]
    lines += [f"{e.name}: severity {e.severity}, hypotheses held {e.hypothesis_share:.2f}, recovery factor "
              f"{e.recovery_factor:.2f}, entry score {e.score:.2f} ({e.outcome})" for e in day.entries]
    ET.SubElement(score, "system-out").text = "\n".join(lines)
    return _counted(suite)
