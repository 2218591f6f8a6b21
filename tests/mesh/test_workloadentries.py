"""Issue 21: MESH_INTERNAL ServiceEntries and WorkloadEntries as services of the mesh (``mesh.workloadentries``).

Pure: the model built from tests/profiles/mesh-internal (a MESH_INTERNAL entry whose workloadSelector picks two
WorkloadEntries) and edits of it, the caller's rendered routes, and ``chaosmesh-qa validate`` in process on bad
input (one line, exit 2).  The process test is tests/targets/local/test_mesh_internal.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.loader import LoadedMesh
from chaosmesh_qa.targets.local.envoy.clusters import caller_clusters
from chaosmesh_qa.targets.local.envoy.routes import service_domains
from chaosmesh_qa.targets.local.pods import _called_as
from tests.support import editing
from tests.support.inprocess import assert_one_line_error, run_main

ROOT = Path(__file__).resolve().parents[2]
MESH = ROOT / "tests" / "profiles" / "mesh-internal"
HOST = "orders.internal.example.com"
INLINE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: orders
spec:
  hosts: [orders.internal.example.com]
  location: MESH_INTERNAL
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.11, labels: {version: v1}, serviceAccount: orders, ports: {http: 9090}}
  - {address: 10.0.0.12, labels: {version: v1}, serviceAccount: orders, ports: {http: 9090}}
  - {address: 10.0.0.13, labels: {version: v2}, serviceAccount: orders}
"""


def edited(tmp_path: Path, file: str, old: str, new: str, extra: dict[str, str] | None = None) -> Path:
    return editing.edited(tmp_path, MESH, file, old, new, extra)


def with_inline(tmp_path: Path) -> LoadedMesh:
    return load_mesh(editing.mesh_with(tmp_path, editing.write("entries.yaml", INLINE), source=MESH))


def test_the_entry_is_a_service_of_the_mesh_with_one_pod_per_workload_entry() -> None:
    loaded = load_mesh(MESH)
    model = loaded.model
    orders = model.services["orders"]
    assert orders.hosts == (HOST,) and orders.fqdn == HOST and orders.port == 80 and orders.pod_port == 8080
    # the WorkloadEntries' version labels make the versions, their serviceAccount the identity, their localities
    assert [(v.name, v.replicas, v.labels, v.localities) for v in orders.versions] == [
        ("v1", 1, {"app": "orders-vm", "version": "v1"}, ("eu-west1/eu-west1-a",)),
        ("v2", 1, {"app": "orders-vm", "version": "v2", "security.istio.io/tlsMode": "disabled"},
         ("eu-west1/eu-west1-b",))]  # orders-vm-2 has no serviceAccount: below
    assert orders.spiffe_id == "spiffe://cluster.local/ns/default/sa/orders"
    assert orders.pod_selector == {"app": "orders-vm"}  # the workloadSelector
    # the Mesh's stand-in settings for the host are its pods' demo app
    assert all(v.behaviour.response_bytes == 16 for v in orders.versions)
    # a call to the host is a hop of the mesh: frontend -> orders, routed and given the policy written for the host
    assert model.callees("frontend") == ["orders"] and model.callers("orders") == ["frontend"]
    assert [[(d.subset, d.weight) for d in r.destinations] for r in model.routes["orders"]] == [
        [("v2", 100)], [("v1", 100)]]  # x-orders-version: v2 to v2, the rest to v1
    assert [r.timeout_s for r in model.routes["orders"]] == [2.0, 2.0]
    assert set(model.subsets["orders"]) == {"v1", "v2"}
    assert model.policies["orders"].circuit_breaker.max_connections == 50
    assert model.policies["orders"].tls_mode == "ISTIO_MUTUAL"  # auto mTLS, as to any workload of the mesh
    assert model.external_hosts == {}  # not a host outside the mesh, no stand-in
    assert model.mtls_mode("orders", "v1") == "PERMISSIVE"
    # the addresses are not used: one warning says so
    assert [w for w in loaded.warnings if "10.0.0.11, 10.0.0.12" in w and "127.0.0.1" in w], loaded.warnings


