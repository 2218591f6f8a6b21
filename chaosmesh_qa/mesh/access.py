"""Who may call a workload: the mesh's AuthorizationPolicies evaluated with Istio's semantics, in Python.

The sandbox enforces ``MeshModel.authz`` as Envoy RBAC filters (``targets.local.envoy.rbac``); this module gives
the same answer without Envoy, for the authorization verdict (``chaosmesh_qa.probes.authz``: which callers each
selected workload must refuse and which it must let through) and ``mesh.explain`` (CMQ-S004: a policy that lets in
a caller that never calls).  Istio's rules, as ``rbac`` realises them:

* a request is denied if any DENY policy of the workload matches it; else allowed if the workload has no ALLOW
  policy, or one of them matches it; else denied (an ALLOW policy without rules matches nothing);
* a rule matches when any of its sources matches (none: any), any of its operations (none: any), and every
  ``when`` condition holds; a field's values are ORed, the fields of one source or operation ANDed, and a ``not``
  form matches when none of its values does;
* every value is an Istio string match: exact, ``prefix*``, ``*suffix``, ``*`` (present); principals are written
  without ``spiffe://`` (already expanded for the mesh's trust domains by ``mesh.authz``), a caller's namespace is
  the ``/ns/<namespace>/`` of its SPIFFE id, hosts match ignoring case, a path ``*`` matches every path.

``decide`` judges one concrete request; ``decide_caller`` judges a caller identity whatever it asks, and says
``None`` (it depends) when a rule that could match it also looks at the path, method, host or headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.mesh.security_model import AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource

INGRESS = "ingress"  # the caller name of the ingress gateway, as ``mesh.callers`` names it
_NAMESPACE = re.compile(r"^spiffe://[^/]+/ns/([^/]+)/")
_Matcher = Callable[[str, "str | None"], bool]  # (an Istio pattern, a value) -> matches


@dataclass(frozen=True)
class Request:
    """What an RBAC filter sees of a request: the peer's SPIFFE id (None: no client certificate) and the request."""

    principal: str | None
    method: str = "GET"
    path: str = "/"
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names


@dataclass(frozen=True)
class Decision:
    """``allowed``: True or False, or None when it depends on what the caller asks (``decide_caller`` only).
    ``reason``: which policy (and rule) decided, in words; ``policies``: their ``namespace/name``."""

    allowed: bool | None
    reason: str
    policies: tuple[str, ...] = ()


def identities(model: MeshModel) -> dict[str, list[str]]:
    """Every caller identity of the mesh (SPIFFE id) -> the callers that present it: its services (several when
    they share a service account) and ``ingress`` for the ingress gateway's."""
    found: dict[str, list[str]] = {}
    for name in sorted(model.services):
        found.setdefault(model.services[name].spiffe_id, []).append(name)
    found.setdefault(model.ingress_spiffe, []).append(INGRESS)
    return found


def decide(policies: list[AuthzPolicy], request: Request) -> Decision:
    """Is ``request`` allowed by the policies that apply to one workload (``MeshModel.authz_for``)?"""
    decision = _decide(policies, request)
    assert decision.allowed is not None  # a concrete request always matches or not
    return decision


def decide_caller(policies: list[AuthzPolicy], principal: str | None) -> Decision:
    """Is every request of the caller ``principal`` allowed (True), every one denied (False), or does it depend
    on the request (None)?"""
    return _decide(policies, None, principal)


