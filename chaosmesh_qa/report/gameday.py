"""Game days: an ordered suite of experiments run as one day, with a stop button (``chaosmesh-qa gameday
SUITE.yaml``: the command, its options and output, is ``chaosmesh_qa.cli.gameday``).

The suite file (``Suite``) is checked strictly before anything starts — unknown keys, types, ranges,
every experiment file (Chaos Toolkit's validator), every mesh directory (``load_mesh``) and traffic
profile (``load_profile``) — and any problem is one line naming the file and the field (exit 2).
Entries run in order through
``report.run.run_one`` (a child ``chaos run`` each, safe defaults) with per-entry overrides of the
target, mesh, traffic profile and recovery budget.  While an entry runs, ``StopWatch`` reads the live
client timeline and the run's events: when a stop condition trips (client error ratio above X for Y
consecutive seconds; any probe that could not measure) it heals every active fault through the
target at once (``heal(None, None)``), stops ``chaos`` (its rollbacks play), skips the remaining
entries, and the day ends *stopped*.  An entry whose experiment fails clients by design declares its
own ``stop.client_error_ratio`` (it replaces the suite's for that entry only; an entry cannot switch
the safety net off), sized from the experiment: how long its fault fails clients plus its own
recovery budget, so the stop trips on nothing the experiment itself accepts and still trips when a
heal does not take or the mesh does not come back.  The combined JUnit/HTML/Markdown reports carry
the day's status and the resilience score (``score``; its formula is ``FORMULA`` and is printed in
every report).  Exit code (the command's): 0 passed, 1 an experiment did not pass, 3 stopped by a stop
condition (``EXIT_STOPPED``), 2 bad input.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chaosmesh_qa.errors import ChaosMeshQAError, InvalidArgument
from chaosmesh_qa.report.model import DaySummary, EntryScore, ExperimentReport
from chaosmesh_qa.report.progress import Monitor
from chaosmesh_qa.report.run import (
    Prepared,
    Stopper,
    load_experiment,
    safe_copy,
)

FORMULA = ("score = 100 * sum(severity * held * recovery) / sum(severity) over every entry of the suite, where held = "
           "hypothesis probe checks that held / checks declared (before and after the method), recovery = the mean "
           "over the entry's time-to-recover measurements of min(1, budget / time to recover) (1 when none), and an "
           "entry that did not run scores 0")
EXIT_STOPPED = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorRatioStop(_Strict):
    above: float = Field(gt=0, le=1, allow_inf_nan=False)
    for_s: int = Field(ge=1, le=3600)


class StopConditions(_Strict):
    client_error_ratio: ErrorRatioStop | None = None
    probe_failure: bool = True

    def describe(self) -> str:
        rule = self.client_error_ratio
        parts = [f"client error ratio above {rule.above:g} for {rule.for_s} s"] if rule else []
        parts += ["a probe that cannot measure"] if self.probe_failure else []
        return "; ".join(parts) or "none"


class EntryStop(_Strict):
    """An entry's own error-ratio stop: for an experiment that fails clients by design, sized from it."""

    client_error_ratio: ErrorRatioStop


class Overrides(_Strict):
    target: Literal["local", "kubernetes"] | None = None
    mesh: str | None = Field(default=None, min_length=1)
    traffic: str | dict[str, Any] | None = None
    budget_s: float | None = Field(default=None, gt=0, le=3600, allow_inf_nan=False)
    timeout_s: float | None = Field(default=None, ge=1, le=86400, allow_inf_nan=False)
    severity: int | None = Field(default=None, ge=1, le=5)


class Entry(Overrides):
    experiment: str = Field(min_length=1)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    stop: EntryStop | None = None  # replaces the suite's client_error_ratio for this entry only


