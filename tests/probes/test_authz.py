"""The authorization verdict's reasoning, without a process: which callers each selected workload must refuse or let
in (``probes.authz.plan`` over ``mesh.access``'s Istio semantics), how answers are judged (``judge``), and bad
arguments refused before any target is contacted.

The same reasoning against real Envoys: tests/targets/local/test_check_authorization.py; the shipped experiment:
tests/experiments (local) and tests/targets/kubernetes/test_experiments.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.access import Request, decide, decide_caller
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.mesh.security_model import AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource
from chaosmesh_qa.probes.authz import Plan, authz_enforced, judge, plan
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from tests.support.editing import append, mesh_with

ROOT = Path(__file__).resolve().parents[2]
TD = "spiffe://cluster.local/ns/default/sa"
CATALOG, FRONTEND, REVIEWS, INVENTORY = (f"{TD}/{s}" for s in ("catalog", "frontend", "reviews", "inventory"))
INGRESS = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
OUTSIDE = "spiffe://cluster.local/ns/payments/sa/billing"


@pytest.fixture(scope="module")
def default() -> MeshModel:
    return load_mesh(default_mesh_dir()).model


def with_policies(model: MeshModel, *policies: AuthzPolicy) -> MeshModel:
    return dataclasses.replace(model, authz=tuple(policies))


def allow(name: str, *rules: AuthzRule, namespace: str = "default", selector: dict[str, str] | None = None,
          action: str = "ALLOW") -> AuthzPolicy:
    return AuthzPolicy(name, namespace, {"app": "inventory"} if selector is None else selector or None,
                       action, rules)  # type: ignore[arg-type]


def source(*principals: str, **fields: tuple[str, ...]) -> AuthzRule:
    return AuthzRule((AuthzSource(tuple(principals), fields.get("namespaces", ()), fields.get("not_principals", ()),
                                  fields.get("not_namespaces", ())),), ())


def verdicts(made: Plan) -> dict[str, bool | None]:
    """Caller -> let in (True), refused (False) or "depends" (None), for inventory/v1 as declared."""
    return {"+".join(e.callers): e.caller.allowed for e in made.expectations if e.workload == "inventory/v1"}


# --------------------------------------------------------------------------- plan: the declared policies


def test_default_mesh_inventory_lets_in_only_catalog(default: MeshModel) -> None:
    made = plan(default, sorted(default.services))
    assert verdicts(made) == {"catalog": True, "frontend": False, "inventory": False, "reviews": False,
                              "ingress": False}
    assert {e.workload for e in made.expectations} == {"inventory/v1"}, "only inventory has a policy"
    assert not made.problems
    catalog = next(e for e in made.expectations if e.callers == ("catalog",))
    assert catalog.path == "/stock" and catalog.request.allowed
    assert catalog.request.reason == "allowed by ALLOW policy default/inventory-callers (rule 0)"
    frontend = next(e for e in made.expectations if e.callers == ("frontend",))
    assert frontend.path == "/stock", "an identity that never calls inventory asks what its callers ask"
    assert frontend.policy() == "default/inventory-callers"


def test_a_deny_policy_wins_over_an_allow_policy_that_matches(default: MeshModel) -> None:
    model = with_policies(default, allow("everyone", AuthzRule((), ())),
                          allow("no-reviews", source("cluster.local/ns/default/sa/reviews"), action="DENY"))
    found = verdicts(plan(model, ["inventory"]))
    assert found["reviews"] is False and found["frontend"] is True and found["catalog"] is True
    assert decide_caller(list(model.authz), REVIEWS).reason == "denied by DENY policy default/no-reviews (rule 0)"


def test_an_allow_policy_without_rules_refuses_everybody(default: MeshModel) -> None:
    found = verdicts(plan(with_policies(default, allow("nobody")), ["inventory"]))
    assert set(found.values()) == {False}


def test_a_root_namespace_policy_without_selector_applies_to_every_workload(default: MeshModel) -> None:
    model = with_policies(default, allow("mesh-wide", source("cluster.local/ns/default/*"), namespace="istio-system",
                                         selector={}))
    made = plan(model, sorted(default.services))
    assert {e.service for e in made.expectations} == set(default.services)
    assert {e.caller.allowed for e in made.expectations if e.callers == ("ingress",)} == {False}
    assert {e.caller.allowed for e in made.expectations if e.callers == ("frontend",)} == {True}


def test_a_policy_of_another_namespace_selects_nothing_here(default: MeshModel) -> None:
    assert not plan(with_policies(default, allow("elsewhere", namespace="payments")), ["inventory"]).expectations


@pytest.mark.parametrize(("rule", "allowed"), [
    (source("*"), {CATALOG, FRONTEND, REVIEWS, INVENTORY, INGRESS, OUTSIDE}),
    (source("*/sa/catalog"), {CATALOG}),
    (source("cluster.local/ns/default/*"), {CATALOG, FRONTEND, REVIEWS, INVENTORY}),
    (source(namespaces=("istio-system",)), {INGRESS}),
    (source(namespaces=("*",), not_namespaces=("default",)), {INGRESS, OUTSIDE}),
    (source("*", not_principals=("cluster.local/ns/default/sa/frontend",)),
     {CATALOG, REVIEWS, INVENTORY, INGRESS, OUTSIDE}),
    (AuthzRule((), (), (AuthzCondition("source.principal", ("cluster.local/ns/default/sa/reviews",)),)), {REVIEWS}),
    # only a not-form: a caller with no identity is in no namespace, so it is not in "default" either (Envoy alike)
    (AuthzRule((), (), (AuthzCondition("source.namespace", (), ("default",)),)), {INGRESS, OUTSIDE, None}),
], ids=["any-identity", "suffix", "prefix", "namespace", "not-namespace", "not-principal", "when-principal",
        "when-not-namespace"])
def test_principals_and_namespaces_match_as_istio_matches_them(rule: AuthzRule, allowed: set[str | None]) -> None:
    """``None``: a caller without a client certificate (plaintext), which has no principal and no namespace."""
    policies = [allow("p", rule)]
    for principal in (CATALOG, FRONTEND, REVIEWS, INVENTORY, INGRESS, OUTSIDE, None):
        assert decide_caller(policies, principal).allowed is (principal in allowed), principal


def test_a_rule_on_paths_decides_each_request_and_depends_for_a_caller(default: MeshModel) -> None:
    rule = AuthzRule((AuthzSource(("cluster.local/ns/default/sa/catalog",), ()),),
                     (AuthzOperation(("/stock*",), ("GET",)),))
    policies = [allow("stock-only", rule)]
    assert decide(policies, Request(CATALOG, "GET", "/stock?sku=1", "inventory")).allowed is True
    assert decide(policies, Request(CATALOG, "POST", "/stock", "inventory")).allowed is False
    assert decide(policies, Request(CATALOG, "GET", "/admin", "inventory")).allowed is False
    assert decide(policies, Request(FRONTEND, "GET", "/stock", "inventory")).allowed is False
    assert decide_caller(policies, CATALOG).allowed is None, "whether catalog is let in depends on what it asks"
    assert decide_caller(policies, FRONTEND).allowed is False, "frontend is refused whatever it asks"
    made = plan(with_policies(default, *policies), ["inventory"])
    catalog = next(e for e in made.expectations if e.callers == ("catalog",))
    assert catalog.must_allow(exact=True) is True and catalog.must_allow(exact=False) is None


def test_hosts_ignore_case_and_header_conditions_need_the_header() -> None:
    policies = [allow("p", AuthzRule((), (AuthzOperation((), (), ("Inventory*",)),),
                                     (AuthzCondition("request.headers[x-team]", ("shop",)),)))]
    assert decide(policies, Request(CATALOG, host="inventory", headers={"x-team": "shop"})).allowed is True
    assert decide(policies, Request(CATALOG, host="inventory")).allowed is False
    assert decide(policies, Request(CATALOG, host="catalog", headers={"x-team": "shop"})).allowed is False


def test_principals_written_for_cluster_local_stand_for_the_meshs_own_trust_domain(tmp_path: Path) -> None:
    configmap = ("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
                 "data:\n  mesh: 'trustDomain: prod.example.com'\n")
    model = load_mesh(mesh_with(tmp_path, append("security.yaml", configmap))).model
    made = plan(model, ["inventory"])
    allowed = [e.principal for e in made.expectations if e.caller.allowed]
    assert allowed == ["spiffe://prod.example.com/ns/default/sa/catalog"]
    assert all(e.principal.startswith("spiffe://prod.example.com/") for e in made.expectations)


# --------------------------------------------------------------------------- plan: the team's intent


def test_a_widened_policy_breaks_the_intent_before_any_request() -> None:
    model = load_mesh(ROOT / "experiments" / "meshes" / "authz-widened").model
    made = plan(model, ["inventory"], {"inventory": ["catalog"]})
    assert [(p["policy"], p["callers"], p["must_be"]) for p in made.problems] == [
        ("default/inventory-callers", ["frontend"], "refused")]
    assert "inventory/v1 lets in frontend" in made.problems[0]["message"]
    assert "allowed by ALLOW policy default/inventory-callers (rule 1)" in made.problems[0]["message"]


def test_a_deleted_policy_breaks_the_intent_for_every_other_identity(default: MeshModel) -> None:
    made = plan(with_policies(default), ["inventory"], {"inventory": ["catalog"]})
    assert sorted(p["callers"][0] for p in made.problems) == ["frontend", "ingress", "inventory", "reviews"]
    assert {p["policy"] for p in made.problems} == {"(no AuthorizationPolicy)"}
    assert not plan(with_policies(default), ["inventory"]).expectations, "no policy and no intent: nothing to check"


def test_an_intent_the_policy_refuses_is_a_problem_too(default: MeshModel) -> None:
    made = plan(default, ["inventory"], {"inventory": ["catalog", "reviews"]})
    assert [(p["callers"], p["must_be"]) for p in made.problems] == [(["reviews"], "allowed")]


def test_services_sharing_a_service_account_are_one_identity(default: MeshModel) -> None:
    services = dict(default.services)
    services["reviews"] = dataclasses.replace(services["reviews"], service_account="catalog")
    made = plan(dataclasses.replace(default, services=services), ["inventory"], {"inventory": ["catalog"]})
    shared = [e for e in made.expectations if e.principal == CATALOG]
    assert len(shared) == 1 and shared[0].callers == ("catalog", "reviews") and shared[0].intended is True
    assert not made.problems


# --------------------------------------------------------------------------- judge: the target's answers


def sent(pod: str, principal: str, code: int | None) -> dict[str, Any]:
    return {"service": "inventory", "how": "sent", "pod": pod, "version": "v1", "principal": principal,
            "path": "/stock", "codes": {} if code is None else {str(code): 1}, "detail": "x"}


def observed(principal: str | None, codes: dict[str, int], version: str = "v1") -> dict[str, Any]:
    return {"service": "inventory", "how": "observed", "pod": None, "version": version, "principal": principal,
            "source": "catalog" if principal == CATALOG else "unknown", "path": None, "codes": codes, "detail": "x"}


def test_requests_answered_as_the_policy_says_pass(default: MeshModel) -> None:
    made = plan(default, ["inventory"])
    result = judge(made, [sent("inv-a", CATALOG, 200), sent("inv-a", FRONTEND, 403), sent("inv-a", INGRESS, 403)])
    assert result["status"] == "pass", result["summary"]
    assert [(c["identity"], c["must"], c["ok"]) for c in result["checks"]] == [
        (CATALOG, "allow", True), (FRONTEND, "refuse", True), (INGRESS, "refuse", True)]
    assert not result["not_checked"], "sent requests need no traffic of the mesh's own"


def test_a_refused_caller_let_in_is_named_with_the_policy_and_the_status_seen(default: MeshModel) -> None:
    made = plan(default, ["inventory"])
    result = judge(made, [sent("inv-a", CATALOG, 200), sent("inv-b", FRONTEND, 200)])
    assert result["status"] == "violated"
    [violation] = result["violations"]
    assert violation["policy"] == "default/inventory-callers" and violation["identity"] == FRONTEND
    assert violation["pod"] == "inv-b" and violation["seen"] == {"200": 1} and violation["must_be"] == "refused"
    assert "frontend" in result["summary"] and "200 x1" in result["summary"] and "inv-b" in result["summary"]


def test_an_allowed_caller_refused_is_a_violation(default: MeshModel) -> None:
    result = judge(plan(default, ["inventory"]), [sent("inv-a", CATALOG, 403)])
    assert result["status"] == "violated" and result["violations"][0]["must_be"] == "allowed"


def test_a_pod_that_does_not_answer_is_not_checked(default: MeshModel) -> None:
    result = judge(plan(default, ["inventory"]), [sent("inv-a", CATALOG, None)])
    assert result["status"] == "not-enough-traffic" and result["not_checked"]


def test_counts_by_identity_judge_only_the_identities_that_sent_something(default: MeshModel) -> None:
    made = plan(default, ["inventory"])
    result = judge(made, [observed(CATALOG, {"200": 950, "503": 3})])
    assert result["status"] == "pass", result["summary"]
    assert sorted(n.split(" (")[0] for n in result["not_checked"]) == [
        "cannot check: no traffic from frontend", "cannot check: no traffic from ingress",
        "cannot check: no traffic from inventory", "cannot check: no traffic from reviews"]
    assert "not checked: cannot check: no traffic from" in result["summary"]


def test_counts_with_no_named_caller_are_never_attributed(default: MeshModel) -> None:
    result = judge(plan(default, ["inventory"]), [observed(None, {"200": 40, "403": 2})])
    assert result["status"] == "not-enough-traffic"
    assert "did not name" in result["not_checked"][0] and "42 requests" in result["not_checked"][0]


def test_counts_of_a_refused_identity_let_in_or_an_allowed_one_refused_are_violations(default: MeshModel) -> None:
    made = plan(default, ["inventory"])
    result = judge(made, [observed(CATALOG, {"200": 10, "403": 1}), observed(REVIEWS, {"200": 5}),
                          observed(OUTSIDE, {"403": 7}), observed(INGRESS, {"403": 2}, version="unknown")])
    assert [(v["identity"], v["must_be"], v["seen"]) for v in result["violations"]] == [
        (CATALOG, "allowed", {"200": 10, "403": 1}), (REVIEWS, "refused", {"200": 5})]
    assert {c["identity"] for c in result["checks"] if c["ok"]} == {OUTSIDE, INGRESS}, \
        "an identity outside the mesh is judged too, and a count of an unknown version when every version agrees"


def test_counts_of_a_caller_whose_answer_depends_on_the_path_are_not_checked(default: MeshModel) -> None:
    rule = AuthzRule((AuthzSource(("cluster.local/ns/default/sa/catalog",), ()),), (AuthzOperation(("/stock",), ()),))
    made = plan(with_policies(default, allow("stock-only", rule)), ["inventory"])
    result = judge(made, [observed(CATALOG, {"200": 10, "403": 1})])
    assert result["status"] == "not-enough-traffic"
    assert "depends on the request" in result["not_checked"][0]


# --------------------------------------------------------------------------- bad arguments: one line, no target


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"services": "inventory"}, "services: expected a non-empty list"),
    ({"services": ["Inventory"]}, "services[0]: expected a name"),
    ({"expected": ["catalog"]}, "expected: expected a mapping of service to the callers it lets in"),
    ({"expected": {}}, "expected: expected at least one service"),
    ({"expected": {"inventory": "catalog"}}, "expected.inventory: expected a list of caller names"),
    ({"expected": {"inventory": ["cat alog"]}}, "expected.inventory[0]: expected a name"),
    ({"window_s": 0}, "window_s:"),
    ({"window_s": float("nan")}, "window_s:"),
], ids=["services-not-a-list", "services-bad-name", "expected-not-a-mapping", "expected-empty", "callers-not-a-list",
        "caller-bad-name", "window-zero", "window-nan"])
def test_bad_argument_is_one_line_before_contacting_the_target(tmp_path: Path, kwargs: dict[str, Any],
                                                               fragment: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        authz_enforced(configuration={"chaosmesh_qa_state_dir": str(tmp_path / "none")}, **kwargs)
    assert str(raised.value).startswith(fragment) and "\n" not in str(raised.value)
