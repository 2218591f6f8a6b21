"""Which experiments exercise which promise of a mesh: ``chaosmesh-qa coverage --mesh DIR EXPERIMENT...``.

``coverage(directory, paths)`` lists the mesh's promises (``mesh.promises``), reads each experiment (Chaos
Toolkit format, validated by chaoslib: ``report.run.load_experiment``) and decides, promise by promise, which
experiments exercise it.  A promise that ``chaosmesh-qa explain`` finds cannot work (``mesh.explain``: a warning
tied to it: ``mesh.unworkable``) is *unworkable*: listed with the code, never counted covered.  Called by
``chaosmesh_qa.cli.coverage`` and ``cli.run`` (``run_coverage``); ``report.coverage_output`` renders the result.
Which requests take which route: ``mesh.reach``.

The rules (docs/how-to/coverage.md explains each).  Only ``chaosmesh_qa.actions`` in the method are faults; only
the steady-state hypothesis' probes count (Chaos Toolkit checks their tolerances after the method: a method
probe's result fails nothing); an experiment without traffic (the traffic control or ``start_traffic``) exercises
nothing.  A fault hits a service ``S``: ``kill_pods``/``fail_pods`` (connections refused), ``kill_app`` (503),
``inject_abort`` (its status), ``inject_latency`` (its delay), ``partition`` toward S (``drop``: a blackhole,
``reject``: refused); with a ``source``, only that caller's requests.

* promises that act on every request need no fault, only traffic that reaches them and the verdict that checks them:
  ``routing``/``match`` (``routing_matches`` on the service with the ``expected`` shares, traffic whose path and
  headers, propagated through the call graph, take that route: without ``expected`` the verdict expects what the
  mesh under test declares, so a wrong weight or subset passes it), ``mtls`` (``mtls_enforced`` over the service),
  ``authz-rule`` (``authz_enforced`` whose ``expected`` names a workload the policy selects: without the team's
  intent the verdict expects whatever the policies say, so a deleted or widened rule passes it),
  ``trace-propagation`` (``traces_complete``);
* ``retries``: a fault on a destination its ``retryOn`` retries, and ``policy_engaged retries`` on it or a
  recovery probe on a caller (``recovered_within``, or an error ratio during the fault);
* ``timeout``: latency on a destination beyond the timeout, or a blackhole of all its pods, when the tries do not
  end the request first (``perTryTimeout`` x the tries that retry a per-try timeout below the timeout: it never
  acts; for a blackhole, when the tries x the connect timeout reach it), and a latency bound on a caller below the
  injected delay (``recovered_within``'s ``max_p*_ms``,
  ``latency_quantile``, ``client_latency``, during the fault), or any recovery probe for a blackhole (requests
  hang without it);
* ``outlier-detection``: a pod kill/failure or a blackhole of some of the service's pods, an app kill or a 5xx
  abort, and ``policy_engaged outlier_ejection`` on it, or a recovery probe when no route toward it retries
  (retries hide the fault from every caller whether or not a host is ejected);
* ``connection-pool``: latency or a blackhole on the service, and ``policy_engaged circuit_breaker`` on it;
* ``connect-timeout``: a blackhole of some of its pods, and a recovery probe on a caller;
* ``locality``: a zone fault on the service (``kill_pods``/``fail_pods`` with ``zone`` and no count/percent/version,
  or a ``partition`` with ``zone`` from the verdict's caller) that takes away the localities the caller prefers
  (``probes.failover.expect`` on the declared pods: its ``next`` differs from its ``home``), and
  ``failover_matches`` on the service with that caller;
* a fault on a ServiceEntry host (``_as_seen``): the host's own promises see only a ``drop`` partition toward it;
  its callers' callers see the calling service slowed by the delay, or answering 502 for a 5xx abort.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chaosmesh_qa.errors import ChaosMeshQAError, InvalidArgument
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.mesh.promises import (
    RETRIED,
    Promise,
    Promises,
    connects_outlast,
    list_promises,
    reaches_timeout,
    retries_answer,
)
from chaosmesh_qa.mesh.reach import reached, takes
from chaosmesh_qa.mesh.unworkable import unworkable
from chaosmesh_qa.probes.failover import declared_expectation
from chaosmesh_qa.report.coverage_input import Experiment, Fault, Probe, read_experiment
from chaosmesh_qa.traffic.profile import Profile


@dataclass(frozen=True)
class Exercise:
    experiment: str
    fault: str | None
    probe: str


@dataclass
class Entry:
    promise: Promise
    exercised_by: list[Exercise] = field(default_factory=list)
    unworkable: list[dict[str, str]] = field(default_factory=list)  # explain's findings: code, message

    @property
    def status(self) -> str:
        return "unworkable" if self.unworkable else "covered" if self.exercised_by else "uncovered"


@dataclass(frozen=True)
class Coverage:
    mesh: str
    directory: str
    experiments: tuple[str, ...]
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...] = ()
    unattached: tuple[dict[str, str], ...] = ()  # explain's findings of settings that cannot work, on no promise

    @property
    def covered(self) -> int:
        return sum(1 for e in self.entries if e.status == "covered")

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / len(self.entries) if self.entries else 100.0

    def as_json(self) -> dict[str, Any]:
        return {"mesh": self.mesh, "directory": self.directory, "experiments": list(self.experiments),
                "promises": len(self.entries), "covered": self.covered, "percent": round(self.percent, 1),
                "warnings": list(self.warnings), "findings_without_promise": list(self.unattached),
                "entries": [{**asdict(e.promise), "source": str(e.promise.source),
                             "status": e.status, "exercised_by": [asdict(x) for x in e.exercised_by],
                             "unworkable": e.unworkable} for e in self.entries]}


def coverage(directory: str | Path, paths: list[Path], label: str | None = None) -> Coverage:
    """The coverage of the mesh in ``directory`` by the experiments at ``paths`` (bad input: ``InvalidArgument``
    or ``InvalidMesh``, one line; every experiment is read before any promise is judged).  ``label``: what the
    directory is called in the result (a cluster's objects written to a scratch directory: ``cluster <host>``)."""
    found = list_promises(directory)
    experiments = [read_experiment(path, found.model) for path in paths]
    cannot, alone = unworkable(found)
    entries = []
    for promise in found.promises:
        entry = Entry(promise, unworkable=cannot.get(promise.id, []))
        for experiment in experiments:
            entry.exercised_by.extend(exercises(found, promise, experiment))
        entries.append(entry)
    result = Coverage(found.mesh, found.directory, tuple(str(p) for p in paths), tuple(entries), found.warnings,
                      tuple(alone))
    return result if label is None else _relabelled(result, str(directory), label)


def _relabelled(result: Coverage, directory: str, label: str) -> Coverage:
    """``result`` with ``directory`` called ``label`` in its sources, warnings and findings."""
    def named(text: str) -> str:  # <directory>/default/VirtualService.yaml -> cluster <host>: default/...
        return text.replace(directory + "/", label + ": ").replace(directory, label)

    entries = tuple(replace(e, promise=replace(e.promise, source=replace(e.promise.source,
                                                                          file=named(e.promise.source.file))),
                            unworkable=[{k: named(v) for k, v in u.items()} for u in e.unworkable])
                    for e in result.entries)
    return replace(result, directory=label, entries=entries, warnings=tuple(map(named, result.warnings)),
                   unattached=tuple({k: named(v) for k, v in u.items()} for u in result.unattached))


def run_coverage(experiments: list[tuple[Path, dict[str, Any]]], target: str | None
                 ) -> tuple[list[Coverage], list[str]]:
    """For ``run --html``: per mesh the run's experiments ran on (local target), its coverage by them; and a note
    for each experiment whose mesh cannot be read here (a cluster's objects) or whose coverage cannot be told."""
    from chaosmesh_qa.report.baseline import run_context
    from chaosmesh_qa.targets.local.sandbox import default_mesh_dir

    meshes: dict[str, list[Path]] = {}
    notes = []
    for path, experiment in experiments:
        context = run_context(experiment, target)
        if context["target"] != "local":
            notes.append(f"{path}: ran on the {context['target']} target, whose mesh is the cluster's objects: "
                         "not in the coverage")
            continue
        directory = str(default_mesh_dir()) if context["mesh"] == "built-in default mesh" else context["mesh"]
        meshes.setdefault(directory, []).append(path)
    found = []
    for directory, paths in meshes.items():
        try:
            found.append(coverage(directory, paths))
        except ChaosMeshQAError as exc:
            notes.append(f"coverage of mesh {directory}: {exc}")
    return found, notes


# --------------------------------------------------------------------------- the rules


def exercises(found: Promises, promise: Promise, experiment: Experiment) -> list[Exercise]:
    """How ``experiment`` exercises ``promise`` (empty: it does not); one entry per fault and probe that do."""
    if experiment.traffic is None:
        return []
    model, name = found.model, experiment.path
    kind = promise.kind
    if kind in ("routing", "match"):
        return [Exercise(name, None, p.activity) for p in _probes(experiment, "routing_matches")
                if p.arguments.get("service") == promise.service and promise.route is not None
                and isinstance(p.arguments.get("expected"), dict)
                and takes(model, promise.service, promise.route, _requests(experiment.traffic))]
    if kind == "mtls":
        return [Exercise(name, None, p.activity) for p in _probes(experiment, "mtls_enforced")
                if _chosen_services(p, model) >= {promise.service}]
    if kind == "authz-rule":
        return [Exercise(name, None, p.activity) for p in _probes(experiment, "authz_enforced")
                if isinstance(p.arguments.get("expected"), dict)
                and set(p.arguments["expected"]) & set(promise.targets)]
    if kind == "trace-propagation":
        return [Exercise(name, None, p.activity) for p in _probes(experiment, "traces_complete")
                if promise.service in reached(model, _requests(experiment.traffic))]
    if kind == "locality":
        return [Exercise(name, f.activity, p.activity) for f in experiment.faults
                for p in _probes(experiment, "failover_matches") if _fails_over(model, promise, f, p)]
    out: list[Exercise] = []
    for fault in (seen for f in experiment.faults for seen in _as_seen(model, f)):
        if not _hits(promise, fault, model):
            continue
        out.extend(Exercise(name, fault.activity, p.activity) for p in experiment.probes
                   if _would_fail(promise, fault, p, model))
    return out


def _fails_over(model: MeshModel, promise: Promise, fault: Fault, probe: Probe) -> bool:
    """Does a zone fault take away the pods ``failover_matches``' caller prefers, so that Istio's rules send its
    requests elsewhere (``probes.failover.expect``, on the declared pods' localities)?"""
    caller, service = probe.arguments.get("caller"), probe.arguments.get("service")
    if (service != promise.service or fault.service != service or promise.subset is not None or fault.zone is None
            or fault.chosen or fault.effect == "status" or not isinstance(caller, str) or caller not in model.services
            or (fault.source is not None and fault.source != caller)):
        return False  # a partition cuts only its ``a``'s requests; count/percent/version may spare the zone's pods
    try:
        expected = declared_expectation(model, caller, service, fault.zone, fault.source is not None, fault.isolate)
    except InvalidArgument:  # the caller's pods in several localities (or none): the verdict refuses it
        return False
    return not expected.problems and bool(expected.next) and expected.next != expected.home


def _as_seen(model: MeshModel, fault: Fault) -> list[Fault]:
    """The faults as the mesh's policies see them.  One on a service: itself.  One on a ServiceEntry host is
    injected at the callers' sidecars before their router (Istio's placement for a host without a sidecar): the
    host's own route and DestinationRule see only a ``drop`` partition (the local target's re-pointed cluster; a
    ``reject`` one is a 503 the caller's sidecar answers on a cluster); the callers' callers see each calling
    service (the built-in app: it calls the host on every request) slowed by the delay, or answering 502 for an
    abort of 5xx.  What a caller answers under a partition depends on the host's guards: not guessed."""
    if not fault.external:
        return [fault]
    seen = [fault] if fault.effect == "blackhole" else []
    for caller in model.external_callers(fault.service):
        if (fault.source is not None and fault.source != caller) or model.services[caller].command is not None:
            continue
        if fault.effect == "delay":
            seen.append(Fault(fault.activity, caller, None, "delay", delay_ms=fault.delay_ms))
        elif fault.effect == "status" and (fault.status or 0) >= 500:
            seen.append(Fault(fault.activity, caller, None, "status", 502))  # the demo app's answer (apps.demo)
    return seen


def _hits(promise: Promise, fault: Fault, model: MeshModel) -> bool:
    """Does the fault make the promise act?"""
    if fault.service not in promise.targets or (fault.source is not None and fault.source not in promise.callers):
        return False
    settings = promise.settings
    if promise.kind == "retries":
        retry_on = set(str(settings["retry_on"]).split(","))
        if fault.effect == "status":
            return retries_answer(retry_on, settings.get("retriable_status_codes", []), fault.status or 0)
        if fault.effect == "delay":
            per_try = settings.get("per_try_timeout_s")
            return per_try is not None and (fault.delay_ms or 0) > per_try * 1000 and bool(retry_on & RETRIED["delay"])
        return bool(retry_on & RETRIED[fault.effect])
    if promise.kind == "timeout":
        return reaches_timeout(settings) and (
            (fault.effect == "delay" and (fault.delay_ms or 0) > settings["timeout_s"] * 1000) or
            (fault.effect == "blackhole" and not fault.some_pods and connects_outlast(settings)))
    if promise.kind == "outlier-detection":
        status = fault.status or 0  # an answer ejects the hosts that give it, however many there are
        return (fault.some_pods and fault.effect in ("refused", "blackhole")) or (fault.effect == "status" and (
            (status >= 500 and settings["consecutive_5xx"] > 0) or
            (status in (502, 503, 504) and settings["consecutive_gateway_errors"] > 0)))
    if promise.kind == "connection-pool":
        return fault.effect in ("delay", "blackhole")
    if promise.kind == "connect-timeout":
        return fault.effect == "blackhole"
    return False


def _would_fail(promise: Promise, fault: Fault, probe: Probe, model: MeshModel) -> bool:
    """Would the probe fail if the promise did not act under the fault?"""
    engaged = probe.func == "policy_engaged" and probe.arguments.get("service") in promise.targets \
        and probe.arguments.get("service") in model.services  # it names a service of the mesh, never a host
    policy = probe.arguments.get("policy")
    if promise.kind == "retries":
        return (engaged and policy == "retries") or _recovery(probe, fault, model)
    if promise.kind == "outlier-detection":
        if engaged and policy == "outlier_ejection":
            return True
        hidden = any(r.retries.attempts > 0 for r in model.routes_for(fault.service))
        return not hidden and _recovery(probe, fault, model)
    if promise.kind == "connection-pool":
        return engaged and policy == "circuit_breaker"
    if promise.kind == "connect-timeout":
        return _recovery(probe, fault, model)
    if promise.kind == "timeout":
        if fault.effect == "blackhole":
            return _recovery(probe, fault, model) or _latency_bound(probe, fault, model) is not None
        bound = _latency_bound(probe, fault, model)
        return bound is not None and bound < (fault.delay_ms or 0)
    return False


def _upstream(model: MeshModel, service: str) -> set[str]:
    """Every service whose requests pass through ``service`` (its callers, theirs...), and 'ingress'."""
    seen: set[str] = set()
    todo = [service]
    while todo:
        callee = todo.pop()
        found = model.callers(callee) if callee in model.services else model.external_callers(callee)
        for caller in found:
            if caller not in seen:
                seen.add(caller)
                todo.extend([caller] if caller != "ingress" else [])
    return seen


def _observer(probe: Probe, model: MeshModel, fault: Fault) -> bool:
    """Does the probe measure above the faulted service: the clients, the ingress, or a caller's requests?"""
    args = probe.arguments
    if args.get("measure") == "client" or probe.func in ("client_error_ratio", "client_latency"):
        return True
    service = args.get("service")
    if probe.func == "recovered_within" and service is None:
        return True  # the ingress's edge into the mesh
    return isinstance(service, str) and service in _upstream(model, fault.service)


def _recovery(probe: Probe, fault: Fault, model: MeshModel) -> bool:
    """A probe that fails when callers see the fault: recovery within budget, or an error ratio during it."""
    if probe.func == "recovered_within":
        if probe.arguments.get("since", "fault_start") != "fault_start":
            return False  # from the last heal on: what happened during the fault is not judged
        return _observer(probe, model, fault)
    if probe.func in ("error_ratio", "client_error_ratio"):
        return probe.arguments.get("phase") == "during" and _observer(probe, model, fault)
    return False


def _latency_bound(probe: Probe, fault: Fault, model: MeshModel) -> float | None:
    """The latency (ms) above which the probe fails, if it measures callers during the fault."""
    args = probe.arguments
    if probe.func == "recovered_within" and _recovery(probe, fault, model):
        slo: dict[str, Any] = args["slo"] if isinstance(args.get("slo"), dict) else {}
        bounds = [v for k, v in slo.items() if str(k).endswith("_ms") and _number(v)]
        return min(bounds) if bounds else None
    if probe.func in ("latency_quantile", "client_latency") and args.get("phase") == "during" and \
            _observer(probe, model, fault):
        tolerance = probe.tolerance
        if _number(tolerance):
            return float(tolerance)
        if isinstance(tolerance, dict) and isinstance(tolerance.get("range"), list) and tolerance["range"] and \
                _number(tolerance["range"][-1]):
            return float(tolerance["range"][-1])
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _probes(experiment: Experiment, func: str) -> list[Probe]:
    return [p for p in experiment.probes if p.func == func]


def _chosen_services(probe: Probe, model: MeshModel) -> set[str]:
    """The services a verdict checks: its ``services`` (default: all)."""
    services = probe.arguments.get("services")
    if services is None:
        return set(model.services)
    return {s for s in services if isinstance(s, str)} if isinstance(services, list) else set()


def _requests(traffic: Profile) -> list[tuple[str, dict[str, str]]]:
    """What the profile sends: each path with its headers (the profile's own and the path's)."""
    return [(route.path, {**traffic.headers, **route.headers}) for route in traffic.paths]
