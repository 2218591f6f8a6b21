"""A short Markdown summary for a pull-request comment, written by ``chaosmesh-qa run --markdown``.

One table row per experiment (verdict, time to recover against budget, the failing probe with its
measured value, in the words of ``chaosmesh-qa verdict``), then the client error ratio and p50/p99
per phase.  GitHub/GitLab-flavoured tables; nothing else is needed to render it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chaosmesh_qa.report.model import ExperimentReport


def write_markdown(reports: list[ExperimentReport], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(reports), encoding="utf-8")


def render_markdown(reports: list[ExperimentReport]) -> str:
    passed = sum(r.passed for r in reports)
    icon = "✅" if passed == len(reports) and reports else "❌"
    lines = [f"### {icon} chaosmesh-qa: {passed} of {len(reports)} experiment(s) passed", "",
             "| experiment | verdict | time to recover (budget) | why |", "|---|---|---|---|"]
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
    return "\n".join(lines) + "\n"


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
