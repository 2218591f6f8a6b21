"""Authorization verdict: each workload a policy selects refuses the callers it must and lets in the others.

Referenced from experiments as ``{"module": "chaosmesh_qa.probes.authz", "func": "authz_enforced"}``.
``plan`` (pure) takes the declared mesh (``MeshTarget.declared_mesh``: ``model.authz``, evaluated by
``mesh.access`` with Istio's semantics: DENY before ALLOW, selectors, principals in the mesh's trust domains) and,
for every workload a policy selects (and every service of ``expected``, the team's intent: only these callers),
says which caller identities of the mesh must be refused and which let in.  Where the intent and the declaration
disagree, that is a violation by itself (a policy widened, or deleted), whatever the traffic shows.  Then
``MeshTarget.check_authorization`` gets the answers: the local target sends a request as each identity (its
SPIFFE certificate) to each pod; a cluster target reads the callees' ``istio_requests_total`` per caller
identity and response code over ``window_s``, and cannot check an identity that sent nothing.  ``judge`` (pure)
compares: a caller that must be refused answered anything but 403, or a caller that must be let in answered 403,
is a violation naming the policy, the identity and the status seen.

Like ``probes.mtls`` it returns ``{"status": "pass" | "violated" | "not-enough-traffic", "summary": ..., ...}`` for
a list tolerance ``["pass"]``; ``not-enough-traffic`` when nothing decisive was seen (never a pass).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument, MeasurementFailed
from chaosmesh_qa.mesh.access import INGRESS, Decision, Request, decide, decide_caller, identities
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.probes.context import MeasureContext, window

__all__ = ["authz_enforced"]

log = logging.getLogger("chaostoolkit")
REFUSED = "403"  # what Istio's RBAC filter answers a denied request

Configuration = dict[str, Any]


@dataclass(frozen=True)
class Expectation:
    """What one workload (service, version) must do with one caller identity."""

    service: str
    version: str
    principal: str
    callers: tuple[str, ...]  # the mesh's callers that present this identity (``ingress``: the gateway)
    path: str  # what the local target asks for as this identity
    request: Decision  # the declared policies on ``GET <path>`` (Host: service) from this identity
    caller: Decision  # the declared policies on every request of this identity (None: depends on the request)
    intended: bool | None  # ``expected``: True let in, False refused; None: no intent for the service

    @property
    def who(self) -> str:
        return f"{'/'.join(self.callers) or 'a caller outside the mesh'} ({self.principal})"

    @property
    def workload(self) -> str:
        return f"{self.service}/{self.version}"

    def must_allow(self, exact: bool) -> bool | None:
        """Let in (True), refused (False), or cannot tell (None): ``exact`` for the request the local target sends,
        else for whatever the identity asks (a count of requests by identity carries no path)."""
        if self.intended is not None:
            return self.intended
        return self.request.allowed if exact else self.caller.allowed

    def policy(self) -> str:
        return ", ".join(self.caller.policies or self.request.policies) or "(no AuthorizationPolicy)"


@dataclass(frozen=True)
class Plan:
    model: MeshModel
    intent: dict[str, list[str]] | None
    expectations: tuple[Expectation, ...]
    problems: tuple[dict[str, Any], ...]  # the declaration against the intent: violations before any request

    def asks(self, service: str) -> dict[str, str]:
        """Identity -> path, for ``MeshTarget.check_authorization``."""
        return {e.principal: e.path for e in self.expectations if e.service == service}

    def services(self) -> list[str]:
        return sorted({e.service for e in self.expectations})

    def lookup(self, service: str, version: str, principal: str) -> Expectation | None:
        """The expectation for an answer from ``version`` (one the plan covers) to ``principal``, also for an
        identity outside the mesh's (a cluster's other namespaces); for a version it does not know (a count
        labelled ``unknown``), the one every version of the service agrees on, else None."""
        versions = sorted({e.version for e in self.expectations if e.service == service})
        if version not in versions and version in {v.name for v in self.model.services[service].versions}:
            return None  # a version no policy selects, the plan has nothing to say about it
        found = [next((e for e in self.expectations if (e.service, e.version, e.principal) == (service, v, principal)),
                      None) or expect(self.model, service, v, principal, [], self.intent)
                 for v in ([version] if version in versions else versions)]
        agree = {(e.request.allowed, e.caller.allowed, e.intended) for e in found}
        return found[0] if found and len(agree) == 1 else None


def authz_enforced(services: list[str] | None = None, expected: dict[str, list[str]] | None = None,
                   window_s: float = 60, configuration: Configuration | None = None) -> dict[str, Any]:
    """Do the workloads that AuthorizationPolicies select (of ``services``, default: all) refuse and let in the
    callers the policies say, and (``expected``: ``{service: [callers]}``, the team's intent) only those callers?

    ``window_s``: how far back a cluster target reads the callees' request counts (the local target sends its own
    requests).  Returns ``{"status": "pass" | "violated" | "not-enough-traffic", "summary", "violations",
    "checks", "not_checked", "policies"}``; use ``"tolerance": ["pass"]``.
    """
    names = None if services is None else _names(services)
    intent = None if expected is None else _expected(expected)
    span = window(window_s)
    ctx = MeasureContext.from_configuration(configuration)
    chosen = sorted(ctx.description["services"]) if names is None else [ctx.service(n) for n in names]
    chosen = sorted({*chosen, *(ctx.service(s, "expected") for s in intent or {})})
    model = ctx.target.declared_mesh()
    _check_callers(model, intent or {})
    made = plan(model, chosen, intent)
    if not made.expectations:
        raise MeasurementFailed(f"no AuthorizationPolicy selects a workload of {', '.join(chosen)} and no expected "
                                "callers were given: nothing to check")
    seconds = float(ctx.readable(span).removesuffix("s"))
    records = [r for s in made.services() for r in _tagged(s, ctx.target.check_authorization(s, made.asks(s), seconds))]
    result = judge(made, records)
    result["policies"] = _policies(model, chosen)
    log.info("authz_enforced: %s", result["summary"])
    return result


def _tagged(service: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "service": service} for r in records]


# --------------------------------------------------------------------------- plan: the expectations (pure)


def plan(model: MeshModel, services: list[str], intent: dict[str, list[str]] | None = None) -> Plan:
    """Every caller identity of the mesh against every workload of ``services`` that a policy selects or the
    intent names; and where the intent and the declared policies disagree."""
    found: list[Expectation] = []
    problems: list[dict[str, Any]] = []
    for service in services:
        for version in model.services[service].versions:
            policies = model.authz_for(service, version.name)
            if not policies and (intent is None or service not in intent):
                continue
            for principal, callers in identities(model).items():
                found.append(expect(model, service, version.name, principal, callers, intent))
    for e in found:
        declared = e.caller.allowed
        if e.intended is False and declared is not False:
            problems.append(_violation(e, "refused", "declared: " + e.caller.reason, None, None,
                                       f"{e.workload} lets in {e.who}: {e.caller.reason}; expected: refused"))
        elif e.intended is True and declared is False:
            problems.append(_violation(e, "allowed", "declared: " + e.caller.reason, None, None,
                                       f"{e.workload} refuses {e.who}: {e.caller.reason}; expected: let in"))
    return Plan(model, intent, tuple(found), tuple(problems))


def expect(model: MeshModel, service: str, version: str, principal: str, callers: list[str],
           intent: dict[str, list[str]] | None) -> Expectation:
    """What ``service``/``version`` must do with the caller identity ``principal`` (presented by ``callers``)."""
    policies = model.authz_for(service, version)
    path = _path(model, callers, service)
    wanted = None if intent is None or service not in intent else any(c in intent[service] for c in callers)
    return Expectation(service, version, principal, tuple(callers), path,
                       decide(policies, Request(principal, "GET", path, service)),
                       decide_caller(policies, principal), wanted)


def _path(model: MeshModel, callers: list[str], service: str) -> str:
    """The path a caller of ``service`` asks for: this identity's own call, else any caller's, else the ingress
    path, else ``/``."""
    def calls(name: str) -> list[str]:
        if name == INGRESS or name not in model.services:
            return []
        return [p for v in model.services[name].versions for callee, p in v.behaviour.calls if callee == service]

    own = [p for c in callers for p in calls(c)]
    anyone = [p for c in sorted(model.services) for p in calls(c)]
    gateway = list(model.ingress_paths) if service in model.ingress_services() else []
    return next(iter([*own, *anyone, *gateway]), "/")


# --------------------------------------------------------------------------- judge: answers against the plan (pure)


def judge(made: Plan, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdict from the target's answers (``MeshTarget.check_authorization`` records, each with its
    ``service``)."""
    violations = list(made.problems)
    checked: list[dict[str, Any]] = []
    not_checked: list[str] = []
    answered: set[tuple[str, str]] = set()
    for record in records:
        service, principal, codes = record["service"], record.get("principal"), dict(record.get("codes") or {})
        sent = record.get("how") == "sent"
        where = f"pod {record['pod']}" if record.get("pod") else f"{service}/{record.get('version')}"
        if principal is None:
            not_checked.append(f"{_count(codes)} into {where} from a caller its proxy did not name (source "
                               f"{record.get('source', 'unknown')!r}): not attributed to an identity")
            continue
        e = made.lookup(service, str(record.get("version")), principal)
        if e is None:
            not_checked.append(f"{_count(codes)} into {where} from {principal}: not judged (serving version "
                               f"{record.get('version')!r}: no policy selects it, or the versions' policies differ)")
            continue
        if not codes:
            not_checked.append(f"{e.who} -> {where}: {record.get('detail')}")
            continue
        must = e.must_allow(exact=sent)
        if must is None:
            not_checked.append(f"{e.who} -> {where}: whether it is let in depends on the request ({e.caller.reason})"
                               ", and a count of requests by identity carries no path, method, host or header")
            continue
        answered.add((service, principal))
        refused, other = codes.get(REFUSED, 0), sum(n for c, n in codes.items() if c != REFUSED)
        ok = not refused if must else not other
        declared = e.request.reason if sent else e.caller.reason
        reason = declared if e.intended is None or made.intent is None else \
            f"expected: only {', '.join(made.intent[service]) or 'nobody'} may call {service}; declared: {declared}"
        checked.append({"service": service, "version": e.version, "pod": record.get("pod"), "identity": principal,
                        "callers": list(e.callers), "path": record.get("path"), "how": record.get("how"),
                        "must": "allow" if must else "refuse", "codes": codes, "ok": ok, "reason": reason})
        if not ok:
            seen = f"403 x{refused}" if must else ", ".join(f"{c} x{n}" for c, n in sorted(codes.items())
                                                          if c != REFUSED)
            violations.append(_violation(e, "allowed" if must else "refused", reason, record.get("pod"), codes,
                                         f"{e.who} got {seen} from {where} (must be "
                                         f"{'let in' if must else 'refused'}: {reason})"))
    if not any(r.get("how") == "sent" for r in records):  # a count by identity: say who sent nothing
        not_checked += [f"cannot check: no traffic from {e.who} into {e.service} in the window"
                        for e in _unique(made.expectations) if (e.service, e.principal) not in answered]
    status = "violated" if violations else "pass" if checked else "not-enough-traffic"
    workloads = sorted({e.workload for e in made.expectations})
    summary = (f"{status}: {len(workloads)} workloads ({', '.join(workloads)}), {len(checked)} answers checked, "
               f"{len(not_checked)} not checked")
    if violations:
        summary += f"; {'; '.join(v['message'] for v in violations)}"
    elif checked:
        summary += ": every caller checked was refused or let in as it must be"
    if not_checked:
        summary += f"; not checked: {'; '.join(not_checked[:4])}" + ("; ..." if len(not_checked) > 4 else "")
    return {"status": status, "summary": summary, "violations": violations, "checks": checked,
            "not_checked": not_checked}


