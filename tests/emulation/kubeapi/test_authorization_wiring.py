"""AuthorizationPolicies through the emulation's ``Applier`` into a real control plane's listeners, without a process.

The store is seeded from the default mesh directory as the server seeds it (its ``inventory-callers`` ALLOW
included); ``Applier`` runs over a sandbox stand-in (``Mesh``: the default mesh's pods as data, nothing started)
whose ``set_authorization_policies`` is the real ``ControlPlane``'s, and each sidecar's (and the ingress
gateway's) RBAC filters are read back from the xDS store it serves.  Every stored policy is applied, whoever wrote
it, by the mesh directory's parser; selection follows the pods' patched labels; istiod's webhook refuses what the
schema refuses.  The 403s on real Envoys: test_kubectl_authorization.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.emulation.kubeapi.apply import Applier
from chaosmesh_qa.emulation.kubeapi.resources import RESOURCES
from chaosmesh_qa.emulation.kubeapi.server import KubeApi
from chaosmesh_qa.emulation.kubeapi.status import ApiError
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.callers import INGRESS
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.mesh.security_model import AuthzPolicy
from chaosmesh_qa.targets.local.controlplane import ControlPlane, PodPorts, PodSpec
from chaosmesh_qa.targets.local.envoy.rbac import RBAC_FILTER
from chaosmesh_qa.targets.local.pki import MeshPKI
from chaosmesh_qa.targets.local.pods import Pod
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from chaosmesh_qa.targets.local.xds.resources import LISTENER

AP = next(r for r in RESOURCES if r.name == "authorizationpolicies")
SA = "cluster.local/ns/default/sa/{}"
WEBHOOK = 'admission webhook "validation.istio.io" denied the request: configuration is invalid: '
SEEDED = "default/inventory-callers"  # mesh/security.yaml: only catalog may call inventory


@pytest.fixture(scope="module")
def model() -> MeshModel:
    return load_mesh(default_mesh_dir()).model


class Mesh:
    """The part of ``Sandbox`` the Applier and ``Workloads`` read, over pods that run nothing, and a real control
    plane that renders their listeners."""

    def __init__(self, model: MeshModel, tmp: Path) -> None:
        self.model, self.state, self.started_at = model, "ready", 0.0
        self.state_dir, self.mesh_dir = tmp, default_mesh_dir()
        self.plane = ControlPlane(model, tmp / "state", MeshPKI.create(tmp / "pki"))
        ports = itertools.count(20000)
        self.ingress = PodSpec("istio-ingressgateway", INGRESS, "", PodPorts(stats=next(ports), outbound=next(ports)),
                               tmp / "ingress.sock")
        self.plane.write_pod(self.ingress)
        self.pods: dict[str, Pod] = {}
        self.pushes = 0
        for service in model.services.values():
            for version in service.versions:
                for index in range(version.replicas):
                    name = f"{service.name}-{version.name}-{index}"
                    spec = PodSpec(name, service.name, version.name, PodPorts(
                        stats=next(ports), inbound=next(ports), outbound=next(ports), app=next(ports)),
                        tmp / f"{name}.sock", model.workload_labels(service.name, version.name))
                    self.plane.write_pod(spec)
                    self.pods[name] = Pod(spec, tmp / "bootstrap.json", tmp / name, None, {}, "/", lambda _: None,
                                          state="ready")

    def callees_of(self, caller: str) -> list[str]:
        return self.model.ingress_services() if caller == INGRESS else self.model.callees(caller)

    def set_authorization_policies(self, policies: tuple[AuthzPolicy, ...], labels: dict[str, dict[str, str]]) -> None:
        self.pushes += 1
        self.plane.set_authorization_policies(policies, [*(p.spec for p in self.pods.values()), self.ingress], labels)

    def deny_connections(self, denied: Mapping[str, frozenset[str]]) -> None:
        pass

    def rbac(self, node: str) -> dict[str, set[str]]:
        """The RBAC rules a node's listeners carry: action -> policy rule names (``<ns>.<name>[<i>]``)."""
        found: dict[str, set[str]] = {}
        for listener in self.plane.store.documents(node, LISTENER):
            for chain in listener.get("filter_chains") or []:
                for network in chain.get("filters") or []:
                    for http in (network.get("typed_config") or {}).get("http_filters") or []:
                        if http["name"] == RBAC_FILTER:
                            rules = http["typed_config"]["rules"]
                            found.setdefault(rules["action"], set()).update(rules["policies"])
        return found

    def of(self, service: str) -> list[str]:
        return sorted(n for n, p in self.pods.items() if p.spec.service == service)


