"""The client timeline as an inline SVG figure (matplotlib), for the HTML report (``report.html``).

Three stacked panels sharing a time axis (seconds since the first second of traffic): throughput
and failures per second, error ratio, p50/p99 latency.  Fault windows are shaded in ``FAULT_COLOUR``
(opaque, behind the data, so a screenshot can find them) and labelled with kind and target; the
recovery timeline of every ``recovered_within`` evaluation (fault start, first breach, detection,
recovery, heal) is drawn as vertical lines; SLO limits as dashed lines.  matplotlib's object API is
used (``Figure``, no pyplot): no global state, no GUI backend, text left as SVG text (small file).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from chaosmesh_qa.traffic import timeline

FAULT_COLOUR = "#ffd6cc"
MARKS = (  # recovery timeline key, label, colour, line style
    ("fault_start", "fault start", "#c0392b", "-"),
    ("first_breach", "first breach", "#e67e22", "--"),
    ("detection", "detection", "#8e44ad", "-."),
    ("recovered", "recovery", "#27ae60", "-"),
    ("heal", "heal", "#2471a3", ":"),
)


def timeline_svg(lines: Sequence[timeline.Line], faults: Sequence[dict[str, Any]],
                 recoveries: Sequence[dict[str, Any]]) -> str:
    """The figure as an ``<svg>`` element (no XML prologue), or ``""`` when the timeline is empty."""
    seconds = timeline.measured(lines)
    if not seconds:
        return ""
    origin = float(seconds[0]["t"])
    x = [line["t"] + 0.5 - origin for line in seconds]  # a second's values: a step centred on it
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "chaosmesh-qa", "font.size": 9}):
        figure = Figure(figsize=(10, 7.2), layout="constrained")
        rate, errors, latency = figure.subplots(3, 1, sharex=True)
        step = {"ds": "steps-mid"}  # one value per second, drawn as a step over that second
        rate.plot(x, [line["requests"] for line in seconds], color="#1f4e79", lw=1.6, label="requests/s", **step)
        rate.plot(x, [line["failures"] for line in seconds], color="#c0392b", lw=1.2, label="failures/s", **step)
        rate.set_ylabel("requests / s")
        rate.set_ylim(bottom=0)
        errors.plot(x, [line["failures"] / line["requests"] if line["requests"] else 1.0 for line in seconds],
                    color="#c0392b", lw=1.4, label="error ratio", **step)
        errors.set_ylabel("error ratio")
        errors.set_ylim(-0.02, 1.02)
        for key, name, colour in (("p50", "p50", "#5d6d7e"), ("p99", "p99", "#1f4e79")):
            points = [(xi, line[key]) for xi, line in zip(x, seconds, strict=True) if line.get(key) is not None]
            latency.plot([p[0] for p in points], [p[1] for p in points], color=colour, lw=1.4, label=name, **step)
        latency.set_ylabel("latency (ms)")
        latency.set_yscale("log")
        latency.set_xlabel("seconds since the first second of traffic")
        _slo_lines(errors, latency, recoveries)
        for axes in (rate, errors, latency):
            _fault_windows(axes, faults, origin, label=axes is rate)
            axes.grid(True, color="#e5e5e5", lw=0.6)
            axes.set_axisbelow(True)
        _recovery_marks((rate, errors, latency), recoveries, origin)
        rate.set_xlim(0, x[-1] + 0.5)
        for axes in (rate, errors, latency):
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Type": None, "Format": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def _fault_windows(axes: Any, faults: Sequence[dict[str, Any]], origin: float, label: bool) -> None:
    for index, fault in enumerate(faults):
        start = float(fault["started_at"]) - origin
        end = float(timeline.fault_end(fault)) - origin
        axes.axvspan(start, end, color=FAULT_COLOUR, zorder=0, label="fault window" if index == 0 and label else None)
        if label:
            target = " ".join(f"{k}={v}" for k, v in (fault.get("target") or {}).items() if v is not None)
            axes.annotate(f"{fault.get('kind', 'fault')} {target}".strip(), xy=(start, 1.0),
                          xycoords=("data", "axes fraction"), xytext=(3, -3), textcoords="offset points",
                          va="top", ha="left", fontsize=8, color="#7b241c")


def _recovery_marks(panels: Sequence[Any], recoveries: Sequence[dict[str, Any]], origin: float) -> None:
    seen: set[str] = set()
    for recovery in recoveries:
        marks = recovery.get("timeline") or {}
        for key, name, colour, style in MARKS:
            if marks.get(key) is None:
                continue
            for axes in panels:
                axes.axvline(float(marks[key]) - origin, color=colour, ls=style, lw=1.3,
                             label=name if key not in seen and axes is panels[0] else None)
            seen.add(key)


def _slo_lines(errors: Any, latency: Any, recoveries: Sequence[dict[str, Any]]) -> None:
    slo: dict[str, float] = {}
    for recovery in recoveries:
        slo.update(recovery.get("slo") or {})
    if "max_error_ratio" in slo:
        errors.axhline(slo["max_error_ratio"], color="#7f8c8d", ls="--", lw=1, label="SLO error ratio")
    for key in ("max_p50_ms", "max_p95_ms", "max_p99_ms"):
        if key in slo:
            latency.axhline(slo[key], color="#7f8c8d", ls="--", lw=1, label=f"SLO {key[4:7]}")

