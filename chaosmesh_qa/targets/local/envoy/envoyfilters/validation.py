"""What the EnvoyFilter CRD's schema (with kubectl's strict field validation) and istiod's validation webhook
(pkg/config/validation/envoyfilter) reject.
Part of ``envoyfilters``, whose docstring says what istiod does and where.
"""

from __future__ import annotations

from typing import Any

import re2

from chaosmesh_qa.targets.local.envoy.envoyfilters.model import (
    APPLY_TO,
    CONTEXTS,
    FILTER_CLASSES,
    HCM,
    JSON,
    MAX_PROXY_VERSION_LEN,
    MESSAGE_OF,
    OPERATIONS,
    ROUTE_ACTIONS,
    EnvoyFilterInvalid,
)
from chaosmesh_qa.targets.local.envoy.envoyfilters.protomerge import read_patch_value

_U32 = "uint32"
_I32 = "int32"
_STRING_MAP = "map<string,string>"
_OBJECT = "object"
_Schema = Any

_SUB_FILTER = {"name": str}
_FILTER = {"name": str, "subFilter": _SUB_FILTER}
_LISTENER_MATCH = {"portNumber": _U32, "portName": str, "listenerFilter": str, "name": str,
                   "filterChain": {"name": str, "sni": str, "transportProtocol": str, "applicationProtocols": str,
                                   "filter": _FILTER, "destinationPort": _U32}}
_ROUTE_MATCH = {"portNumber": _U32, "portName": str, "gateway": str, "name": str,
                "vhost": {"name": str, "domainName": str, "route": {"name": str, "action": ROUTE_ACTIONS}}}
_CLUSTER_MATCH = {"portNumber": _U32, "service": str, "subset": str, "name": str}
_WAYPOINT_MATCH = {"portNumber": _U32, "route": {"name": str}, "filter": _FILTER}
_MATCH = {"context": CONTEXTS, "proxy": {"proxyVersion": str, "metadata": _STRING_MAP},
          "listener": _LISTENER_MATCH, "routeConfiguration": _ROUTE_MATCH, "cluster": _CLUSTER_MATCH,
          "waypoint": _WAYPOINT_MATCH}
_CONFIG_PATCH = {"applyTo": APPLY_TO, "match": _MATCH,
                 "patch": {"operation": OPERATIONS, "value": _OBJECT, "filterClass": FILTER_CLASSES}}
_TARGET_REF = {"group": str, "kind": str, "name": str, "namespace": str}
_SPEC = {"workloadSelector": {"labels": _STRING_MAP}, "targetRefs": [_TARGET_REF], "configPatches": [_CONFIG_PATCH],
         "priority": _I32}


def validate(spec: Any) -> None:
    """Raise ``EnvoyFilterInvalid`` for what the EnvoyFilter CRD's schema (with kubectl's strict field
    validation) or istiod's validation webhook (pkg/config/validation/envoyfilter) rejects; warnings pass."""
    problems: list[str] = []
    _check(spec, _SPEC, "spec", problems)
    if isinstance(spec, dict):
        _check_spec(spec, problems)
    if problems:
        raise EnvoyFilterInvalid(problems)


def _check(value: Any, schema: _Schema, path: str, problems: list[str]) -> bool:
    """The CRD's structural schema; False (and a problem) when ``value`` is not of it."""
    if schema is str:
        ok = isinstance(value, str)
        if not ok:
            problems.append(f"{path}: {value!r} is not a string")
        return ok
    if schema in (_U32, _I32):
        low, high = (0, 2**32 - 1) if schema == _U32 else (-(2**31), 2**31 - 1)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{path}: {value!r} is not an integer from {low} to {high}")
            return False
        return True
    if isinstance(schema, tuple):
        if value not in schema:
            problems.append(f"{path}: {value!r} is not one of {', '.join(schema)}")
            return False
        return True
    if schema == _OBJECT:
        if not isinstance(value, dict):
            problems.append(f"{path}: {value!r} is not an object")
            return False
        return True
    if schema == _STRING_MAP:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            problems.append(f"{path}: must map strings to strings")
            return False
        return True
    if isinstance(schema, list):
        if not isinstance(value, list):
            problems.append(f"{path}: {value!r} is not a list")
            return False
        return all([_check(item, schema[0], f"{path}[{i}]", problems) for i, item in enumerate(value)
                    if item is not None])  # a null list item: istiod's "null config patch" names it
    if not isinstance(value, dict):
        problems.append(f"{path}: {value!r} is not an object")
        return False
    ok = True
    for key, item in value.items():
        if key not in schema:
            problems.append(f"{path}.{key}: unknown field (known: {', '.join(schema)})")
            ok = False
        elif item is not None:
            ok = _check(item, schema[key], f"{path}.{key}", problems) and ok
    return ok