class Emulation:
    def __init__(self, model: MeshModel, tmp: Path) -> None:
        self.sandbox = Mesh(model, tmp)
        self.api = KubeApi(self.sandbox)  # type: ignore[arg-type]
        self.api._seed_mesh_objects()  # the mesh directory's objects, as the server's start seeds them
        self.store, self.workloads = self.api.store, self.api.workloads
        self.applier: Applier = self.api.applier
        self.workloads.refresh()

    def create(self, name: str, spec: dict[str, Any] | None, namespace: str = "default",
               labels: dict[str, str] | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        body: dict[str, Any] = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                                "metadata": {"name": name, **({"labels": labels} if labels else {})}}
        if spec is not None:
            body["spec"] = spec
        obj = asyncio.run(self.applier.create(AP, namespace, body, self.store, entry))
        return {"object": obj, "entry": entry}

    def delete(self, name: str, namespace: str = "default") -> dict[str, Any]:
        entry: dict[str, Any] = {}
        asyncio.run(self.applier.delete(AP, namespace, name, None, self.store, entry))
        return entry

    def stored(self) -> list[str]:
        return [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in self.store.list(AP, None)]


@pytest.fixture
def emu(model: MeshModel, tmp_path: Path) -> Emulation:
    return Emulation(model, tmp_path)


def deny(caller: str, callee_labels: dict[str, str]) -> dict[str, Any]:
    return {"action": "DENY", "selector": {"matchLabels": callee_labels},
            "rules": [{"from": [{"source": {"principals": [SA.format(caller)]}}]}]}


def test_a_teams_unlabelled_deny_reaches_exactly_the_callees_sidecars_next_to_the_mesh_directorys(
        emu: Emulation) -> None:
    mesh = emu.sandbox
    assert emu.stored() == [SEEDED], "the server seeds the mesh directory's AuthorizationPolicy"
    assert all(mesh.rbac(pod) == {"ALLOW": {"default.inventory-callers[0]"}} for pod in mesh.of("inventory"))
    created = emu.create("deny-frontend", deny("frontend", {"app": "reviews"}))
    assert created["entry"]["applied"] == {"authorization_policies_in_force": ["default/deny-frontend", SEEDED],
                                           "selected_pods": mesh.of("reviews"), "not_realised": []}
    assert created["object"]["status"]["chaosmeshQaEmulation"]["applied"] is True
    assert all(mesh.rbac(pod) == {"DENY": {"default.deny-frontend[0]"}} for pod in mesh.of("reviews"))
    assert all(mesh.rbac(pod) == {} for pod in [*mesh.of("catalog"), *mesh.of("frontend")]), "other edges untouched"
    assert all(mesh.rbac(pod) == {"ALLOW": {"default.inventory-callers[0]"}} for pod in mesh.of("inventory")), \
        "the mesh directory's policy stays in force next to the API's"
    assert mesh.rbac("istio-ingressgateway") == {}
    principals = str(mesh.plane.store.documents(mesh.of("reviews")[0], LISTENER))
    assert "spiffe://cluster.local/ns/default/sa/frontend" in principals
    assert emu.delete("deny-frontend")["applied"] == {"authorization_policies_in_force": [SEEDED]}
    assert all(mesh.rbac(pod) == {} for pod in mesh.of("reviews"))
    assert [p.name for p in mesh.plane.model.authz] == ["inventory-callers"]


def test_an_allow_for_one_caller_and_a_root_namespace_policy_reach_the_ingress_gateway(emu: Emulation) -> None:
    mesh = emu.sandbox
    emu.create("only-catalog", {"selector": {"matchLabels": {"app": "reviews"}},
                                "rules": [{"from": [{"source": {"principals": [SA.format("catalog")]}}]}]})
    assert all(mesh.rbac(pod) == {"ALLOW": {"default.only-catalog[0]"}} for pod in mesh.of("reviews"))
    emu.create("allow-nothing", None, namespace="istio-system")  # no spec: Istio's empty one, ALLOW nothing
    assert mesh.rbac("istio-ingressgateway") == {"ALLOW": set()}, "every request through the gateway denied"
    assert all(mesh.rbac(pod) == {"ALLOW": set()} for pod in mesh.of("frontend")), "the root namespace: every pod"
    assert all(mesh.rbac(pod) == {"ALLOW": {"default.only-catalog[0]"}} for pod in mesh.of("reviews"))
    assert emu.applier.summary()["authorization_policies"]["selected_pods"]["istio-system/allow-nothing"] == [
        *sorted(mesh.pods), "istio-ingressgateway"]


