"""Issue 21: which ServiceEntry hosts get a stand-in in the sandbox, how the Mesh configures it, how callers reach it.

Pure: the model (``mesh.serviceentries``) and the caller's rendered outbound (``targets.local.envoy.external``) for
the shipped mesh experiments/meshes/external-payments and edits of it.  The process tests are
tests/targets/local/test_external_hosts.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.loader import LoadedMesh
from chaosmesh_qa.targets.local.envoy import external
from tests.support import editing

ROOT = Path(__file__).resolve().parents[2]
MESH = ROOT / "experiments" / "meshes" / "external-payments"
PAYMENTS, RATES = "api.payments.example.com", "rates.fx.example.com"


def edited(tmp_path: Path, file: str, old: str, new: str, extra: dict[str, str] | None = None) -> Path:
    return editing.edited(tmp_path, MESH, file, old, new, extra)


def load(root: Path) -> LoadedMesh:
    return load_mesh(root)


def test_both_hosts_run_with_the_mesh_settings_and_the_payment_providers_policy() -> None:
    model = load(MESH).model
    payments, rates = model.external_hosts[PAYMENTS], model.external_hosts[RATES]
    assert payments.runs and rates.runs and payments.http_ports() == (80,)
    assert payments.behaviour.latency_ms == 5 and payments.behaviour.response_bytes == 32
    assert payments.policy is not None and payments.policy.outlier is not None
    assert [r.timeout_s for r in payments.routes] == [0.5] and rates.routes == ()
    assert model.external_callees("checkout") == [PAYMENTS, RATES] and model.external_callers(PAYMENTS) == ["checkout"]
    assert model.callees("checkout") == []  # services of the mesh only: hops of the mesh for the verdicts


def test_each_caller_gets_istios_clusters_and_a_catch_all_by_outbound_traffic_policy(tmp_path: Path) -> None:
    model = load(MESH).model
    ports = {PAYMENTS: 1001, RATES: 1002, "": 1003}
    clusters = {c["name"]: c for c in external.external_clusters(model, ports)}
    assert set(clusters) == {f"outbound|80||{PAYMENTS}", f"outbound|80||{RATES}", external.PASSTHROUGH}
    assert all("transport_socket" not in c and "transport_socket_matches" not in c for c in clusters.values())
    hosts = external.virtual_hosts(model, "checkout")
    assert hosts[-1]["name"] == "allow_any"  # Istio's default, ALLOW_ANY: PassthroughCluster
    assert hosts[-1]["routes"][0]["route"]["cluster"] == external.PASSTHROUGH
    assert hosts[0]["domains"] == [f"{PAYMENTS}:80", PAYMENTS]
    route = hosts[0]["routes"][0]
    assert route["route"]["cluster"] == f"outbound|80||{PAYMENTS}" and route["route"]["timeout"] == "0.500s"
    fault = route["typed_per_filter_config"]["envoy.filters.http.fault"]["config"]
    assert fault["delay_percent_runtime"] == f"fault.external.{PAYMENTS}.delay.fixed_delay_percent"
    registry_only = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
                     "data:\n  mesh: |\n    outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
    strict = load(edited(tmp_path, "mesh.yaml", "name: shop-external", "name: shop-strict",
                         {"istio.yaml": registry_only})).model
    catch_all = external.virtual_hosts(strict, "checkout")[-1]
    assert catch_all["name"] == "block_all" and catch_all["routes"][0]["direct_response"] == {"status": 502}


@pytest.mark.parametrize(("file", "old", "new", "fragment"), [
    ("external.yaml", "location: MESH_EXTERNAL\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService",
     "location: MESH_INTERNAL\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService",
     "MESH_INTERNAL, not run as a service of the mesh: it has no endpoints and no workloadSelector"),
    ("external.yaml", "{number: 80, name: http, protocol: HTTP}\n  resolution: DNS",
     "{number: 443, name: https, protocol: HTTPS}\n  resolution: DNS", "it has no HTTP port"),
    ("external.yaml", "  resolution: DNS\n", "  resolution: NONE\n", "resolution NONE is not run by the sandbox"),
], ids=["mesh-internal", "tls-port-only", "resolution-none"])
def test_a_host_without_a_stand_in_is_warned_and_a_call_to_it_refused_on_one_line(
        tmp_path: Path, file: str, old: str, new: str, fragment: str) -> None:
    root = edited(tmp_path, file, old, new)
    with pytest.raises(InvalidMeshConfig) as info:
        load(root)
    message = str(info.value)
    assert "\n" not in message and "spec.services[1].app.calls[0].service: 'api.payments.example.com'" in message
    assert fragment in message, message


def test_a_stand_in_for_an_undeclared_host_and_a_call_to_one_are_refused_on_one_line(tmp_path: Path) -> None:
    for old, new, where in (
            ("- host: rates.fx.example.com", "- host: rates.fx.example.org",
             "spec.external[1].host: 'rates.fx.example.org' is no ServiceEntry host"),
            ("- {service: rates.fx.example.com, path: /rates}", "- {service: rates.fx.example.org, path: /rates}",
             "calls[1].service: 'rates.fx.example.org': unknown service or host (no ServiceEntry declares it)")):
        with pytest.raises(InvalidMeshConfig) as info:
            load(edited(tmp_path / where[:8].replace(".", "-").replace("[", "").replace("]", ""), "mesh.yaml", old,
                        new))
        assert where in str(info.value), str(info.value)


def test_simple_tls_origination_is_rendered_and_mutual_is_one_warning(tmp_path: Path) -> None:
    anchor = "    outlierDetection:\n      consecutive5xxErrors: 3"
    rule = "    tls: {mode: SIMPLE, sni: pay.example.com, subjectAltNames: [a.example.com]}\n"
    simple = load(edited(tmp_path / "simple", "external.yaml", anchor, rule + anchor))
    assert simple.model.external_hosts[PAYMENTS].originates_tls and not [w for w in simple.warnings if "tls" in w]
    rendered = {c["name"]: c for c in external.external_clusters(simple.model, {PAYMENTS: 1, RATES: 2, "": 3},
                                                                 "/ca.crt")}
    tls = rendered[f"outbound|80||{PAYMENTS}"]["transport_socket"]["typed_config"]
    assert tls["sni"] == "pay.example.com"
    assert tls["common_tls_context"]["validation_context"] == {
        "trusted_ca": {"filename": "/ca.crt"},
        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "a.example.com"}}]}
    mutual = load(edited(tmp_path / "mutual", "external.yaml", anchor,
                         "    tls: {mode: MUTUAL, credentialName: payments-client}\n" + anchor))
    warnings = [w for w in mutual.warnings if "tls.mode" in w]
    assert not mutual.model.external_hosts[PAYMENTS].originates_tls
    assert len(warnings) == 1 and "its sidecars send the stand-in plaintext HTTP" in warnings[0], warnings
