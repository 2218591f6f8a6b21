"""What ``chaosmesh-qa run`` shows while an experiment runs: a live view on a terminal, plain lines in CI logs.

``Monitor`` follows one experiment's run directory as ``chaos`` writes it — the NDJSON events of
``chaos run --events-file`` (phase, activity, fault records with their lease expiry, heals) and the
client timeline (the newest complete second: throughput, error ratio, p99) — reading only what
was appended since the last poll.  ``LiveView`` renders that state with ``rich`` (redrawn in
place); ``PlainView`` prints one timestamped line per event and a traffic line every
``TRAFFIC_EVERY_S`` seconds of timeline, for outputs that are not terminals.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from chaosmesh_qa.report.model import EVENTS, TIMELINE

TRAFFIC_EVERY_S = 5
PHASES = {("hypothesis-started", "before"): "steady state before the method", ("method-started", None): "method",
          ("hypothesis-started", "after"): "steady state after the method", ("rollbacks-started", None): "rollbacks",
          ("run-started", None): "starting the mesh and the traffic", ("run-interrupted", None): "interrupted"}


@dataclass
class RunState:
    experiment: str
    index: int
    total: int
    started: float = field(default_factory=time.time)
    phase: str = "starting chaos"
    activity: str = ""
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_second: dict[str, Any] | None = None
    finished: str = ""

    def active_faults(self, now: float | None = None) -> list[tuple[str, str, float]]:
        """``(fault id, description, remaining TTL)`` of faults not healed and not expired."""
        now = time.time() if now is None else now
        return [(fault_id, f"{f.get('kind')} {_target(f.get('target') or {})}", f["expires_at"] - now)
                for fault_id, f in self.faults.items() if f.get("expires_at", 0) > now]

    def traffic_text(self) -> str:
        line = self.last_second
        if not line:
            return "no traffic yet"
        ratio = line["failures"] / line["requests"] if line["requests"] else 0.0
        p99 = f"{line['p99']:.1f} ms" if line.get("p99") is not None else "—"
        return f"{line['requests']} req/s  error ratio {ratio:.3f}  p99 {p99}"


class Monitor:
    """Follows one run directory; ``poll()`` returns the events appended since the last call."""

    def __init__(self, directory: Path, state: RunState) -> None:
        self.state = state
        self._events = _Tail(directory / EVENTS)
        self._timeline = _Tail(directory / TIMELINE)
        self.new_seconds: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        events = self._events.read()
        for event in events:
            self._apply(event)
        self.new_seconds = [line for line in self._timeline.read() if "t" in line and not line.get("partial")]
        if self.new_seconds:
            self.state.last_second = self.new_seconds[-1]
        return events

    def _apply(self, event: dict[str, Any]) -> None:
        kind, state = event.get("type"), self.state
        phase = PHASES.get((str(kind), event.get("phase"))) or PHASES.get((str(kind), None))
        if phase and kind != "hypothesis-completed":
            state.phase, state.activity = phase, ""
        if kind == "activity-started":
            state.activity = str(event.get("name"))
        elif kind == "activity-completed":
            output = event.get("output")
            if isinstance(output, dict) and "fault_id" in output and "expires_at" in output:
                state.faults[output["fault_id"]] = output
            for healed in output.get("healed", []) if isinstance(output, dict) else []:
                state.faults.pop(healed.get("fault_id"), None)
        elif kind == "run-finished":
            state.finished = f"{event.get('status')}{', deviated' if event.get('deviated') else ''}"
            state.phase, state.activity = f"finished ({state.finished})", ""
            state.faults.clear()


class View(Protocol):
    def update(self, monitor: Monitor, events: list[dict[str, Any]]) -> None: ...
    def line(self, text: str) -> None: ...
    def close(self) -> None: ...


class PlainView:
    """Timestamped lines: one per event, and the traffic every few seconds (CI logs)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self._last_traffic = 0.0

    def line(self, text: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.console.print(f"{stamp} {text}", markup=False, highlight=False)

    def update(self, monitor: Monitor, events: list[dict[str, Any]]) -> None:
        state = monitor.state
        prefix = f"[{state.index}/{state.total}] {state.experiment}:"
        for event in events:
            text = _event_text(event)
            if text:
                self.line(f"{prefix} {text}")
        second = state.last_second
        if second and second["t"] - self._last_traffic >= TRAFFIC_EVERY_S:
            self._last_traffic = float(second["t"])
            faults = "; ".join(f"{fid} {what} ({ttl:.0f} s left)" for fid, what, ttl in state.active_faults())
            self.line(f"{prefix} traffic {state.traffic_text()}" + (f"; active faults: {faults}" if faults else ""))

    def close(self) -> None:
        return None


class LiveView:
    """A panel redrawn in place (``rich.live``): experiment, phase, faults with TTL, live traffic."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._live = Live(Text(""), console=self.console, refresh_per_second=4, transient=True)
        self._live.start()
        self._state: RunState | None = None

    def line(self, text: str) -> None:
        self._live.console.print(text, markup=False, highlight=False)

    def update(self, monitor: Monitor, events: list[dict[str, Any]]) -> None:
        self._state = monitor.state
        self._live.update(render_state(monitor.state), refresh=True)

    def close(self) -> None:
        self._live.stop()


def render_state(state: RunState, now: float | None = None) -> Group:
    now = time.time() if now is None else now
    head = Text.assemble((f"[{state.index}/{state.total}] ", "dim"), (state.experiment, "bold"),
                         (f"  {now - state.started:5.1f} s", "dim"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("phase", state.phase + (f" — {state.activity}" if state.activity else ""))
    faults = state.active_faults(now)
    grid.add_row("faults", "\n".join(f"{fid}  {what}  TTL {ttl:4.1f} s" for fid, what, ttl in faults) or "none")
    grid.add_row("traffic", state.traffic_text())
    return Group(head, grid)


def _event_text(event: dict[str, Any]) -> str:
    kind = event.get("type")
    if kind == "activity-started":
        return f"{event.get('activity_type')} {event.get('name')} started"
    if kind == "activity-completed":
        output = event.get("output")
        extra = ""
        if isinstance(output, dict) and "fault_id" in output:
            extra = f" — fault {output['fault_id']} ({output.get('kind')} {_target(output.get('target') or {})})"
        elif isinstance(output, dict) and output.get("healed"):
            extra = f" — healed {', '.join(h.get('fault_id', '?') for h in output['healed'])}"
        elif not isinstance(output, dict) and output is not None:
            extra = f" — {json.dumps(output)[:80]}"
        return f"{event.get('activity_type')} {event.get('name')} {event.get('status')}{extra}"
    if kind == "hypothesis-completed":
        missed = [f"{p.get('name')} got {json.dumps(p.get('output'))}" for p in event.get("probes") or []
                  if p.get("tolerance_met") is False]
        met = "met" if event.get("met") else "NOT met" + (f" ({'; '.join(missed)})" if missed else "")
        return f"steady state {event.get('phase')} the method: {met}"
    if kind == "run-finished":
        return f"chaos finished: {event.get('status')}{', deviated' if event.get('deviated') else ''}"
    phase = PHASES.get((str(kind), event.get("phase"))) or PHASES.get((str(kind), None))
    return phase or ""


def _target(target: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in target.items() if v is not None)


class _Tail:
    """New complete JSON lines of a file that another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as stream:
                stream.seek(self.offset)
                chunk = stream.read()
        except OSError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        found = []
        for raw in chunk[:end].splitlines():
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append(value)
        return found