def test_selection_follows_the_pods_patched_labels(emu: Emulation) -> None:
    mesh = emu.sandbox
    victim, spared = mesh.of("catalog")
    emu.create("deny-one", deny("frontend", {"app": "catalog", "chaos": "x"}))
    assert mesh.rbac(victim) == mesh.rbac(spared) == {}
    emu.workloads.patch_pod("default", victim, {"metadata": {"labels": {"chaos": "x"}}})
    emu.applier.pods_relabelled(emu.store)
    assert mesh.rbac(victim) == {"DENY": {"default.deny-one[0]"}} and mesh.rbac(spared) == {}
    assert emu.applier.summary()["authorization_policies"]["selected_pods"]["default/deny-one"] == [victim]
    emu.workloads.patch_pod("default", victim, {"metadata": {"labels": {"chaos": None}}})
    emu.applier.pods_relabelled(emu.store)
    assert mesh.rbac(victim) == {}
    pushes = mesh.pushes
    emu.workloads.refresh()
    emu.applier.pods_changed(emu.store)
    assert mesh.pushes == pushes, "the pods did not change: nothing handed over again"


def test_update_and_patch_apply_the_new_policy(emu: Emulation) -> None:
    mesh = emu.sandbox
    emu.create("reviews-policy", deny("frontend", {"app": "reviews"}))
    entry: dict[str, Any] = {}
    emu.applier.patch(AP, "default", "reviews-policy", {"spec": {"action": "ALLOW"}}, emu.store, entry)
    assert all(mesh.rbac(pod) == {"ALLOW": {"default.reviews-policy[0]"}} for pod in mesh.of("reviews"))
    body = emu.store.get(AP, "default", "reviews-policy")
    updated = emu.applier.update(AP, "default", "reviews-policy", {**body, "spec": deny("frontend", {
        "app": "catalog"})}, emu.store, entry)
    assert updated["status"]["chaosmeshQaEmulation"]["selectedPods"] == mesh.of("catalog")
    assert all(mesh.rbac(pod) == {} for pod in mesh.of("reviews"))
    assert all(mesh.rbac(pod) == {"DENY": {"default.reviews-policy[0]"}} for pod in mesh.of("catalog"))


def test_the_webhook_refuses_what_the_schema_refuses_in_one_line_and_nothing_is_stored(emu: Emulation) -> None:
    with pytest.raises(ApiError) as refused:
        emu.create("bad", {"action": "DENI", "rules": [{"from": [{"source": {"principals": "frontend"}}]}]})
    assert refused.value.code == 400 and refused.value.body()["reason"] == "BadRequest"
    message = refused.value.message
    assert message.startswith(WEBHOOK + "spec.action: Input should be 'ALLOW'"), message
    assert "; spec.rules[0].from[0].source.principals: Input should be a valid list" in message, message
    assert "\n" not in message
    assert emu.stored() == [SEEDED]
    emu.create("good", deny("frontend", {"app": "reviews"}))
    before = emu.store.get(AP, "default", "good")
    for call in (lambda: emu.applier.patch(AP, "default", "good", {"spec": {"selector": {"matchLabels": {
                     "app": 3}}}}, emu.store, {}),
                 lambda: emu.applier.update(AP, "default", "good", {**before, "spec": {"rules": "all"}},
                                            emu.store, {})):
        with pytest.raises(ApiError) as again:
            call()
        assert again.value.code == 400 and again.value.message.startswith(WEBHOOK + "spec.")
    assert emu.store.get(AP, "default", "good") == before


def test_what_the_sandbox_cannot_evaluate_is_said_in_the_call_log_and_on_the_object(emu: Emulation) -> None:
    created = emu.create("by-ip", {"selector": {"matchLabels": {"app": "reviews"}}, "rules": [
        {"from": [{"source": {"principals": [SA.format("frontend")]}}]},
        {"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}]})
    (said,) = created["entry"]["applied"]["not_realised"]
    assert said.startswith("spec.rules[1].from[0].source.ipBlocks cannot be evaluated by the sandbox"), said
    assert created["object"]["status"]["chaosmeshQaEmulation"]["notRealised"] == [said]
    assert emu.applier.summary()["authorization_policies"]["not_realised"] == {"default/by-ip": [said]}
    assert all(emu.sandbox.rbac(pod) == {"ALLOW": {"default.by-ip[0]"}} for pod in emu.sandbox.of("reviews")), \
        "the ALLOW rule that needs an IP is left out (fail closed), the other stays"
