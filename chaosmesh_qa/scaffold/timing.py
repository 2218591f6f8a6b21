"""What a fault should cost on a given mesh: fault parameters, SLO bounds and recovery budgets derived from the
mesh's own policies (retries, per-try and route timeouts, outlier detection, the pods behind each route).

``scaffold.experiment`` calls one function per family of faults and writes the numbers into the experiment,
and each ``why`` sentence into its description, so whoever reads the experiment sees where a budget comes
from.  The rules are the shipped experiments' (their descriptions explain the same numbers for the default
mesh): pod-kill-failover (1 s: retries hide a dead replica until the endpoint update or an ejection),
partition-failover (3 s: one timed-out try, an ejection, two per-second windows), latency-circuit-breaker
(timeouts bound what clients wait; recovery is timed from the heal).  Only ``MeshModel`` is read.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from chaosmesh_qa.mesh.model import MeshModel, RetryPolicy
from chaosmesh_qa.mesh.promises import RETRIED, retries_answer
from chaosmesh_qa.scaffold import graph

ENDPOINT_DELAY_S = 1.0  # `up --endpoint-delay`'s default: callers learn of a dead pod a second later
RESTART_S = 2  # restart_after_s / duration_s of a pod fault with no other pod to fail over to
READY_AFTER_RESTART_S = 4.0  # then starting and passing readiness (routing-canary, restart after 2 s: back 6 s
#                              after the kill on a quiet machine, 7.5 s measured on a saturated CI machine)
START_MARGIN = 1.5  # budget for that start: 1.5 x the quiet machine's 4 s (routing-canary's budget: 8 s)
WINDOW_S = 2  # per-second SLO windows: the one the last slow request completes in, and the next
BASE_P99_MS = 300  # the shipped pod-kill-failover's p99 SLO on the default mesh
LATENCY_RECOVERY_P99_MS = 500  # the shipped latency-circuit-breaker's p99 once the delay is healed
MAX_ERROR_RATIO = 0.01  # every shipped experiment's error SLO
BOUND_MARGIN = 1.5  # client p99 limit = 1.5 x the timeouts' bound: the hops around them and a loaded machine
RETRIED_TIMEOUTS = RETRIED["delay"]  # Envoy retries a per-try timeout on these
RETRIED_CONNECT = RETRIED["blackhole"]


@dataclass(frozen=True)
class PodTiming:
    version: str | None  # the version whose pod is hit (None: the service has one version)
    members: int  # pods in the victim's load-balancing pool
    retried: bool
    ejection_s: float | None  # when outlier detection ejects the pod; None: it cannot
    hold_s: int  # restart_after_s or duration_s of the action
    budget_s: int
    why: str


@dataclass(frozen=True)
class PartitionTiming:
    version: str | None
    replica_only: bool  # count 1 of several pods; False: the whole edge is cut for ``cut_s`` then healed
    try_cost_s: float | None  # how long a request to the cut pod waits before it fails
    ejection_s: float | None
    p99_ms: int
    budget_s: int
    why: str


@dataclass(frozen=True)
class LatencyTiming:
    delay_ms: int
    bound_s: float  # what clients wait at most while the delay lasts
    p99_limit_ms: int
    budget_s: int
    why: str


@dataclass(frozen=True)
class AbortTiming:
    percent: int
    tries: int  # independent tries a client request gets along its path (1: nothing retries the abort)
    retried_by: str | None  # the callee whose route retries it first (for the retries probe)
    max_error_ratio: float
    budget_s: int
    why: str


def _covers(retries: RetryPolicy, kinds: Collection[str], status: int | None = None) -> bool:
    """Whether the route retries a try that failed one of ``kinds`` of ways, or (``status``) was answered that."""
    if retries.attempts <= 0:
        return False
    on = retries.retry_on.split(",")
    return any(k in on for k in kinds) or (status is not None and "retriable-status-codes" in on
                                           and status in retries.retriable_status_codes)


def _answer_retried(retries: RetryPolicy, status: int) -> bool:
    """Whether the route retries a try answered ``status`` (a 503 from a dead app's sidecar, an app's 502)."""
    return retries.attempts > 0 and retries_answer(retries.retry_on.split(","), retries.retriable_status_codes, status)


def _s(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def _ejection(model: MeshModel, service: str, version: str, per_caller_rps: float) -> tuple[float | None, str]:
    """When outlier detection ejects one pod of ``version`` that fails every request, and why (or why not)."""
    members, policy = graph.pool(model, service, version)
    outlier = policy.outlier
    if outlier is None:
        return None, f"no outlier detection on {service}"
    if math.floor(outlier.max_ejection_percent * members / 100) < 1:
        return None, f"{service}'s maxEjectionPercent ({outlier.max_ejection_percent} %) allows no ejection of " \
                     f"one of {members} pods"
    thresholds = [t for t in (outlier.consecutive_5xx, outlier.consecutive_gateway_errors) if t > 0]
    if not thresholds or per_caller_rps <= 0:
        return None, f"{service}'s outlier detection counts no consecutive errors"
    return min(thresholds) / per_caller_rps, (f"outlier detection ejects it after {min(thresholds)} consecutive "
                                              f"errors, at ~{per_caller_rps:.3g} rps per calling sidecar")


def pod_fault(model: MeshModel, kind: str, service: str, rps: float) -> PodTiming:
    """pod-kill, pod-failure, app-kill on one pod of ``service`` (of its busiest version)."""
    version = graph.busiest_version(model, service)
    members, _ = graph.pool(model, service, version)
    route = graph.plain_route(model, service)
    retried = members >= 2 and (_answer_retried(route.retries, 503) if kind == "app-kill"
                                else _covers(route.retries, RETRIED_CONNECT))
    per_pod = graph.rates(model, rps).get(service, 0.0) / max(1, graph.pods(model, service))
    ejection, ejection_why = _ejection(model, service, version, per_pod / graph.caller_pods(model, service))
    failure = "the 503 a sidecar answers with no app behind it" if kind == "app-kill" else "connection failures"
    if kind == "app-kill":  # the pod keeps its endpoint: only an ejection or the app's restart ends it
        exposed, until = (ejection, ejection_why) if ejection is not None else (None, ejection_why)
    elif ejection is not None and ejection < ENDPOINT_DELAY_S:
        exposed, until = ejection, ejection_why
    else:
        exposed, until = ENDPOINT_DELAY_S, f"the endpoint update ({_s(ENDPOINT_DELAY_S)}, as in Kubernetes)"
    if members < 2:
        hold = RESTART_S
        budget = math.ceil(hold + READY_AFTER_RESTART_S * START_MARGIN)
        why = (f"{service} has no other pod to fail over to: clients fail until it is back, {_s(hold)} after the "
               f"fault, and ready ~{_s(READY_AFTER_RESTART_S)} later on a quiet machine (7.5 s in all measured on a "
               f"saturated one: routing-canary); with {START_MARGIN:g} x that start, the budget is {budget} s")
        return PodTiming(version, members, retried, ejection, hold, budget, why)
    hold = 10
    if exposed is None:  # app-kill, never ejected: 503s until the app restarts
        budget = math.ceil(hold) + WINDOW_S
        why = (f"{service}'s callers keep sending to the pod ({ejection_why}) until its app restarts after "
               f"{_s(hold)}; the budget is that plus {WINDOW_S} s of per-second windows: {budget} s")
    elif retried:
        budget = max(1, math.ceil(exposed))
        why = (f"{service}'s route retries {failure} ({route.retries.attempts} attempts, on "
               f"{route.retries.retry_on}) on another of its {members} pods, so clients should see no error; "
               f"callers stop sending to the pod after ~{_s(exposed)} ({until}): the SLO may break for the second "
               f"the fault lands in at most, so the budget is {budget} s")
    else:
        budget = math.ceil(exposed) + 1
        why = (f"nothing retries {failure} toward {service}: requests to the pod fail until callers stop "
               f"sending to it, ~{_s(exposed)} ({until}); the budget adds the per-second window: {budget} s")
    return PodTiming(version if len(model.services[service].versions) > 1 else None, members, retried, ejection,
                     hold, budget, why)


def partition(model: MeshModel, source: str, service: str, rps: float) -> PartitionTiming:
    """A ``drop`` partition from ``source`` to one replica of ``service`` (to all of it when it has one)."""
    version = graph.busiest_version(model, service)
    members, policy = graph.pool(model, service, version)
    route = graph.plain_route(model, service)
    try_cost = route.retries.per_try_timeout_s or route.timeout_s
    cost_why = ("its per-try timeout" if route.retries.per_try_timeout_s else "its route timeout" if route.timeout_s
                else None)
    sending = graph.rates(model, rps).get(source, rps) if source != graph.INGRESS else rps
    per_pod = sending / max(1, graph.pods(model, service))
    source_pods = 1 if source == graph.INGRESS else max(1, graph.pods(model, source))
    ejection, ejection_why = _ejection(model, service, version, per_pod / source_pods)
    version_arg = version if len(model.services[service].versions) > 1 else None
    if members < 2:
        cost = try_cost or policy.connect_timeout_s
        budget = math.ceil(cost) + WINDOW_S
        why = (f"{service} has no other pod to fail over to, so the whole {source} -> {service} edge is cut for a "
               f"few seconds and healed; after the heal requests flow at once, and those already waiting end within "
               f"{_s(cost)} ({cost_why or 'the connect timeout'}); the budget adds {WINDOW_S} s of per-second "
               f"windows: {budget} s")
        return PartitionTiming(version_arg, False, cost, None, BASE_P99_MS, budget, why)
    p99 = math.ceil((try_cost or 0.5) * 1000) + 100
    retried = _covers(route.retries, RETRIED_TIMEOUTS)
    if try_cost is None:
        why_cost = (f"{service}'s route to it has no timeout, so a request to the cut pod waits until the client "
                    f"gives up: expect this experiment to deviate (a per-try timeout is what it tests)")
    else:
        why_cost = (f"a request to the cut pod waits {_s(try_cost)} ({cost_why} to {service}) and is "
                    + ("retried on another pod" if retried else "not retried (expect client errors)")
                    + f", hence the p99 bound of {p99} ms")
    if ejection is None:
        budget = math.ceil(try_cost or 0.5) + WINDOW_S + 1
        why = (f"{why_cost}; {ejection_why}: the cut pod keeps its share of requests until the partition heals, "
               f"so expect this experiment to deviate (with outlier detection the budget would be {budget} s)")
    else:
        budget = math.ceil(ejection + (try_cost or 0)) + WINDOW_S
        why = (f"{why_cost}; {ejection_why}, ~{_s(ejection + (try_cost or 0))} after the cut counting the first "
               f"timed-out try; the budget adds {WINDOW_S} s for the per-second windows that hold the last slow "
               f"requests: {budget} s")
    return PartitionTiming(version_arg, True, try_cost, ejection, p99, budget, why)


def cap(model: MeshModel, service: str) -> float | None:
    """The shortest timeout of the plain route to ``service`` (per try or whole), if it has one."""
    route = graph.plain_route(model, service)
    caps = [t for t in (route.retries.per_try_timeout_s, route.timeout_s) if t]
    return min(caps) if caps else None


def _wait(model: MeshModel, path: list[str], delay_s: float, failing: bool = False) -> tuple[float, list[str]]:
    """What a client waits when the last hop of ``path`` (ingress, ..., caller, callee) is delayed by ``delay_s``
    (``failing``: and then answers an error, which the routes outward may retry), and, hop by hop outward, why."""
    inner, failed, steps = delay_s, failing, []
    for callee in reversed(path[1:]):
        route = graph.plain_route(model, callee)
        per_try, timeout, retries = route.retries.per_try_timeout_s, route.timeout_s, route.retries
        attempt = min(inner, per_try) if per_try else inner
        try_failed = failed or (per_try is not None and inner > per_try)
        timed_out = per_try is not None and inner > per_try
        again = try_failed and (_covers(retries, RETRIED_TIMEOUTS, 502) if timed_out else _answer_retried(retries, 502))
        total = attempt * (1 + retries.attempts) if again else attempt
        if timeout is not None and total > timeout:
            total, try_failed = timeout, True
        if total < inner or again:
            parts = ([f"{_s(per_try)} per try, {retries.attempts} retries"] if per_try and again else
                     [f"{_s(per_try)} per try"] if per_try else []) + ([f"{_s(timeout)} timeout"] if timeout else [])
            steps.append(f"the route to {callee} ({', '.join(parts)}) makes it {_s(total)}")
        inner, failed = total, try_failed
    return inner, steps


def latency(model: MeshModel, source: str | None, service: str) -> LatencyTiming:
    """A delay on every request into ``service`` (from ``source`` only, when given)."""
    callers = [source] if source else model.callers(service)
    paths = [[*graph.path_to(model, c), service] if c != graph.INGRESS else [graph.INGRESS, service] for c in callers]
    paths = [p for p in paths if len(p) > 1 and p[0] == graph.INGRESS]
    shortest = cap(model, service) or min((c for p in paths for c in (cap(model, s) for s in p[1:]) if c),
                                          default=None)
    delay_s = 2 * shortest if shortest else 1.0
    waits = [_wait(model, p, delay_s) for p in paths] or [(delay_s, [])]
    bound, steps = max(waits, key=lambda w: w[0])
    p99_limit = math.ceil(bound * BOUND_MARGIN * 10) * 100
    budget = math.ceil(bound) + WINDOW_S
    edge = f"{source} -> {service}" if source else f"every caller -> {service}"
    if steps:
        how = f"{'; '.join(steps)}: clients wait at most ~{_s(bound)}"
    else:
        how = "no timeout on the way cuts it: clients wait the whole delay (add a timeout; chaosmesh-qa explain)"
    why = (f"the delay on {edge} is {delay_s * 1000:.0f} ms, twice the shortest timeout that should cut it"
           if shortest else f"the delay on {edge} is {delay_s * 1000:.0f} ms (no timeout on the path to double)") + \
          (f"; {how}; the p99 bound is {BOUND_MARGIN:g} x that, {p99_limit} ms (the hops around the timeouts and a "
           f"loaded machine); after the heal, requests already waiting end within {_s(bound)}, and {WINDOW_S} s of "
           f"per-second windows make the budget {budget} s")
    return LatencyTiming(round(delay_s * 1000), bound, p99_limit, budget, why)


def abort(model: MeshModel, source: str | None, service: str) -> AbortTiming:
    """HTTP 503 on a share of the requests into ``service`` (from ``source`` only, when given)."""
    callers = [source] if source else model.callers(service)
    path = ([graph.INGRESS, service] if callers[0] == graph.INGRESS else [*graph.path_to(model, callers[0]), service])
    tries, retried_by, status = 1, None, 503
    for callee in reversed(path[1:]):
        retries = graph.plain_route(model, callee).retries
        if _answer_retried(retries, status):
            tries *= 1 + retries.attempts
            retried_by = retried_by or callee
        status = 502  # the demo app answers 502 when a call fails
    budget = WINDOW_S
    heal = (f"the heal clears the abort on every pod of {service} at once; {WINDOW_S} s cover the per-second window "
            f"the heal falls in and the next: the budget is {budget} s")
    if tries > 1:
        share = (MAX_ERROR_RATIO / 4) ** (1 / tries)
        percent = max(1, min(50, int(share * 100) // 5 * 5 or int(share * 100)))
        expected = (percent / 100) ** tries
        why = (f"{retried_by}'s route retries a 5xx, so a client request fails only when all {tries} tries along "
               f"its path are aborted: {percent} % aborted gives ~{expected:.2%} client errors, a quarter of the "
               f"{MAX_ERROR_RATIO:.0%} SLO or less, and the retries must show; {heal}")
        return AbortTiming(percent, tries, retried_by, MAX_ERROR_RATIO, budget, why)
    percent = 10
    limit = round(min(1.0, percent / 100 * BOUND_MARGIN + MAX_ERROR_RATIO), 3)
    why = (f"nothing on the path retries a 5xx, so ~{percent} % of client requests fail while the abort lasts; the "
           f"experiment checks that no more than {limit * 100:g} % fail (the fault does not spread) and {heal}")
    return AbortTiming(percent, 1, None, limit, budget, why)