def _decide(policies: list[AuthzPolicy], request: Request | None, principal: str | None = None) -> Decision:
    who = request.principal if request is not None else principal
    deny = [p for p in policies if p.action == "DENY"]
    allow = [p for p in policies if p.action == "ALLOW"]
    maybe_denied: list[str] = []
    for policy in deny:
        for i, rule in enumerate(policy.rules):
            matched = _rule(rule, who, request)
            if matched is True:
                return Decision(False, f"denied by DENY policy {_key(policy)} (rule {i})", (_key(policy),))
            if matched is None:
                maybe_denied.append(_key(policy))
    if not allow:
        if maybe_denied:
            return Decision(None, f"denied by DENY policy {', '.join(dict.fromkeys(maybe_denied))} for some requests "
                                  "(its rule looks at the request)", tuple(dict.fromkeys(maybe_denied)))
        return Decision(True, "no ALLOW policy applies" + (" and no DENY policy matches" if deny else ""))
    maybe_allowed: list[str] = []
    for policy in allow:
        for i, rule in enumerate(policy.rules):
            matched = _rule(rule, who, request)
            if matched is True and not maybe_denied:
                return Decision(True, f"allowed by ALLOW policy {_key(policy)} (rule {i})", (_key(policy),))
            if matched is not False:
                maybe_allowed.append(_key(policy))
    names = tuple(_key(p) for p in allow)
    if not maybe_allowed:
        return Decision(False, f"no rule of the ALLOW policies {', '.join(names)} matches", names)
    found = tuple(dict.fromkeys([*maybe_denied, *maybe_allowed]))
    return Decision(None, f"depends on the request: {', '.join(found)} look at the path, method, host or headers",
                    found)


def _key(policy: AuthzPolicy) -> str:
    return f"{policy.namespace}/{policy.name}"


# --------------------------------------------------------------------------- rules: True, False, or None (depends)


def _rule(rule: AuthzRule, principal: str | None, request: Request | None) -> bool | None:
    if rule.sources and not any(_source(s, principal) for s in rule.sources):
        return False
    identity_conditions = [c for c in rule.conditions if not c.key.startswith("request.headers[")]
    if not all(_condition(c, principal, None) for c in identity_conditions):
        return False
    header_conditions = [c for c in rule.conditions if c.key.startswith("request.headers[")]
    if request is None:
        return None if rule.operations or header_conditions else True
    if rule.operations and not any(_operation(o, request) for o in rule.operations):
        return False
    return all(_condition(c, principal, request) for c in header_conditions)


def _source(source: AuthzSource, principal: str | None) -> bool:
    namespace = namespace_of(principal)
    return (_any(source.principals, principal, _principal) and _any(source.namespaces, namespace, _match)
            and _none(source.not_principals, principal, _principal)
            and _none(source.not_namespaces, namespace, _match))


def _operation(op: AuthzOperation, request: Request) -> bool:
    path = request.path.split("?", 1)[0]
    host = request.host.lower()
    return (_any(op.paths, path, _path) and _any(op.methods, request.method, _match)
            and _any(tuple(h.lower() for h in op.hosts), host, _match)
            and _none(op.not_paths, path, _path) and _none(op.not_methods, request.method, _match)
            and _none(tuple(h.lower() for h in op.not_hosts), host, _match))


def _condition(condition: AuthzCondition, principal: str | None, request: Request | None) -> bool:
    match: _Matcher
    value: str | None
    if condition.key == "source.principal":
        value, match = principal, _principal
    elif condition.key == "source.namespace":
        value, match = namespace_of(principal), _match
    else:
        name = condition.key[len("request.headers["):-1]
        value, match = (request.headers.get(name) if request is not None else None), _match
    return (not condition.values or _any(condition.values, value, match)) and _none(condition.not_values, value, match)


def _any(patterns: tuple[str, ...], value: str | None, match: _Matcher) -> bool:
    return not patterns or any(match(p, value) for p in patterns)


def _none(patterns: tuple[str, ...], value: str | None, match: _Matcher) -> bool:
    return not any(match(p, value) for p in patterns)


def _match(pattern: str, value: str | None) -> bool:
    """Istio's string match: ``*`` present (non-empty), ``abc*`` prefix, ``*abc`` suffix, else exact; an absent
    value matches nothing."""
    if not value:
        return False
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _principal(pattern: str, principal: str | None) -> bool:
    """A principal written as in Istio (no ``spiffe://``) against a peer's SPIFFE id; only an mTLS peer has one."""
    if not principal:
        return False
    if pattern == "*" or pattern.startswith("*"):
        return _match(pattern, principal)
    return _match(f"spiffe://{pattern}", principal)


def _path(pattern: str, path: str | None) -> bool:
    return pattern == "*" or _match(pattern, path)


def namespace_of(principal: str | None) -> str | None:
    """The namespace of a SPIFFE id ``spiffe://<domain>/ns/<namespace>/sa/<account>``, or None."""
    found = _NAMESPACE.match(principal or "")
    return found.group(1) if found else None
