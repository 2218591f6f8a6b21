"""A self-contained HTML report of one or more experiment runs, written by ``chaosmesh-qa run --html``.

Everything is inline — CSS, and the plots as SVG elements (``report.plots``) — with no script and no
reference to anything outside the file, so it opens from a CI artefact with the network off.  Per
experiment: the verdict and why, the client timeline plot (throughput, error ratio, p50/p99, fault
windows, recovery marks), time to recover against budget, the per-phase client figures, the
faults and how each ended, and the probe table (before and after the method, measured value,
tolerance, result).  With ``--gate``: the regression gate per experiment (every figure compared, its
bounds and allowance, the context changes); for a game day: its status, the stop record and the
resilience score with its formula.  Rendered with Jinja2 (autoescaped) from ``report.html.j2``.

With ``coverage`` (``run --html``): the resilience coverage of each mesh the experiments ran on, one row per
promise (``report.coverage_output.html_section``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from chaosmesh_qa.report.baseline import Gate
from chaosmesh_qa.report.model import DaySummary, ExperimentReport, as_json
from chaosmesh_qa.report.plots import MARKS, timeline_svg
from chaosmesh_qa.traffic import timeline

_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["j2", "html"]),
                   trim_blocks=True, lstrip_blocks=True)


def write_html(reports: list[ExperimentReport], path: Path, title: str = "chaosmesh-qa run",
               gates: Sequence[Gate] = (), day: DaySummary | None = None,
               coverage: Sequence[dict[str, Any]] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(reports, title, gates, day, coverage), encoding="utf-8")


def render_html(reports: list[ExperimentReport], title: str = "chaosmesh-qa run", gates: Sequence[Gate] = (),
                day: DaySummary | None = None, coverage: Sequence[dict[str, Any]] = ()) -> str:
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if day is not None and title == "chaosmesh-qa run":
        title = f"chaosmesh-qa game day {day.name}"
    passed = all(r.passed for r in reports) and bool(reports) and all(g.passed for g in gates)
    return _ENV.get_template("report.html.j2").render(
        title=title, generated=generated, passed=passed if day is None else day.status == "passed",
        experiments=[_experiment(r) for r in reports], gates=[_gate(g) for g in gates], day=day,
        coverage=list(coverage))


def _gate(gate: Gate) -> dict[str, Any]:
    rows = []
    for check in gate.checks:
        b = check.bounds
        rows.append({"key": check.key, "status": check.status, "note": check.note,
                     "baseline": check.value(b.baseline if b else None),
                     "current": check.value(b.current if b else None),
                     "worse": check.value(b.worse if b else None),
                     "bounds": f"{check.value(b.lower)} .. {check.value(b.upper)}" if b else "—",
                     "allowance": check.value(check.allowance) if b and check.status != "info" else "—"})
    return {"experiment": gate.experiment, "passed": gate.passed, "error": gate.error, "rows": rows,
            "baseline": str(gate.baseline_path), "baseline_runs": gate.baseline_runs,
            "current_runs": gate.current_runs, "changes": gate.context_changes(),
            "confidence": f"{gate.checks[0].confidence:.0%}" if gate.checks else ""}


def _experiment(report: ExperimentReport) -> dict[str, Any]:
    lines = report.timeline_lines()
    faults, recoveries = report.faults(), report.recoveries()
    measured = timeline.measured(lines)
    origin = float(measured[0]["t"]) if measured else None

    def rel(stamp: Any) -> str:
        if stamp is None:
            return "—"
        if origin is None:
            return dt.datetime.fromtimestamp(float(stamp), dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        return f"{float(stamp) - origin:+.2f} s"

    return {
        "name": report.name, "title": report.title, "outcome": report.outcome, "passed": report.passed,
        "target": f"{(report.extra.get('target') or {}).get('kind', '')}: "
                  f"{(report.extra.get('target') or {}).get('name', '')}" if report.extra.get("target") else "",
        "reasons": report.reasons, "summary": report.summary_lines(), "notes": report.notes,
        "directory": str(report.directory), "timeline": str(report.timeline_path()),
        "svg": Markup(timeline_svg(lines, faults, recoveries)),
        "recoveries": [{
            "measure": r.get("measure"), "since": r.get("since"), "slo": _slo_text(r.get("slo") or {}),
            "ttr": r.get("time_to_recover_s"), "budget": r.get("budget_s"), "within": r.get("within_budget"),
            "marks": [(name, rel((r.get("timeline") or {}).get(key))) for key, name, _, _ in MARKS],
        } for r in recoveries],
        "phases": [_phase_row(name, (report.phases() or {}).get(name)) for name in ("before", "during", "after")
                   if report.phases()],
        "faults": [{"id": f.get("fault_id"), "kind": f.get("kind"), "target": _target(f.get("target") or {}),
                    "start": rel(f.get("started_at")), "end": rel(f.get("ended_at")), "ending": f.get("ending")}
                   for f in faults],
        "probes": [{"phase": p.phase, "name": p.name, "provider": p.provider, "tolerance": as_json(p.tolerance),
                    "measured": _measured(p.output) if p.status in ("passed", "failed") else "—",
                    "status": p.status, "message": p.message} for p in report.probes()],
    }


def _phase_row(name: str, phase: dict[str, Any] | None) -> dict[str, Any]:
    phase = phase or {}

    def number(key: str, spec: str) -> str:
        value = phase.get(key)
        return "—" if value is None else format(value, spec)

    return {"name": name, "seconds": phase.get("seconds", 0), "requests": phase.get("requests", 0),
            "throughput": number("throughput_rps", ".1f"), "error_ratio": number("error_ratio", ".4f"),
            "p50": number("p50_ms", ".1f"), "p99": number("p99_ms", ".1f")}


def _measured(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else as_json(value)


def _slo_text(slo: dict[str, float]) -> str:
    return ", ".join(f"{key.removeprefix('max_')} ≤ {value:g}" for key, value in slo.items())


def _target(target: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in target.items() if v is not None)