def test_callers_reach_it_by_its_hosts_only() -> None:
    model = load_mesh(MESH).model
    assert service_domains(model, "orders") == [HOST, f"{HOST}:80"]  # no Kubernetes name: it has none
    assert _called_as(model, "orders") == HOST and _called_as(model, "frontend") == "frontend"
    assert "frontend.default.svc.cluster.local" in service_domains(model, "frontend")


def test_inline_endpoints_are_its_workload_entries(tmp_path: Path) -> None:
    loaded = with_inline(tmp_path)
    orders = loaded.model.services["orders"]
    # inline endpoints get app: <entry name>, the selector the sandbox's pods are found by
    assert [(v.name, v.replicas, v.labels) for v in orders.versions] == [
        ("v1", 2, {"app": "orders", "version": "v1"}), ("v2", 1, {"app": "orders", "version": "v2"})]
    assert orders.pod_selector == {"app": "orders"} and orders.pod_port == 9090  # the entries' ports, as istiod


@pytest.mark.parametrize(("file", "old", "new", "fragment"), [
    ("entries.yaml", "  address: 10.0.0.12\n", "", "WorkloadEntry/orders-vm-2: spec.address"),
    ("entries.yaml", "  resolution: STATIC\n  workloadSelector:\n    labels: {app: orders-vm}\n",
     "  resolution: STATIC\n  workloadSelector:\n    labels: {app: orders-vm}\n  endpoints: [{address: 10.0.0.1}]\n",
     "only one of workloadSelector or endpoints can be set"),
    ("entries.yaml", "locality: eu-west1/eu-west1-a", "locality: eu-west1//a", "spec.locality"),
    ("entries.yaml", "serviceAccount: orders\n  locality: eu-west1/eu-west1-a", "serviceAccount: Orders_SA\n",
     "spec.serviceAccount"),
], ids=["no-address", "selector-and-endpoints", "bad-locality", "bad-service-account"])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, file: str, old: str, new: str, fragment: str) -> None:
    root = edited(tmp_path, file, old, new)
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(root)
    assert "\n" not in str(info.value) and fragment in str(info.value), str(info.value)
    result = run_main("validate", "--mesh", str(root), cwd=tmp_path)
    assert_one_line_error(result, fragment)


def test_a_selector_matching_nothing_is_a_warning_and_a_call_to_the_host_is_refused_on_one_line(
        tmp_path: Path) -> None:
    unselected = edited(tmp_path / "a", "entries.yaml", "labels: {app: orders-vm}\n---",
                        "labels: {app: orders-vms}\n---")
    with pytest.raises(InvalidMeshConfig) as info:
        load_mesh(unselected)
    assert "calls[0].service: 'orders.internal.example.com': unknown service or host (MESH_INTERNAL, not run as a " \
           "service of the mesh: its workloadSelector selects no WorkloadEntry" in str(info.value), str(info.value)
    # nobody calling it: it loads, with one warning on the entry and one on each WorkloadEntry left unselected
    uncalled = edited(tmp_path / "b", "entries.yaml", "labels: {app: orders-vm}\n---", "labels: {app: orders-vms}\n---")
    calls = ("    app:\n      propagateHeaders: [x-orders-version]\n      calls:\n"
             "      - {service: orders.internal.example.com, path: /orders}\n")
    (uncalled / "mesh.yaml").write_text((uncalled / "mesh.yaml").read_text().replace(calls, ""))
    (uncalled / "routing.yaml").unlink()
    loaded = load_mesh(uncalled)
    assert "orders" not in loaded.model.services and not loaded.model.external_hosts[HOST].runs
    assert [w for w in loaded.warnings if "ServiceEntry/orders: spec.location: MESH_INTERNAL is kept in the model "
            "but not run as a service of the mesh: its workloadSelector selects no WorkloadEntry" in w]
    assert len([w for w in loaded.warnings if "no MESH_INTERNAL ServiceEntry of namespace 'default' selects" in w]) == 2


