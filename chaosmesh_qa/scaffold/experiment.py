"""``chaosmesh-qa new --fault KIND``: a complete Chaos Toolkit experiment for one fault on a team's mesh.

``new_experiment(model, kind, service, source, mesh_dir)`` checks the service (and, for latency, abort and
partition, the caller: ``source``) against the mesh, picks a sensible one when none is given (the service or
edge whose policies the fault exercises: a replicated, retried, outlier-detected service for pod faults and
partitions, the deepest edge with a timeout for latency, an edge whose route retries 5xx for aborts), and
returns the experiment as a JSON-ready mapping.  Its shape is the shipped experiments' (experiments/*.json):
the sandbox, traffic and safety controls; Locust traffic through the ingress; a steady-state hypothesis
with a recovery probe (``probes.recovery.recovered_within``) whose budget ``scaffold.timing`` derives from
the mesh's policies and the description explains; the fault action of ``chaosmesh_qa.actions``; a heal
rollback.  Every problem is an ``InvalidArgument`` naming the CLI option (``--service``, ``--source``,
``--fault``), raised before anything is returned.  Called by ``chaosmesh_qa.cli.new`` through the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.scaffold import graph, timing
from chaosmesh_qa.targets.policy import FAULT_KINDS, POD_KINDS

RATE_RPS = 100  # the shipped experiments' traffic: 20 users, 100 rps, 2 s of warm-up
USERS = 20
L7_HOLD_S = {"latency": 6, "abort": 8}  # seconds the fault lasts before the method heals it
PARTITION_CUT_S = 5  # a whole edge cut (no replica to fail over to): seconds before the heal
FAULT_TTL_S = 30  # the lease of a fault the method heals itself: expires on its own if the run dies
ACTIONS = "chaosmesh_qa.actions"
TITLES = {
    "pod-kill": "Losing a {service} pod under load is absorbed by the mesh",
    "pod-failure": "A failed {service} pod under load is absorbed by the mesh",
    "app-kill": "A crashed {service} container behind a live sidecar is absorbed by the mesh",
    "partition": "A {service} replica cut off from {source} is failed over",
    "partition-whole": "{source} cut off from {service} recovers within budget of the heal",
    "latency": "A slow {service}{from_source} is bounded by the timeouts in front of it",
    "abort": "503s from {service}{from_source} are retried away and end with the fault",
    "abort-unretried": "503s from {service}{from_source} do not spread and end with the fault",
}


@dataclass(frozen=True)
class Scaffolded:
    """The experiment, and what was chosen for the user (each a line the CLI prints as a note)."""

    experiment: dict[str, Any]
    kind: str
    service: str
    source: str | None
    notes: list[str] = field(default_factory=list)


def new_experiment(model: MeshModel, kind: str, service: str | None = None, source: str | None = None,
                   mesh_dir: str = "") -> Scaffolded:
    """The experiment for ``kind`` on ``service`` (from ``source``) of ``model``; ``mesh_dir``: what the experiment
    names as its mesh by default ("" for the built-in one)."""
    kind = checks.choice("--fault", kind, FAULT_KINDS)
    notes: list[str] = []
    if source is not None and kind in POD_KINDS:
        raise InvalidArgument(f"--source: only latency, abort and partition faults have a caller; a {kind} fault "
                              f"hits the pods of --service")
    if service is not None:
        service = _service(model, "--service", service)
    if source is not None and source != graph.INGRESS:
        source = _service(model, "--source", source)
    if service is None:
        service, source, chosen = _default(model, kind, source)
        notes.append(chosen)
    reached = graph.order(model)
    if service not in reached:
        raise InvalidArgument(f"--service: {service!r} gets no traffic from the ingress in mesh {model.name!r} "
                              f"(the calls from {', '.join(model.ingress_services())} never reach it), so a fault "
                              f"there would show nothing")
    if graph.pods(model, service) == 0:
        raise InvalidArgument(f"--service: {service!r} runs no pods (replicas: 0)")
    if source is not None:
        _check_edge(model, source, service)
    elif kind == "partition":
        source = graph.path_to(model, service)[-2]
        notes.append(f"--source: {source} (the first caller of {service} from the ingress)")
    build = {"partition": _partition, "latency": _latency, "abort": _abort}.get(kind, _pod)
    experiment = build(model, kind, service, source)
    experiment["configuration"] = _configuration(model, mesh_dir, experiment.pop("traffic_timeout_s", None))
    ordered = {key: experiment[key] for key in ("version", "title", "description", "tags", "configuration")}
    ordered.update({"runtime": {"rollbacks": {"strategy": "always"}}, "controls": _controls()})
    ordered.update({key: experiment[key] for key in ("steady-state-hypothesis", "method")})
    ordered["rollbacks"] = [_action("heal-every-fault-of-this-run", "heal")]
    return Scaffolded(ordered, kind, service, source, notes)


# --------------------------------------------------------------------------- checks and defaults


def _service(model: MeshModel, option: str, name: str) -> str:
    name = checks.name(option, name)
    if name not in model.services:
        raise InvalidArgument(f"{option}: unknown service {name!r} in mesh {model.name!r} "
                              f"(services: {', '.join(sorted(model.services))})")
    return name


def _check_edge(model: MeshModel, source: str, service: str) -> None:
    if source == service:
        raise InvalidArgument(f"--source: {service!r} is also --service: a fault needs an edge between two services")
    callers = model.callers(service)
    if source not in callers:
        raise InvalidArgument(f"--source: {source!r} does not call {service!r} in mesh {model.name!r} "
                              f"(callers of {service}: {', '.join(callers) or 'none'})")


def _default(model: MeshModel, kind: str, source: str | None) -> tuple[str, str | None, str]:
    """The service (and caller) a fault of ``kind`` exercises best on this mesh, and the note saying so."""
    if kind in POD_KINDS:
        ranked = []
        for index, name in enumerate(graph.order(model)):
            if graph.pods(model, name) == 0:
                continue
            t = timing.pod_fault(model, kind, name, RATE_RPS)
            several, retried = t.members >= 2, t.members >= 2 and t.retried
            ranked.append(((retried and t.ejection_s is not None, retried, several, -index), name))
        if not ranked:
            raise InvalidArgument(f"--service: mesh {model.name!r} runs no pods the ingress reaches")
        name = max(ranked)[1]
        return name, None, f"--service: {name} (its pods are the ones the mesh's policies protect best)"
    edges = [e for e in graph.edges(model) if graph.pods(model, e.service)
             and (source is None or e.source == source)]
    if kind == "partition":
        edges = [e for e in edges if e.source != graph.INGRESS] or edges
    if not edges:
        raise InvalidArgument(f"--source: {source!r} calls no service in mesh {model.name!r}" if source else
                              f"--service: mesh {model.name!r} has no edge the traffic crosses")
    scored = []
    for index, edge in enumerate(edges):
        if kind == "partition":
            p = timing.partition(model, edge.source, edge.service, RATE_RPS)
            key: tuple[Any, ...] = (p.replica_only and p.ejection_s is not None, p.replica_only and
                                    p.try_cost_s is not None, p.replica_only, -index)
        elif kind == "latency":
            key = (timing.cap(model, edge.service) is not None, edge.depth, -index)
        else:
            a = timing.abort(model, edge.source, edge.service)
            key = (a.retried_by == edge.service, a.tries > 1, -edge.depth, -index)
        scored.append((key, edge))
    key, edge = max(scored, key=lambda item: item[0])
    why = {"partition": ("a replicated callee with retries and outlier detection to fail over with", "the first "
                         "edge the traffic crosses: no callee has replicas, retries and outlier detection"),
           "latency": ("the deepest edge whose route has a timeout to bound the delay",
                       "the deepest edge: no route has a timeout"),
           "abort": ("an edge whose route retries 5xx", "the first edge the traffic crosses: no route retries 5xx")
           }[kind][0 if key[0] else 1]
    return edge.service, edge.source, f"--service: {edge.service}, --source: {edge.source} ({why})"


# --------------------------------------------------------------------------- the parts of an experiment


def _configuration(model: MeshModel, mesh_dir: str, timeout_s: float | None) -> dict[str, Any]:
    traffic: dict[str, Any] = {"users": USERS, "rate_rps": RATE_RPS, "paths": _paths(model), "warmup_s": 2}
    if timeout_s is not None:
        traffic["timeout_s"] = timeout_s
    return {
        "chaosmesh_qa_target": "local",
        "chaosmesh_qa_state_dir": {"type": "env", "key": "CHAOSMESH_QA_STATE_DIR", "default": ".chaosmesh-qa"},
        "chaosmesh_qa_mesh": {"type": "env", "key": "CHAOSMESH_QA_MESH", "default": mesh_dir},
        "chaosmesh_qa_timeline": {"type": "env", "key": "CHAOSMESH_QA_TIMELINE",
                                  "default": "chaosmesh-qa-timeline.jsonl"},
        "chaosmesh_qa_traffic": traffic,
    }


def _paths(model: MeshModel) -> list[dict[str, Any]]:
    """What Locust requests: the ingress paths, or the first path and host a Gateway route serves."""
    if not model.gateway_hosts:
        return [{"path": path} for path in model.ingress_paths]
    host = model.gateway_hosts[0]
    match = next((m.uri for r in host.routes for m in r.matches if m.uri is not None and m.uri.kind != "regex"), None)
    entry: dict[str, Any] = {"path": match.value if match is not None else "/"}
    domain = next((d for d in host.domains if "*" not in d), None)
    if domain is not None:
        entry["headers"] = {"Host": domain}
    return [entry]


def _controls() -> list[dict[str, Any]]:
    return [{"name": f"chaosmesh-qa-{name}", "provider": {"type": "python", "module": f"chaosmesh_qa.controls.{name}"}}
            for name in ("sandbox", "traffic", "safety")]


def _probe(name: str, module: str, func: str, arguments: dict[str, Any], tolerance: Any) -> dict[str, Any]:
    return {"type": "probe", "name": name, "tolerance": tolerance,
            "provider": {"type": "python", "module": f"chaosmesh_qa.probes.{module}", "func": func,
                         "arguments": arguments}}


def _action(name: str, func: str, arguments: dict[str, Any] | None = None, after_s: float | None = None
            ) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "python", "module": ACTIONS, "func": func}
    if arguments is not None:
        provider["arguments"] = arguments
    action: dict[str, Any] = {"type": "action", "name": name, "provider": provider}
    if after_s:
        action["pauses"] = {"after": after_s}
    return action


def _range(high: float) -> dict[str, Any]:
    return {"type": "range", "range": [0, high]}


def _recovery(budget_s: int, p99_ms: int, since: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {"budget_s": budget_s, "slo": {"max_error_ratio": timing.MAX_ERROR_RATIO,
                                                               "max_p99_ms": p99_ms}}
    if since != "fault_start":
        arguments["since"] = since
    arguments["measure"] = "client"
    suffix = "-of-heal" if since == "last_heal" else ""
    return _probe(f"recovered-within-{budget_s}s{suffix}", "recovery", "recovered_within", arguments,
                  _range(budget_s))


def _errors(name: str, limit: float, **selection: Any) -> dict[str, Any]:
    return _probe(name, "client", "client_error_ratio", selection, _range(limit))


def _engaged(name: str, policy: str, service: str) -> dict[str, Any]:
    return _probe(name, "prometheus", "policy_engaged", {"policy": policy, "service": service}, True)


def _head(kind: str, service: str, source: str | None, description: str, tags: list[str],
          probes: list[dict[str, Any]], method: list[dict[str, Any]], title: str | None = None) -> dict[str, Any]:
    from_source = f" (called by {source})" if source else ""
    return {"version": "1.0.0",
            "title": TITLES[title or kind].format(service=service, source=source, from_source=from_source),
            "description": description, "tags": ["chaosmesh-qa", kind, *tags],
            "steady-state-hypothesis": {"title": "Clients are served within the SLO, and recover within budget",
                                        "probes": probes},
            "method": method}


def _generated(kind: str, service: str, source: str | None) -> str:
    edge = f" --source {source}" if source else ""
    return f" Written by `chaosmesh-qa new --fault {kind} --service {service}{edge}`: edit it as you need."


def _pod(model: MeshModel, kind: str, service: str, source: str | None) -> dict[str, Any]:
    t = timing.pod_fault(model, kind, service, RATE_RPS)
    which = {"version": t.version} if t.version else {}
    func, hold, what = {
        "pod-kill": ("kill_pods", {"restart_after_s": t.hold_s}, "Kill one {service} pod{of} (a replacement "
                     "starts {hold:g} s later)"),
        "pod-failure": ("fail_pods", {"duration_s": t.hold_s}, "Make one {service} pod{of} fail for {hold:g} s"),
        "app-kill": ("kill_app", {"restart_after_s": t.hold_s}, "Kill the app container of one {service} pod{of}, "
                     "its sidecar left running (the app restarts {hold:g} s later)"),
    }[kind]
    of = f" of version {t.version}" if t.version else ""
    probes = [_recovery(t.budget_s, timing.BASE_P99_MS, "fault_start")]
    tags = ["failover"] if t.members >= 2 else ["outage"]
    expect = "clients see no errors" if t.retried else "clients may see errors while it lasts"
    if t.ejection_s is not None and t.members >= 2:
        probes.append(_engaged("outlier-detection-ejected-the-pod", "outlier_ejection", service))
        tags.append("outlier-detection")
        expect += " and outlier detection must eject the pod"
    if t.retried:
        tags.append("retries")
    probes += [_errors("client-error-ratio-last-5s", timing.MAX_ERROR_RATIO, window_s=5),
               _probe("client-p99-last-5s", "client", "client_latency", {"quantile": 0.99, "window_s": 5},
                      _range(timing.BASE_P99_MS))]
    description = (f"{what.format(service=service, of=of, hold=t.hold_s)} while {RATE_RPS} rps flow through the "
                   f"ingress of mesh {model.name!r}: {expect}; the SLO (errors <= 1 %, p99 <= "
                   f"{timing.BASE_P99_MS} ms) must hold again within {t.budget_s} s of the fault, and over the last "
                   f"5 s. Budget: {t.why}." + _generated(kind, service, source))
    method = [_action(f"{kind}-one-{service}-pod", func, {"service": service, "count": 1, **which, **hold},
                      after_s=3)]
    return _head(kind, service, source, description, tags, probes, method)


def _partition(model: MeshModel, kind: str, service: str, source: str | None) -> dict[str, Any]:
    assert source is not None
    t = timing.partition(model, source, service, RATE_RPS)
    arguments: dict[str, Any] = {"a": source, "b": service, "direction": "to", "mode": "drop"}
    if t.replica_only:
        arguments.update({"count": 1, **({"version": t.version} if t.version else {})})
        arguments["duration_s"] = FAULT_TTL_S
        probes = [_recovery(t.budget_s, t.p99_ms, "fault_start")]
        tags = ["failover"]
        if t.ejection_s is not None:
            probes.append(_engaged("outlier-detection-ejected-the-cut-replica", "outlier_ejection", service))
            tags.append("outlier-detection")
        probes.append(_errors("client-error-ratio-last-5s", timing.MAX_ERROR_RATIO, window_s=5))
        method = [_action(f"blackhole-one-{service}-replica-for-{source}", "partition", arguments)]
        what = (f"Blackhole one of {service}'s replicas as {source} sees it (connections hang, as behind a dead "
                f"switch) while {RATE_RPS} rps flow through the ingress of mesh {model.name!r}: {source} must move "
                f"its traffic to the other replicas, and the SLO (errors <= 1 %, p99 <= {t.p99_ms} ms) must hold "
                f"again within {t.budget_s} s of the cut")
    else:
        arguments["duration_s"] = FAULT_TTL_S
        probes = [_recovery(t.budget_s, t.p99_ms, "last_heal"),
                  _errors("client-error-ratio-before-the-fault", timing.MAX_ERROR_RATIO, phase="before")]
        tags = ["outage"]
        method = [_action(f"cut-{source}-from-{service}", "partition", arguments, after_s=PARTITION_CUT_S),
                  _action("heal-the-partition", "heal", {})]
        what = (f"Cut {source} off from {service} (every pod: there is no other) for {PARTITION_CUT_S} s while "
                f"{RATE_RPS} rps flow through the ingress of mesh {model.name!r}, then heal: the SLO (errors <= 1 %, "
                f"p99 <= {t.p99_ms} ms) must hold again within {t.budget_s} s of the heal")
    description = f"{what}. Budget: {t.why}." + _generated(kind, service, source)
    return _head(kind, service, source, description, tags, probes, method,
                 None if t.replica_only else "partition-whole")


def _latency(model: MeshModel, kind: str, service: str, source: str | None) -> dict[str, Any]:
    t = timing.latency(model, source, service)
    arguments: dict[str, Any] = {"service": service, "delay_ms": t.delay_ms, "duration_s": FAULT_TTL_S}
    if source is not None:
        arguments["source"] = source
    edge = f"{source}->{service}" if source else service
    probes = [_recovery(t.budget_s, timing.LATENCY_RECOVERY_P99_MS, "last_heal"),
              _probe("client-p99-during-the-fault", "client", "client_latency", {"quantile": 0.99, "phase": "during"},
                     _range(t.p99_limit_ms)),
              _errors("client-error-ratio-before-the-fault", timing.MAX_ERROR_RATIO, phase="before")]
    method = [_action(f"delay-{edge.replace('->', '-to-')}-{t.delay_ms}ms", "inject_latency", arguments,
                      after_s=L7_HOLD_S["latency"]),
              _action("heal-the-delay", "heal", {})]
    description = (f"Delay every {edge} request by {t.delay_ms} ms for {L7_HOLD_S['latency']} s while {RATE_RPS} rps "
                   f"flow through the ingress of mesh {model.name!r}: the timeouts in front of {service} must keep "
                   f"the clients' p99 during the fault within {t.p99_limit_ms} ms (read over the fault's own window), "
                   f"and the SLO (errors <= 1 %, p99 <= {timing.LATENCY_RECOVERY_P99_MS} ms) must hold again within "
                   f"{t.budget_s} s of the heal. Errors during the fault are the price of the timeouts and are not "
                   f"judged. Budget: {t.why}." + _generated(kind, service, source))
    experiment = _head(kind, service, source, description, ["timeout"], probes, method)
    if t.bound_s * 2 > 5:  # Locust's default request timeout (5 s) must outlast what clients wait
        experiment["traffic_timeout_s"] = float(max(10, round(t.bound_s * 2)))
    return experiment


def _abort(model: MeshModel, kind: str, service: str, source: str | None) -> dict[str, Any]:
    t = timing.abort(model, source, service)
    arguments: dict[str, Any] = {"service": service, "http_status": 503, "percent": t.percent,
                                 "duration_s": FAULT_TTL_S}
    if source is not None:
        arguments["source"] = source
    edge = f"{source}->{service}" if source else service
    probes = [_recovery(t.budget_s, timing.BASE_P99_MS, "last_heal"),
              _errors("client-error-ratio-during-the-fault", t.max_error_ratio, phase="during")]
    tags = []
    if t.retried_by is not None:
        probes.append(_engaged(f"retries-toward-{t.retried_by}", "retries", t.retried_by))
        tags.append("retries")
    probes.append(_errors("client-error-ratio-before-the-fault", timing.MAX_ERROR_RATIO, phase="before"))
    method = [_action(f"abort-{t.percent}pct-of-{edge.replace('->', '-to-')}", "inject_abort", arguments,
                      after_s=L7_HOLD_S["abort"]),
              _action("heal-the-abort", "heal", {})]
    description = (f"Answer {t.percent} % of the {edge} requests with HTTP 503 for {L7_HOLD_S['abort']} s while "
                   f"{RATE_RPS} rps flow through the ingress of mesh {model.name!r}: at most "
                   f"{t.max_error_ratio * 100:g} % of the client requests may fail during the fault (read over the "
                   f"fault's own window), and the SLO (errors <= 1 %, p99 <= {timing.BASE_P99_MS} ms) must hold again "
                   f"within {t.budget_s} s of the heal. Budget: {t.why}." + _generated(kind, service, source))
    return _head(kind, service, source, description, tags, probes, method,
                 "abort" if t.retried_by is not None else "abort-unretried")

