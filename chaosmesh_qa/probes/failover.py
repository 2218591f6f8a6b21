"""Failover verdict: which localities served a caller's requests before, during and after a zone fault, against
the localities Istio's rules send them to.

Referenced from experiments as ``{"module": "chaosmesh_qa.probes.failover", "func": "failover_matches"}``, after
a zone fault of the run (``kill_pods``/``fail_pods`` with ``zone``, or ``partition`` with ``zone``) has ended.

Expected (``declared``): the caller's locality (its pods'; one) and the service's pods with theirs
(``MeshTarget.pod_localities``), ranked by ``mesh.localities.assign`` with the service's DestinationRule
(``localityLbSetting``, ``outlierDetection``) from the declared mesh: ``home`` is the priority-0 localities of the
healthy service, ``next`` those of the service without its pods in the fault's zone (a zone partition that spares
the caller: ``home`` again).  A rule set that gives the caller no locality preference (no ``outlierDetection``
and no ``distribute``: Istio's CMQ-L001) is itself a violation: "stays local" cannot hold.

Observed: the requests each pod of the service served with a 2xx (Prometheus; counters, per scrape), summed by
the pod's locality (a 503 a zone partition's sidecar answers is not served).  The sandbox (``envoy`` dialect):
``envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="inbound",envoy_response_code_class="2"}`` by its
``pod`` scrape label; the inbound stats do not name the caller, so the service must have no other caller.  Istio:
``istio_requests_total{reporter="destination",response_code=~"2.."}`` by the ``pod`` label the scrape of the
serving pod carries (Istio's Prometheus configuration relabels ``__meta_kubernetes_pod_name`` to ``pod``), with
``source_canonical_service`` the caller's when the service has other callers; the pod's locality is joined from
the API (its ``istio-locality`` label or its node's topology labels), not from the metric.

Phases, in Prometheus sample time (a request is in the first sample of its pod's counter after it was served,
at most the recording lag ``MeasureContext.record_lag_s`` later: 3 s in the sandbox): ``before`` the ``before_s``
up to the fault's start; ``during`` from ``failover_budget_s`` after the start to the outage's end (the fault's
end, or, for a pod kill, the first sample in which a pod of the zone that the fault did not kill served: the
replacement a ReplicaSet starts at once on a cluster); ``after`` from ``failback_budget_s`` after that end,
``after_s`` long (the probe waits for it, at most ``MAX_WAIT_S``).  A request a sample holds may have been served
up to the lag before it, so in the first lag of a phase only requests where the phase expects them count (the
others may be the previous phase's): a phase is judged on what is certainly its own.

Before the run's first zone fault on the service (a hypothesis checked before the method) only the declared rules
are judged: ``pass``, or ``violated`` when they give the caller no locality preference.  After it: ``pass`` when
each phase has ``min_requests`` and ``min_share`` of them went where the rules say; ``violated`` when some did not
(the shares, and when the last request was served in ``home`` during the fault and the first back after it);
``not-enough-traffic`` when a phase has too few requests to tell.  Use ``"tolerance": ["pass"]``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument, MeasurementFailed
from chaosmesh_qa.mesh.localities import Locality, Member, assign
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.probes.context import MeasureContext
from chaosmesh_qa.targets.policy import FaultRecord, spares, zone_matches

__all__ = ["failover_matches"]

log = logging.getLogger("chaostoolkit")
Configuration = dict[str, Any]
ZONE_FAULTS = ("pod-kill", "pod-failure", "partition")
MAX_WAIT_S = 120.0
SELECTORS = {  # the serving pod's request counter, one series per pod (and response class / code)
    "envoy": 'envoy_http_downstream_rq_xx{{envoy_http_conn_manager_prefix="inbound",service="{service}",'
             'envoy_response_code_class="2"}}',
    "istio": 'istio_requests_total{{reporter="destination",destination_service_name="{service}",'
             'response_code=~"2.."{source}}}',
}


@dataclass(frozen=True)
class Expectation:
    caller_locality: str
    home: frozenset[str]  # priority-0 localities of the healthy service
    next: frozenset[str]  # ... and of the service without the fault's zone
    problems: tuple[str, ...]


def failover_matches(caller: str, service: str, failover_budget_s: float = 2, failback_budget_s: float = 5,
                     min_share: float = 0.95, min_requests: int = 20, before_s: float = 10, after_s: float = 5,
                     configuration: Configuration | None = None) -> dict[str, Any]:
    """Did ``caller``'s requests to ``service`` stay in its preferred localities, fail over where the rules say
    within ``failover_budget_s`` of this run's last zone fault on ``service``, and come back within
    ``failback_budget_s`` of its end?  Returns ``{"status", "summary", ...}``."""
    caller, service = checks.name("caller", caller), checks.name("service", service)
    budgets = (checks.seconds("failover_budget_s", failover_budget_s),
               checks.seconds("failback_budget_s", failback_budget_s))
    share = checks.number("min_share", min_share, 0, 1, low_open=True)
    least = checks.whole("min_requests", min_requests, 1, 1_000_000_000)
    before, after = checks.seconds("before_s", before_s), checks.seconds("after_s", after_s)
    ctx = MeasureContext.from_configuration(configuration)
    ctx.service(caller, "caller")
    ctx.service(service)
    fault = zone_fault(ctx.run_faults(), service)
    localities = ctx.target.pod_localities()
    model = ctx.target.declared_mesh()
    if fault is None:  # before the method: only the declared rules can be judged
        problems = _unpreferred(model, service)
        status = "violated" if problems else "pass"
        summary = f"{status}: no zone fault on {service!r} in this run yet" + (
            f" ({'; '.join(problems)})" if problems else ": nothing to judge")
        log.info("failover_matches: %s", summary)
        return {"status": status, "summary": summary, "phases": {}, "problems": problems}
    pods = [p for p in ctx.description["pods"] if p["service"] == service]
    callers = [p for p in ctx.description["pods"] if p["service"] == caller]
    versions = {v.name for v in model.services[service].versions}
    members = [(p["name"], localities.get(p["name"], ""), p.get("labels") or (
        model.workload_labels(service, p["version"]) if p["version"] in versions else {})) for p in pods]
    expected = expect(model, caller, service, {p["name"]: localities.get(p["name"], "") for p in callers},
                      members, fault)
    gone = {name: _zone_locality(localities, fault) for name in fault["changes"].get("killed_pods") or []}
    where = {**gone, **localities}
    others = [c for c in model.callers(service) if c != caller]
    source = ""
    if others and ctx.target.metrics_dialect == "envoy":
        raise MeasurementFailed(f"caller: {service!r} has other callers ({', '.join(others)}), and the sandbox's "
                                "inbound stats do not say which caller a request came from")
    if others:
        name = ctx.description["services"][caller].get("canonical_service") or caller
        source = f',source_canonical_service="{name}"'
    selector = SELECTORS[ctx.target.metrics_dialect].format(service=service, source=source)
    started, lag = float(fault["started_at"]), ctx.record_lag_s()
    deadline = time.monotonic() + MAX_WAIT_S
    while True:  # until the after phase is after_s long (the outage's end is known from the samples only)
        now = time.time()
        samples = served(ctx.prometheus.raw(selector, started - before - 30, now), where, started - before)
        outage_end = outage_ended(samples, fault)
        wait = outage_end + budgets[1] + lag + after - now
        if wait <= 0 or time.monotonic() + wait > deadline:
            break
        time.sleep(min(wait, 5.0))
    result = judge(samples, expected, fault, (started, outage_end, now), budgets, lag, before, share, least)
    log.info("failover_matches: %s", result["summary"])
    return result


def zone_fault(faults: Iterable[FaultRecord], service: str) -> FaultRecord | None:
    """This run's latest zone fault on ``service`` (None: none yet); it must have ended."""
    mine = [f for f in faults if f["kind"] in ZONE_FAULTS and f["target"].get("zone")
            and service in (f["target"].get("service"), f["target"].get("b"))]
    if not mine:
        return None
    latest = max(mine, key=lambda f: float(f["started_at"]))
    if "ended_at" not in latest and float(latest["expires_at"]) > time.time():
        raise MeasurementFailed(f"the zone fault {latest['fault_id']} on {service!r} has not ended yet: the verdict "
                                "needs its after phase (run it after the heal)")
    return latest


