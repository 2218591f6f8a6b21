"""Chaos Toolkit actions: faults for the mesh, each a lease that expires on its own.

Referenced from experiments as ``{"type": "python", "module": "chaosmesh_qa.actions",
"func": ...}``.  Each function checks its arguments first (``chaosmesh_qa.checks``: one-line
``InvalidArgument`` naming the argument, before the target is contacted, so nothing is
injected), calls the experiment's ``MeshTarget``, and returns the target's JSON record: fault
id, kind, target, parameters, started_at, expires_at, and what actually changed
(``changes.confirmed``: seen at the data plane).  Names must be well-formed here (DNS-1123
labels); whether a well-formed name exists is the target's answer (``FaultRejected``).
"""

import re
from typing import Any, cast

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.targets.base import KillMode
from chaosmesh_qa.targets.factory import get_target
from chaosmesh_qa.targets.policy import EVERY_CALLER, FaultRecord, every_caller_refused
from chaosmesh_qa.targets.run import run_owner

__all__ = ["fail_pods", "heal", "inject_abort", "inject_latency", "kill_app", "kill_pods", "partition"]

Configuration = dict[str, Any]
MAX_COUNT = 1000
MAX_DELAY_MS = 600_000
DIRECTIONS = ("both", "to", "from")
MODES = ("drop", "reject")
KILL_MODES = ("crash", "evict")
ZONE_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", re.ASCII)


def kill_pods(service: str, count: int | None = None, percent: float | None = None, version: str | None = None,
              restart_after_s: float = 1.0, mode: str = "crash", zone: str | None = None,
              configuration: Configuration | None = None) -> FaultRecord:
    """Kill pods of ``service`` like a pod deletion (app and sidecar, SIGKILL).

    Give ``count`` (default 1) or ``percent`` of the running pods, optionally of one
    ``version``; replacements with new pod names start after ``restart_after_s``
    (or at ``heal``), and callers' endpoints follow.  ``mode``: ``crash`` (a delete with grace
    period 0: what a node or process crash looks like to the mesh) or ``evict`` (on a cluster,
    the Eviction API: the pod's PodDisruptionBudget may refuse it, and it terminates gracefully).
    ``zone`` (a zone outage): only pods in that zone (``topology.kubernetes.io/zone``, or ``region/zone``),
    all of them unless ``count``/``percent`` say otherwise.
    """
    service, version = checks.name("service", service), checks.optional_name("version", version)
    zone = _zone(zone)
    count, percent = _selection(count, percent, zone)
    restart = checks.seconds("restart_after_s", restart_after_s)
    how = cast(KillMode, checks.choice("mode", mode, KILL_MODES))
    return get_target(configuration).kill_pods(service, count, percent, version, restart, run_owner(), how,
                                               zone=zone)


def fail_pods(service: str, duration_s: float, count: int | None = None, percent: float | None = None,
              version: str | None = None, zone: str | None = None,
              configuration: Configuration | None = None) -> FaultRecord:
    """Make pods of ``service`` unavailable for ``duration_s`` (pod failure); they come back under the same name.
    ``zone`` (a zone outage): only pods in that zone, all of them unless ``count``/``percent`` say otherwise."""
    service, version = checks.name("service", service), checks.optional_name("version", version)
    zone = _zone(zone)
    count, percent = _selection(count, percent, zone)
    duration = checks.seconds("duration_s", duration_s)
    return get_target(configuration).fail_pods(service, duration, count, percent, version, run_owner(), zone=zone)


def kill_app(service: str, count: int | None = None, percent: float | None = None, version: str | None = None,
             restart_after_s: float = 5.0, configuration: Configuration | None = None) -> FaultRecord:
    """Kill the app container only (container kill): the sidecar stays and answers 503 until the app is back."""
    service, version = checks.name("service", service), checks.optional_name("version", version)
    count, percent = _selection(count, percent)
    restart = checks.seconds("restart_after_s", restart_after_s)
    return get_target(configuration).kill_app(service, count, percent, version, restart, run_owner())


def inject_latency(service: str, delay_ms: int, duration_s: float, percent: int = 100, source: str | None = None,
                   zone: str | None = None, configuration: Configuration | None = None) -> FaultRecord:
    """Delay ``percent`` % of the requests into ``service`` by ``delay_ms`` (only those from ``source``, if given).
    ``service`` may be a ServiceEntry's host: the delay is then injected at its callers' sidecars.  ``zone`` (a
    zone's latency): only at ``service``'s pods in that zone, for every caller (or ``source``) wherever it is."""
    service, source = checks.service_or_host("service", service), checks.optional_name("source", source)
    zone = _l7_zone(service, zone)
    delay = checks.whole("delay_ms", delay_ms, 1, MAX_DELAY_MS)
    share = checks.whole("percent", percent, 1, 100)
    duration = checks.seconds("duration_s", duration_s)
    return get_target(configuration).inject_latency(service, delay, share, source, duration, run_owner(),
                                                    zone=zone)


