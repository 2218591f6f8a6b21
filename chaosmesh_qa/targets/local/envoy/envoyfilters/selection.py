"""Which EnvoyFilters reach a proxy and in what order (istiod's push_context.go ``EnvoyFilters``), and their
config patches grouped by ``applyTo`` as istiod compiles them (model/envoyfilter.go).
Part of ``envoyfilters``, whose docstring says what istiod does and where.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import re2

from chaosmesh_qa.targets.local.envoy.envoyfilters.model import (
    CONTEXTS,
    GATEWAY_NAME_LABEL,
    INSERTS,
    JSON,
    MAX_PROXY_VERSION_LEN,
    MESSAGE_OF,
    OPERATIONS,
    ORDERED,
    ROOT_NAMESPACE,
    EnvoyFilterObject,
    Patch,
    Patches,
    Proxy,
    log,
)
from chaosmesh_qa.targets.local.envoy.envoyfilters.protomerge import clone, read_patch_value


def filters_for(objects: Iterable[EnvoyFilterObject], proxy: Proxy,
                root_namespace: str = ROOT_NAMESPACE) -> list[EnvoyFilterObject]:
    """The EnvoyFilters that reach ``proxy``, in the order istiod applies them."""
    candidates = [o for o in objects if (root_namespace and o.namespace == root_namespace)
                  or (o.namespace == proxy.namespace and proxy.namespace != root_namespace)]
    chosen = [o for o in candidates if _attaches(o, proxy)]
    return sorted(chosen, key=lambda o: (o.priority, 0 if o.namespace == root_namespace else 1, o.created_order,
                                         f"{o.name}.{o.namespace}"))


def _attaches(obj: EnvoyFilterObject, proxy: Proxy) -> bool:
    refs = obj.spec.get("targetRefs") or []
    gateway = proxy.labels.get(GATEWAY_NAME_LABEL)
    if gateway is None or not refs:  # not a Gateway-API gateway: a filter with targetRefs is ignored
        return not refs and _selected(obj.spec, proxy)
    for ref in refs:
        if (isinstance(ref, dict) and obj.namespace == proxy.namespace
                and ref.get("namespace", "") in ("", proxy.namespace)
                and ref.get("group") == "gateway.networking.k8s.io" and ref.get("kind") == "Gateway"
                and ref.get("name") == gateway):
            return True
    return False


def _selected(spec: JSON, proxy: Proxy) -> bool:
    selector = spec.get("workloadSelector") or {}
    labels = selector.get("labels") or {} if isinstance(selector, dict) else {}
    return all(proxy.labels.get(k) == v for k, v in labels.items())


def _proxy_matches(match: JSON, proxy: Proxy) -> bool:
    wanted = match.get("proxy")
    if not isinstance(wanted, dict):
        return True
    version = wanted.get("proxyVersion") or ""
    if version:
        if len(version) > MAX_PROXY_VERSION_LEN:
            return False  # istiod fails closed rather than compile it
        try:
            pattern = re2.compile(version)
        except re2.error:
            pattern = None  # istiod ignores a regex that does not compile (validation rejects it)
        if pattern is not None and (not proxy.istio_version or not pattern.search(proxy.istio_version)):
            return False
    metadata = wanted.get("metadata")
    return all(proxy.metadata.get(k) == v for k, v in (metadata.items() if isinstance(metadata, dict) else ()))


def compile_patches(filters: Iterable[EnvoyFilterObject], proxy: Proxy) -> Patches:
    """The proxy's patches by ``applyTo``, in order (istiod's MergedEnvoyFilterWrapper)."""
    out: Patches = {}
    for obj in filters:
        for i, raw in enumerate(obj.spec.get("configPatches") or []):
            source = f"EnvoyFilter {obj.namespace}/{obj.name} configPatches[{i}]"
            patch = raw.get("patch") if isinstance(raw, dict) else None
            if not isinstance(patch, dict):
                continue
            apply_to, operation = raw.get("applyTo", "INVALID"), patch.get("operation", "INVALID")
            match = raw.get("match") if isinstance(raw.get("match"), dict) else {}
            context = match.get("context", "ANY")
            if apply_to not in MESSAGE_OF or operation not in OPERATIONS[1:] or context not in CONTEXTS:
                log.warning("%s: skipped: applyTo %r, operation %r or context %r is not valid",
                            source, apply_to, operation, context)
                continue
            value = patch.get("value")
            canonical = None
            if value is not None:
                try:
                    canonical = read_patch_value(apply_to, value)
                except ValueError as exc:
                    log.warning("%s: skipped, as istiod does: %s", source, exc)
                    continue
            elif operation != "REMOVE":
                log.warning("%s: skipped: %s without a value", source, operation)
                continue
            if not _proxy_matches(match, proxy):
                continue
            if operation in INSERTS and apply_to not in ORDERED:
                operation = "ADD"
            out.setdefault(apply_to, []).append(Patch(source, apply_to, operation, context, match, canonical))
    return out


def unsupported_patches(filters: Iterable[EnvoyFilterObject]) -> list[str]:
    """One line per patch this engine applies to nothing although istiod would apply it somewhere (ECDS)."""
    return [f"EnvoyFilter {o.namespace}/{o.name} configPatches[{i}]: applyTo EXTENSION_CONFIG patches ECDS "
            "resources, which the local control plane does not serve"
            for o in filters for i, raw in enumerate(o.spec.get("configPatches") or [])
            if isinstance(raw, dict) and raw.get("applyTo") == "EXTENSION_CONFIG"]


def context_matches(context: str, patch: Patch) -> bool:
    return patch.context in (context, "ANY")


def ordered_ops(items: list[Any], p: Patch, has_match: bool, matches: Callable[[Any], bool]) -> list[Any]:
    """ADD, INSERT_* , REPLACE and REMOVE on a list of named objects (filters), as istiod does them."""
    value = p.value
    if p.operation == "REMOVE":
        return [e for e in items if not matches(e)] if has_match else items
    if value is None:
        return items
    new = clone(value)
    first = next((i for i, e in enumerate(items) if matches(e)), None) if has_match else None
    if p.operation == "ADD":
        return [*items, new]
    if p.operation == "INSERT_FIRST":
        return [new, *items]
    if p.operation == "INSERT_AFTER":
        if not has_match:
            return [*items, new]
        return items if first is None else [*items[:first + 1], new, *items[first + 1:]]
    if p.operation == "INSERT_BEFORE":
        if not has_match:
            return [new, *items]
        return items if first is None else [*items[:first], new, *items[first:]]
    if p.operation == "REPLACE":
        return items if first is None else [*items[:first], new, *items[first + 1:]]
    return items