class Suite(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    description: str = ""
    stop: StopConditions = StopConditions()
    defaults: Overrides = Overrides()
    experiments: list[Entry] = Field(min_length=1, max_length=100)


class Planned(NamedTuple):
    """One entry, ready to run: the prepared experiment, its severity, budget, timeout and stop conditions."""

    prepared: Prepared
    severity: int
    budget_s: float | None
    timeout_s: float
    stop: StopConditions


def load_suite(path: Path) -> tuple[Suite, list[Planned]]:
    """The suite and, per entry, the prepared experiment, its severity, budget, timeout and stop; one line on error."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such suite file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{path}: not a readable YAML suite ({_first(exc)})") from None
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a typo first
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        raise InvalidArgument(f"{path}: {where or '(top level)'}: {error['msg']}") from None
    base, plan, names = path.parent, [], set()
    for index, entry in enumerate(suite.experiments):
        field = f"{path}: experiments[{index}]"
        merged = {**suite.defaults.model_dump(exclude_none=True), **entry.model_dump(exclude_none=True)}
        source = _path(base, entry.experiment)
        try:
            experiment = load_experiment(source)
        except ChaosMeshQAError as exc:
            raise InvalidArgument(f"{field}.experiment: {exc}") from None
        name = entry.name or source.stem
        if name in names:
            raise InvalidArgument(f"{field}.name: {name!r} is used by an earlier entry (give each a unique name)")
        names.add(name)
        configuration = experiment.setdefault("configuration", {})
        if "mesh" in merged:
            mesh = _path(base, merged["mesh"])
            try:
                from chaosmesh_qa.mesh import load_mesh

                load_mesh(mesh)
            except ChaosMeshQAError as exc:
                raise InvalidArgument(f"{field}.mesh: {exc}") from None
            configuration["chaosmesh_qa_mesh"] = str(mesh)
        if "traffic" in merged:
            from chaosmesh_qa.traffic.profile import load_profile

            traffic = merged["traffic"]
            traffic = str(_path(base, traffic)) if isinstance(traffic, str) else traffic
            try:
                load_profile(traffic)
            except ChaosMeshQAError as exc:
                raise InvalidArgument(f"{field}.traffic: {exc}") from None
            configuration["chaosmesh_qa_traffic"] = traffic
        if "budget_s" in merged:
            _set_budget(experiment, float(merged["budget_s"]))
        prepared = Prepared(name, source, *safe_copy(experiment, merged.get("target")))
        stop = suite.stop if entry.stop is None else suite.stop.model_copy(
            update={"client_error_ratio": entry.stop.client_error_ratio})
        plan.append(Planned(prepared, int(merged.get("severity", 1)), merged.get("budget_s"),
                            float(merged.get("timeout_s", 1800)), stop))
    return suite, plan


def _set_budget(experiment: dict[str, Any], budget: float) -> None:
    """Every ``recovered_within`` probe gets ``budget_s`` = budget and a range tolerance ending at it."""
    probes = (experiment.get("steady-state-hypothesis") or {}).get("probes") or []
    for probe in probes + list(experiment.get("method") or []):
        provider = probe.get("provider") or {} if isinstance(probe, dict) else {}
        if provider.get("func") == "recovered_within":
            provider.setdefault("arguments", {})["budget_s"] = budget
            tolerance = probe.get("tolerance")
            if isinstance(tolerance, dict) and tolerance.get("type") == "range":
                tolerance["range"] = [0, budget]


def _path(base: Path, value: str) -> Path:
    path = Path(value)
    return (path if path.is_absolute() else base / path).absolute()


class StopWatch:
    """The stop conditions, checked on every poll of the running entry; trips once, heals everything."""

    def __init__(self, conditions: StopConditions) -> None:
        self.conditions = conditions
        self.record: dict[str, Any] | None = None
        self._breach = 0
        self._configuration: dict[str, Any] = {}

    def start(self, experiment: dict[str, Any], conditions: StopConditions | None = None) -> None:
        """A new entry: its own stop conditions (the suite's unless it declares its own), a fresh breach count."""
        if conditions is not None:
            self.conditions = conditions
        self._breach = 0
        self._configuration = {key: _resolve(value) for key, value in (experiment.get("configuration") or {}).items()}

    def __call__(self, monitor: Monitor, events: list[dict[str, Any]]) -> str:
        if self.record:
            return str(self.record["condition"])
        reason = self._probe_failure(events) or self._error_ratio(monitor.new_seconds)
        if reason:
            self.trip(reason, monitor.state.experiment)
        return reason

    def _probe_failure(self, events: list[dict[str, Any]]) -> str:
        if not self.conditions.probe_failure:
            return ""
        for event in events:
            if (event.get("type") == "activity-completed" and event.get("activity_type") == "probe"
                    and event.get("status") == "failed"):
                return f"probe {event.get('name')} could not measure"
        return ""

    def _error_ratio(self, seconds: list[dict[str, Any]]) -> str:
        rule = self.conditions.client_error_ratio
        if rule is None:
            return ""
        for line in seconds:
            if not line.get("requests"):
                continue
            ratio = line["failures"] / line["requests"]
            self._breach = self._breach + 1 if ratio > rule.above else 0
            if self._breach >= rule.for_s:
                return f"client error ratio above {rule.above:g} for {rule.for_s} s (last second {ratio:.3f})"
        return ""

    def trip(self, reason: str, entry: str) -> None:
        tripped = time.time()
        healed, error = self.heal_all()
        self.record = {"condition": reason, "entry": entry, "tripped_at": tripped,
                       "healed": healed, "heal_s": round(time.time() - tripped, 3)}
        if error:
            self.record["heal_error"] = error

    def heal_all(self) -> tuple[list[str], str]:
        """Heal every active fault of the target, whoever injected it."""
        from chaosmesh_qa.targets import get_target

        try:
            return [str(r.get("fault_id")) for r in get_target(self._configuration).heal(None, None)], ""
        except ChaosMeshQAError as exc:
            return [], str(exc)


def _resolve(value: Any) -> Any:
    import os

    if isinstance(value, dict) and value.get("type") == "env":
        return os.environ.get(str(value.get("key")), value.get("default"))
    return value


def entry_score(report: ExperimentReport, severity: int) -> EntryScore:
    probes = report.probes()
    held = sum(p.status == "passed" for p in probes) / len(probes) if probes and report.verdict else 0.0
    factors = [min(1.0, r["budget_s"] / r["time_to_recover_s"]) if r["time_to_recover_s"] > 0 else 1.0
               for r in report.recoveries()]
    recovery = sum(factors) / len(factors) if factors else 1.0
    return EntryScore(report.name, severity, held, recovery if report.verdict else 0.0, report.outcome)


def score(entries: list[EntryScore]) -> float:
    weights = sum(e.severity for e in entries)
    return 100.0 * sum(e.severity * e.score for e in entries) / weights if weights else 0.0


def day_summary(suite: Suite, path: Path, plan: list[Planned],
                reports: list[ExperimentReport], watch: StopWatch, stopper: Stopper, started: str) -> DaySummary:
    """The day's status, reason, score and stop record, from its entries' reports."""
    entries = [entry_score(report, planned.severity) for report, planned in zip(reports, plan, strict=True)]
    skipped = [r.name for r in reports if r.skipped]
    if watch.record:
        stop = {**watch.record, "skipped": skipped}
        stop["tripped_at_unix"] = stop["tripped_at"]
        stop["tripped_at"] = dt.datetime.fromtimestamp(stop["tripped_at"], dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        status = "stopped"
        reason = (f"stopped during {stop['entry']}: {stop['condition']}; every fault healed in {stop['heal_s']:.2f} s; "
                  f"{len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} not run")
    elif stopper.signal_name:
        status, stop, reason = "interrupted", None, f"interrupted by {stopper.signal_name}; {len(skipped)} not run"
    else:
        passed = sum(r.passed for r in reports)
        status, stop = ("passed" if passed == len(reports) else "failed"), None
        reason = f"{passed} of {len(reports)} experiment(s) passed"
    return DaySummary(suite.name, path, status, reason, score(entries), FORMULA, entries, stop, started, now())


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
