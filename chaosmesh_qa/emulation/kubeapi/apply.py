"""EnvoyFilters, and managed AuthorizationPolicies and NetworkPolicies, applied live to the sandbox.

``server`` hands every create, update, patch and delete of EnvoyFilters, AuthorizationPolicies and
NetworkPolicies to ``Applier``.

**EnvoyFilters**, the team's and the Kubernetes target's alike, are applied as istiod applies them: every
stored EnvoyFilter goes to the sandbox (``Sandbox.set_envoy_filters``), whose control plane patches each
proxy's generated listeners with those that reach it (``targets.local.envoy.envoyfilters``: workload
selector, context, listener / filter-chain / filter / sub-filter matches, the operations) and pushes
them; Envoy judges the result and keeps its previous listeners when it rejects them.  So an EnvoyFilter
changes Envoy only if it is right, whoever wrote it.  One that istiod's validation webhook refuses is
refused here (400, the webhook's wording) and not stored.  Nothing reverts an EnvoyFilter but its
deletion: on a cluster that is the reaper's job, and so it is here.

**AuthorizationPolicies and NetworkPolicies** labelled ``app.kubernetes.io/managed-by: chaosmesh-qa``
must still have exactly the shape the Kubernetes target writes (docs/kube-api-emulation.md); they
become a sandbox fault lease whose TTL is the object's ``chaosmesh-qa.io/expires-at`` annotation,
so the sandbox reverts the fault at that time even when nobody deletes the object:

* AuthorizationPolicy DENY for one caller principal → ``partition`` mode ``reject`` caller→callee;
* NetworkPolicy admitting everyone but one app → ``partition`` mode ``drop`` caller→callee;
  extra matchLabels narrow either partition to the pods that carry them.

Deleting the object heals the lease.  Unlabelled objects are stored, not applied, with a warning
in the call log and in ``status``.  A managed object the emulation cannot apply is refused
(422) with the field that is wrong, and nothing is stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaosmesh_qa.emulation.kubeapi.resources import RESOURCES, Resource
from chaosmesh_qa.emulation.kubeapi.selectors import SelectorError, match_labels
from chaosmesh_qa.emulation.kubeapi.status import ApiError, invalid, status_body
from chaosmesh_qa.emulation.kubeapi.store import ObjectStore, merge_patch
from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.mesh.callers import INGRESS, INGRESS_SPIFFE
from chaosmesh_qa.targets.local.envoy.envoyfilters import EnvoyFilterInvalid, EnvoyFilterObject, validate
from chaosmesh_qa.targets.local.pods import SERVING_STATES

if TYPE_CHECKING:
    from chaosmesh_qa.emulation.kubeapi.sandbox import Sandbox
    from chaosmesh_qa.emulation.kubeapi.workloads import Workloads

MANAGED_BY = "app.kubernetes.io/managed-by"
FAULT_ID = "chaosmesh-qa.io/fault-id"
EXPIRES_AT = "chaosmesh-qa.io/expires-at"
MAX_WARNINGS = 100
ENVOYFILTERS = "envoyfilters"


@dataclass
class Applied:
    kind: str
    namespace: str
    name: str
    fault_id: str | None  # None: stored but nothing to apply (see note)
    note: str
    parameters: dict[str, Any] = field(default_factory=dict)


class Applier:
    def __init__(self, sandbox: Sandbox, workloads: Workloads) -> None:
        self.sandbox = sandbox
        self.workloads = workloads
        self.applied: dict[tuple[str, str, str], Applied] = {}
        self.warnings: list[str] = []
        self._created: dict[tuple[str, str], int] = {}  # EnvoyFilter (namespace, name) -> creation order

    # ------------------------------------------------------------------ server entry points

    async def create(self, resource: Resource, namespace: str, body: Any, store: ObjectStore,
                     entry: dict[str, Any]) -> dict[str, Any]:
        labels = ((body or {}).get("metadata") or {}).get("labels") or {} if isinstance(body, dict) else {}
        if not resource.applied:
            return store.create(resource, namespace, body)
        if resource.name == ENVOYFILTERS:
            self._admit_envoy_filter(body)
            obj = store.create(resource, namespace, body)
            self._created[(namespace, obj["metadata"]["name"])] = len(self._created) + 1
            entry["applied"] = self._push_envoy_filters(resource, store)
            return obj
        if labels.get(MANAGED_BY) != "chaosmesh-qa":
            obj = store.create(resource, namespace, body)
            warning = (f"{resource.kind} {namespace}/{obj['metadata']['name']} stored but NOT applied: the "
                       f"emulation applies only objects labelled {MANAGED_BY}=chaosmesh-qa")
            entry["warning"] = warning
            self.warnings = [*self.warnings[-(MAX_WARNINGS - 1):], warning]
            return obj
        name = str((body.get("metadata") or {}).get("name") or "")
        kind, parameters, note = self._plan(resource, namespace, name, body)
        ttl_s = self._ttl(resource, name, body)
        obj = store.create(resource, namespace, body)
        key = (resource.name, namespace, name)
        fault_id = None
        if kind is not None:
            owner = f"kube-api:{labels.get(FAULT_ID) or name}"
            try:
                record = await self.sandbox.faults.inject(kind, parameters, owner, ttl_s)
            except FaultRejected as exc:
                store.delete(resource, namespace, name)
                raise invalid(resource.kind, name, f"the sandbox cannot apply it: {exc}") from None
            fault_id = record["fault_id"]
            note = f"applied as sandbox fault {fault_id} ({kind}), reverted by the sandbox in {ttl_s:.1f} s " \
                   f"(expires-at) unless deleted first"
        self.applied[key] = Applied(resource.kind, namespace, name, fault_id, note, parameters)
        entry["applied"] = {"fault_id": fault_id, "kind": kind, "parameters": parameters,
                            "ttl_s": round(ttl_s, 3), "note": note}
        return self.decorate(resource, obj)

    async def delete(self, resource: Resource, namespace: str, name: str, preconditions: dict[str, Any] | None,
                     store: ObjectStore, entry: dict[str, Any]) -> dict[str, Any]:
        obj = store.delete(resource, namespace, name, preconditions)
        if resource.name == ENVOYFILTERS:
            self._created.pop((namespace, name), None)
            entry["applied"] = self._push_envoy_filters(resource, store)
            return obj
        applied = self.applied.pop((resource.name, namespace, name), None)
        if applied is not None and applied.fault_id is not None:
            healed = await self.sandbox.faults.heal(applied.fault_id)
            entry["healed"] = {"fault_id": applied.fault_id,
                               "ended": healed[0]["ended"] if healed else "already-ended"}
        if resource.name == "configmaps":
            return status_body(200, "", "", {"name": name, "kind": "configmaps"}, "Success")
        return obj

    def update(self, resource: Resource, namespace: str, name: str, body: Any, store: ObjectStore,
               entry: dict[str, Any]) -> dict[str, Any]:
        if resource.name == ENVOYFILTERS:
            self._admit_envoy_filter(body)
        obj = store.update(resource, namespace, name, body)
        if resource.name == ENVOYFILTERS:
            entry["applied"] = self._push_envoy_filters(resource, store)
        return obj

    def patch(self, resource: Resource, namespace: str, name: str, patch: dict[str, Any], store: ObjectStore,
              entry: dict[str, Any]) -> dict[str, Any]:
        if resource.name == ENVOYFILTERS:
            self._admit_envoy_filter(merge_patch(store.get(resource, namespace, name), patch))
        obj = store.patch(resource, namespace, name, patch)
        if resource.name == ENVOYFILTERS:
            entry["applied"] = self._push_envoy_filters(resource, store)
        return obj

    def _admit_envoy_filter(self, body: Any) -> None:
        """istiod's validating webhook: the CRD schema and istiod's own checks (``envoyfilters.validate``)."""
        spec = body.get("spec") if isinstance(body, dict) else None
        try:
            validate(spec)
        except EnvoyFilterInvalid as exc:
            raise ApiError(400, "BadRequest", f'admission webhook "validation.istio.io" denied the request: '
                                              f"configuration is invalid: {exc}") from None

    def _push_envoy_filters(self, resource: Resource, store: ObjectStore) -> dict[str, Any]:
        """Hand every stored EnvoyFilter to the sandbox, in creation order; what the call log records."""
        objects = [EnvoyFilterObject(o["metadata"]["namespace"], o["metadata"]["name"], o.get("spec") or {},
                                     self._created.get((o["metadata"]["namespace"], o["metadata"]["name"]), 0))
                   for o in store.list(resource, None)]
        labels = {name: self.workloads.pod_labels(name) for name in list(self.sandbox.pods)}
        self.sandbox.set_envoy_filters(objects, labels)
        return {"envoy_filters_in_force": [f"{o.namespace}/{o.name}" for o in objects]}

    def pods_relabelled(self, store: ObjectStore) -> None:
        """A pod's labels changed: istiod re-selects the EnvoyFilters that reach it."""
        resource = next(r for r in RESOURCES if r.name == ENVOYFILTERS)
        if store.list(resource, None):
            self._push_envoy_filters(resource, store)

    def decorate(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """The stored object, plus ``status.chaosmeshQaEmulation`` saying what the sandbox made of it."""
        meta = obj["metadata"]
        applied = self.applied.get((resource.name, meta["namespace"], meta["name"]))
        if applied is None or not resource.applied:
            return obj
        info: dict[str, Any] = {"applied": applied.fault_id is not None, "note": applied.note}
        if applied.fault_id is not None:
            record = next((r for r in self.sandbox.faults.history() if r["fault_id"] == applied.fault_id), None)
            info.update(faultId=applied.fault_id, state=(record or {}).get("ended") or "active",
                        expiresAt=(record or {}).get("expires_at"))
        return {**obj, "status": {**(obj.get("status") or {}), "chaosmeshQaEmulation": info}}

    def summary(self) -> dict[str, Any]:
        return {"applied": [{"kind": a.kind, "namespace": a.namespace, "name": a.name, "fault_id": a.fault_id,
                             "note": a.note} for a in self.applied.values()],
                "warnings": list(self.warnings)}

    # ------------------------------------------------------------------ reading the objects

    def _ttl(self, resource: Resource, name: str, body: dict[str, Any]) -> float:
        raw = ((body.get("metadata") or {}).get("annotations") or {}).get(EXPIRES_AT)
        try:
            ttl = float(str(raw)) - time.time()
        except ValueError:
            raise invalid(resource.kind, name, f"metadata.annotations[{EXPIRES_AT}]: {raw!r} is not epoch "
                                               f"seconds (a managed object needs its expiry)") from None
        max_ttl = self.sandbox.faults.max_ttl_s
        if not 0 < ttl <= max_ttl:
            raise invalid(resource.kind, name, f"metadata.annotations[{EXPIRES_AT}]: expires in {ttl:.1f} s, "
                                               f"outside (0, {max_ttl:g}] (the sandbox's max TTL)")
        return ttl

    def _plan(self, resource: Resource, namespace: str, name: str,
              body: dict[str, Any]) -> tuple[str | None, dict[str, Any], str]:
        spec = body.get("spec")
        if not isinstance(spec, dict):
            raise invalid(resource.kind, name, "spec: Required value")
        planners = {"authorizationpolicies": self._authorization_policy, "networkpolicies": self._network_policy}
        return planners[resource.name](namespace, name, spec)

    def _service(self, kind: str, name: str, namespace: str, app: Any, where: str) -> str:
        model = self.sandbox.model
        assert model is not None
        svc = model.services.get(str(app))
        if svc is None or svc.namespace != namespace:
            raise invalid(kind, name, f"{where}: no service {app!r} in namespace {namespace!r} in this sandbox")
        return svc.name

    def _principal_service(self, kind: str, name: str, principal: str, where: str) -> str:
        model = self.sandbox.model
        assert model is not None
        spiffe = principal if principal.startswith("spiffe://") else f"spiffe://{principal}"
        if spiffe == INGRESS_SPIFFE:
            return INGRESS
        found = [s.name for s in model.services.values() if s.spiffe_id == spiffe]
        if len(found) != 1:
            raise invalid(kind, name, f"{where}: principal {principal!r} is "
                                      f"{'not one service' if found else 'no workload'} of this sandbox")
        return found[0]

    def _app_service(self, kind: str, name: str, app: str, where: str) -> str:
        model = self.sandbox.model
        assert model is not None
        if app == "istio-ingressgateway":
            return INGRESS
        if app not in model.services:
            raise invalid(kind, name, f"{where}: no service {app!r} in this sandbox")
        return app

    def _authorization_policy(self, namespace: str, name: str,
                              spec: dict[str, Any]) -> tuple[str | None, dict[str, Any], str]:
        kind = "AuthorizationPolicy"
        if spec.get("action") != "DENY":
            raise invalid(kind, name, f"spec.action: {spec.get('action')!r} (the emulation applies only DENY)")
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        callee = self._service(kind, name, namespace, selector.get("app"), "spec.selector.matchLabels.app")
        rules = spec.get("rules")
        sources = (rules[0].get("from") if isinstance(rules, list) and len(rules) == 1
                   and isinstance(rules[0], dict) else None)
        principals = (sources[0].get("source") or {}).get("principals") \
            if isinstance(sources, list) and len(sources) == 1 and isinstance(sources[0], dict) else None
        if not isinstance(principals, list) or len(principals) != 1 or set(rules[0] if rules else {}) - {"from"}:
            raise invalid(kind, name, "spec.rules: the emulation applies one rule with one from.source.principals "
                                      "entry (one caller) and nothing else")
        caller = self._principal_service(kind, name, str(principals[0]), "spec.rules[0].from[0].source.principals[0]")
        return self._partition(kind, name, caller, callee, {"matchLabels": selector}, "reject")

    def _network_policy(self, namespace: str, name: str,
                        spec: dict[str, Any]) -> tuple[str | None, dict[str, Any], str]:
        kind = "NetworkPolicy"
        selector = spec.get("podSelector") or {}
        callee = self._service(kind, name, namespace, (selector.get("matchLabels") or {}).get("app"),
                               "spec.podSelector.matchLabels.app")
        if spec.get("policyTypes") != ["Ingress"]:
            raise invalid(kind, name, f"spec.policyTypes: {spec.get('policyTypes')!r} (the emulation applies "
                                      f"['Ingress'])")
        rules = spec.get("ingress")
        peers = rules[0].get("from") if isinstance(rules, list) and len(rules) == 1 and isinstance(rules[0], dict) \
            else None
        excluded: set[str] = set()
        for peer in peers if isinstance(peers, list) else []:
            expressions = ((peer or {}).get("podSelector") or {}).get("matchExpressions") or []
            excluded |= {str(v) for e in expressions if e.get("key") == "app" and e.get("operator") == "NotIn"
                         for v in e.get("values") or []}
        if not peers or len(excluded) != 1:
            raise invalid(kind, name, "spec.ingress: the emulation applies one rule whose from-peers admit every "
                                      "pod but one app (podSelector app NotIn [caller])")
        caller = self._app_service(kind, name, excluded.pop(), "spec.ingress[0].from[].podSelector")
        return self._partition(kind, name, caller, callee, selector, "drop")

    def _partition(self, kind: str, name: str, caller: str, callee: str, selector: dict[str, Any],
                   mode: str) -> tuple[str | None, dict[str, Any], str]:
        params: dict[str, Any] = {"a": caller, "b": callee, "direction": "to", "mode": mode}
        if callee not in self.sandbox.callees_of(caller):
            return None, params, f"not applied: {caller} does not call {callee} in this sandbox, nothing to cut"
        if set(selector.get("matchLabels") or {}) - {"app"} or selector.get("matchExpressions"):
            try:
                chosen = sorted(p.name for p in self.sandbox.pods.values() if p.spec.service == callee
                                and p.state in SERVING_STATES
                                and match_labels(selector, self.workloads.pod_labels(p.name)))
            except SelectorError as exc:
                raise invalid(kind, name, f"selector: {exc}") from None
            if not chosen:
                raise invalid(kind, name, f"selector: matches no running pod of {callee!r} (label the pods first)")
            params["pods"] = chosen
        return "partition", params, ""
