"""NetworkPolicies through the emulation's ``Applier`` and the sandbox's control plane, without a process.

``Applier`` runs over a sandbox stand-in (``Pods``: the default mesh's pods as data, nothing started) and a real
``Workloads`` and ``ObjectStore``: every create, update, patch and delete of a NetworkPolicy, a pod label patch
and a new pod evaluate every policy again and hand the denied connections to ``Sandbox.deny_connections``.  The
control plane's side of that call (``ControlPlane.deny``: a source pod's own endpoints at the tarpit) is checked
on the xDS store it serves.  The data-plane effect on real Envoys: test_networkpolicy_traffic.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.emulation.kubeapi.apply import Applier
from chaosmesh_qa.emulation.kubeapi.resources import RESOURCES
from chaosmesh_qa.emulation.kubeapi.status import ApiError
from chaosmesh_qa.emulation.kubeapi.store import ObjectStore
from chaosmesh_qa.emulation.kubeapi.workloads import Workloads
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.callers import INGRESS
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.kubernetes import objects
from chaosmesh_qa.targets.local.controlplane import ControlPlane, PodPorts, PodSpec
from chaosmesh_qa.targets.local.envoy.clusters import Endpoint
from chaosmesh_qa.targets.local.pki import MeshPKI
from chaosmesh_qa.targets.local.pods import Pod
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from chaosmesh_qa.targets.local.xds.resources import ENDPOINT

NETPOL = next(r for r in RESOURCES if r.name == "networkpolicies")
DENY_ALL = {"podSelector": {}}
ALLOW_SAME_NAMESPACE = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}


@pytest.fixture(scope="module")
def model() -> MeshModel:
    return load_mesh(default_mesh_dir()).model


class Pods:
    """The part of ``Sandbox`` the Applier's NetworkPolicy path and ``Workloads`` read, over pods that run nothing."""

    def __init__(self, model: MeshModel, tmp: Path) -> None:
        self.model, self.tmp, self.state, self.started_at = model, tmp, "ready", 0.0
        self.state_dir, self.mesh_dir = tmp, default_mesh_dir()
        self.pods: dict[str, Pod] = {}
        self.denials: list[dict[str, frozenset[str]]] = []
        for service in model.services.values():
            for version in service.versions:
                for index in range(version.replicas):
                    self.add(service.name, version.name, index)

    def add(self, service: str, version: str, index: int) -> str:
        name = f"{service}-{version}-{index}"
        spec = PodSpec(name, service, version, PodPorts(stats=1, inbound=2, outbound=3, app=4),
                       self.tmp / f"{name}.sock", self.model.workload_labels(service, version))
        self.pods[name] = Pod(spec, self.tmp / "bootstrap.json", self.tmp / name, None, {}, "/", lambda _: None,
                              state="ready")
        return name

    def callees_of(self, caller: str) -> list[str]:
        return self.model.ingress_services() if caller == INGRESS else self.model.callees(caller)

    def deny_connections(self, denied: Mapping[str, frozenset[str]]) -> None:
        self.denials.append(dict(denied))

    @property
    def denied(self) -> dict[str, frozenset[str]]:
        return self.denials[-1] if self.denials else {}


class Emulation:
    def __init__(self, model: MeshModel, tmp: Path) -> None:
        counter = itertools.count(2)
        self.sandbox = Pods(model, tmp)
        self.workloads = Workloads(self.sandbox, lambda: next(counter))  # type: ignore[arg-type]
        self.store = ObjectStore(tmp / "objects.json", lambda: next(counter))
        self.applier = Applier(self.sandbox, self.workloads)  # type: ignore[arg-type]
        self.workloads.refresh()

    def create(self, name: str, spec: dict[str, Any], namespace: str = "default", **extra: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        body = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec,
                **extra}
        obj = asyncio.run(self.applier.create(NETPOL, namespace, body, self.store, entry))
        return {"object": obj, "entry": entry}

    def create_body(self, body: dict[str, Any], field_validation: str = "Warn") -> dict[str, Any]:
        entry: dict[str, Any] = {}
        asyncio.run(self.applier.create(NETPOL, "default", body, self.store, entry, field_validation))
        return entry

    def delete(self, name: str) -> None:
        asyncio.run(self.applier.delete(NETPOL, "default", name, None, self.store, {}))

    def of(self, service: str) -> set[str]:
        return {n for n, p in self.sandbox.pods.items() if p.spec.service == service}

    def cut(self, source: str, service: str) -> bool:
        """Whether every pod of ``service`` is denied to ``source`` (a pod name, or ``ingress``)."""
        return self.of(service) <= self.sandbox.denied.get(source, frozenset())