def _check_spec(spec: JSON, problems: list[str]) -> None:
    labels = (spec.get("workloadSelector") or {}).get("labels") if isinstance(spec.get("workloadSelector"),
                                                                             dict) else None
    if isinstance(labels, dict):
        for key, value in labels.items():
            path = f"spec.workloadSelector.labels[{key!r}]"
            if key == "":
                problems.append(f"{path}: empty key is not supported in selector")
            if "*" in str(key) or "*" in str(value):
                problems.append(f"{path}: wildcard is not supported in selector")
            if isinstance(value, str) and len(value) > 63:
                problems.append(f"{path}: longer than 63 characters")
        if len(labels) > 256:
            problems.append("spec.workloadSelector.labels: more than 256 labels")
    refs = spec.get("targetRefs")
    if isinstance(refs, list):
        if spec.get("workloadSelector") is not None and refs:
            problems.append("spec: only one of targetRefs or workloadSelector can be set")
        if len(refs) > 16:
            problems.append("spec.targetRefs: more than 16 items")
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict):
                continue
            for key in ("kind", "name"):
                if not ref.get(key):
                    problems.append(f"spec.targetRefs[{i}].{key}: required")
            if ref.get("namespace"):
                problems.append(f"spec.targetRefs[{i}].namespace: cross namespace referencing is not currently "
                                "supported")
    patches = spec.get("configPatches")
    for i, patch in enumerate(patches if isinstance(patches, list) else []):
        path = f"spec.configPatches[{i}]"
        if patch is None:
            problems.append(f"{path}: null config patch")
        elif isinstance(patch, dict):
            _check_config_patch(patch, path, problems)


def _check_config_patch(cp: JSON, path: str, problems: list[str]) -> None:
    match = cp.get("match") if isinstance(cp.get("match"), dict) else None
    objects = [k for k in ("listener", "routeConfiguration", "cluster", "waypoint") if (match or {}).get(k) is not None]
    if len(objects) > 1:
        problems.append(f"{path}.match: only one of {', '.join(objects)} can be set")
    context = (match or {}).get("context", "ANY")
    if (context == "WAYPOINT") != ("waypoint" in objects):
        problems.append(f"{path}.match: only support waypointMatch when context is WAYPOINT")
    if context == "WAYPOINT":
        return  # istiod does not validate waypoint patches further
    apply_to = cp.get("applyTo", "INVALID")
    if apply_to == "INVALID":
        problems.append(f"{path}.applyTo: missing")
        return
    patch = cp.get("patch")
    if not isinstance(patch, dict):
        problems.append(f"{path}.patch: missing")
        return
    operation = patch.get("operation", "INVALID")
    if operation == "INVALID":
        problems.append(f"{path}.patch.operation: missing")
        return
    if operation != "REMOVE" and patch.get("value") is None:
        problems.append(f"{path}.patch.value: missing, and {operation} needs one")
        return
    version = ((match or {}).get("proxy") or {}).get("proxyVersion") or ""
    if isinstance(version, str) and version and len(version) <= MAX_PROXY_VERSION_LEN:
        try:
            re2.compile(version)
        except re2.error as exc:
            problems.append(f"{path}.match.proxy.proxyVersion: invalid regex: {exc}")
            return
    if match is not None and objects:
        expected = {"LISTENER": "listener", "FILTER_CHAIN": "listener", "NETWORK_FILTER": "listener",
                    "HTTP_FILTER": "listener", "ROUTE_CONFIGURATION": "routeConfiguration",
                    "VIRTUAL_HOST": "routeConfiguration", "HTTP_ROUTE": "routeConfiguration",
                    "CLUSTER": "cluster"}.get(str(apply_to))
        if expected is not None and objects[0] != expected:
            problems.append(f"{path}.match.{objects[0]}: applyTo {apply_to} needs a match on {expected}")
            if expected == "listener":
                return
        if expected == "listener" and not _check_filter_match(match, str(apply_to), path, problems):
            return
    if apply_to in MESSAGE_OF and isinstance(patch.get("value"), dict):
        try:
            read_patch_value(str(apply_to), patch["value"])
        except ValueError as exc:
            problems.append(f"{path}.patch.value: not a valid {MESSAGE_OF[str(apply_to)]}: {exc}")


def _check_filter_match(match: JSON, apply_to: str, path: str, problems: list[str]) -> bool:
    chain = (match.get("listener") or {}).get("filterChain")
    wanted = chain.get("filter") if isinstance(chain, dict) else None
    if not isinstance(wanted, dict):
        return True
    where = f"{path}.match.listener.filterChain.filter"
    if not wanted.get("name"):
        problems.append(f"{where}.name: filter match has no name to match on")
        return False
    sub = wanted.get("subFilter")
    if isinstance(sub, dict):
        if apply_to != "HTTP_FILTER":
            problems.append(f"{where}.subFilter: subfilter match can be used with applyTo HTTP_FILTER only")
            return False
        if wanted["name"] not in (HCM, "envoy.http_connection_manager"):
            problems.append(f"{where}.name: subfilter match requires filter match with {HCM}")
            return False
        if not sub.get("name"):
            problems.append(f"{where}.subFilter.name: subfilter match has no name to match on")
            return False
    return True
