"""AuthorizationPolicies as Envoy HTTP RBAC filters, with Istio's matching semantics.

``listeners`` puts ``rbac_filters`` on each sidecar's inbound listener (the policies
``MeshModel.authz_for`` gives the workload) and on the ingress gateway's listener (the ones
``mesh.authz.enforced_at_ingress`` gives it).  Every string value is matched as Istio documents
it: exact, ``prefix*``, ``*suffix``, or ``*`` for "present" (any non-empty value), for principals,
namespaces, paths, methods, hosts (ignoring case) and header conditions alike; the ``not`` forms
match when none of their values does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from chaosmesh_qa.mesh.security_model import AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource
from chaosmesh_qa.targets.local.envoy.common import API, JSON, TYPE

RBAC_FILTER = "envoy.filters.http.rbac"


def rbac_filters(policies: list[AuthzPolicy]) -> list[JSON]:
    """DENY policies first, then ALLOW ones; as in Istio, any ALLOW policy makes the rest denied."""
    filters = []
    for action in ("DENY", "ALLOW"):
        chosen = [p for p in policies if p.action == action]
        if not chosen:
            continue
        rules = {
            f"{p.namespace}.{p.name}[{i}]": _rbac_policy(rule)
            for p in chosen for i, rule in enumerate(p.rules)
        }
        filters.append({"name": RBAC_FILTER, "typed_config": {
            TYPE: f"{API}.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": action, "policies": rules},
            "rules_stat_prefix": f"authz_{action.lower()}_",
        }})
    return filters


def _rbac_policy(rule: AuthzRule) -> JSON:
    """Envoy ORs a policy's permissions and its principals: the rule's ``to`` entries go to the
    permissions, its ``from`` entries to the principals, and every condition is ANDed to each."""
    header_conditions = [_header_condition(c) for c in rule.conditions if c.key.startswith("request.headers[")]
    id_conditions = [_id_condition(c) for c in rule.conditions if not c.key.startswith("request.headers[")]
    permissions = [_operation(o) for o in rule.operations] or [{"any": True}]
    principals = [_source(s) for s in rule.sources] or [{"any": True}]
    if header_conditions:
        permissions = [{"and_rules": {"rules": [p, *header_conditions]}} for p in permissions]
    if id_conditions:
        principals = [{"and_ids": {"ids": [p, *id_conditions]}} for p in principals]
    return {"permissions": permissions, "principals": principals}


# --------------------------------------------------------------------------- string matching


def istio_string(value: str, ignore_case: bool = False) -> JSON:
    """Istio's value match as an Envoy StringMatcher: ``*`` present (non-empty), ``abc*`` prefix,
    ``*abc`` suffix, anything else exact."""
    case: JSON = {"ignore_case": True} if ignore_case else {}
    if value == "*":
        return {"safe_regex": {"regex": ".+"}}
    if value.endswith("*"):
        return {"prefix": value[:-1], **case}
    if value.startswith("*"):
        return {"suffix": value[1:], **case}
    return {"exact": value, **case}


Entries = list[tuple[tuple[str, ...], bool, Callable[[str], JSON]]]


def _combined(entries: Entries, kind: str) -> JSON:
    """AND over the fields given, each an OR over its values (negated for the ``not`` forms);
    ``kind`` is "rules" (permissions) or "ids" (principals), Envoy's two vocabularies."""
    parts: list[JSON] = []
    for values, negated, make in entries:
        if values:
            matched = [make(v) for v in values]
            one = matched[0] if len(matched) == 1 else {f"or_{kind}": {kind: matched}}
            parts.append({f"not_{kind[:-1]}": one} if negated else one)
    if not parts:
        return {"any": True}
    return parts[0] if len(parts) == 1 else {f"and_{kind}": {kind: parts}}


def _header(name: str, value: str, ignore_case: bool = False) -> JSON:
    if value == "*":
        return {"header": {"name": name, "present_match": True}}
    return {"header": {"name": name, "string_match": istio_string(value, ignore_case)}}


# --------------------------------------------------------------------------- permissions (to, when headers)


def _operation(op: AuthzOperation) -> JSON:
    method: Callable[[str], JSON] = lambda v: _header(":method", v)  # noqa: E731
    host: Callable[[str], JSON] = lambda v: _header(":authority", v, ignore_case=True)  # noqa: E731
    return _combined([(op.paths, False, _path), (op.methods, False, method), (op.hosts, False, host),
                      (op.not_paths, True, _path), (op.not_methods, True, method), (op.not_hosts, True, host)],
                     "rules")


def _path(path: str) -> JSON:
    if path == "*":
        return {"url_path": {"path": {"safe_regex": {"regex": ".*"}}}}
    return {"url_path": {"path": istio_string(path)}}


def _header_condition(condition: AuthzCondition) -> JSON:
    name = condition.key[len("request.headers["):-1]
    header: Callable[[str], JSON] = lambda v: _header(name, v)  # noqa: E731
    return _combined([(condition.values, False, header), (condition.not_values, True, header)], "rules")


# --------------------------------------------------------------------------- principals (from, when source.*)


def _source(source: AuthzSource) -> JSON:
    return _combined([(source.principals, False, _principal), (source.namespaces, False, _namespace),
                      (source.not_principals, True, _principal), (source.not_namespaces, True, _namespace)],
                     "ids")


def _id_condition(condition: AuthzCondition) -> JSON:
    make = _principal if condition.key == "source.principal" else _namespace
    return _combined([(condition.values, False, make), (condition.not_values, True, make)], "ids")


def _principal(principal: str) -> JSON:
    """A peer identity, written without ``spiffe://`` as in Istio; only an mTLS caller has one."""
    if principal == "*":
        matcher: JSON = {"safe_regex": {"regex": ".+"}}
    elif principal.startswith("*"):
        matcher = {"suffix": principal[1:]}
    elif principal.endswith("*"):
        matcher = {"prefix": f"spiffe://{principal[:-1]}"}
    else:
        matcher = {"exact": f"spiffe://{principal}"}
    return {"authenticated": {"principal_name": matcher}}


def _namespace(namespace: str) -> JSON:
    """The caller's namespace, read from its SPIFFE identity ``spiffe://<domain>/ns/<ns>/sa/<sa>``."""
    if namespace == "*":
        pattern = "[^/]+"
    elif namespace.endswith("*"):
        pattern = re.escape(namespace[:-1]) + "[^/]*"
    elif namespace.startswith("*"):
        pattern = "[^/]*" + re.escape(namespace[1:])
    else:
        pattern = re.escape(namespace)
    return {"authenticated": {"principal_name": {"safe_regex": {"regex": f"spiffe://[^/]+/ns/{pattern}/.*"}}}}
