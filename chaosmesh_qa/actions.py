"""Chaos Toolkit actions: faults for the mesh, each a lease that expires on its own.

Referenced from experiments as ``{"type": "python", "module": "chaosmesh_qa.actions",
"func": ...}``.  Each function validates its arguments (one-line ``InvalidArgument``
naming the argument; nothing is injected), calls the experiment's ``MeshTarget``, and
returns the target's JSON record: fault id, kind, target, parameters, started_at,
expires_at, and what actually changed (``changes.confirmed``: seen at the data plane).
"""

from typing import Any

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.targets import get_target, run_owner

__all__ = ["fail_pods", "heal", "inject_abort", "inject_latency", "kill_app", "kill_pods", "partition"]

Configuration = dict[str, Any]


def kill_pods(service: str, count: int | None = None, percent: float | None = None, version: str | None = None,
              restart_after_s: float = 1.0, configuration: Configuration | None = None) -> dict[str, Any]:
    """Kill pods of ``service`` like a pod deletion (app and sidecar, SIGKILL).

    Give ``count`` (default 1) or ``percent`` of the running pods, optionally of one
    ``version``; replacements with new pod names start after ``restart_after_s``
    (or at ``heal``), and callers' endpoints follow.
    """
    count, percent = _selection(count, percent)
    _positive("restart_after_s", restart_after_s)
    return get_target(configuration).kill_pods(_name("service", service), count, percent, _opt_name("version", version),
                                               float(restart_after_s), run_owner())


def fail_pods(service: str, duration_s: float, count: int | None = None, percent: float | None = None,
              version: str | None = None, configuration: Configuration | None = None) -> dict[str, Any]:
    """Make pods of ``service`` unavailable for ``duration_s`` (pod failure); they come back under the same name."""
    count, percent = _selection(count, percent)
    _positive("duration_s", duration_s)
    return get_target(configuration).fail_pods(_name("service", service), float(duration_s), count, percent,
                                               _opt_name("version", version), run_owner())


def kill_app(service: str, count: int | None = None, percent: float | None = None, version: str | None = None,
             restart_after_s: float = 5.0, configuration: Configuration | None = None) -> dict[str, Any]:
    """Kill the app container only (container kill): the sidecar stays and answers 503 until the app is back."""
    count, percent = _selection(count, percent)
    _positive("restart_after_s", restart_after_s)
    return get_target(configuration).kill_app(_name("service", service), count, percent, _opt_name("version", version),
                                              float(restart_after_s), run_owner())


def inject_latency(service: str, delay_ms: int, duration_s: float, percent: int = 100, source: str | None = None,
                   configuration: Configuration | None = None) -> dict[str, Any]:
    """Delay ``percent`` % of the requests into ``service`` by ``delay_ms`` (only those from ``source``, if given)."""
    _whole("delay_ms", delay_ms, 1, 600_000)
    _whole("percent", percent, 1, 100)
    _positive("duration_s", duration_s)
    return get_target(configuration).inject_latency(_name("service", service), int(delay_ms), int(percent),
                                                    _opt_name("source", source), float(duration_s), run_owner())


def inject_abort(service: str, http_status: int, percent: int, duration_s: float, source: str | None = None,
                 configuration: Configuration | None = None) -> dict[str, Any]:
    """Answer ``percent`` % of the requests into ``service`` with ``http_status`` (only from ``source``, if given)."""
    _whole("http_status", http_status, 200, 599)
    _whole("percent", percent, 1, 100)
    _positive("duration_s", duration_s)
    return get_target(configuration).inject_abort(_name("service", service), int(http_status), int(percent),
                                                  _opt_name("source", source), float(duration_s), run_owner())


def partition(a: str, b: str, duration_s: float, direction: str = "both", mode: str = "drop",
              count: int | None = None, percent: float | None = None, version: str | None = None,
              configuration: Configuration | None = None) -> dict[str, Any]:
    """Cut the traffic between ``a`` and ``b`` (``direction``: both, to = a→b, from = b→a).

    ``mode="drop"`` blackholes it (callers see timeouts); ``mode="reject"`` refuses
    connections (callers fail fast).  Every other edge keeps working.  With ``count``,
    ``percent`` or ``version`` (direction ``to`` only) ``a`` loses only those pods of ``b``,
    like a partition of one replica set or zone: the rest is there to fail over to.
    """
    if direction not in ("both", "to", "from"):
        raise InvalidArgument(f"direction: {direction!r} is not one of both, to, from")
    if mode not in ("drop", "reject"):
        raise InvalidArgument(f"mode: {mode!r} is not one of drop, reject")
    if _name("a", a) == _name("b", b):
        raise InvalidArgument(f"b: cannot partition {a!r} from itself")
    _positive("duration_s", duration_s)
    if count is not None or percent is not None:
        count, percent = _selection(count, percent)
    return get_target(configuration).partition(a, b, direction, mode, float(duration_s),  # type: ignore[arg-type]
                                               run_owner(), count, percent, _opt_name("version", version))


def heal(fault_id: str | None = None, configuration: Configuration | None = None) -> dict[str, Any]:
    """Remove one fault, or (no id) every fault this experiment run injected; idempotent."""
    owner = None if fault_id else run_owner()
    healed = get_target(configuration).heal(_opt_name("fault_id", fault_id), owner)
    return {"healed": healed, "count": len(healed)}


# --------------------------------------------------------------------------- validation


def _name(argument: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{argument}: expected a non-empty name, got {value!r}")
    return value


def _opt_name(argument: str, value: Any) -> str | None:
    return None if value is None else _name(argument, value)


def _number(argument: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{argument}: expected a number, got {value!r}")
    return float(value)


def _positive(argument: str, value: Any) -> None:
    if _number(argument, value) <= 0:
        raise InvalidArgument(f"{argument}: must be > 0, got {value!r}")


def _whole(argument: str, value: Any, low: int, high: int) -> None:
    number = _number(argument, value)
    if number != int(number) or not low <= number <= high:
        raise InvalidArgument(f"{argument}: expected a whole number in [{low}, {high}], got {value!r}")


def _selection(count: Any, percent: Any) -> tuple[int | None, float | None]:
    if count is not None and percent is not None:
        raise InvalidArgument("count/percent: give one of them, not both")
    if percent is not None:
        if not 0 < _number("percent", percent) <= 100:
            raise InvalidArgument(f"percent: {percent!r} is outside (0, 100]")
        return None, float(percent)
    count = 1 if count is None else count
    _whole("count", count, 1, 1000)
    return int(count), None