def test_what_is_not_modelled_is_warned_in_one_line_each(tmp_path: Path) -> None:
    root = edited(tmp_path, "entries.yaml", "  locality: eu-west1/eu-west1-b",
                  "  weight: 3\n  locality: eu-west1/eu-west1-b",
                  {"external.yaml": "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: pay}\n"
                                    "spec:\n  hosts: [api.pay.example.com]\n  ports: [{number: 80, name: http}]\n"
                                    "  resolution: DNS\n  workloadSelector: {labels: {app: pay}}\n"})
    warnings = load_mesh(root).warnings
    for fragment in ("workload entries' weight: not modelled",
                     "serviceAccount: (none), orders: the sandbox gives a service one identity",
                     "as Istio's auto mTLS, the callers send it plaintext",
                     "ServiceEntry/pay: spec.workloadSelector: applies to MESH_INTERNAL entries only"):
        assert len([w for w in warnings if fragment in w]) == 1, (fragment, warnings)
    assert all("\n" not in w for w in warnings)


def test_a_destination_rule_by_the_entrys_name_names_no_host(tmp_path: Path) -> None:
    root = edited(tmp_path, "routing.yaml", "  host: orders.internal.example.com\n  trafficPolicy",
                  "  host: orders\n  trafficPolicy")
    with pytest.raises(InvalidMeshConfig, match=r"DestinationRule/orders: spec.host: unknown host 'orders'"):
        load_mesh(root)


def test_an_entry_named_like_a_service_or_whose_host_is_one_is_not_run(tmp_path: Path) -> None:
    renamed = edited(tmp_path / "a", "entries.yaml", "metadata:\n  name: orders\n", "metadata:\n  name: frontend\n")
    with pytest.raises(InvalidMeshConfig, match=r"metadata\.name 'frontend' is also a service of the mesh"):
        load_mesh(renamed)
    # Istio would add the entries to the Service's endpoints: not modelled, and the call to its other host refused
    shared = edited(tmp_path / "b", "entries.yaml", "hosts: [orders.internal.example.com]",
                    "hosts: [orders.internal.example.com, frontend]")
    with pytest.raises(InvalidMeshConfig, match=r"calls\[0\]\.service: 'orders\.internal\.example\.com': .* its host "
                                                r"'frontend' names a service of the mesh"):
        load_mesh(shared)


def test_an_entry_without_service_account_is_sent_plaintext_as_istios_auto_mtls_does() -> None:
    model = load_mesh(MESH).model  # orders-vm-2 (v2) has no serviceAccount
    # istiod's getTLSModeFromWorkloadEntry: no security.istio.io/tlsMode label and no serviceAccount -> disabled
    assert model.services["orders"].version("v2").labels["security.istio.io/tlsMode"] == "disabled"
    assert "security.istio.io/tlsMode" not in model.services["orders"].version("v1").labels
    specs = {s.name: s for s in caller_clusters(model, ["orders", "frontend"])}
    assert specs["orders"].plaintext_versions == frozenset({"v2"})  # auto mTLS: per endpoint
    assert specs["frontend"].plaintext_versions == frozenset()


def test_a_second_entry_for_the_same_host_is_not_run_and_says_so(tmp_path: Path) -> None:
    second = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: orders-b}\nspec:\n"
              "  hosts: [orders.internal.example.com]\n  location: MESH_INTERNAL\n  resolution: STATIC\n"
              "  ports: [{number: 80, name: http}]\n  endpoints: [{address: 10.0.0.21, serviceAccount: orders}]\n")
    root = edited(tmp_path, "mesh.yaml", "name: shop-vms", "name: shop-vms", {"zz-second.yaml": second})
    loaded = load_mesh(root)
    assert "orders-b" not in loaded.model.services and loaded.model.services["orders"].hosts == (HOST,)
    assert [w for w in loaded.warnings if "ServiceEntry/orders-b: spec.location: MESH_INTERNAL is kept in the model "
            "but not run as a service of the mesh: its host 'orders.internal.example.com' names a service" in w]
