"""Pure builders of the Kubernetes/Istio objects the Kubernetes target creates or patches.

``KubernetesTarget`` (and so ``chaosmesh-qa plan``) calls these to turn a fault into manifests:
the lease ConfigMap, the EnvoyFilter of an L7 fault, the NetworkPolicy / AuthorizationPolicy of a
partition, and the label patch that marks some pods of a partition.  Nothing here talks to a cluster,
so every shape is unit-tested; the shapes are the ones in docs/reference/kubernetes-target.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "chaosmesh-qa"
FAULT_ID = "chaosmesh-qa.io/fault-id"
OWNER_HASH = "chaosmesh-qa.io/owner-hash"
EXPIRES_AT = "chaosmesh-qa.io/expires-at"
ENDED_AT = "chaosmesh-qa.io/ended-at"
ORIGINAL = "chaosmesh-qa.io/original"
LEASE_PREFIX = "chaosmesh-qa-lease-"
CLAIM_PREFIX = "chaosmesh-qa-claim-"
CLAIM_SCOPE = "chaosmesh-qa.io/claim-scope"
CLAIM_OF = "chaosmesh-qa.io/claim-of"  # the fault id that holds a claim
MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGER}"
LEASE_SELECTOR = f"{MANAGED_SELECTOR},{FAULT_ID}"
TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API: core kinds have group ""."""

    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CONFIGMAP = Kind("ConfigMap", "", "v1", "configmaps")
POD = Kind("Pod", "", "v1", "pods")
ENVOYFILTER = Kind("EnvoyFilter", "networking.istio.io", "v1alpha3", "envoyfilters")  # only v1alpha3 exists
AUTHORIZATIONPOLICY = Kind("AuthorizationPolicy", "security.istio.io", "v1", "authorizationpolicies")
NETWORKPOLICY = Kind("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies")
KINDS = {k.kind: k for k in (CONFIGMAP, POD, ENVOYFILTER, AUTHORIZATIONPOLICY, NETWORKPOLICY)}


def owner_hash(owner: str) -> str:
    """A label-safe name for a run owner (``host:pid`` is not a valid label value)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def lease_name(fault_id: str) -> str:
    return LEASE_PREFIX + fault_id


def fault_metadata(name: str, namespace: str, fault_id: str, expires_at: float,
                   extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Metadata every object the target creates carries: managed-by, fault id, expiry."""
    return {"name": name, "namespace": namespace,
            "labels": {MANAGED_BY: MANAGER, FAULT_ID: fault_id, **(extra_labels or {})},
            "annotations": {EXPIRES_AT: repr(float(expires_at))}}


def lease_configmap(record: Mapping[str, Any], undo: list[dict[str, Any]], namespace: str) -> dict[str, Any]:
    """The lease: created before any change, so a reaper can undo whatever part of the fault was applied."""
    metadata = fault_metadata(lease_name(record["fault_id"]), namespace, record["fault_id"], record["expires_at"],
                              {OWNER_HASH: owner_hash(record["owner"])})
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
            "data": {"record.json": json.dumps(record, sort_keys=True), "undo.json": json.dumps(undo)}}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def claim_name(key: str) -> str:
    """The one name every runner gives the claim of ``key`` (``policy.claim_keys``): the API server creates it
    for one of them and answers the others 409."""
    return CLAIM_PREFIX + _digest(key)


