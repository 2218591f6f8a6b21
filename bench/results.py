"""The bench's figures, each with its goal: collected by every benchmark (``record``), printed as one table
next to their goals, and written as one result file (JSON) that ``python -m bench.compare`` compares.

A result file holds the machine-speed figure (seconds for a fixed pure-Python loop, taken at the start and at
the end of the run: shared hosts vary), so that two files from the same machine can be told apart from two
machines.  No test asserts a goal: the figures depend on the machine; the goals are the issue's (issue 23).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULT_ENV = "CHAOSMESH_QA_BENCH_RESULT"  # where to write the result file (default: .bench/result-<time>.json)


@dataclass(frozen=True)
class Figure:
    name: str  # a stable key, compared across runs
    value: float
    unit: str
    goal: float | None = None  # the bound the figure should meet, if it has one
    higher_is_better: bool = False
    label: str = ""  # what it measures, for people

    def meets(self) -> bool | None:
        if self.goal is None:
            return None
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal


_FIGURES: list[Figure] = []


def record(name: str, value: float, unit: str, goal: float | None = None, higher_is_better: bool = False,
           label: str = "") -> None:
    """Note one figure of this run (benchmarks call it where they print the figure)."""
    _FIGURES.append(Figure(name, float(value), unit, goal, higher_is_better, label or name))


def machine_speed_s() -> float:
    """Seconds for a fixed pure-Python loop: how fast this machine is right now (a quiet 2-core host: ~0.2 s)."""
    started, total = time.perf_counter(), 0
    for i in range(3_000_000):
        total += i * i
    return time.perf_counter() - started


def summary() -> str:
    lines = ["every figure next to its goal:"]
    for f in _FIGURES:
        sign = ">=" if f.higher_is_better else "<="
        goal = f"goal {sign} {f.goal:g} {f.unit}" if f.goal is not None else ""
        verdict = {True: "met", False: "NOT MET", None: ""}[f.meets()]
        lines.append(f"  {f.label:<72} {f.value:10.3f} {f.unit:<4} {goal:<20} {verdict}")
    return "\n".join(lines)


def write(speed_before_s: float, speed_after_s: float, path: Path | None = None) -> Path:
    """The result file: every figure, the machine-speed figure (start and end of the run), host and time."""
    stamp = datetime.datetime.now(datetime.UTC)
    target = path or Path(os.environ.get(RESULT_ENV) or Path(".bench") / f"result-{stamp:%Y%m%dT%H%M%SZ}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "at": stamp.isoformat(timespec="seconds"), "host": platform.node(), "cpus": os.cpu_count(),
        "machine_speed_s": {"start": round(speed_before_s, 4), "end": round(speed_after_s, 4)},
        "figures": {f.name: asdict(f) for f in _FIGURES},
    }
    target.write_text(json.dumps(document, indent=2) + "\n")
    return target
