"""``generate``'s experiments that take something away: a zone a caller runs in, a ServiceEntry host.

``scaffold.suite`` hands a ``locality`` promise to ``zone_failover`` and a ServiceEntry host's promise to
``host_outage``; each adds the experiment to ``out`` and returns None, or returns why none is written.
"""

from __future__ import annotations

import math

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh.localities import Locality
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.mesh.promises import ISTIO_CONNECT_TIMEOUT_S, Promise, connects_outlast, tries
from chaosmesh_qa.probes.failover import declared_expectation
from chaosmesh_qa.scaffold import graph, timing
from chaosmesh_qa.scaffold.experiment import RATE_RPS, _action, _configuration, _errors, _probe, _range, _recovery
from chaosmesh_qa.scaffold.generated import LATENCY_HOLD_S, Generated, shell

# why a ServiceEntry host's own guards other than its route timeout get no experiment: the only fault its own route
# and rules see is an outage (a drop partition toward it; a fault at the callers' sidecars is before their router)
HOST_GUARDS = {
    "retries": "in an outage every retry meets the same outage, so no probe can see them act",
    "outlier-detection": "in an outage ejecting its endpoints leaves nothing to send to, so no probe can see it act",
    "connection-pool": "no probe reads a host's circuit breaker (policy_engaged names a service of the mesh)",
    "connect-timeout": "in an outage the route's or the callers' timeouts end a request whatever the connect "
                       "timeout, and recovering needs the host back",
}
ZONE_OUTAGE_S = 4  # the shipped zone-failover's outage (shortened below a shorter base ejection time)


def host_outage(model: MeshModel, mesh_ref: str, promise: Promise, out: dict[str, Generated]) -> str | None:
    """A ServiceEntry host's route timeout: the host blackholed for every caller (a drop partition, ``a='*'``: the
    only fault its own route sees; one toward it at the callers' sidecars is injected before their router), with a
    bound on the clients' p99 during the outage that only that timeout keeps.  The host's other guards need what
    an outage cannot show on a host with one endpoint: somewhere else to send a retry or an ejected host's share."""
    host, settings = promise.service, promise.settings
    if promise.kind != "timeout":
        return f"a ServiceEntry host's own {promise.kind}: {HOST_GUARDS[promise.kind]}"
    callers = [c for c in model.external_callers(host) if model.services[c].command is None]
    path = graph.path_to(model, callers[0]) if callers else []
    if not path:
        return "no client request reaches a caller of the host"
    attempts = tries(settings, "blackhole")
    connect_s, timeout_s = float(settings.get("connect_timeout_s", ISTIO_CONNECT_TIMEOUT_S)), settings["timeout_s"]
    if not connects_outlast(settings):
        return (f"a blackholed connection's {attempts} tries give up after {attempts * connect_s:g} s, before the "
                f"{timeout_s:g} s timeout: it never acts in an outage")
    bound, steps = timing._wait(model, path, timeout_s, failing=True)
    limit_ms = math.ceil(bound * timing.BOUND_MARGIN * 10) * 100
    unguarded, _ = timing._wait(model, path, attempts * ISTIO_CONNECT_TIMEOUT_S, failing=True)
    if limit_ms >= unguarded * 1000:
        return (f"without the timeout the callers' own timeouts end a hung request within {unguarded:g} s, under "
                f"the {limit_ms} ms a probe could hold the clients to: no probe can tell the timeout acted")
    budget = math.ceil(bound) + timing.WINDOW_S
    arguments = {"a": "*", "b": host, "direction": "to", "mode": "drop", "duration_s": 30}
    probes = [_probe("client-p99-during-the-outage", "client", "client_latency", {"quantile": 0.99, "phase": "during"},
                     _range(limit_ms)),
              _recovery(budget, timing.LATENCY_RECOVERY_P99_MS, "last_heal"),
              _errors("client-error-ratio-before-the-outage", timing.MAX_ERROR_RATIO, phase="before")]
    name = f"outage-{host.replace('.', '-')}"
    method = [_action(f"{host}-unreachable-for-every-caller", "partition", arguments, after_s=LATENCY_HOLD_S),
              _action("heal-the-outage", "heal", {})]
    how = "; ".join(steps) or "no other timeout on the way"
    description = (f"Blackhole {host} for every caller for {LATENCY_HOLD_S} s (a drop partition: connections hang). "
                   f"Its route gives up after {timeout_s:g} s ({attempts} tries of up to {connect_s:g} s to connect); "
                   f"then {how}: clients wait ~{bound:g} s, so their p99 during the outage must stay within "
                   f"{limit_ms} ms ({timing.BOUND_MARGIN:g} x that; without the timeout they would wait "
                   f"{unguarded:g} s), and the SLO (errors <= 1 %, p99 <= {timing.LATENCY_RECOVERY_P99_MS} ms) must "
                   f"hold again within {budget} s of the heal. Errors during the outage are its price and are not "
                   "judged. The local target only: on a cluster a NetworkPolicy cannot name a host.")
    configuration = _configuration(model, mesh_ref, max(10.0, round(bound * 2)))
    experiment = shell(f"{host} down: its route timeout bounds what the clients wait", description, ["timeout"],
                        configuration, probes, method)
    out[name] = Generated(name, experiment, [promise.id], error_s=LATENCY_HOLD_S + budget + 1, local_only=
                          "a drop partition toward a host needs a NetworkPolicy naming it, which none can")
    return None


