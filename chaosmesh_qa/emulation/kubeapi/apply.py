"""EnvoyFilters, NetworkPolicies and managed AuthorizationPolicies, applied live to the sandbox.

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

**NetworkPolicies**, the team's and the Kubernetes target's alike, are enforced as a CNI enforces them, never
recognised by their shape: each is admitted as the API server admits it (``networkpolicy.admit``: unknown
fields dropped, or refused with ``fieldValidation=Strict``; defaults; 400/422 only where the API server answers
so), stored, and then every stored NetworkPolicy is evaluated together (``networkpolicy.PolicySet``: isolation,
the union of allow rules, both ends of a connection) for each connection the mesh makes between the sandbox's
pods.  The denied ones go to the sandbox (``Sandbox.deny_connections``), whose control plane re-points that
source pod's endpoints of those pods at its tarpit.  The same happens after every pod label patch and whenever
the pods change (``pods_changed``, from the server's 100 ms poll: a replacement pod is evaluated before it is
ready).  What the sandbox cannot carry out is listed (``networkpolicy.sandbox_limits``) in ``status`` and on
the object.  The CNI modelled is Calico's / Cilium's: a policy decides when a connection *opens*; but the
sandbox re-points endpoints, so the callers' Envoys drain the connections they pooled to a newly denied pod
(a request in flight finishes), where a CNI's connection tracking would let them live
(docs/explanation/kube-api-emulation.md).  Nothing reverts a NetworkPolicy but its deletion (on a cluster, the
reaper's job).

**AuthorizationPolicies** labelled ``app.kubernetes.io/managed-by: chaosmesh-qa`` must still have exactly the
shape the Kubernetes target once wrote (a DENY for one caller principal: docs/explanation/kube-api-emulation.md);
one becomes a sandbox fault lease (``partition`` mode ``reject`` caller→callee; extra matchLabels narrow it to the
pods that carry them) whose TTL is the object's ``chaosmesh-qa.io/expires-at`` annotation, so the sandbox
reverts the fault at that time even when nobody deletes the object.  Deleting the object heals the lease.
Unlabelled ones are stored, not applied, with a warning in the call log and in ``status``.  A managed one the
emulation cannot apply is refused (422) with the field that is wrong, and nothing is stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaosmesh_qa.emulation.kubeapi import networkpolicy
from chaosmesh_qa.emulation.kubeapi.networkpolicy import ContainerPort, PodRef, Policy, PolicySet
from chaosmesh_qa.emulation.kubeapi.resources import RESOURCES, Resource
from chaosmesh_qa.emulation.kubeapi.selectors import SelectorError, match_labels
from chaosmesh_qa.emulation.kubeapi.status import ApiError, invalid, status_body
from chaosmesh_qa.emulation.kubeapi.store import ObjectStore, merge_patch
from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.mesh.callers import INGRESS, INGRESS_LABELS, INGRESS_NAMESPACE
from chaosmesh_qa.targets.local.envoy.envoyfilters import EnvoyFilterInvalid, EnvoyFilterObject, validate
from chaosmesh_qa.targets.local.pods import SERVING_STATES

if TYPE_CHECKING:
    from chaosmesh_qa.emulation.kubeapi.sandbox import Sandbox
    from chaosmesh_qa.emulation.kubeapi.workloads import Workloads

log = logging.getLogger("chaosmesh_qa.kubeapi")
MANAGED_BY = "app.kubernetes.io/managed-by"
FAULT_ID = "chaosmesh-qa.io/fault-id"
EXPIRES_AT = "chaosmesh-qa.io/expires-at"
MAX_WARNINGS = 100
ENVOYFILTERS = "envoyfilters"
NETWORKPOLICIES = "networkpolicies"
GATEWAY = PodRef("istio-ingressgateway", INGRESS_NAMESPACE, INGRESS_LABELS)  # a source only (not an API pod)
CONNTRACK_NOTE = ("a NetworkPolicy decides when a connection opens (Calico, Cilium); the sandbox re-points "
                  "endpoints, so a caller's Envoy drains the connections it pooled to a pod newly denied to it "
                  "(requests in flight finish), where a CNI would let established connections live")


@dataclass
class Enforced:
    """What the NetworkPolicies in force do to the sandbox's connections, as last evaluated."""

    denied: dict[str, frozenset[str]] = field(default_factory=dict)  # source (ingress: the gateway) -> pods
    connections: list[dict[str, Any]] = field(default_factory=list)  # each denied one, and why
    selected: dict[str, list[str]] = field(default_factory=dict)  # policy key -> the pods it selects
    limits: dict[str, list[str]] = field(default_factory=dict)  # policy key -> what the sandbox cannot do
    pods: tuple[Any, ...] = ()  # the pods' fingerprint it was evaluated for


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
        self.enforced = Enforced()

    # ------------------------------------------------------------------ server entry points

    async def create(self, resource: Resource, namespace: str, body: Any, store: ObjectStore,
                     entry: dict[str, Any], field_validation: str = "Warn") -> dict[str, Any]:
        labels = ((body or {}).get("metadata") or {}).get("labels") or {} if isinstance(body, dict) else {}
        if not resource.applied:
            return store.create(resource, namespace, body)
        if resource.name == NETWORKPOLICIES:
            obj = store.create(resource, namespace, self._admit_network_policy(body, entry, field_validation))
            entry["applied"] = self._enforce_network_policies(store, resource, (namespace, obj["metadata"]["name"]))
            return self.decorate(resource, obj)
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
        if resource.name == NETWORKPOLICIES:
            entry["applied"] = self._enforce_network_policies(store, resource)
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
               entry: dict[str, Any], field_validation: str = "Warn") -> dict[str, Any]:
        if resource.name == ENVOYFILTERS:
            self._admit_envoy_filter(body)
        if resource.name == NETWORKPOLICIES:
            store.get(resource, namespace, name)  # 404 before 422, as the API server answers
            obj = store.update(resource, namespace, name, self._admit_network_policy(body, entry, field_validation))
            entry["applied"] = self._enforce_network_policies(store, resource, (namespace, name))
            return self.decorate(resource, obj)
        obj = store.update(resource, namespace, name, body)
        if resource.name == ENVOYFILTERS:
            entry["applied"] = self._push_envoy_filters(resource, store)
        return obj

    def patch(self, resource: Resource, namespace: str, name: str, patch: dict[str, Any], store: ObjectStore,
              entry: dict[str, Any], field_validation: str = "Warn") -> dict[str, Any]:
        if resource.name == NETWORKPOLICIES:  # the merged object is admitted as a whole, as the API server does
            merged = merge_patch(store.get(resource, namespace, name), patch)
            return self.update(resource, namespace, name, merged, store, entry, field_validation)
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
        """A pod's labels changed: istiod re-selects the EnvoyFilters that reach it, the CNI the NetworkPolicies."""
        resource = next(r for r in RESOURCES if r.name == ENVOYFILTERS)
        if store.list(resource, None):
            self._push_envoy_filters(resource, store)
        self.pods_changed(store)

    def pods_changed(self, store: ObjectStore) -> None:
        """Evaluate the NetworkPolicies again if the pods (names, namespaces, labels) changed since the last time:
        the server calls this after each refresh of its pod view (100 ms), so a new pod is evaluated before it is
        ready, as a CNI programs a pod's policy before its containers serve."""
        resource = next(r for r in RESOURCES if r.name == NETWORKPOLICIES)
        try:
            if self._fingerprint() != self.enforced.pods and (self.enforced.denied or store.list(resource, None)):
                self._enforce_network_policies(store, resource)
        except Exception:  # the poll that calls this also feeds every watch: log, never end it
            log.exception("NetworkPolicies not evaluated again after a pod change")

    # ------------------------------------------------------------------ NetworkPolicies

    def _admit_network_policy(self, body: Any, entry: dict[str, Any], field_validation: str) -> dict[str, Any]:
        """The object the API server would store for ``body``, or its 400 / 422.  Unknown fields, as the request's
        ``fieldValidation`` says: ``Strict`` refuses them, ``Ignore`` drops them, ``Warn`` (the default) drops them
        with a warning."""
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body is not a NetworkPolicy object")
        name = str((body.get("metadata") or {}).get("name") or "")
        try:
            admitted, unknown = networkpolicy.admit(body)
        except networkpolicy.Undecodable as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        except networkpolicy.Invalid as exc:
            raise ApiError(422, "Invalid", f'NetworkPolicy.networking.k8s.io "{name}" is invalid: {exc}',
                           {"name": name, "group": "networking.k8s.io", "kind": "NetworkPolicy",
                            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": path}
                                       for path, message in exc.causes]}) from None
        if unknown and field_validation != "Ignore":
            fields = ", ".join(f'unknown field "{path}"' for path in unknown)
            if field_validation == "Strict":
                raise ApiError(400, "BadRequest", f"strict decoding error: {fields}")
            entry["api_warnings"] = [f'unknown field "{path}"' for path in unknown]
            entry["warning"] = f"{fields} (dropped, as the API server drops it)"
        return admitted

    def _fingerprint(self) -> tuple[Any, ...]:
        return tuple((name, obj["metadata"]["namespace"], tuple(sorted((obj["metadata"].get("labels") or {}).items())))
                     for name, obj in sorted(self.workloads.pods.items()) if name in self.sandbox.pods)

    def _pod_refs(self) -> dict[str, tuple[str, PodRef]]:
        """Each sandbox pod as the API shows it: its service, and the pod as a CNI sees it."""
        found = {}
        for name, obj in sorted(self.workloads.pods.items()):
            pod = self.sandbox.pods.get(name)
            if pod is None:
                continue
            meta = obj["metadata"]
            ports = tuple(ContainerPort(int(p["containerPort"]), p.get("name"), p.get("protocol", "TCP"))
                          for c in (obj.get("spec") or {}).get("containers") or [] for p in c.get("ports") or [])
            found[name] = (pod.spec.service, PodRef(name, meta["namespace"], dict(meta.get("labels") or {}), ports))
        return found

    def _enforce_network_policies(self, store: ObjectStore, resource: Resource,
                                  changed: tuple[str, str] | None = None) -> dict[str, Any]:
        """Evaluate every stored NetworkPolicy for each connection the mesh makes between the sandbox's pods, hand
        the denied ones to the sandbox if they changed, and return what the call log records."""
        model = self.sandbox.model
        assert model is not None
        self.workloads.refresh()
        fingerprint = self._fingerprint()
        pods = self._pod_refs()
        policies = [Policy(o["metadata"]["namespace"], o["metadata"]["name"], o.get("spec") or {})
                    for o in store.list(resource, None)]
        namespaces = {ns: self.workloads.namespace(ns)["metadata"]["labels"] for ns in self.workloads.namespaces()}
        evaluator = PolicySet(policies, namespaces)
        denied: dict[str, set[str]] = {}
        connections = []
        for caller in [INGRESS, *model.services]:
            sources = [(INGRESS, GATEWAY)] if caller == INGRESS else [
                (name, ref) for name, (service, ref) in pods.items() if service == caller]
            for callee in self.sandbox.callees_of(caller):
                port = model.services[callee].pod_port
                for source, ref in sources:
                    for target, (service, target_ref) in pods.items():
                        verdict = evaluator.verdict(ref, target_ref, port) if service == callee else None
                        if verdict is None or verdict.allowed:
                            continue
                        denied.setdefault(source, set()).add(target)
                        connections.append({"source": ref.name, "destination": target, "port": port, "denied_by": [
                            f"{side} of {pod} isolated by {', '.join(how.isolated_by)}, admitted by none"
                            for side, pod, how in (("egress", ref.name, verdict.egress),
                                                   ("ingress", target, verdict.ingress)) if not how.allowed]})
        refs = [ref for _, ref in pods.values()]
        frozen = {source: frozenset(targets) for source, targets in denied.items()}
        if frozen != self.enforced.denied:
            self.sandbox.deny_connections(frozen)
        self.enforced = Enforced(frozen, connections, {
            p.key: sorted(r.name for r in refs if evaluator.selects(p, r)) for p in policies}, {
            p.key: networkpolicy.sandbox_limits(p, refs, GATEWAY) for p in policies}, fingerprint)
        key = f"{changed[0]}/{changed[1]}" if changed else None
        return {"network_policies_in_force": [p.key for p in policies], "denied_connections": len(connections),
                **({"not_realised": self.enforced.limits.get(key, [])} if key else {})}

    def decorate(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """The stored object, plus ``status.chaosmeshQaEmulation`` saying what the sandbox made of it."""
        meta = obj["metadata"]
        if resource.name == NETWORKPOLICIES:
            key = f"{meta['namespace']}/{meta['name']}"
            return {**obj, "status": {"chaosmeshQaEmulation": {
                "applied": True, "selectedPods": self.enforced.selected.get(key, []),
                "notRealised": self.enforced.limits.get(key, []),
                "note": "in force with every other NetworkPolicy (a union of allow rules), on new connections"}}}
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
        enforced = self.enforced
        return {"applied": [{"kind": a.kind, "namespace": a.namespace, "name": a.name, "fault_id": a.fault_id,
                             "note": a.note} for a in self.applied.values()],
                "warnings": list(self.warnings),
                "network_policies": {"in_force": sorted(enforced.selected), "selected_pods": enforced.selected,
                                     "denied_connections": enforced.connections,
                                     "not_realised": {k: v for k, v in enforced.limits.items() if v},
                                     "connection_tracking": CONNTRACK_NOTE}}

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
        return self._authorization_policy(namespace, name, spec)

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
        if spiffe == model.ingress_spiffe:
            return INGRESS
        found = [s.name for s in model.services.values() if s.spiffe_id == spiffe]
        if len(found) != 1:
            raise invalid(kind, name, f"{where}: principal {principal!r} is "
                                      f"{'not one service' if found else 'no workload'} of this sandbox")
        return found[0]

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
