"""The experiments ``chaosmesh-qa coverage`` reads: their faults, their steady-state probes, their traffic.

``read_experiment(path, model)`` validates the file as a Chaos Toolkit experiment (``report.run.load_experiment``:
chaoslib's validator; anything else is one ``InvalidArgument`` line) and keeps what ``report.coverage``'s rules
look at: each ``chaosmesh_qa.actions`` fault of the method as the service whose incoming requests it hits
(``Fault``), the steady-state hypothesis' ``chaosmesh_qa.probes`` probes (``Probe``: only theirs are checked against
a tolerance after the method), and the traffic profile it sends (``None``: it starts no traffic).  Arguments that
are not literal (``${...}`` substitutions) are not guessed: such a fault is left out.  A zone fault keeps its
``zone`` (and a partition's ``isolate``); a zone partition that spares every pod of its caller (all in the zone,
not isolated) hits nothing.  A fault on a ServiceEntry host is ``external`` (the host's name as its service); a
partition toward one from every caller (``a: "*"``) has no ``source``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.report.run import load_experiment
from chaosmesh_qa.targets.policy import EVERY_CALLER, zone_matches
from chaosmesh_qa.traffic.profile import PROFILE_KEY, Profile, load_profile

ACTIONS, PROBES = "chaosmesh_qa.actions", "chaosmesh_qa.probes"
TRAFFIC_CONTROL, TRAFFIC_ACTIONS = "chaosmesh_qa.controls.traffic", "chaosmesh_qa.traffic.actions"


@dataclass(frozen=True)
class Fault:
    activity: str
    service: str  # whose incoming requests it hits
    source: str | None  # only those from this caller
    effect: str  # refused, status, delay, blackhole
    status: int | None = None
    delay_ms: int | None = None
    some_pods: bool = False  # leaves other pods of the service serving
    zone: str | None = None  # a zone fault: the zone whose pods it takes away
    isolate: bool = False  # a zone partition that cuts the caller's pods in the zone too
    external: bool = False  # on a ServiceEntry host (``service`` is the host)
    chosen: bool = False  # count/percent/version chose some pods (of the zone, for a zone fault)


@dataclass(frozen=True)
class Probe:
    activity: str
    func: str
    arguments: dict[str, Any]
    tolerance: Any


@dataclass(frozen=True)
class Experiment:
    path: str
    title: str
    faults: tuple[Fault, ...]
    probes: tuple[Probe, ...]  # the steady-state hypothesis'
    traffic: Profile | None  # None: it sends no traffic


def read_experiment(path: Path, model: MeshModel) -> Experiment:
    raw = load_experiment(path)
    configuration, method = _dict(raw.get("configuration")), _list(raw.get("method"))
    hypothesis = _dict(raw.get("steady-state-hypothesis"))
    faults = [f for a in method for f in _faults(a, model)]
    probes = [Probe(str(a.get("name", "?")), str(a["provider"].get("func")), _dict(a["provider"].get("arguments")),
                    a.get("tolerance"))
              for a in _list(hypothesis.get("probes")) if isinstance(a, dict) and isinstance(a.get("provider"), dict)
              and str(a["provider"].get("module", "")).startswith(PROBES)]
    return Experiment(str(path), str(raw.get("title", "")), tuple(faults), tuple(probes),
                      _traffic(raw, configuration, path))


def _traffic(raw: dict[str, Any], configuration: dict[str, Any], path: Path) -> Profile | None:
    started = any(_dict(_dict(c).get("provider")).get("module") == TRAFFIC_CONTROL for c in _list(raw.get("controls")))
    started = started or any(_dict(_dict(a).get("provider")).get("module") == TRAFFIC_ACTIONS
                             for a in _list(raw.get("method")))
    if not started:
        return None
    try:
        return load_profile(configuration.get(PROFILE_KEY), path.parent)
    except InvalidArgument:
        return Profile()  # a profile given through the environment: what it sends is not known here


def _faults(activity: Any, model: MeshModel) -> list[Fault]:
    if not isinstance(activity, dict) or not isinstance(activity.get("provider"), dict):
        return []
    provider = activity["provider"]
    args = provider.get("arguments") if isinstance(provider.get("arguments"), dict) else {}
    name, func = str(activity.get("name", "?")), provider.get("func")
    if provider.get("module") != ACTIONS or not all(isinstance(args.get(k, ""), str) for k in ("service", "a", "b")):
        return []
    service, source = args.get("service", ""), args.get("source")
    if source is not None and not isinstance(source, str):
        return []
    zone, isolate = args.get("zone"), args.get("isolate", False)
    if (zone is not None and not isinstance(zone, str)) or not isinstance(isolate, bool):
        return []
    chosen = any(args.get(k) is not None for k in ("count", "percent", "version"))
    external = service in model.external_hosts
    if func in ("kill_pods", "fail_pods", "kill_app") and service in model.services:
        effect = "status" if func == "kill_app" else "refused"
        zoned = zone if func != "kill_app" else None
        return [Fault(name, service, None, effect, 503 if func == "kill_app" else None,
                      some_pods=_some(model, service, args, zoned), zone=zoned, chosen=chosen)]
    if func == "inject_abort" and (service in model.services or external) and isinstance(args.get("http_status"), int):
        return [Fault(name, service, source, "status", args["http_status"], external=external)]
    if func == "inject_latency" and (service in model.services or external) and isinstance(args.get("delay_ms"), int):
        return [Fault(name, service, source, "delay", delay_ms=args["delay_ms"], external=external)]
    if func == "partition":
        a, b, direction = args.get("a", ""), args.get("b", ""), args.get("direction", "both")
        effect = "blackhole" if args.get("mode", "drop") == "drop" else "refused"
        edges = {"to": [(b, a)], "from": [(a, b)], "both": [(b, a), (a, b)]}.get(str(direction), [])
        if zone is not None and (direction != "to" or (not isolate and _all_in(model, a, zone))):
            return []  # refused by the action, or the zone's own callers still reach the zone: nothing cut
        return [Fault(name, callee, None if caller == EVERY_CALLER else caller, effect, zone=zone, isolate=isolate,
                      chosen=chosen,
                      some_pods=direction == "to" and callee in model.services and _some(model, callee, args, zone),
                      external=callee in model.external_hosts)
                for callee, caller in edges if callee in model.services or callee in model.external_hosts]
    return []


def _all_in(model: MeshModel, service: str, zone: str) -> bool:
    """Are all of the service's pods in ``zone``?"""
    places = _places(model, service)
    return bool(places) and all(zone_matches(p, zone) for p in places)


def _places(model: MeshModel, service: str) -> list[str]:
    if service not in model.services:
        return []
    return [v.locality(i) for v in model.services[service].versions for i in range(v.replicas)]


def _some(model: MeshModel, service: str, args: dict[str, Any], zone: str | None = None) -> bool:
    """Does a pod fault leave some of the service's pods serving?"""
    if zone is not None:  # a zone fault takes at most the zone's pods
        return not _all_in(model, service, zone) or any(args.get(k) is not None for k in ("count", "percent"))
    pods = sum(v.replicas for v in model.services[service].versions)
    if args.get("version") is not None:
        return True if len(model.services[service].versions) > 1 else _chosen(args) < pods
    return _chosen(args) < pods


def _chosen(args: dict[str, Any]) -> float:
    if isinstance(args.get("percent"), int | float):
        return math.inf if args["percent"] >= 100 else 0.5  # a share below all of them
    count = args.get("count", 1)
    return count if isinstance(count, int) else math.inf


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