def _ended(fault: Mapping[str, Any]) -> float:
    """When the fault ended: healed or expired (a lease past its expiry that no reaper has ended yet: its expiry)."""
    return float(fault.get("ended_at", fault["expires_at"]))


def expect(model: MeshModel, caller: str, service: str, caller_pods: Mapping[str, str],
           pods: list[tuple[str, str, Mapping[str, str]]], fault: Mapping[str, Any]) -> Expectation:
    """Where Istio's rules send ``caller``'s requests: ``home`` while healthy, ``next`` without the fault's zone."""
    placed = sorted(set(caller_pods.values()))
    if len(placed) != 1 or not placed[0]:
        raise InvalidArgument(f"caller: {caller!r} has pods in {len(placed)} localities ({', '.join(placed) or '-'}): "
                              "the verdict needs one caller locality (its pods in one zone)")
    here = Locality.parse(placed[0])
    policy = model.policies[service]
    setting, outlier = policy.locality_lb, policy.outlier is not None
    labels = model.workload_labels(caller, model.services[caller].versions[0].name)
    zone = str(fault["target"]["zone"])
    members = [Member(name, Locality.parse(where), dict(lbls)) for name, where, lbls in pods]
    problems = _unpreferred(model, service)
    home = _first(assign(here, labels, members, setting, outlier))
    if fault["kind"] == "partition" and not fault["target"].get("isolate") and spares(placed[0], zone):
        return Expectation(placed[0], home, home, tuple(problems))
    left = [m for m in members if not zone_matches(str(m.locality), zone)]
    if not left:
        problems.append(f"{service!r} has no pod outside zone {zone!r}: nothing to fail over to")
    after = _first(assign(here, labels, left, setting, outlier)) if left else frozenset()
    return Expectation(placed[0], home, after, tuple(problems))