@pytest.fixture
def emu(model: MeshModel, tmp_path: Path) -> Emulation:
    return Emulation(model, tmp_path)


def test_the_targets_drop_partition_cuts_the_caller_and_a_team_allow_makes_it_a_no_op(emu: Emulation) -> None:
    (frontend,) = emu.of("frontend")
    drop = objects.network_policy("partition-abcd1234", 1e10, "default", "to", {"app": "frontend"},
                                  {"app": "reviews"}, False)
    created = emu.create_body(drop)
    assert emu.sandbox.denied == {frontend: frozenset(emu.of("reviews"))}, "exactly frontend -> reviews"
    assert created["applied"]["denied_connections"] == 3 and created["applied"]["not_realised"] == [
        "Ingress: the sandbox's Prometheus is not a pod and scrapes every pod unfiltered; on a cluster its scrapes "
        "(port 15020) need an ingress rule too"]
    emu.create("allow-same-namespace", ALLOW_SAME_NAMESPACE)
    assert emu.sandbox.denied.get(frontend, frozenset()) == frozenset(), "the allow admits frontend again"
    assert emu.cut(INGRESS, "frontend"), "istio-system's gateway is not in the namespace: on a cluster neither"


def test_a_default_deny_namespace_cuts_every_edge_and_the_targets_drop_admits_only_others(emu: Emulation) -> None:
    """In this mesh frontend is reviews' one caller, so what the drop opens to the others (every other pod, in
    any namespace: test_networkpolicy.py) carries no traffic here; every edge stays cut, the gateway's too."""
    emu.create("deny-all", DENY_ALL)
    (frontend,) = emu.of("frontend")
    everything = {INGRESS: frozenset(emu.of("frontend")), frontend: frozenset(emu.of("catalog") | emu.of("reviews")),
                  **{c: frozenset(emu.of("inventory")) for c in emu.of("catalog")}}
    assert emu.sandbox.denied == everything
    emu.create_body(objects.network_policy("partition-abcd1234", 1e10, "default", "to", {"app": "frontend"},
                                           {"app": "reviews"}, False))
    assert emu.sandbox.denied == everything
    assert emu.applier.summary()["network_policies"]["selected_pods"]["default/chaosmesh-qa-partition-abcd1234-to"] \
        == sorted(emu.of("reviews"))


def test_deleting_the_allow_denies_and_a_relabelled_or_new_pod_is_evaluated_again(emu: Emulation) -> None:
    emu.create("deny-reviews", {"podSelector": {"matchLabels": {"app": "reviews"}}})
    emu.create("allow-frontend", {"podSelector": {"matchLabels": {"app": "reviews"}},
                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]})
    (frontend,) = emu.of("frontend")
    assert emu.sandbox.denied == {}
    emu.delete("allow-frontend")
    assert emu.sandbox.denied == {frontend: frozenset(emu.of("reviews"))}
    spared = sorted(emu.of("reviews"))[0]
    emu.workloads.patch_pod("default", spared, {"metadata": {"labels": {"open": "yes"}}})
    emu.applier.pods_relabelled(emu.store)
    assert emu.sandbox.denied == {frontend: frozenset(emu.of("reviews"))}, "a label deny-reviews still selects"
    emu.create("open", {"podSelector": {"matchLabels": {"open": "yes"}}, "ingress": [{}]})
    assert emu.sandbox.denied == {frontend: frozenset(emu.of("reviews") - {spared})}
    new = emu.sandbox.add("reviews", "v2", 7)  # a replacement: the server's poll sees it before it is ready
    emu.workloads.refresh()
    emu.applier.pods_changed(emu.store)
    assert new in emu.sandbox.denied[frontend]
    pushes = len(emu.sandbox.denials)
    emu.applier.pods_changed(emu.store)
    assert len(emu.sandbox.denials) == pushes, "nothing changed: nothing evaluated, nothing pushed"


def test_update_and_patch_evaluate_again_and_status_says_what_is_in_force(emu: Emulation) -> None:
    (frontend,) = emu.of("frontend")
    emu.create("deny-reviews", {"podSelector": {"matchLabels": {"app": "reviews"}}})
    assert emu.cut(frontend, "reviews")
    emu.applier.patch(NETPOL, "default", "deny-reviews", {"spec": {"ingress": [{}]}}, emu.store, {})
    assert emu.sandbox.denied == {}
    body = json.loads(json.dumps(emu.store.get(NETPOL, "default", "deny-reviews")))
    body["spec"]["podSelector"] = {"matchLabels": {"app": "catalog"}}
    body["spec"]["ingress"] = []
    updated = emu.applier.update(NETPOL, "default", "deny-reviews", body, emu.store, {})
    assert emu.sandbox.denied == {frontend: frozenset(emu.of("catalog"))}
    assert updated["status"]["chaosmeshQaEmulation"]["selectedPods"] == sorted(emu.of("catalog"))
    summary = emu.applier.summary()["network_policies"]
    assert summary["in_force"] == ["default/deny-reviews"]
    assert {(c["source"], c["destination"]) for c in summary["denied_connections"]} == {
        (frontend, c) for c in emu.of("catalog")}
    assert summary["denied_connections"][0]["denied_by"] == [
        f"ingress of {summary['denied_connections'][0]['destination']} isolated by default/deny-reviews, "
        "admitted by none"]
    emu.delete("deny-reviews")
    assert emu.sandbox.denied == {} and emu.applier.summary()["network_policies"]["in_force"] == []