def zone_failover(model: MeshModel, mesh_ref: str, promise: Promise, out: dict[str, Generated]) -> str | None:
    """The zone a caller prefers cut off (a zone partition that isolates it, as experiments/zone-failover.json),
    judged by ``failover_matches``: the caller's requests leave the zone within the failover budget and come back
    within the base ejection time of the end."""
    service = promise.service
    chosen: tuple[str, str, frozenset[str]] | None = None
    for caller in (c for c in model.callers(service) if c != graph.INGRESS):
        zones = {Locality.parse(v.locality(i)).zone for v in model.services[caller].versions for i in range(v.replicas)}
        if len(zones) != 1 or not (zone := zones.pop()):
            continue
        try:
            expected = declared_expectation(model, caller, service, zone, partition=True, isolate=True)
        except InvalidArgument:
            continue
        if not expected.problems and expected.next and expected.next != expected.home:
            chosen = caller, zone, expected.home
            break
    outlier = model.policies[service].outlier
    if chosen is None or outlier is None:
        return ("no caller whose pods are in one zone that the rules would move elsewhere when its zone's pods of "
                f"{service} are lost (failover_matches needs one)")
    caller, zone, home = chosen
    base_s = outlier.base_ejection_time_s
    outage_s = max(1, min(ZONE_OUTAGE_S, math.floor(base_s) - 1))  # shorter than an ejection: no readmission while cut
    version = graph.busiest_version(model, service)
    caller_pods = sum(v.replicas for v in model.services[caller].versions) or 1
    per_sidecar = graph.rates(model, RATE_RPS).get(caller, RATE_RPS) / caller_pods  # each calls it once a request
    eject_s, how = timing._ejection(model, service, version, per_sidecar)
    failover_s = max(1, math.ceil(2 * (eject_s or 0)))
    failback_s = max(1, math.ceil(base_s))
    arguments = {"a": caller, "b": service, "zone": zone, "isolate": True, "direction": "to", "mode": "reject",
                 "duration_s": outage_s}
    probes = [_probe(f"{caller}-calls-fail-over-from-zone-{zone}-and-back", "failover", "failover_matches",
                     {"caller": caller, "service": service, "failover_budget_s": failover_s,
                      "failback_budget_s": failback_s, "min_share": 0.95}, ["pass"]),
              _probe("recovered-within-2s", "recovery", "recovered_within",
                     {"budget_s": 2, "slo": {"max_error_ratio": timing.MAX_ERROR_RATIO}, "measure": "client"},
                     _range(2)),
              _errors("client-error-ratio-last-5s", timing.MAX_ERROR_RATIO, window_s=5)]
    method = [_action(f"zone-{zone}-of-{service}-unreachable", "partition", arguments, after_s=outage_s + 2)]
    description = (f"Make {service}'s pods in zone {zone!r}, where {caller} runs, unreachable for {caller} for "
                   f"{outage_s} s (a zone partition that isolates the zone; connections refused) under "
                   f"{RATE_RPS} rps. Istio's locality load balancing must keep {caller}'s calls in "
                   f"{', '.join(sorted(home))} while healthy and send them "
                   f"elsewhere within {failover_s} s ({how or 'outlier detection ejects the zone pods'}; twice that, "
                   f"at least 1 s), and back within {failback_s} s of the end (an ejected pod returns after "
                   f"baseEjectionTime, {base_s:g} s; the outage is shorter, so it is not readmitted into a "
                   "still-broken zone); clients must be back under 1 % errors within 2 s.")
    name = f"zone-failover-{service}"
    title = f"Losing zone {zone} of {service}: {caller}'s calls fail over and come back as the rules say"
    out[name] = Generated(name, shell(title, description, ["zone-outage", "locality-failover"],
                                       _configuration(model, mesh_ref, None), probes, method), [promise.id])
    return None

