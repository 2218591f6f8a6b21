"""Client-side probes over the traffic timeline: error ratio, latency quantile, throughput.

Referenced as ``{"type": "python", "module": "chaosmesh_qa.probes.client", "func": ...}`` in a
steady-state hypothesis or the method, while traffic runs (traffic control or ``start_traffic``).
Each reads the timeline at ``configuration["chaosmesh_qa_timeline"]`` and returns a float for
a ``range`` tolerance.  Select the seconds with ``window_s`` (the newest N seconds of the timeline)
or ``phase`` (``before``/``during``/``after`` this run's faults, from the target's fault history);
neither means every measured second.  Seconds of the warm-up and seconds cut short by a stop are
never counted.  Arguments are checked first (``InvalidArgument``, one line); a probe raises
otherwise only when it cannot measure (``MeasurementFailed``: no timeline, no request in the window).
Before the run has injected any fault (a hypothesis checked before the method), ``phase="during"``
or ``"after"`` has nothing to measure yet and answers 0.0, like ``recovered_within``.
"""

from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument, TargetUnavailable
from chaosmesh_qa.targets.factory import get_target
from chaosmesh_qa.targets.run import run_owner
from chaosmesh_qa.traffic import runner, timeline
from chaosmesh_qa.traffic.actions import timeline_path

__all__ = ["client_error_ratio", "client_latency", "client_throughput"]

Configuration = dict[str, Any]


def client_error_ratio(window_s: float | None = None, phase: str | None = None,
                       configuration: Configuration | None = None) -> float:
    """Failed requests / requests (0.0 to 1.0) seen by the traffic clients in the window or phase."""
    lines = _lines(window_s, phase, configuration)
    return 0.0 if lines is None else timeline.error_ratio(lines)


def client_latency(quantile: float, window_s: float | None = None, phase: str | None = None,
                   configuration: Configuration | None = None) -> float:
    """The ``quantile`` (e.g. 0.99) of client response times in ms, over the window or phase."""
    q = checks.number("quantile", quantile, 0, 1, low_open=True)
    lines = _lines(window_s, phase, configuration)
    return 0.0 if lines is None else timeline.latency(lines, q)


def client_throughput(window_s: float | None = None, phase: str | None = None,
                      configuration: Configuration | None = None) -> float:
    """Requests sent per second by the traffic clients over the window or phase (0.0 if none)."""
    lines = _lines(window_s, phase, configuration)
    return 0.0 if lines is None else round(timeline.throughput(lines), 3)


def _lines(window_s: float | None, phase: str | None,
           configuration: Configuration | None) -> list[timeline.Line] | None:
    """The selected seconds; ``None`` for a during/after phase of a run without any fault yet."""
    if window_s is not None and phase is not None:
        raise InvalidArgument("window_s/phase: give one of them, not both")
    window = None if window_s is None else checks.seconds("window_s", window_s)
    if phase is not None:
        checks.choice("phase", phase, timeline.PHASES)
    path = timeline_path(configuration)
    target = get_target(configuration) if phase is not None else None  # its configuration checked up front
    lines = timeline.measured(timeline.read_timeline(path), runner.ready_at(path))
    if window is not None:
        return timeline.last_seconds(lines, window)
    if phase is not None and target is not None:
        try:
            faults = target.fault_history(run_owner())
        except TargetUnavailable as exc:
            raise TargetUnavailable(f"phase: this run's fault history is unavailable ({exc})") from None
        if not faults and phase != "before":
            return None
        return timeline.phase_lines(lines, faults, phase)
    return lines