def _unique(expectations: tuple[Expectation, ...]) -> list[Expectation]:
    return list({(e.service, e.principal): e for e in expectations}.values())


def _violation(e: Expectation, must: str, reason: str, pod: str | None, codes: dict[str, int] | None,
               message: str) -> dict[str, Any]:
    return {"policy": e.policy(), "workload": e.workload, "pod": pod, "identity": e.principal,
            "callers": list(e.callers), "must_be": must, "seen": codes, "reason": reason, "message": message}


def _count(codes: dict[str, int]) -> str:
    return f"{sum(codes.values())} requests ({', '.join(f'{c} x{n}' for c, n in sorted(codes.items())) or 'none'})"


def _policies(model: MeshModel, services: list[str]) -> list[dict[str, Any]]:
    found = []
    for policy in model.authz:
        selected = [f"{s}/{v.name}" for s in services for v in model.services[s].versions
                    if policy in model.authz_for(s, v.name)]
        found.append({"policy": f"{policy.namespace}/{policy.name}", "action": policy.action, "workloads": selected})
    return found


# --------------------------------------------------------------------------- arguments


def _names(services: Any) -> list[str]:
    if not isinstance(services, list) or not services:
        checks.fail("services", "a non-empty list of service names", services)
    return [checks.name(f"services[{i}]", s) for i, s in enumerate(services)]


def _expected(expected: Any) -> dict[str, list[str]]:
    given = checks.mapping("expected", expected, 'a mapping of service to the callers it lets in, e.g. '
                                                 '{"inventory": ["catalog"]}')
    if not given:
        checks.fail("expected", "at least one service", expected)
    result = {}
    for key, callers in given.items():
        where = checks.field("expected", key)
        service = checks.name(where, key)
        if not isinstance(callers, list):
            checks.fail(where, "a list of caller names (services of the mesh, or ingress)", callers)
        result[service] = [checks.name(f"{where}[{i}]", c) for i, c in enumerate(callers)]
    return result


def _check_callers(model: MeshModel, intent: dict[str, list[str]]) -> None:
    known = sorted({*model.services, INGRESS})
    for service, callers in intent.items():
        for i, caller in enumerate(callers):
            if caller not in known:
                raise InvalidArgument(f"expected.{service}[{i}]: unknown caller {caller!r} (known: {', '.join(known)})")