def test_what_the_api_server_refuses_is_refused_and_nothing_else(emu: Emulation) -> None:
    bad = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "bad"},
           "spec": {"ingress": [{"from": [{}]}]}}
    with pytest.raises(ApiError) as refused:
        emu.create_body(bad)
    assert refused.value.code == 422 and refused.value.message == (
        'NetworkPolicy.networking.k8s.io "bad" is invalid: spec.ingress[0].from[0]: Required value: must specify '
        "a peer")
    assert refused.value.details["causes"][0]["field"] == "spec.ingress[0].from[0]"
    assert emu.store.list(NETPOL, None) == []
    typo = {**bad, "spec": {"podSelecter": {"matchLabels": {"app": "reviews"}}}}
    with pytest.raises(ApiError) as strict:
        emu.create_body(typo, "Strict")
    assert strict.value.code == 400 and strict.value.message == 'strict decoding error: unknown field ' \
                                                                '"spec.podSelecter"'
    entry = emu.create_body(typo)
    assert entry["api_warnings"] == ['unknown field "spec.podSelecter"']
    emu.delete("bad")
    assert "api_warnings" not in emu.create_body(typo, "Ignore"), "kubectl --validate=false: dropped silently"
    (frontend,) = emu.of("frontend")
    assert emu.cut(frontend, "catalog"), "the typo dropped, the policy selects every pod, as on a cluster"


def test_the_control_plane_points_one_source_pods_endpoints_at_the_tarpit(model: MeshModel, tmp_path: Path) -> None:
    plane = ControlPlane(model, tmp_path / "state", MeshPKI.create(tmp_path / "pki"))
    specs = [PodSpec(f"{s}-{i}", s, "v1", PodPorts(stats=10 + n, inbound=1000 + n, outbound=2000 + n),
                     tmp_path / f"{s}-{i}.sock", model.workload_labels(s, "v1"))
             for n, (s, i) in enumerate([("frontend", 0), ("catalog", 0), ("catalog", 1), ("inventory", 0),
                                         ("inventory", 1)])]
    for spec in specs:
        plane.write_pod(spec)

    def publish(pods: list[PodSpec]) -> None:
        by_service: dict[str, list[str]] = {}
        for spec in pods:
            by_service.setdefault(spec.service, []).append(spec.name)
        plane.write_endpoints([Endpoint(s.name, s.ports.inbound, s.labels) for s in pods], by_service)

    def seen(node: str, cluster_service: str) -> dict[str, int]:
        return {host["endpoint"]["hostname"]: host["endpoint"]["address"]["socket_address"]["port_value"]
                for doc in plane.store.documents(node, ENDPOINT) if doc["cluster_name"] == cluster_service
                for locality in doc["endpoints"] for host in locality["lb_endpoints"]}

    publish(specs)
    assert seen("catalog-0", "inventory") == {"inventory-0": 1003, "inventory-1": 1004}
    assert plane.deny({"catalog-0": frozenset({"inventory-1"})}, 9999) == 1
    assert seen("catalog-0", "inventory") == {"inventory-0": 1003, "inventory-1": 9999}
    assert seen("catalog-1", "inventory") == {"inventory-0": 1003, "inventory-1": 1004}, "its own view only"
    extra = PodSpec("inventory-2", "inventory", "v1", PodPorts(stats=30, inbound=1030, outbound=2030),
                    tmp_path / "inventory-2.sock", model.workload_labels("inventory", "v1"))
    plane.write_pod(extra)
    publish([*specs, extra])  # endpoints change: the denial holds over the new assignment
    assert seen("catalog-0", "inventory") == {"inventory-0": 1003, "inventory-1": 9999, "inventory-2": 1030}
    assert plane.deny({}, 9999) == 1
    assert seen("catalog-0", "inventory") == seen("catalog-1", "inventory")
    assert plane.deny({}, 9999) == 0, "nothing to withdraw twice"