def declared_expectation(model: MeshModel, caller: str, service: str, zone: str, partition: bool,
                         isolate: bool) -> Expectation:
    """``expect`` on the pods the mesh declares (their localities, before anything runs): for ``coverage`` and
    ``generate``, which judge a zone fault on paper.  ``partition``: a zone partition from ``caller`` (else a
    zone's pods lost to every caller); ``InvalidArgument`` when the caller's pods are not in one locality."""
    here = {f"{caller}-{v.name}-{i}": v.locality(i) for v in model.services[caller].versions for i in range(v.replicas)}
    pods: list[tuple[str, str, Mapping[str, str]]] = [
        (f"{service}-{v.name}-{i}", v.locality(i), model.workload_labels(service, v.name))
        for v in model.services[service].versions for i in range(v.replicas)]
    record = {"kind": "partition" if partition else "pod-kill", "target": {"zone": zone, "isolate": isolate}}
    return expect(model, caller, service, here, pods, record)


def _unpreferred(model: MeshModel, service: str) -> list[str]:
    """The rules' own failure: without ``outlierDetection`` (and without ``distribute``) Istio ranks no locality
    first, so nothing keeps a caller's requests local (mesh.localities, ``assign``)."""
    policy, setting = model.policies[service], model.policies[service].locality_lb
    if setting is not None and not setting.enabled:
        return [f"{service!r}'s DestinationRule turns locality load balancing off (localityLbSetting.enabled: false)"]
    if policy.outlier is not None or (setting is not None and setting.distribute):
        return []
    return [f"{service!r} has no outlierDetection: Istio gives its callers no locality preference, so nothing keeps "
            "a caller's requests in its own zone"]


def _first(groups: Iterable[Any]) -> frozenset[str]:
    """The localities of the groups at priority 0 (a ``distribute`` rule leaves out those it gives nothing)."""
    return frozenset(str(g.locality) for g in groups if g.priority == 0)


def _zone_locality(localities: Mapping[str, str], fault: Mapping[str, Any]) -> str:
    zone = str(fault["target"]["zone"])
    return next((where for where in sorted(localities.values()) if zone_matches(where, zone)), f"?/{zone}")


def served(series: list[dict[str, Any]], localities: Mapping[str, str],
           since: float) -> list[tuple[float, str, str, float]]:
    """``(sample time, pod, locality, requests since the pod's previous sample)`` from raw counter samples, one
    series per pod and response class (summed); a series born after ``since`` counts from 0, a reset from 0."""
    out = []
    for item in series:
        pod = str(item["metric"].get("pod", ""))
        values = [(float(t), float(v)) for t, v in item.get("values", [])]
        if not values:
            continue
        previous = 0.0 if values[0][0] > since + 5 else values[0][1]
        for at, value in values if values[0][0] > since + 5 else values[1:]:
            grown = value - previous if value >= previous else value
            previous = value
            if grown > 0:
                out.append((at, pod, localities.get(pod, "unknown"), grown))
    return sorted(out)


