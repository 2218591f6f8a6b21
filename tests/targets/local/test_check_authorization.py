"""The local target's authorization check against real Envoys: requests sent as each caller identity of the mesh.

``LocalTarget.check_authorization`` presents each identity's certificate from the sandbox's PKI to each pod's
inbound port; ``authz_enforced`` judges those answers against ``mesh.access``'s reading of the policies.  On a mesh
whose policies use DENY, paths, methods, namespaces and the root namespace, the verdict passing means the Python
reading and Envoy's RBAC filters agree for every identity and workload.  The reasoning alone:
tests/probes/test_authz.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.probes.authz import authz_enforced
from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.client import get
from tests.support.editing import append, mesh_with
from tests.support.sandbox import Sandbox, Served, serve

pytestmark = pytest.mark.processes

TD = "spiffe://cluster.local/ns/default/sa"
# catalog lets in frontend for GET /items* only; reviews refuses anything from istio-system (the ingress gateway);
# a root-namespace DENY keeps every identity but catalog's and frontend's off inventory (on top of its ALLOW policy)
POLICIES = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: catalog-readers}
spec:
  selector: {matchLabels: {app: catalog}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/frontend]}}]
    to: [{operation: {paths: ["/items*"], methods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-gateway-on-reviews}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - from: [{source: {namespaces: [istio-system]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: inventory-fence, namespace: istio-system}
spec:
  selector: {matchLabels: {app: inventory}}
  action: DENY
  rules:
  - from:
    - source:
        notPrincipals: [cluster.local/ns/default/sa/catalog, "*/sa/frontend"]
"""


@pytest.fixture
def cfg(sandbox: Sandbox) -> dict[str, Any]:
    return {"chaosmesh_qa_state_dir": str(sandbox.state_dir)}


def test_each_inventory_pod_refuses_frontend_and_lets_catalog_in(sandbox: Sandbox) -> None:
    nobody = f"{TD}/nobody"
    records = LocalTarget(sandbox.state_dir).check_authorization(
        "inventory", {f"{TD}/catalog": "/stock", f"{TD}/frontend": "/stock", nobody: "/stock"}, 60)
    pods = {p["name"] for p in sandbox.status()["pods"] if p["service"] == "inventory" and p["state"] == "ready"}
    assert {r["pod"] for r in records} == pods and len(pods) == 2
    answers = {(r["pod"], r["principal"]): r["codes"] for r in records}
    for pod in pods:
        assert answers[(pod, f"{TD}/catalog")] == {"200": 1}
        assert answers[(pod, f"{TD}/frontend")] == {"403": 1}
        assert answers[(pod, nobody)] == {}, "an identity the PKI never issued is not faked"
    assert all(r["how"] == "sent" and r["version"] == "v1" and r["path"] == "/stock" for r in records)
    assert "no certificate" in next(r["detail"] for r in records if r["principal"] == nobody)


def test_default_mesh_passes_with_every_identity_tried_on_every_inventory_pod(cfg: dict[str, Any]) -> None:
    result = authz_enforced(expected={"inventory": ["catalog"]}, configuration=cfg)
    assert result["status"] == "pass", result["summary"]
    assert len(result["checks"]) == 10 and not result["not_checked"], "5 identities x 2 pods, all answered"
    refused = {c["callers"][0] for c in result["checks"] if c["must"] == "refuse"}
    assert refused == {"frontend", "reviews", "inventory", "ingress"}
    assert result["policies"] == [{"policy": "default/inventory-callers", "action": "ALLOW",
                                   "workloads": ["inventory/v1"]}]


def test_an_intent_the_mesh_does_not_keep_is_violated_with_what_each_pod_answered(cfg: dict[str, Any]) -> None:
    result = authz_enforced(services=["inventory"], expected={"inventory": ["catalog", "frontend"]},
                            configuration=cfg)
    assert result["status"] == "violated"
    seen = [v for v in result["violations"] if v["pod"]]
    assert len(seen) == 2 and {v["seen"]["403"] for v in seen} == {1}  # each inventory pod answered frontend 403
    assert all(v["identity"] == f"{TD}/frontend" and v["policy"] == "default/inventory-callers" for v in seen)


def test_an_unknown_caller_in_the_intent_is_one_line(cfg: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        authz_enforced(expected={"inventory": ["catalog", "billing"]}, configuration=cfg)
    assert str(raised.value).startswith("expected.inventory[1]: unknown caller 'billing' (known: catalog, ")
    with pytest.raises(InvalidArgument, match=r"^expected: unknown service 'billing'"):
        authz_enforced(expected={"billing": []}, configuration=cfg)


@pytest.fixture(scope="module")
def fenced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("authz-fenced")
    yield from serve(mesh_with(work, append("security.yaml", POLICIES)), work / "state")


def test_the_python_reading_of_deny_paths_and_namespaces_agrees_with_envoy(fenced: Served) -> None:
    result = authz_enforced(configuration={"chaosmesh_qa_state_dir": str(fenced.state_dir)})
    assert result["status"] == "pass", result["summary"]
    checked = {(c["service"], c["callers"][0], c["must"]) for c in result["checks"]}
    assert ("catalog", "frontend", "allow") in checked and ("catalog", "catalog", "refuse") in checked
    assert ("reviews", "ingress", "refuse") in checked and ("reviews", "inventory", "allow") in checked
    assert ("inventory", "catalog", "allow") in checked and ("inventory", "frontend", "refuse") in checked
    assert len(result["checks"]) == 5 * (2 + 3 + 2), "every identity on every pod of the three selected services"
    assert {p["policy"] for p in result["policies"]} == {"default/inventory-callers", "default/catalog-readers",
                                                        "default/no-gateway-on-reviews", "istio-system/inventory-fence"}
    status, _ = get(fenced.url + "/")
    assert status == 200, "the apps' own calls (frontend -> catalog GET /items) are let in"
