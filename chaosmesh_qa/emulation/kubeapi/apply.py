"""EnvoyFilters, NetworkPolicies and AuthorizationPolicies, applied live to the sandbox as a cluster applies them.

``server`` hands every create, update, patch and delete of EnvoyFilters, AuthorizationPolicies and
NetworkPolicies to ``Applier``.  None is recognised by its shape or its labels: the team's objects and the
Kubernetes target's are read alike.

**EnvoyFilters** are applied as istiod applies them: every stored EnvoyFilter goes to the sandbox
(``Sandbox.set_envoy_filters``), whose control plane patches each proxy's generated listeners with those that
reach it (``targets.local.envoy.envoyfilters``: workload selector, context, listener / filter-chain / filter /
sub-filter matches, the operations) and pushes them; Envoy judges the result and keeps its previous listeners
when it rejects them.  So an EnvoyFilter changes Envoy only if it is right, whoever wrote it.  One that istiod's
validation webhook refuses is refused here (400, the webhook's wording) and not stored.  Nothing reverts an
EnvoyFilter but its deletion: on a cluster that is the reaper's job, and so it is here.

**AuthorizationPolicies** are applied as istiod applies them (``authorization``): one its webhook refuses is
refused (400, the webhook's wording, the field) and not stored; after every change, every stored one (the mesh
directory's own included, seeded read-only by ``server``) is parsed by the mesh directory's parser and the whole
set goes to the sandbox (``Sandbox.set_authorization_policies``), whose control plane renders each sidecar's
inbound RBAC filters from those that select its pod (by its current labels: they are handed over again after
every pod label patch and whenever the pods change) and the ingress gateway's, and pushes them.  So Envoy
answers 403 as Istio's sidecars do: DENY policies first, then any ALLOW policy selecting a workload denies what
none allows.  A changed listener reaches Envoy as an in-place filter-chain update: connections the callers
pooled keep the old filters until their next response (the sidecars drain them for 2 s).  What the sandbox
cannot evaluate (IP blocks, JWTs, ports, ``targetRef``...) is listed in the call log and on the object's status.
Not modelled: CUSTOM (ext_authz) and AUDIT policies (the parser leaves them out, and says so), the dry-run
annotation, istiod's push debounce (the push is immediate), and istiod's Go validation word for word (the schema
is the mesh directory's).  Nothing reverts an AuthorizationPolicy but its deletion.

**NetworkPolicies** are enforced as a CNI enforces them: each is admitted as the API server admits it
(``networkpolicy.admit``: unknown fields dropped, or refused with ``fieldValidation=Strict``; defaults; 400/422 only
where the API server answers so), stored, and then every stored NetworkPolicy is evaluated together
(``networkpolicy.PolicySet``: isolation, the union of allow rules, both ends of a connection) for each connection
the mesh makes between the sandbox's pods.  The denied ones go to the sandbox (``Sandbox.deny_connections``), whose
control plane re-points that source pod's endpoints of those pods at its tarpit.  The same happens after every pod
label patch and whenever the pods change (``pods_changed``: synchronously when the supervisor creates a replacement
pod, before it can be ready or published; and from the server's 100 ms poll for everything else).  What the sandbox
cannot carry out is listed (``networkpolicy.sandbox_limits``) in ``status`` and on the object.  The CNI modelled is
Calico's / Cilium's: a policy decides when a connection *opens*; but the sandbox re-points endpoints, so the
callers' Envoys drain the connections they pooled to a newly denied pod (a request in flight finishes), where a
CNI's connection tracking would let them live (docs/explanation/kube-api-emulation.md).  Nothing reverts a
NetworkPolicy but its deletion (on a cluster, the reaper's job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaosmesh_qa.emulation.kubeapi import authorization, networkpolicy
from chaosmesh_qa.emulation.kubeapi.networkpolicy import ContainerPort, PodRef, Policy, PolicySet
from chaosmesh_qa.emulation.kubeapi.resources import RESOURCES, Resource
from chaosmesh_qa.emulation.kubeapi.status import ApiError, status_body
from chaosmesh_qa.emulation.kubeapi.store import ObjectStore, merge_patch
from chaosmesh_qa.mesh.callers import INGRESS
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.local.envoy.envoyfilters import EnvoyFilterInvalid, EnvoyFilterObject, validate

if TYPE_CHECKING:
    from chaosmesh_qa.emulation.kubeapi.sandbox import Sandbox
    from chaosmesh_qa.emulation.kubeapi.workloads import Workloads

log = logging.getLogger("chaosmesh_qa.kubeapi")
ENVOYFILTERS = "envoyfilters"
NETWORKPOLICIES = "networkpolicies"
AUTHORIZATIONPOLICIES = "authorizationpolicies"
CONNTRACK_NOTE = ("a NetworkPolicy decides when a connection opens (Calico, Cilium); the sandbox re-points "
                  "endpoints, so a caller's Envoy drains the connections it pooled to a pod newly denied to it "
                  "(requests in flight finish), where a CNI would let established connections live")
AUTHZ_NOTE = ("in force with every other AuthorizationPolicy, as istiod applies them: the selected sidecars' RBAC "
              "filters deny (403) what a DENY policy matches, then, where an ALLOW policy selects the workload, "
              "what no ALLOW policy matches")


@dataclass
class Enforced:
    """What the NetworkPolicies in force do to the sandbox's connections, as last evaluated."""

    denied: dict[str, frozenset[str]] = field(default_factory=dict)  # source (ingress: the gateway) -> pods
    connections: list[dict[str, Any]] = field(default_factory=list)  # each denied one, and why
    selected: dict[str, list[str]] = field(default_factory=dict)  # policy key -> the pods it selects
    limits: dict[str, list[str]] = field(default_factory=dict)  # policy key -> what the sandbox cannot do
    pods: tuple[Any, ...] = ()  # the pods' fingerprint it was evaluated for


