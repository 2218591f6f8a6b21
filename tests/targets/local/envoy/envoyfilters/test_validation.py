"""What Istio refuses in an EnvoyFilter (``envoyfilters.validation``), one line each; and the real
``envoy --mode validate`` judging a patched sidecar inbound listener (the one test here that starts a process).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.targets.local.envoy import envoyfilters as ef
from chaosmesh_qa.targets.local.envoy.envoyfilters import EnvoyFilterInvalid
from chaosmesh_qa.targets.local.envoy.listeners import PodIdentity, bootstrap, inbound_listener
from tests.support.envoyfilters import (
    FAULT,
    IDENTITY,
    JSON,
    ROUTER,
    T,
    apply_listeners,
    cp,
    fault_value,
    filt,
    hcm_config,
    http_filters,
    insert_fault,
    on_hcm,
)

# --------------------------------------------------------------------------- validation


def valid_spec() -> JSON:
    return {"workloadSelector": {"labels": {"app": "catalog"}}, "priority": 10,
            "configPatches": [insert_fault(), cp("CLUSTER", "MERGE", {"connectTimeout": "2s"},
                                                 cluster={"service": "catalog.shop.svc.cluster.local"}),
                              cp("HTTP_ROUTE", "REMOVE", routeConfiguration={"vhost": {"route": {"name": "x"}}}),
                              cp("EXTENSION_CONFIG", "ADD", {"name": "ecds"})]}


def test_a_valid_spec_passes() -> None:
    ef.validate(valid_spec())
    ef.validate({})


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s["configPatches"][0]["patch"].update(operation="INSERT"),
     "spec.configPatches[0].patch.operation: 'INSERT' is not one of INVALID, MERGE, ADD, REMOVE, INSERT_BEFORE"),
    (lambda s: s["configPatches"][0].update(applyTo="FILTER"),
     "spec.configPatches[0].applyTo: 'FILTER' is not one of"),
    (lambda s: s["configPatches"][0]["match"].update(context="INBOUND"),
     "spec.configPatches[0].match.context: 'INBOUND' is not one of ANY, SIDECAR_INBOUND"),
    (lambda s: s["configPatches"][0].update(apply_to="HTTP_FILTER"),
     "spec.configPatches[0].apply_to: unknown field"),
    (lambda s: s.update(selector={}), "spec.selector: unknown field"),
    (lambda s: s["configPatches"][0]["match"]["listener"].update(portNumber=-1),
     "spec.configPatches[0].match.listener.portNumber: -1 is not an integer from 0 to 4294967295"),
    (lambda s: s.update(priority="high"), "spec.priority: 'high' is not an integer"),
    (lambda s: s["configPatches"].append(None), "spec.configPatches[4]: null config patch"),
    (lambda s: s["configPatches"][0].pop("applyTo"), "spec.configPatches[0].applyTo: missing"),
    (lambda s: s["configPatches"][0].pop("patch"), "spec.configPatches[0].patch: missing"),
    (lambda s: s["configPatches"][0]["patch"].pop("operation"), "spec.configPatches[0].patch.operation: missing"),
    (lambda s: s["configPatches"][0]["patch"].pop("value"),
     "spec.configPatches[0].patch.value: missing, and INSERT_BEFORE needs one"),
    (lambda s: s["configPatches"][0]["patch"].update(value=[1]), "spec.configPatches[0].patch.value: [1] is not an"),
    (lambda s: s["configPatches"][0]["match"].update(proxy={"proxyVersion": "1.(2"}),
     "spec.configPatches[0].match.proxy.proxyVersion: invalid regex"),
    (lambda s: s["configPatches"][0]["match"]["listener"]["filterChain"]["filter"].pop("name"),
     "spec.configPatches[0].match.listener.filterChain.filter.name: filter match has no name to match on"),
    (lambda s: s["configPatches"][0].update(applyTo="NETWORK_FILTER"),
     "spec.configPatches[0].match.listener.filterChain.filter.subFilter: subfilter match can be used with applyTo "
     "HTTP_FILTER only"),
    (lambda s: s["configPatches"][0]["match"]["listener"]["filterChain"]["filter"].update(name="envoy.tcp_proxy"),
     "filter.name: subfilter match requires filter match with envoy.filters.network.http_connection_manager"),
    (lambda s: s["configPatches"][0]["match"]["listener"]["filterChain"]["filter"].update(subFilter={}),
     "filter.subFilter.name: subfilter match has no name to match on"),
    (lambda s: s["configPatches"][1].update(applyTo="LISTENER"),
     "spec.configPatches[1].match.cluster: applyTo LISTENER needs a match on listener"),
    (lambda s: s["configPatches"][2].update(applyTo="CLUSTER"),
     "spec.configPatches[2].match.routeConfiguration: applyTo CLUSTER needs a match on cluster"),
    (lambda s: s["configPatches"][1]["match"].update(listener={}),
     "spec.configPatches[1].match: only one of listener, cluster can be set"),
    (lambda s: s["configPatches"][1]["match"].update(context="WAYPOINT"),
     "spec.configPatches[1].match: only support waypointMatch when context is WAYPOINT"),
    (lambda s: s["configPatches"][1]["patch"].update(value={"connectTimeout": "soon"}),
     "spec.configPatches[1].patch.value: not a valid envoy.config.cluster.v3.Cluster:"),
    (lambda s: s["configPatches"][0]["patch"]["value"]["typedConfig"].update({"@type": f"{T}team.Unknown"}),
     "spec.configPatches[0].patch.value: not a valid envoy.extensions.filters.network.http_connection_manager.v3."
     "HttpFilter: referenced type unknown"),
    (lambda s: s.update(targetRefs=[{"kind": "Gateway", "name": "web"}]),
     "spec: only one of targetRefs or workloadSelector can be set"),
    (lambda s: s.update(workloadSelector={"labels": {"app": "cat*"}}),
     "spec.workloadSelector.labels['app']: wildcard is not supported in selector"),
    (lambda s: (s.pop("workloadSelector"), s.update(targetRefs=[{"kind": "Gateway", "name": "w", "namespace": "x"}])),
     "spec.targetRefs[0].namespace: cross namespace referencing is not currently supported"),
])
def test_validation_rejects_what_istio_rejects(edit: Any, message: str) -> None:
    spec = valid_spec()
    edit(spec)
    with pytest.raises(EnvoyFilterInvalid) as info:
        ef.validate(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_validation_of_a_waypoint_patch_stops_at_the_schema() -> None:
    ef.validate({"configPatches": [{"applyTo": "HTTP_FILTER", "match": {"context": "WAYPOINT", "waypoint": {
        "filter": {"name": "x"}}}, "patch": {"operation": "ADD"}}]})  # istiod checks no further


def test_extension_config_patches_are_named_as_unsupported() -> None:
    objects = [filt(*valid_spec()["configPatches"])]
    assert ef.unsupported_patches(objects) == [
        "EnvoyFilter shop/f configPatches[3]: applyTo EXTENSION_CONFIG patches ECDS resources, which the local "
        "control plane does not serve"]


# --------------------------------------------------------------------------- Envoy as the judge


@pytest.mark.processes
def test_envoy_accepts_an_inbound_listener_with_a_fault_filter_inserted_before_the_router(tmp_path: Path) -> None:
    from chaosmesh_qa.targets.local.envoy_validation import EnvoyJudge, PodConfig
    from chaosmesh_qa.targets.local.pki import MeshPKI

    pki = MeshPKI.create(tmp_path / "pki")
    files = pki.identity(IDENTITY.spiffe_id, "catalog")
    identity = PodIdentity(files.spiffe_id, files.cert, files.key, pki.ca_path)
    listener = inbound_listener(15006, "PERMISSIVE", identity, [])
    patch = cp("HTTP_FILTER", "INSERT_BEFORE", fault_value(FAULT, 418), context="SIDECAR_INBOUND",
               listener=on_hcm(ROUTER, portNumber=15006))
    ef.validate({"configPatches": [patch]})
    [patched] = apply_listeners([listener], filt(patch))
    assert http_filters(patched, 0) == http_filters(patched, 1) == [FAULT, FAULT, ROUTER]
    boot = bootstrap("catalog-v1", "catalog", str(tmp_path / "admin.sock"), 15090, str(tmp_path / "xds.sock"),
                     app_port=8080)
    boot.pop("dynamic_resources")
    static = boot.pop("static_resources")
    judge = EnvoyJudge(tmp_path / "judge")
    judge.add_pod(PodConfig("envoyfilter: pod catalog-v1", boot, [*static["listeners"], patched],
                            static["clusters"]))
    assert judge.run() == []
    broken = copy.deepcopy(patched)
    hcm_config(broken)["http_filters"][1]["typed_config"]["abort"]["http_status"] = 99  # Envoy wants 200-599
    judge.add_pod(PodConfig("envoyfilter: pod broken", boot, [*static["listeners"], broken], static["clusters"]))
    assert [r.label for r in judge.run()] == ["envoyfilter: pod broken"]  # the judge does judge