def inject_abort(service: str, http_status: int, percent: int, duration_s: float, source: str | None = None,
                 zone: str | None = None, configuration: Configuration | None = None) -> FaultRecord:
    """Answer ``percent`` % of the requests into ``service`` with ``http_status`` (only from ``source``, if given).
    ``service`` may be a ServiceEntry's host: the abort is then answered by its callers' sidecars.  ``zone``: only
    at ``service``'s pods in that zone, as ``inject_latency``."""
    service, source = checks.service_or_host("service", service), checks.optional_name("source", source)
    zone = _l7_zone(service, zone)
    status = checks.whole("http_status", http_status, 200, 599)
    share = checks.whole("percent", percent, 1, 100)
    duration = checks.seconds("duration_s", duration_s)
    return get_target(configuration).inject_abort(service, status, share, source, duration, run_owner(),
                                                  zone=zone)


def partition(a: str, b: str, duration_s: float, direction: str = "both", mode: str = "drop",
              count: int | None = None, percent: float | None = None, version: str | None = None,
              zone: str | None = None, isolate: bool = False,
              configuration: Configuration | None = None) -> FaultRecord:
    """Cut the traffic between ``a`` and ``b`` (``direction``: both, to = a→b, from = b→a).

    ``mode="drop"`` blackholes it (callers see timeouts); ``mode="reject"`` refuses
    connections (callers fail fast).  Every other edge keeps working.  With ``count``,
    ``percent`` or ``version`` (direction ``to`` only) ``a`` loses only those pods of ``b``,
    like a partition of one replica set: the rest is there to fail over to.  With ``zone`` (a zone
    partition, direction ``to``) ``a``'s pods in other zones lose ``b``'s pods in that zone, while ``a``'s pods
    in the zone itself still reach them: the zone is cut off from the others.  ``isolate`` (with ``zone``):
    ``a``'s pods in the zone lose them too, so the zone's pods of ``b`` are gone for every pod of ``a`` for
    ``duration_s``: a zone outage as the network sees it, held for its duration (a pod kill is not, on a
    cluster: the ReplicaSet's replacement starts at once, in the same zone).  ``b`` may be a ServiceEntry's host,
    and then ``a`` may be ``"*"``: the host cut off from every one of its callers (the provider down for the
    whole mesh).
    """
    b = checks.service_or_host("b", b)  # b may be a ServiceEntry's host
    if a == EVERY_CALLER and "." not in b:  # no service name has a dot
        raise InvalidArgument(every_caller_refused(b))
    a = a if a == EVERY_CALLER else checks.name("a", a)
    if a == b:
        raise InvalidArgument(f"b: cannot partition {a!r} from itself")
    direction = checks.choice("direction", direction, DIRECTIONS)
    mode = checks.choice("mode", mode, MODES)
    duration = checks.seconds("duration_s", duration_s)
    version = checks.optional_name("version", version)
    zone = _zone(zone)
    if not isinstance(isolate, bool):
        checks.fail("isolate", "true or false", isolate)
    if isolate and zone is None:
        raise InvalidArgument("isolate: needs a zone (it cuts a's pods in that zone too)")
    some = count is not None or percent is not None
    if some:
        count, percent = _selection(count, percent)
    if (some or version is not None or zone is not None) and direction != "to":
        checks.fail("direction", "'to' when count/percent/version/zone choose some of b's pods", direction)
    return get_target(configuration).partition(a, b, direction, mode, duration,  # type: ignore[arg-type]
                                               run_owner(), count, percent, version, zone=zone,
                                               **({"isolate": True} if isolate else {}))


def heal(fault_id: str | None = None, configuration: Configuration | None = None) -> dict[str, Any]:
    """Remove one fault, or (no id) every fault this experiment run injected; idempotent."""
    fault = None if fault_id is None else checks.identifier("fault_id", fault_id, "a fault id")
    owner = None if fault else run_owner()
    healed = get_target(configuration).heal(fault, owner)
    return {"healed": healed, "count": len(healed)}


# --------------------------------------------------------------------------- validation


def _selection(count: Any, percent: Any, zone: str | None = None) -> tuple[int | None, float | None]:
    """``count`` (default 1; with a ``zone``, every pod there: 100 %) or ``percent`` of the pods, never both."""
    if count is not None and percent is not None:
        raise InvalidArgument("count/percent: give one of them, not both")
    if percent is None and count is None and zone is not None:
        return None, 100.0
    if percent is not None:
        return None, checks.number("percent", percent, 0, 100, low_open=True)
    return checks.whole("count", 1 if count is None else count, 1, MAX_COUNT), None


def _zone(zone: Any) -> str | None:
    """A zone: a label value (``topology.kubernetes.io/zone``), or ``region/zone``."""
    if zone is None:
        return None
    if not isinstance(zone, str) or not 1 <= zone.count("/") + 1 <= 2 or not all(
            ZONE_PART.fullmatch(part) for part in zone.split("/")):
        checks.fail("zone", "a zone (a label value: letters, digits, '-', '_', '.'; or region/zone)", zone)
    return zone


def _l7_zone(service: str, zone: Any) -> str | None:
    """A latency's or abort's zone: a ServiceEntry's host has no pods in a zone (its fault is at the callers)."""
    zone = _zone(zone)
    if zone is not None and "." in service:
        raise InvalidArgument(f"zone: {service!r} is a ServiceEntry's host, whose faults act at its callers' "
                              "sidecars, not at pods in a zone; give a service of the mesh")
    return zone
