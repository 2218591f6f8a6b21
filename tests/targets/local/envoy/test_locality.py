"""Istio's locality load balancing as the sandbox hands it to Envoy (``envoy.locality``, ``clusters``,
``controlplane``): each sidecar's node locality, endpoints grouped by locality with the caller's priorities and
weights, ``locality_weighted_lb_config`` on the cluster, and one endpoint view per (version, locality) of a caller.
Pure, except the test marked ``processes`` that has the real ``envoy --mode validate`` judge the rendered meshes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.targets.local.controlplane import ControlPlane, PodPorts, PodSpec
from chaosmesh_qa.targets.local.envoy.clusters import Endpoint, caller_clusters, cluster, load_assignment
from chaosmesh_qa.targets.local.envoy.listeners import bootstrap
from chaosmesh_qa.targets.local.envoy.locality import CallerView, node_locality
from chaosmesh_qa.targets.local.envoy_validation import validate_with_envoy
from chaosmesh_qa.targets.local.pki import MeshPKI
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from chaosmesh_qa.targets.local.xds.resources import ENDPOINT

PROFILES = Path(__file__).resolve().parents[3] / "profiles"
ZONES = PROFILES / "zones"
RULES = PROFILES / "locality-rules"


def _endpoints(mesh: Path) -> tuple[list[Endpoint], dict[str, list[str]]]:
    model = load_mesh(mesh).model
    found, by_service = [], {}
    for svc in model.services.values():
        for version in svc.versions:
            for i in range(version.replicas):
                name = f"{svc.name}-{version.name}-{i}"
                found.append(Endpoint(name, 20000 + len(found), version.labels, version.name, version.locality(i)))
                by_service.setdefault(svc.name, []).append(name)
    return found, by_service


def _of(endpoints: list[Endpoint], service: str) -> list[Endpoint]:
    return [e for e in endpoints if e.pod.startswith(f"{service}-")]


def _groups(assignment: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    """pod -> (zone, priority, weight)"""
    return {host["endpoint"]["hostname"]: (group.get("locality", {}).get("zone", ""), group.get("priority", 0),
                                           group.get("load_balancing_weight", 0))
            for group in assignment["endpoints"] for host in group["lb_endpoints"]}


def test_every_sidecar_knows_its_locality() -> None:
    assert node_locality("r1/a/rack-1") == {"region": "r1", "zone": "a", "sub_zone": "rack-1"}
    assert node_locality("") is None
    boot = bootstrap("p", "catalog", "/x.sock", 1, "/ads.sock", 2, locality=node_locality("r1/a"))
    assert boot["node"]["locality"] == {"region": "r1", "zone": "a"}
    assert "locality" not in bootstrap("p", "catalog", "/x.sock", 1, "/ads.sock", 2)["node"]


def test_the_zone_a_caller_gets_zone_a_first_and_zone_b_as_failover() -> None:
    model = load_mesh(ZONES).model
    endpoints, _ = _endpoints(ZONES)
    spec = next(s for s in caller_clusters(model, ["catalog"]) if s.name == "catalog")
    assert spec.zoned and model.policies["catalog"].outlier is not None
    groups = _groups(load_assignment(spec, _of(endpoints, "catalog"), CallerView("r1/a", {"app": "frontend"})))
    assert groups == {"catalog-v1-0": ("a", 0, 1), "catalog-v1-1": ("b", 1, 1)}
    config = cluster(spec, ("c", "k"), "ca", "spiffe://x")
    assert config["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}, "locality_weighted_lb_config": {}}
    # reviews has no outlier detection: grouped and weighted by locality, no priorities (Istio: no preference)
    reviews = next(s for s in caller_clusters(model, ["reviews"]) if s.name == "reviews")
    grouped = _groups(load_assignment(reviews, _of(endpoints, "reviews"), CallerView("r1/a")))
    assert {priority for _, priority, _ in grouped.values()} == {0}


def test_distribute_and_failover_rules_reach_the_assignment() -> None:
    model = load_mesh(RULES).model
    endpoints, _ = _endpoints(RULES)
    view = CallerView("r1/a", model.workload_labels("frontend", "v1"))
    specs = {s.name: s for s in caller_clusters(model, ["spread", "remote", "tiered"])}
    assert _groups(load_assignment(specs["spread"], _of(endpoints, "spread"), view)) == {
        "spread-v1-0": ("a", 0, 80), "spread-v1-1": ("b", 0, 20)}
    assert _groups(load_assignment(specs["remote"], _of(endpoints, "remote"), view)) == {
        "remote-v1-0": ("a", 0, 1), "remote-v1-1": ("a", 1, 1)}  # r2 first, then r3
    assert _groups(load_assignment(specs["tiered"], _of(endpoints, "tiered"), view)) == {
        "tiered-v1-0": ("b", 0, 1), "tiered-v2-0": ("a", 1, 1)}  # the caller's tier beats its zone


def test_a_mesh_without_localities_renders_as_before() -> None:
    model = load_mesh(default_mesh_dir()).model
    spec = next(s for s in caller_clusters(model, ["catalog"]) if s.name == "catalog")
    assert not spec.zoned
    assert cluster(spec, ("c", "k"), "ca", "x")["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}}
    endpoints = [Endpoint("a", 1, {}), Endpoint("b", 2, {})]
    assert [list(g) for g in load_assignment(spec, endpoints)["endpoints"]] == [["lb_endpoints"]]


def test_callers_in_two_zones_get_their_own_endpoint_views(tmp_path: Path) -> None:
    model = load_mesh(ZONES).model
    plane = ControlPlane(model, tmp_path, MeshPKI.create(tmp_path / "pki"))
    assert list(plane.caller_views("catalog")) == ["catalog@v1@r1/a", "catalog@v1@r1/b"]
    assert list(plane.caller_views("frontend")) == ["frontend"]  # one locality: its service's own group
    plane.write_caller_configs()
    endpoints, by_service = _endpoints(ZONES)
    for name, zone in (("catalog-v1-0", "r1/a"), ("catalog-v1-1", "r1/b")):
        plane.write_pod(PodSpec(name, "catalog", "v1", PodPorts(stats=1, inbound=2, outbound=3, app=4),
                                tmp_path / f"{name}.sock", {"app": "catalog", "version": "v1"}, zone))
    plane.write_endpoints(endpoints, by_service)
    for pod, near in (("catalog-v1-0", "inventory-v1-0"), ("catalog-v1-1", "inventory-v1-1")):
        inventory = next(d for d in plane.store.documents(pod, ENDPOINT) if d["cluster_name"] == "inventory")
        zones = _groups(inventory)
        # inventory has no outlier detection: both zones alike for either caller, each its own locality group
        assert zones[near][1] == 0 and len({z for z, _, _ in zones.values()}) == 2


@pytest.mark.processes
def test_envoy_accepts_the_locality_configs() -> None:
    assert validate_with_envoy([("zones", load_mesh(ZONES).model), ("locality-rules", load_mesh(RULES).model)]) == []
