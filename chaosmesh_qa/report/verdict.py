"""A verdict CI can trust, from a Chaos Toolkit journal.

``chaos run`` exits 0 for several outcomes that are not a pass (baseline not met, a
failing action, a deviation only seen during the method...; docs/explanation/chaostoolkit-notes.md
§1).  ``verdict(journal)`` classifies the run strictly — only ``passed`` is a pass — and
``summary`` renders what an SRE needs to see: outcome, time to recover, client-side error
ratio and p99 per phase, the faults injected and how each ended.  ``chaosmesh-qa verdict``
prints it and exits 0 only for ``passed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from chaosmesh_qa.errors import InvalidArgument

PASSED = "passed"


@dataclass
class Verdict:
    outcome: str
    reasons: list[str]
    journal: dict[str, Any] = field(repr=False)
    path: Path | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED


def load_journal(path: Path) -> dict[str, Any]:
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such journal") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"{path}: not a readable JSON journal ({str(exc).splitlines()[0]})") from None
    if not isinstance(journal, dict) or "status" not in journal or "experiment" not in journal:
        raise InvalidArgument(f"{path}: not a Chaos Toolkit journal (no 'status' or 'experiment')")
    try:
        _Journal.model_validate(journal)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).split(" or instance of")[0]
        raise InvalidArgument(f"{path}: malformed journal: {where}: {message}") from None
    return journal


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Activity(_Loose):
    name: str


class _ActivityRun(_Loose):
    activity: _Activity
    status: str | None = None
    tolerance_met: bool | None = None


class _Phase(_Loose):
    steady_state_met: bool | None = None
    probes: list[_ActivityRun] = []


class _SteadyStates(_Loose):
    before: _Phase | None = None
    after: _Phase | None = None


class _Recovery(_Loose):
    measure: str
    time_to_recover_s: float
    budget_s: float
    within_budget: bool


class _Phases(_Loose):
    requests: int | None = None
    error_ratio: float | None = None
    p99_ms: float | None = None


class _FaultEnd(_Loose):
    fault_id: str


class _Traffic(_Loose):
    phases: dict[str, _Phases | None] | None = None
    faults: list[_FaultEnd] = []
    timeline: str | None = None


class _Extension(_Loose):
    recovery: list[_Recovery] = []
    traffic: _Traffic | None = None
    healed_at_end: list[_FaultEnd] = []


class _Experiment(_Loose):
    title: str = ""


class _Journal(_Loose):
    """The parts of a journal that ``verdict`` and ``summary`` read, so a malformed one is one line, not a traceback."""

    status: str | None
    experiment: _Experiment
    deviated: bool | None = None
    duration: float | None = None
    steady_states: _SteadyStates | None = None
    run: list[_ActivityRun] = []
    rollbacks: list[_ActivityRun] = []
    chaosmesh_qa: _Extension | None = None


def verdict(journal: dict[str, Any], path: Path | None = None) -> Verdict:
    status, reasons = journal.get("status"), []
    steady = journal.get("steady_states") or {}
    before, after = steady.get("before"), steady.get("after")
    hypothesis = journal["experiment"].get("steady-state-hypothesis")
    probe_errors = [p["activity"]["name"] for phase in (before, after) if phase
                    for p in phase.get("probes", []) if p.get("status") == "failed"]
    failed_actions = [r["activity"]["name"] for r in journal.get("run", []) if r.get("status") == "failed"]
    failed_rollbacks = [r["activity"]["name"] for r in journal.get("rollbacks", []) if r.get("status") == "failed"]
    if status == "interrupted":
        outcome = "interrupted"
    elif status == "aborted":
        outcome = "aborted"
    elif probe_errors:
        outcome, reasons = "probe-error", [could_not_measure(name) for name in probe_errors]
    elif status != "completed":
        outcome = "failed"
    elif not hypothesis:
        outcome, reasons = "inconclusive", ["the experiment has no steady-state hypothesis"]
    elif before is not None and not before.get("steady_state_met"):
        outcome, reasons = "baseline-not-met", _missed(before)
    elif journal.get("deviated") or (after is not None and not after.get("steady_state_met")):
        outcome, reasons = "deviated", _missed(after or {})
    elif failed_actions:
        outcome, reasons = "action-failed", [f"method activity failed: {name}" for name in failed_actions]
    elif failed_rollbacks:
        outcome, reasons = "rollback-failed", [f"rollback failed: {name}" for name in failed_rollbacks]
    else:
        outcome = PASSED
    return Verdict(outcome, reasons, journal, path)


def _missed(phase: dict[str, Any]) -> list[str]:
    return [tolerance_missed(p) for p in phase.get("probes", []) if not p.get("tolerance_met", True)]


def tolerance_missed(probe_run: dict[str, Any]) -> str:
    """Why one hypothesis probe run missed its tolerance: its name, the measured value, the tolerance."""
    return (f"{probe_run['activity']['name']}: got {json.dumps(probe_run.get('output'))}, tolerance "
            f"{json.dumps(probe_run['activity'].get('tolerance'))}")


def could_not_measure(name: str) -> str:
    return f"probe could not measure: {name}"


def summary(result: Verdict) -> list[str]:
    journal, extra = result.journal, result.journal.get("chaosmesh_qa") or {}
    lines = [f"verdict: {result.outcome.upper()}  —  {journal['experiment'].get('title', '')}",
             f"  chaos status: {journal.get('status')}, deviated: {journal.get('deviated')}, "
             f"duration: {journal.get('duration', 0):.1f} s"]
    lines += [f"  why: {reason}" for reason in result.reasons]
    if isinstance(extra.get("target"), dict):
        lines.append(f"  target: {extra['target'].get('kind')}: {extra['target'].get('name')}")
    for recovery in extra.get("recovery", []):
        lines.append(f"  time to recover ({recovery['measure']}): {recovery['time_to_recover_s']:.2f} s "
                     f"(budget {recovery['budget_s']:g} s, {'within' if recovery['within_budget'] else 'OVER'})")
    phases = (extra.get("traffic") or {}).get("phases") or {}
    for name in ("before", "during", "after"):
        phase = phases.get(name)
        if phase and phase.get("requests"):
            lines.append(f"  {name:<7} requests {phase['requests']:>6}  error ratio "
                         f"{phase.get('error_ratio') or 0:.3f}  p99 {phase.get('p99_ms') or 0:7.1f} ms")
        elif phase is not None:
            lines.append(f"  {name:<7} no requests")
    endings = _endings(journal)
    for fault in _faults(journal):
        lines.append(f"  fault {fault['fault_id']}: {fault.get('kind')} on {_target(fault.get('target'))} — "
                     f"{endings.get(fault['fault_id'], 'end not recorded')}")
    if result.path:
        lines.append(f"  journal: {result.path}")
    timeline = (extra.get("traffic") or {}).get("timeline")
    if timeline:
        lines.append(f"  timeline: {timeline}")
    return lines


def _faults(journal: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["output"] for r in journal.get("run", [])
            if isinstance(r.get("output"), dict) and isinstance(r["output"].get("fault_id"), str)]


def _endings(journal: dict[str, Any]) -> dict[str, str]:
    """How each fault of the run ended: healed by an activity, by the safety control, or by its lease."""
    extra = journal.get("chaosmesh_qa") or {}
    endings = {f["fault_id"]: "lease expired" for f in (extra.get("traffic") or {}).get("faults", [])
               if f.get("ended_at") is not None}
    for where in ("run", "rollbacks"):
        for record in journal.get(where, []):
            output = record.get("output")
            healed_list = output.get("healed") if isinstance(output, dict) else None
            for healed in healed_list if isinstance(healed_list, list) else []:
                if isinstance(healed, dict) and healed.get("ended") == "healed" and "fault_id" in healed:
                    step = "method" if where == "run" else "rollback"
                    endings[healed["fault_id"]] = f"healed by the {step} '{record['activity']['name']}'"
    for healed in extra.get("healed_at_end", []):
        endings[healed["fault_id"]] = "healed by the safety control at the end of the run"
    return endings


def _target(target: Any) -> str:
    if not isinstance(target, dict):
        return str(target)
    return " ".join(f"{k}={v}" for k, v in target.items() if v is not None)