def claim_configmap(key: str, scope: str, record: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """A fault's claim of ``key``: its fault, kind and target, found by its scope's label."""
    metadata = {"name": claim_name(key), "namespace": namespace,  # no fault-id label: a claim is not a lease
                "labels": {MANAGED_BY: MANAGER, CLAIM_SCOPE: _digest(scope), CLAIM_OF: record["fault_id"]},
                "annotations": {EXPIRES_AT: repr(float(record["expires_at"]))}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
            "data": {"claim.json": json.dumps({"key": key, **{k: record[k] for k in ("fault_id", "kind", "target")}},
                                              sort_keys=True)}}


def claim_selector(scope: str) -> str:
    return f"{MANAGED_SELECTOR},{CLAIM_SCOPE}={_digest(scope)}"


def claim_release(namespace: str, name: str) -> dict[str, Any]:
    """An undo entry: delete this claim if it is still this fault's (a claim refused with 409 is another's)."""
    return {"op": "release-claim", "kind": CONFIGMAP.kind, "namespace": namespace, "name": name}


def object_ref(kind: Kind, namespace: str, name: str) -> dict[str, Any]:
    """An undo entry: delete this created object (a missing one counts as deleted)."""
    return {"op": "delete", "kind": kind.kind, "namespace": namespace, "name": name}


def envoy_filter(fault_id: str, expires_at: float, namespace: str, selector: Mapping[str, str], ports: list[int],
                 fault: dict[str, Any], caller_principal: str | None, name: str | None = None) -> dict[str, Any]:
    """An HTTP fault filter at the inbound sidecars of the pods ``selector`` (the Service's) chooses, on each of
    the Service's target ``ports`` (where the local target injects L7 faults).

    ``fault`` is the typed HTTPFault body (delay or abort); ``caller_principal`` (SPIFFE URI) narrows it to one
    caller→callee edge: the callee's sidecar appends the caller's client certificate to XFCC (istiod's inbound
    ``APPEND_FORWARD`` with ``URI``), so the caller is the ``URI`` of the header's *last* element, matched whole.
    The filter has its own name (``chaosmesh-qa.<fault id>``): two faults never look alike to Envoy or istiod.
    """
    typed_config: dict[str, Any] = {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                                    **fault}
    if caller_principal is not None:
        typed_config["headers"] = [{"name": "x-forwarded-client-cert",
                                    "string_match": {"safe_regex": {"regex": xfcc_caller_regex(caller_principal)}}}]
    patches = [{
        "applyTo": "HTTP_FILTER",
        "match": {"context": "SIDECAR_INBOUND",
                  "listener": {"portNumber": port, "filterChain": {"filter": {
                      "name": "envoy.filters.network.http_connection_manager",
                      "subFilter": {"name": "envoy.filters.http.router"}}}}},
        "patch": {"operation": "INSERT_BEFORE",
                  "value": {"name": f"chaosmesh-qa.{fault_id}", "typed_config": typed_config}},
    } for port in sorted(set(ports))]
    return {"apiVersion": ENVOYFILTER.api_version, "kind": ENVOYFILTER.kind,
            "metadata": fault_metadata(name or f"chaosmesh-qa-{fault_id}", namespace, fault_id, expires_at),
            "spec": {"workloadSelector": {"labels": dict(selector)}, "configPatches": patches}}


def xfcc_caller_regex(principal: str) -> str:
    """An RE2 regex for an XFCC header whose last element's ``URI`` is exactly ``principal``: the last element
    is what the callee's own sidecar appended; ``URI=...`` ends at ``;`` or at the element's end, so
    ``sa/frontend`` does not match ``sa/frontend-v2``."""
    return rf"^(.*,)?[^,]*;URI={re.escape(principal)}(;[^,]*)?$"


def delay_fault(delay_ms: int, percent: int) -> dict[str, Any]:
    return {"delay": {"fixed_delay": f"{delay_ms / 1000:.3f}s", "percentage": _percentage(percent)}}


def abort_fault(http_status: int, percent: int) -> dict[str, Any]:
    return {"abort": {"http_status": http_status, "percentage": _percentage(percent)}}


def _percentage(percent: int) -> dict[str, Any]:
    return {"numerator": int(percent), "denominator": "HUNDRED"}


def spiffe_principal(namespace: str, service_account: str, with_scheme: bool = True,
                     trust_domain: str = TRUST_DOMAIN) -> str:
    principal = f"{trust_domain}/ns/{namespace}/sa/{service_account}"
    return f"spiffe://{principal}" if with_scheme else principal


def partition_label(fault_id: str) -> str:
    """The label that marks the pods of ``b`` one partition cuts off (when only some are)."""
    return f"chaosmesh-qa.io/partition-{fault_id.rsplit('-', 1)[-1]}"


def spared_label(fault_id: str) -> str:
    """The label that marks the pods of ``a`` a zone partition spares (those in the zone it cuts off)."""
    return f"chaosmesh-qa.io/spared-{fault_id.rsplit('-', 1)[-1]}"


def marked_label(fault_id: str) -> str:
    """The label that marks the pods an L7 fault acts at when only some of its service's are (a zone's)."""
    return f"chaosmesh-qa.io/{fault_id}"


def callee_selector(selector: Mapping[str, str], fault_id: str, some_pods: bool) -> dict[str, str]:
    """The callee Service's selector, narrowed to the pods a partition marked when it cuts only some."""
    return {**selector, **({partition_label(fault_id): "true"} if some_pods else {})}


def network_policy(fault_id: str, expires_at: float, namespace: str, suffix: str, caller: Mapping[str, str],
                   callee: Mapping[str, str], some_pods: bool, spared: bool = False) -> dict[str, Any]:
    """``drop``: ingress into the callee's pods (``callee``: its Service's selector; or the marked ones) from every
    pod the ``caller`` selector does not select, in any namespace.  "Not selected" is a union of peers, one per
    label of the selector (``NotIn`` also selects pods without the label).  ``spared`` (a zone partition): the
    caller's pods marked with ``spared_label`` (those in the zone) are let in too."""
    others: list[dict[str, Any]] = [{"matchExpressions": [{"key": key, "operator": "NotIn", "values": [value]}]}
                                     for key, value in sorted(caller.items())]
    if spared:
        others.append({"matchLabels": {spared_label(fault_id): "true"}})
    return {"apiVersion": NETWORKPOLICY.api_version, "kind": NETWORKPOLICY.kind,
            "metadata": fault_metadata(f"chaosmesh-qa-{fault_id}-{suffix}", namespace, fault_id, expires_at),
            "spec": {"podSelector": {"matchLabels": callee_selector(callee, fault_id, some_pods)},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": [*({"podSelector": o} for o in others),
                                           *({"namespaceSelector": {}, "podSelector": o} for o in others)]}]}}


