"""One experiment's results as the report writers see them: verdict, probe runs, faults, timeline.

``chaosmesh-qa run`` (``chaosmesh_qa.report.run``) builds an ``ExperimentReport`` per experiment
from the directory it ran in; the JUnit, HTML and Markdown writers read only this.  Outcomes and
failure reasons come from ``chaosmesh_qa.report.verdict`` — never re-derived here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaosmesh_qa.errors import ChaosMeshQAError
from chaosmesh_qa.report.verdict import (
    Verdict,
    _endings,
    _faults,
    could_not_measure,
    load_journal,
    summary,
    tolerance_missed,
    verdict,
)
from chaosmesh_qa.traffic import timeline

JOURNAL, TIMELINE, LOG, EVENTS, OUTPUT, EXPERIMENT = (
    "journal.json", "timeline.jsonl", "chaostoolkit.log", "events.ndjson", "chaos-output.txt", "experiment.json")
NO_JOURNAL, NOT_RUN = "no-journal", "not-run"


@dataclass
class ProbeResult:
    """One steady-state probe, before or after the method."""

    phase: str  # "before" | "after"
    name: str
    provider: str  # module.func, or the provider type
    tolerance: Any
    output: Any = None
    status: str = "not-run"  # passed | failed (tolerance missed) | error (could not measure) | not-run
    message: str = ""
    duration_s: float = 0.0


@dataclass
class ExperimentReport:
    name: str
    directory: Path
    verdict: Verdict | None
    error: str = ""  # why there is no verdict (no journal)
    notes: list[str] = field(default_factory=list)
    returncode: int | None = None
    wall_s: float | None = None
    skipped: bool = False  # never started (the run was stopped before it)

    @classmethod
    def from_directory(cls, directory: Path, name: str | None = None, notes: list[str] | None = None,
                       returncode: int | None = None, wall_s: float | None = None) -> ExperimentReport:
        path = directory / JOURNAL
        try:
            result: Verdict | None = verdict(load_journal(path), path)
            error = ""
        except ChaosMeshQAError as exc:
            result, error = None, f"{exc}{_last_output_line(directory)}"
        return cls(name or directory.name, directory, result, error, list(notes or []), returncode, wall_s)

    @property
    def outcome(self) -> str:
        if self.verdict:
            return self.verdict.outcome
        return NOT_RUN if self.skipped else NO_JOURNAL

    @property
    def passed(self) -> bool:
        return bool(self.verdict and self.verdict.passed)

    @property
    def reasons(self) -> list[str]:
        return self.verdict.reasons if self.verdict else [self.error]

    @property
    def journal(self) -> dict[str, Any]:
        return self.verdict.journal if self.verdict else {}

    @property
    def title(self) -> str:
        return str(self.journal.get("experiment", {}).get("title", "")) if self.verdict else ""

    @property
    def extra(self) -> dict[str, Any]:
        return self.journal.get("chaosmesh_qa") or {}

    @property
    def duration_s(self) -> float:
        return float(self.journal.get("duration") or self.wall_s or 0.0)

    def summary_lines(self) -> list[str]:
        return summary(self.verdict) if self.verdict else [f"verdict: {self.outcome.upper()}  —  {self.error}"]

    def recoveries(self) -> list[dict[str, Any]]:
        return list(self.extra.get("recovery") or [])

    def phases(self) -> dict[str, Any]:
        return (self.extra.get("traffic") or {}).get("phases") or {}

    def faults(self) -> list[dict[str, Any]]:
        """Every fault of the run: kind, target, start, end (healed or lease expired) and how it ended."""
        records = {f["fault_id"]: dict(f) for f in _faults(self.journal)}
        for timing in (self.extra.get("traffic") or {}).get("faults", []):
            records.setdefault(timing["fault_id"], {}).update({k: v for k, v in timing.items() if v is not None})
        endings = _endings(self.journal)
        for fault_id, record in records.items():
            record["ending"] = endings.get(fault_id, "end not recorded")
        return [r for r in records.values() if r.get("started_at") is not None]

    def timeline_path(self) -> Path:
        recorded = (self.extra.get("traffic") or {}).get("timeline")
        return Path(recorded) if recorded and Path(recorded).exists() else self.directory / TIMELINE

    def timeline_lines(self) -> list[timeline.Line]:
        try:
            return timeline.read_timeline(self.timeline_path())
        except ChaosMeshQAError:
            return []

    def probes(self) -> list[ProbeResult]:
        """The hypothesis probes before and after the method, with why each failed (``verdict``'s words)."""
        hypothesis = self.journal.get("experiment", {}).get("steady-state-hypothesis") or {}
        declared = [p for p in hypothesis.get("probes", []) if isinstance(p, dict)]
        steady = self.journal.get("steady_states") or {}
        results = []
        for phase in ("before", "after"):
            runs = {r["activity"].get("name"): r for r in (steady.get(phase) or {}).get("probes", [])}
            for probe in declared:
                result = ProbeResult(phase, str(probe.get("name")), _provider(probe), probe.get("tolerance"))
                run = runs.get(probe.get("name"))
                if run is None:
                    result.message = _not_run(phase, steady)
                elif run.get("status") == "failed":
                    error = "".join(run.get("exception") or []).strip().splitlines()
                    result.status = "error"
                    result.message = could_not_measure(result.name) + (f" ({error[-1]})" if error else "")
                elif not run.get("tolerance_met", True):
                    result.status, result.output, result.message = "failed", run.get("output"), tolerance_missed(run)
                else:
                    result.status, result.output = "passed", run.get("output")
                if run is not None:
                    result.duration_s = float(run.get("duration") or 0.0)
                results.append(result)
        return results

    def failing_probes(self) -> list[ProbeResult]:
        return [p for p in self.probes() if p.status in ("failed", "error")]


def _provider(probe: dict[str, Any]) -> str:
    provider = probe.get("provider") or {}
    if provider.get("type") == "python":
        return f"{provider.get('module')}.{provider.get('func')}"
    return str(provider.get("type", "?"))


def _not_run(phase: str, steady: dict[str, Any]) -> str:
    if phase == "after" and steady.get("before") and not steady["before"].get("steady_state_met"):
        return "not run: the steady state was not met before the method"
    if steady.get(phase) and not steady[phase].get("steady_state_met"):
        return "not run: Chaos Toolkit stops checking the steady state at its first failing probe"
    return f"not run: the run ended before the hypothesis was checked {phase} the method"


def _last_output_line(directory: Path) -> str:
    """The last line chaos printed (why it left no journal), for one-line reasons."""
    try:
        lines = [line for line in (directory / OUTPUT).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f"; chaos said: {_strip_ansi(lines[-1])}" if lines else ""


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()


@dataclass
class EntryScore:
    """One game-day entry's part of the resilience score (``report.gameday``)."""

    name: str
    severity: int
    hypothesis_share: float  # hypothesis checks that held / checks declared (before and after)
    recovery_factor: float  # mean of min(1, budget / time to recover); 1 when nothing was timed
    outcome: str

    @property
    def score(self) -> float:
        return self.hypothesis_share * self.recovery_factor


@dataclass
class DaySummary:
    """A whole game day, for the report writers: status, why it ended, stop record and score."""

    name: str
    suite: Path
    status: str  # passed | failed | stopped | interrupted
    reason: str
    score: float  # 0..100
    formula: str
    entries: list[EntryScore] = field(default_factory=list)
    stop: dict[str, Any] | None = None  # condition, tripped_at, healed fault ids, heal_s, skipped entries
    started: str = ""
    ended: str = ""


def load_reports(directories: list[Path]) -> list[ExperimentReport]:
    """Reports for run directories written earlier (each holds ``journal.json`` and ``timeline.jsonl``)."""
    return [ExperimentReport.from_directory(d) for d in directories]


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