@dataclass
class Authorized:
    """The AuthorizationPolicies in force, as last handed to the sandbox."""

    in_force: list[str] = field(default_factory=list)  # "namespace/name"
    selected: dict[str, list[str]] = field(default_factory=dict)  # policy key -> the pods (and gateway) it reaches
    not_realised: dict[str, list[str]] = field(default_factory=dict)  # policy key -> what the sandbox cannot do
    pods: tuple[Any, ...] | None = None  # the pods' fingerprint it was handed over for (None: never)


class Applier:
    def __init__(self, sandbox: Sandbox, workloads: Workloads) -> None:
        self.sandbox = sandbox
        self.workloads = workloads
        self._created: dict[tuple[str, str], int] = {}  # EnvoyFilter (namespace, name) -> creation order
        self.enforced = Enforced()
        self.authorized = Authorized()

    # ------------------------------------------------------------------ server entry points

    async def create(self, resource: Resource, namespace: str, body: Any, store: ObjectStore,
                     entry: dict[str, Any], field_validation: str = "Warn") -> dict[str, Any]:
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
        assert resource.name == AUTHORIZATIONPOLICIES, f"{resource.name}: marked applied, not applied here"
        authorization.admit(body, namespace)
        obj = store.create(resource, namespace, body)
        entry["applied"] = self._push_authorization_policies(store, (namespace, obj["metadata"]["name"]))
        return self.decorate(resource, obj)

    async def delete(self, resource: Resource, namespace: str, name: str, preconditions: dict[str, Any] | None,
                     store: ObjectStore, entry: dict[str, Any]) -> dict[str, Any]:
        obj = store.delete(resource, namespace, name, preconditions)
        if resource.name == ENVOYFILTERS:
            self._created.pop((namespace, name), None)
            entry["applied"] = self._push_envoy_filters(resource, store)
        elif resource.name == NETWORKPOLICIES:
            entry["applied"] = self._enforce_network_policies(store, resource)
        elif resource.name == AUTHORIZATIONPOLICIES:
            entry["applied"] = self._push_authorization_policies(store)
        elif resource.name == "configmaps":
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
        if resource.name == AUTHORIZATIONPOLICIES:
            store.get(resource, namespace, name)  # 404 before the webhook, as the API server answers
            authorization.admit(body, namespace)
            obj = store.update(resource, namespace, name, body)
            entry["applied"] = self._push_authorization_policies(store, (namespace, name))
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
        if resource.name == AUTHORIZATIONPOLICIES:  # the webhook sees the patched object
            authorization.admit(merge_patch(store.get(resource, namespace, name), patch), namespace)
        obj = store.patch(resource, namespace, name, patch)
        if resource.name == ENVOYFILTERS:
            entry["applied"] = self._push_envoy_filters(resource, store)
        if resource.name == AUTHORIZATIONPOLICIES:
            entry["applied"] = self._push_authorization_policies(store, (namespace, name))
            return self.decorate(resource, obj)
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
        self.sandbox.set_envoy_filters(objects, self._labels())
        return {"envoy_filters_in_force": [f"{o.namespace}/{o.name}" for o in objects]}

    def _labels(self) -> dict[str, dict[str, str]]:
        """Each running pod's labels as the API shows them (patches included); a pod the API view does not hold
        yet is left out (the sandbox then selects it by its workload's labels)."""
        return {name: found for name in list(self.sandbox.pods) if (found := self.workloads.pod_labels(name))}

    def _push_authorization_policies(self, store: ObjectStore, changed: tuple[str, str] | None = None
                                     ) -> dict[str, Any]:
        """Hand every stored AuthorizationPolicy, parsed as a mesh directory's, to the sandbox with the pods' current
        labels; what the call log records (with what the sandbox cannot evaluate of the ``changed`` one)."""
        model = self.sandbox.model
        assert model is not None
        resource = _resource(AUTHORIZATIONPOLICIES)
        evaluated = authorization.evaluate(store.list(resource, None), model.trust_domains)
        labels = self._labels()
        self.sandbox.set_authorization_policies(evaluated.policies, labels)
        pods = {name: (self.workloads.pods[name]["metadata"]["namespace"], found) for name, found in labels.items()
                if name in self.workloads.pods}
        selected: dict[str, list[str]] = {}
        for policy in evaluated.policies:
            selected[f"{policy.namespace}/{policy.name}"] = authorization.selected(
                policy, pods, model.ingress_gateway, model.root_namespace)
        self.authorized = Authorized(list(evaluated.keys), selected, evaluated.not_realised, self._fingerprint())
        key = f"{changed[0]}/{changed[1]}" if changed else None
        return {"authorization_policies_in_force": list(evaluated.keys),
                **({"selected_pods": selected.get(key, []), "not_realised": evaluated.not_realised.get(key, [])}
                   if key else {})}

    def pods_relabelled(self, store: ObjectStore) -> None:
        """A pod's labels changed: istiod re-selects the EnvoyFilters and AuthorizationPolicies that reach it, the
        CNI the NetworkPolicies."""
        if store.list(_resource(ENVOYFILTERS), None):
            self._push_envoy_filters(_resource(ENVOYFILTERS), store)
        if store.list(_resource(AUTHORIZATIONPOLICIES), None):
            self._push_authorization_policies(store)
        self.pods_changed(store)

    def pods_changed(self, store: ObjectStore) -> None:
        """Evaluate the NetworkPolicies again, and hand the AuthorizationPolicies over with the pods' labels again, if
        the pods (names, namespaces, labels) changed since the last time: the server calls this after each refresh
        of its pod view (100 ms), so a new pod is evaluated before it is ready, as a CNI programs a pod's policy
        before its containers serve and istiod pushes a new pod its configuration."""
        resource = _resource(NETWORKPOLICIES)
        try:
            fingerprint = self._fingerprint()
            if fingerprint != self.enforced.pods and (self.enforced.denied or store.list(resource, None)):
                self._enforce_network_policies(store, resource)
            if fingerprint != self.authorized.pods and store.list(_resource(AUTHORIZATIONPOLICIES), None):
                self._push_authorization_policies(store)
        except Exception:  # the poll that calls this also feeds every watch: log, never end it
            log.exception("NetworkPolicies or AuthorizationPolicies not evaluated again after a pod change")

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
        gateway_pod = _gateway_pod(model)
        denied: dict[str, set[str]] = {}
        connections = []
        for caller in [INGRESS, *model.services]:
            sources = [(INGRESS, gateway_pod)] if caller == INGRESS else [
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
            p.key: networkpolicy.sandbox_limits(p, refs, gateway_pod) for p in policies}, fingerprint)
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
        if resource.name == AUTHORIZATIONPOLICIES:
            key = f"{meta['namespace']}/{meta['name']}"
            authorized = self.authorized
            return {**obj, "status": {**(obj.get("status") or {}), "chaosmeshQaEmulation": {
                "applied": key in authorized.in_force, "selectedPods": authorized.selected.get(key, []),
                "notRealised": authorized.not_realised.get(key, []), "note": AUTHZ_NOTE}}}
        return obj

    def summary(self) -> dict[str, Any]:
        enforced, authorized = self.enforced, self.authorized
        return {"authorization_policies": {"in_force": authorized.in_force, "selected_pods": authorized.selected,
                                           "not_realised": {k: v for k, v in authorized.not_realised.items() if v}},
                "network_policies": {"in_force": sorted(enforced.selected), "selected_pods": enforced.selected,
                                     "denied_connections": enforced.connections,
                                     "not_realised": {k: v for k, v in enforced.limits.items() if v},
                                     "connection_tracking": CONNTRACK_NOTE}}


def _resource(name: str) -> Resource:
    return next(r for r in RESOURCES if r.name == name)


def _gateway_pod(model: MeshModel) -> PodRef:
    """The ingress gateway as a CNI sees it: a source only (it is not one of the API's pods here)."""
    gateway = model.ingress_gateway
    return PodRef(gateway.name, gateway.namespace, dict(gateway.labels))