def mark_pod_patch(pod_metadata: dict[str, Any], fault_id: str, labels: dict[str, str]) -> dict[str, Any]:
    """A merge patch adding ``labels`` to a pod and keeping what it replaces in ``chaosmesh-qa.io/original``.

    The annotation is a JSON map fault id → {"labels": {key: old value or null}}, so two faults that
    mark the same pod each restore exactly their own change.
    """
    current = pod_metadata.get("labels") or {}
    originals = _originals(pod_metadata)
    originals[fault_id] = {"labels": {key: current.get(key) for key in labels}}
    return {"metadata": {"labels": dict(labels), "annotations": {ORIGINAL: json.dumps(originals, sort_keys=True)}}}


def restore_pod_patch(pod_metadata: dict[str, Any], fault_id: str,
                      planned: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The merge patch that undoes ``mark_pod_patch`` of ``fault_id`` (None: nothing of it is on the pod).

    ``planned`` is the original the lease recorded, used when the pod's own annotation is missing
    (a run that died between patching labels and writing the annotation cannot happen with one
    merge patch, but a hand-edited pod can).
    """
    originals = _originals(pod_metadata)
    original = originals.pop(fault_id, None) or planned
    if original is None:
        return None
    annotations: dict[str, Any] = {ORIGINAL: json.dumps(originals, sort_keys=True) if originals else None}
    return {"metadata": {"labels": dict(original.get("labels", {})), "annotations": annotations}}


def _originals(pod_metadata: dict[str, Any]) -> dict[str, Any]:
    raw = (pod_metadata.get("annotations") or {}).get(ORIGINAL)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}