def outage_ended(samples: list[tuple[float, str, str, float]], fault: Mapping[str, Any]) -> float:
    """When the zone was back: the fault's end, or, for a pod kill, the first sample in which a pod of the zone the
    fault did not kill served (a replacement) if that came first."""
    zone = str(fault["target"]["zone"])
    killed = set(fault["changes"].get("killed_pods") or [])
    started, ended = float(fault["started_at"]), _ended(fault)
    if fault["kind"] != "pod-kill":
        return ended
    back = [at for at, pod, where, _ in samples if at > started and zone_matches(where, zone) and pod not in killed]
    return min([ended, *back])


def judge(samples: list[tuple[float, str, str, float]], expected: Expectation, fault: Mapping[str, Any],
          times: tuple[float, float, float], budgets: tuple[float, float], lag: float, before_s: float,
          min_share: float, min_requests: int) -> dict[str, Any]:
    """The verdict from the samples (``served``): ``times`` are the fault's start, the outage's end and now."""
    started, outage_end, now = times
    zone = str(fault["target"]["zone"])
    phases = {"before": (started - before_s, started, expected.home),
              "during": (started + budgets[0], outage_end - 1e-6, expected.next),
              "after": (outage_end + budgets[1], now, expected.home)}
    shares: dict[str, Any] = {}
    failing, thin = [], []
    for phase, (low, high, wanted) in phases.items():
        counted: Counter[str] = Counter()
        for at, _, where, grown in samples:
            # a sample holds requests served up to the lag before it: one less than the lag into the phase may be
            # of the phase before, so it is no evidence against the phase (it counts if it went where expected)
            if low < at <= high and (where in wanted or at > low + lag):
                counted[where] += round(grown)
        total = sum(counted.values())
        ok = sum(n for where, n in counted.items() if where in wanted)
        share = ok / total if total else 0.0
        shares[phase] = {"from": round(low, 3), "to": round(high, 3), "requests": total, "expected": sorted(wanted),
                         "share_expected": round(share, 4), "by_locality": dict(sorted(counted.items()))}
        if total < min_requests:
            thin.append(f"{phase} {total} requests")
        elif share < min_share:
            failing.append(f"{phase} {share:.1%} in {', '.join(sorted(wanted)) or 'nowhere'} "
                           f"({', '.join(f'{w or chr(45)} {n}' for w, n in sorted(counted.items()))})")
    last_home = max((at for at, _, where, _ in samples if started < at <= outage_end and where in expected.home
                     and where not in expected.next), default=None)
    first_back = min((at for at, _, where, _ in samples if at > outage_end and where in expected.home
                      and where not in expected.next), default=None)
    timing = {"outage_end_s": round(outage_end - started, 3),
              "last_home_request_s": None if last_home is None else round(last_home - started, 3),
              "first_back_s": None if first_back is None else round(first_back - outage_end, 3)}
    status = "violated" if failing or expected.problems else "not-enough-traffic" if thin else "pass"
    summary = (f"{status}: caller in {expected.caller_locality}: home {', '.join(sorted(expected.home))}, next "
               f"{', '.join(sorted(expected.next)) or 'none'}; " + "; ".join(
                   f"{p} {s['share_expected']:.1%} of {s['requests']}" for p, s in shares.items())
               + f"; outage {timing['outage_end_s']:g} s, last home request at +{timing['last_home_request_s']} s, "
               f"back at +{timing['first_back_s']} s after it")
    reasons = [*expected.problems, *failing, *([f"too few requests: {', '.join(thin)}"] if thin else [])]
    if reasons:
        summary += " (" + "; ".join(reasons) + ")"
    return {"status": status, "summary": summary, "fault_id": fault["fault_id"], "zone": zone,
            "caller_locality": expected.caller_locality, "phases": shares, "timing": timing,
            "problems": list(expected.problems), "min_share": min_share, "min_requests": min_requests}
