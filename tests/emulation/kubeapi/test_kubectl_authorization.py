"""A team's AuthorizationPolicies, made with the real ``kubectl`` on the emulation, answered by real sidecars.

Every AuthorizationPolicy is applied as istiod applies it, next to the mesh directory's own (mesh/security.yaml:
only catalog may call inventory): an unlabelled DENY for one caller principal makes exactly that caller -> callee
edge answer 403 (Envoy's RBAC, at the callee's sidecar), and deleting it restores 200; an ALLOW admitting one
principal denies every other caller; what istiod's webhook refuses is refused on one line and not stored.  Each
change reaches the callee's listeners as an in-place update: the tests wait until it did and the connections the
callers had pooled drained (``until_sidecars_settle``).  The control plane's side without processes:
test_authorization_wiring.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.client import get_many, hops, mesh_tls_get
from tests.support.kube import KubeSandbox, listener_watch, until_sidecars_settle

pytestmark = pytest.mark.processes

SA = "cluster.local/ns/default/sa/{}"
KIND = "authorizationpolicy.security.istio.io"
MESH_POLICY = f"{KIND}/inventory-callers"  # the mesh directory's, seeded by the emulation (read-only)


def policy(name: str, action: str, callee: str, callers: list[str]) -> dict[str, Any]:
    """A team's AuthorizationPolicy, unlabelled: nothing marks it as chaosmesh-qa's."""
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": name},
            "spec": {"action": action, "selector": {"matchLabels": {"app": callee}},
                     "rules": [{"from": [{"source": {"principals": [SA.format(c) for c in callers]}}]}]}}


@pytest.fixture
def kubectl_file(kube_sandbox: KubeSandbox, tmp_path: Path) -> Iterator[Any]:
    """Write an object to a file for ``kubectl create -f``; afterwards, delete every policy the test made."""
    def write(obj: dict[str, Any]) -> str:
        path = tmp_path / f"{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj))
        return str(path)

    yield write
    for name in _stored(kube_sandbox):
        if name != MESH_POLICY:
            kube_sandbox.kubectl("delete", name)
    assert _stored(kube_sandbox) == [MESH_POLICY]


def _stored(box: KubeSandbox) -> list[str]:
    return box.kubectl("get", "authorizationpolicies", "-o", "name").stdout.split()


def _statuses(box: KubeSandbox, count: int = 20) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for _, tree in get_many(box.ingress_url + "/", count):
        for hop in hops(tree):
            seen.setdefault(hop["service"], set()).add(hop["status"])
    return seen


def test_a_teams_deny_made_with_kubectl_answers_403_on_exactly_its_edge_until_deleted(
        kube_sandbox: KubeSandbox, kubectl_file: Any) -> None:
    box = kube_sandbox
    healthy = {"frontend": {200}, "catalog": {200}, "inventory": {200}, "reviews": {200}}
    assert _statuses(box) == healthy
    watch = listener_watch(box, "reviews")
    created = box.kubectl("create", "--validate=false", "-f",
                          kubectl_file(policy("no-frontend", "DENY", "reviews", ["frontend"])))
    assert created.stdout.strip() == f"{KIND}/no-frontend created"
    until_sidecars_settle(watch)  # reviews' sidecars run the RBAC filter; frontend's pooled connections drained
    assert _statuses(box) == {**healthy, "reviews": {403}}, "frontend -> reviews only: Envoy's RBAC says 403"
    applied = [c for c in box.call_log() if c.get("resource") == "authorizationpolicies"
               and c["verb"] == "create"][-1]["applied"]
    assert applied["authorization_policies_in_force"] == ["default/inventory-callers", "default/no-frontend"]
    assert applied["selected_pods"] == sorted(p["name"] for p in box.status()["pods"] if p["service"] == "reviews")
    watch = listener_watch(box, "reviews")
    deleted = box.kubectl("delete", f"{KIND}/no-frontend")
    assert deleted.stdout.strip() == f'{KIND} "no-frontend" deleted'
    until_sidecars_settle(watch)
    assert _statuses(box) == healthy


def test_an_allow_admitting_one_caller_denies_every_other(kube_sandbox: KubeSandbox, kubectl_file: Any) -> None:
    """reviews admits only catalog: frontend, its one caller in this mesh, gets 403, and so does any other
    identity; catalog's own certificate is let through.  The mesh directory's ALLOW (inventory admits catalog) is
    the same rule, already in force: catalog -> inventory answers 200."""
    box = kube_sandbox
    reviews = next(p for p in box.status()["pods"] if p["service"] == "reviews")
    pki = Path(box.state_dir) / "pki"

    def answers(identity: str) -> int:  # a new mTLS connection to one reviews sidecar, as a mesh workload
        return mesh_tls_get(reviews["ports"]["inbound"], pki, identity, "/reviews")

    watch = listener_watch(box, "reviews")
    box.kubectl("create", "--validate=false", "-f", kubectl_file(policy("only-catalog", "ALLOW", "reviews",
                                                                         ["catalog"])))
    until_sidecars_settle(watch)
    seen = _statuses(box)
    assert seen["reviews"] == {403} and seen["catalog"] == seen["inventory"] == {200}, seen
    assert (answers("default-sa-catalog"), answers("default-sa-frontend"), answers("default-sa-inventory")) == (
        200, 403, 403)
    watch = listener_watch(box, "reviews")
    patched = box.kubectl("patch", f"{KIND}/only-catalog", "--type=merge", "-p", json.dumps(
        {"spec": {"rules": [{"from": [{"source": {"principals": [SA.format("catalog"), SA.format("frontend")]}}]}]}}))
    assert patched.stdout.strip() == f"{KIND}/only-catalog patched"
    until_sidecars_settle(watch)
    assert _statuses(box)["reviews"] == {200}, "frontend admitted too: reviews answers it again"
    assert answers("default-sa-inventory") == 403


def test_an_invalid_policy_is_refused_on_one_line_and_nothing_is_stored(kube_sandbox: KubeSandbox,
                                                                        kubectl_file: Any) -> None:
    box = kube_sandbox
    bad = policy("typo", "DENY", "reviews", ["frontend"])
    bad["spec"]["rules"][0]["from"][0]["source"]["principals"] = SA.format("frontend")  # a string, not a list
    refused = box.kubectl("create", "--validate=false", "-f", kubectl_file(bad), check=False)
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.strip().endswith(
        'admission webhook "validation.istio.io" denied the request: configuration is invalid: '
        "spec.rules[0].from[0].source.principals: Input should be a valid list"), refused.stderr
    assert "(BadRequest)" in refused.stderr
    assert _stored(box) == [MESH_POLICY]
    call = [c for c in box.call_log() if c.get("resource") == "authorizationpolicies" and c["verb"] == "create"][-1]
    assert call["code"] == 400 and call["error"].startswith('admission webhook "validation.istio.io"'), call
    assert _statuses(box, 10)["reviews"] == {200}
