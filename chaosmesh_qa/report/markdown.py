"""A short Markdown summary for a pull-request comment, written by ``chaosmesh-qa run --markdown``.

One table row per experiment (verdict, time to recover against budget, the failing probe with its
measured value, in the words of ``chaosmesh-qa verdict``), then the client error ratio and p50/p99
per phase.  With ``--gate``, the regression gate: figures compared, each significant regression with
its bounds and allowance, and what changed in the run's context.  A game day starts with its status,
why it ended, the resilience score and its formula.  GitHub/GitLab-flavoured tables; nothing else is
needed to render it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaosmesh_qa.report.baseline import Gate
from chaosmesh_qa.report.model import DaySummary, ExperimentReport


def write_markdown(reports: list[ExperimentReport], path: Path, gates: Sequence[Gate] = (),
                   day: DaySummary | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(reports, gates, day), encoding="utf-8")


def render_markdown(reports: list[ExperimentReport], gates: Sequence[Gate] = (), day: DaySummary | None = None) -> str:
    passed = sum(r.passed for r in reports)
    icon = "✅" if passed == len(reports) and reports else "❌"
    lines = _day(day) if day else []
    lines += [f"### {icon} chaosmesh-qa: {passed} of {len(reports)} experiment(s) passed", ""]
    targets = sorted({f"{t.get('kind')}: {t.get('name')}" for r in reports
                      if isinstance(t := r.extra.get("target"), dict)})
    lines += [f"Target: {_cell(', '.join(targets))}", ""] if targets else []
    lines += ["| experiment | verdict | time to recover (budget) | why |", "|---|---|---|---|"]
    for report in reports:
        lines.append(f"| {_cell(report.name)} | {'✅' if report.passed else '❌'} {report.outcome} | "
                     f"{_cell(_recovery(report))} | {_cell(_why(report))} |")
    rows = [(report.name, name, phase) for report in reports
            for name, phase in (report.phases() or {}).items() if name in ("before", "during", "after")]
    if rows:
        lines += ["", "| experiment | phase | requests | error ratio | p50 (ms) | p99 (ms) |",
                  "|---|---|--:|--:|--:|--:|"]
        for experiment, name, phase in rows:
            phase = phase or {}
            lines.append(f"| {_cell(experiment)} | {name} | {phase.get('requests', 0)} | "
                         f"{_number(phase.get('error_ratio'), '.4f')} | {_number(phase.get('p50_ms'), '.1f')} | "
                         f"{_number(phase.get('p99_ms'), '.1f')} |")
    for gate in gates:
        lines += _gate(gate)
    return "\n".join(lines) + "\n"


def _gate(gate: Gate) -> list[str]:
    if gate.error:
        return ["", f"#### ⚪ regression gate: {_cell(gate.experiment)}: not compared — {gate.error}"]
    judged = [c for c in gate.checks if c.status not in ("not-compared", "info")]
    lines = ["", f"#### {'✅' if gate.passed else '❌'} regression gate: {_cell(gate.experiment)} — "
             f"{len(gate.regressions)} significant regression(s) in {len(judged)} figure(s) "
             f"({gate.current_runs} run(s) against {gate.baseline_runs} in the baseline)"]
    if gate.regressions:
        lines += ["", "| figure | baseline | now | worse by (bounds) | allowed |", "|---|--:|--:|--:|--:|"]
        for c in gate.regressions:
            assert c.bounds is not None
            lines.append(f"| {c.key} | {c.value(c.bounds.baseline)} | {c.value(c.bounds.current)} | "
                         f"{c.value(c.bounds.worse)} ({c.value(c.bounds.lower)} .. {c.value(c.bounds.upper)}, "
                         f"{c.confidence:.0%}) | {c.value(c.allowance)} |")
    changes = gate.context_changes()
    if changes:
        lines += ["", "context changed since the baseline: " + _cell("; ".join(changes))]
    return lines


def _day(day: DaySummary) -> list[str]:
    icon = {"passed": "✅", "stopped": "🛑"}.get(day.status, "❌")
    lines = [f"## {icon} game day {_cell(day.name)}: {day.status.upper()} — resilience score {day.score:.1f} / 100",
             "", f"{_cell(day.reason)}", ""]
    if day.stop:
        skipped = ", ".join(day.stop.get("skipped") or []) or "none"
        lines += [f"stopped by: {_cell(str(day.stop.get('condition')))}; every fault healed in "
                  f"{day.stop.get('heal_s', 0):.2f} s ({len(day.stop.get('healed') or [])} fault(s)); "
                  f"not run: {_cell(skipped)}", ""]
    lines += [f"score formula: {_cell(day.formula)}", "",
              "| entry | severity | hypotheses held | recovery factor | entry score |", "|---|--:|--:|--:|--:|"]
    lines += [f"| {_cell(e.name)} | {e.severity} | {e.hypothesis_share:.2f} | {e.recovery_factor:.2f} | "
              f"{e.score:.2f} ({e.outcome}) |" for e in day.entries]
    return [*lines, ""]


def _recovery(report: ExperimentReport) -> str:
    found = [f"{r['time_to_recover_s']:.2f} s ({'within' if r['within_budget'] else 'OVER'} {r['budget_s']:g} s)"
             for r in report.recoveries()]
    return "; ".join(found) or "—"


def _why(report: ExperimentReport) -> str:
    failing = report.failing_probes()
    if failing:
        return "; ".join(f"{p.phase} method: {p.message}" for p in failing)
    return "; ".join(report.reasons) or "—"


def _number(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
