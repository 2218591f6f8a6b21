"""NetworkPolicies evaluated as Kubernetes defines them (``emulation.kubeapi.networkpolicy``), without a process.

One test per rule of the API reference: isolation and its defaults, the union of allow rules over every
policy, rules and peers OR-ed, ports (number, range, name, protocol), the peer kinds and their combination, the
label-selector operators, ipBlock against the sandbox's one pod IP, egress at the source, and admission (what
the API server decodes, defaults, drops and refuses).  The Kubernetes target's own drop-partition object is
built by ``targets.kubernetes.objects.network_policy`` exactly as the target builds it.
"""

from __future__ import annotations

from typing import Any

import pytest

from chaosmesh_qa.emulation.kubeapi.networkpolicy import (
    ContainerPort,
    Invalid,
    PodRef,
    Policy,
    PolicySet,
    Undecodable,
    admit,
    sandbox_limits,
)
from chaosmesh_qa.targets.kubernetes import objects

HTTP = ContainerPort(8080, "http")
NAMESPACES = {ns: {"kubernetes.io/metadata.name": ns, **({"team": "shop"} if ns != "monitoring" else {})}
              for ns in ("default", "other", "monitoring")}


def pod(name: str, namespace: str = "default", **labels: str) -> PodRef:
    return PodRef(name, namespace, {"app": name.split("-")[0], **labels}, (HTTP,))


FRONTEND, REVIEWS, CATALOG = pod("frontend-1"), pod("reviews-1", version="v1"), pod("catalog-1")
REVIEWS_V2 = pod("reviews-2", version="v2")
OUTSIDER = pod("probe-1", "other")
SCRAPER = pod("prometheus-1", "monitoring")


def policy(name: str, spec: dict[str, Any], namespace: str = "default") -> Policy:
    admitted, unknown = admit({"metadata": {"name": name}, "spec": spec})
    assert unknown == []
    return Policy(namespace, name, admitted["spec"])


def allowed(policies: list[Policy], source: PodRef, destination: PodRef, port: int = 8080,
            protocol: str = "TCP") -> bool:
    return PolicySet(policies, NAMESPACES).verdict(source, destination, port, protocol).allowed


DENY_ALL = {"podSelector": {}}  # policyTypes defaults to [Ingress], no ingress rule: nothing admitted
ALLOW_SAME_NAMESPACE = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}


def target_drop(caller: str = "frontend", callee: str = "reviews", some_pods: bool = False) -> Policy:
    """The Kubernetes target's drop partition, built as the target builds it."""
    body = objects.network_policy("partition-abcd1234", 1e10, "default", "to", {"app": caller}, {"app": callee},
                                  some_pods)
    admitted, unknown = admit(body)
    assert unknown == []
    return Policy("default", body["metadata"]["name"], admitted["spec"])


# ---------------------------------------------------------------------------------------------- isolation

def test_a_pod_no_policy_selects_accepts_every_connection() -> None:
    assert allowed([], FRONTEND, REVIEWS) and allowed([], OUTSIDER, REVIEWS)
    other = policy("catalog-only", {"podSelector": {"matchLabels": {"app": "catalog"}}})
    assert allowed([other], FRONTEND, REVIEWS) and not allowed([other], FRONTEND, CATALOG)


def test_an_empty_pod_selector_isolates_every_pod_of_its_namespace_only() -> None:
    deny = policy("deny-all", DENY_ALL)
    verdict = PolicySet([deny], NAMESPACES).verdict(FRONTEND, REVIEWS, 8080)
    assert not verdict.allowed and verdict.ingress.isolated_by == ("default/deny-all",)
    assert verdict.egress.allowed, "policyTypes defaulted to Ingress only: egress stays open"
    assert allowed([deny], REVIEWS, OUTSIDER), "a policy isolates pods of its own namespace only"
    assert allowed([policy("deny-all", DENY_ALL, "other")], FRONTEND, REVIEWS)


def test_policy_types_default_to_ingress_plus_egress_when_there_are_egress_rules() -> None:
    assert policy("in", DENY_ALL).types == ("Ingress",)
    with_egress = policy("both", {"podSelector": {}, "egress": [{"to": [{"podSelector": {}}]}]})
    assert with_egress.types == ("Ingress", "Egress")
    assert not allowed([with_egress], FRONTEND, REVIEWS), "its ingress side (no rules) admits nothing"
    egress_only = policy("out", {"podSelector": {}, "policyTypes": ["Egress"]})
    assert not allowed([egress_only], FRONTEND, REVIEWS) and not allowed([egress_only], FRONTEND, OUTSIDER)
    assert allowed([egress_only], OUTSIDER, REVIEWS), "egress isolation is the source's, ingress stays open"


# ---------------------------------------------------------------------------------------------- the union

def test_policies_only_add_the_targets_drop_partition_is_a_no_op_next_to_an_allow() -> None:
    drop, allow = target_drop(), policy("allow-same-namespace", ALLOW_SAME_NAMESPACE)
    assert not allowed([drop], FRONTEND, REVIEWS)
    assert allowed([drop, allow], FRONTEND, REVIEWS), "what another policy admits stays admitted"
    verdict = PolicySet([drop, allow], NAMESPACES).verdict(FRONTEND, REVIEWS, 8080)
    assert set(verdict.ingress.isolated_by) == {"default/allow-same-namespace", drop.key}
    assert verdict.ingress.admitted_by == ("default/allow-same-namespace",)


def test_in_a_default_deny_namespace_the_targets_drop_partition_opens_the_callee_to_everyone_else() -> None:
    deny, drop = policy("deny-all", DENY_ALL), target_drop()
    assert not allowed([deny], CATALOG, REVIEWS) and not allowed([deny], OUTSIDER, REVIEWS)
    assert allowed([deny, drop], CATALOG, REVIEWS) and allowed([deny, drop], OUTSIDER, REVIEWS)
    assert allowed([deny, drop], SCRAPER, REVIEWS), "every namespace: the target's second peer has {}"
    assert not allowed([deny, drop], FRONTEND, REVIEWS)
    assert not allowed([deny, drop], FRONTEND, CATALOG), "other pods stay denied by deny-all"


def test_the_targets_drop_partition_alone_cuts_exactly_the_caller_to_callee_edge() -> None:
    drop = target_drop()
    assert not allowed([drop], FRONTEND, REVIEWS) and not allowed([drop], FRONTEND, REVIEWS_V2)
    assert allowed([drop], CATALOG, REVIEWS) and allowed([drop], OUTSIDER, REVIEWS)
    assert allowed([drop], FRONTEND, CATALOG) and allowed([drop], REVIEWS, FRONTEND)
    some = target_drop(some_pods=True)  # only the pods the target marked
    marked = pod("reviews-3", **{objects.partition_label("partition-abcd1234"): "true"})
    assert not allowed([some], FRONTEND, marked) and allowed([some], FRONTEND, REVIEWS)


def test_rules_are_or_ed_and_an_empty_rule_or_from_admits_every_source() -> None:
    two = policy("two", {"podSelector": {"matchLabels": {"app": "reviews"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"app": "catalog"}}}]},
        {"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]})
    assert allowed([two], FRONTEND, REVIEWS) and allowed([two], CATALOG, REVIEWS)
    assert not allowed([two], OUTSIDER, REVIEWS)
    for rules in ([{}], [{"from": []}], [{"ports": [{"port": 8080}]}]):
        everyone = policy("open", {"podSelector": {}, "ingress": rules})
        assert allowed([everyone], OUTSIDER, REVIEWS), rules


def test_peers_of_one_rule_are_or_ed() -> None:
    either = policy("either", {"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "catalog"}}}, {"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}]}]})
    assert allowed([either], CATALOG, REVIEWS) and allowed([either], SCRAPER, REVIEWS)
    assert not allowed([either], FRONTEND, REVIEWS) and not allowed([either], OUTSIDER, REVIEWS)


# ---------------------------------------------------------------------------------------------- peers

def test_a_pod_selector_alone_selects_pods_of_the_policys_own_namespace() -> None:
    frontends = policy("frontends", {"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "frontend"}}}]}]})
    assert allowed([frontends], FRONTEND, REVIEWS)
    assert not allowed([frontends], pod("frontend-9", "other"), REVIEWS)


def test_a_namespace_selector_alone_selects_every_pod_of_the_matching_namespaces() -> None:
    by_label = policy("shop", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "shop"}}}]}]})
    assert allowed([by_label], OUTSIDER, REVIEWS) and allowed([by_label], FRONTEND, REVIEWS)
    assert not allowed([by_label], SCRAPER, REVIEWS)
    any_namespace = policy("any", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    assert allowed([any_namespace], SCRAPER, REVIEWS)


def test_both_selectors_in_one_peer_and_in_two_peers_differ() -> None:
    """The classic: one peer with both is an AND, two peers an OR."""
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    prometheus = {"podSelector": {"matchLabels": {"app": "prometheus"}}}
    one = policy("one", {"podSelector": {}, "ingress": [{"from": [{**monitoring, **prometheus}]}]})
    two = policy("two", {"podSelector": {}, "ingress": [{"from": [monitoring, prometheus]}]})
    grafana = pod("grafana-1", "monitoring")
    assert allowed([one], SCRAPER, REVIEWS) and not allowed([one], grafana, REVIEWS)
    assert not allowed([one], pod("prometheus-2"), REVIEWS), "a prometheus pod in default is not in monitoring"
    assert allowed([two], grafana, REVIEWS) and allowed([two], pod("prometheus-2"), REVIEWS)


@pytest.mark.parametrize(("expression", "admitted"), [
    ({"key": "version", "operator": "In", "values": ["v2"]}, {"reviews-2"}),
    ({"key": "version", "operator": "NotIn", "values": ["v2"]}, {"reviews-1", "frontend-1"}),
    ({"key": "version", "operator": "Exists"}, {"reviews-1", "reviews-2"}),
    ({"key": "version", "operator": "DoesNotExist"}, {"frontend-1"}),
])
def test_match_expressions_operators(expression: dict[str, Any], admitted: set[str]) -> None:
    chosen = policy("expr", {"podSelector": {"matchLabels": {"app": "catalog"}}, "ingress": [{"from": [
        {"podSelector": {"matchExpressions": [expression]}}]}]})
    assert {p.name for p in (REVIEWS, REVIEWS_V2, FRONTEND) if allowed([chosen], p, CATALOG)} == admitted


def test_an_ip_block_reads_the_sandboxs_one_pod_ip() -> None:
    def block(cidr: str, *excepted: str) -> Policy:
        return policy("ip", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {
            "cidr": cidr, **({"except": list(excepted)} if excepted else {})}}]}]})

    assert allowed([block("127.0.0.0/8")], OUTSIDER, REVIEWS) and allowed([block("0.0.0.0/0")], FRONTEND, REVIEWS)
    assert not allowed([block("127.0.0.0/8", "127.0.0.1/32")], FRONTEND, REVIEWS)
    assert not allowed([block("10.0.0.0/8")], FRONTEND, REVIEWS), "a pod CIDR of a cluster matches no pod here"
    assert not allowed([block("::/0")], FRONTEND, REVIEWS)


# ---------------------------------------------------------------------------------------------- ports

def test_ports_by_number_range_name_and_protocol() -> None:
    def on(*ports: dict[str, Any]) -> Policy:
        return policy("ports", {"podSelector": {}, "ingress": [{"ports": list(ports)}]})

    assert allowed([on({"port": 8080})], FRONTEND, REVIEWS) and not allowed([on({"port": 9090})], FRONTEND, REVIEWS)
    assert allowed([on({"port": 8000, "endPort": 8100})], FRONTEND, REVIEWS)
    assert not allowed([on({"port": 8081, "endPort": 8100})], FRONTEND, REVIEWS)
    assert allowed([on({"port": "http"})], FRONTEND, REVIEWS), "a name is the destination's container port name"
    assert not allowed([on({"port": "grpc"})], FRONTEND, REVIEWS)
    assert not allowed([on({"port": 8080, "protocol": "UDP"})], FRONTEND, REVIEWS)
    assert allowed([on({"protocol": "TCP"})], FRONTEND, REVIEWS), "no port: every port of that protocol"
    assert allowed([on({"port": 9090}, {"port": 8080})], FRONTEND, REVIEWS), "ports are OR-ed"
    both = policy("both", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {
        "app": "catalog"}}}], "ports": [{"port": 8080}]}]})
    assert allowed([both], CATALOG, REVIEWS) and not allowed([both], CATALOG, REVIEWS, 9090)
    assert not allowed([both], FRONTEND, REVIEWS), "within a rule, peers AND ports"


# ---------------------------------------------------------------------------------------------- egress

def test_a_connection_needs_egress_at_the_source_and_ingress_at_the_destination() -> None:
    egress_to_catalog = policy("egress", {"podSelector": {"matchLabels": {"app": "frontend"}},
                                          "policyTypes": ["Egress"], "egress": [{"to": [
                                              {"podSelector": {"matchLabels": {"app": "catalog"}}}]}]})
    assert allowed([egress_to_catalog], FRONTEND, CATALOG) and not allowed([egress_to_catalog], FRONTEND, REVIEWS)
    assert allowed([egress_to_catalog], CATALOG, REVIEWS), "other sources are not isolated"
    deny_in = policy("deny-catalog", {"podSelector": {"matchLabels": {"app": "catalog"}}})
    verdict = PolicySet([egress_to_catalog, deny_in], NAMESPACES).verdict(FRONTEND, CATALOG, 8080)
    assert verdict.egress.allowed and not verdict.ingress.allowed and not verdict.allowed
    named = policy("named", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]})
    assert allowed([named], FRONTEND, REVIEWS), "an egress rule's named port is resolved on the destination"


# ---------------------------------------------------------------------------------------------- admission

def test_admission_sets_the_api_servers_defaults_and_drops_unknown_fields() -> None:
    stored, unknown = admit({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                             "metadata": {"name": "typo"}, "status": {},
                             "spec": {"podSelecter": {"matchLabels": {"app": "reviews"}},
                                      "ingress": [{"ports": [{"port": 8080}], "form": []}]}})
    assert unknown == ["spec.podSelecter", "spec.ingress[0].form"]
    # the typo is dropped, so the policy selects every pod of the namespace, as on a cluster
    assert stored["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"],
                              "ingress": [{"ports": [{"protocol": "TCP", "port": 8080}]}]}
    assert "status" not in stored
    stored, _ = admit({"metadata": {"name": "no-spec"}})
    assert stored["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}, "no spec: deny all ingress"


@pytest.mark.parametrize(("spec", "wording"), [
    ({"podSelector": {"matchLabels": {"version": 1}}}, "cannot unmarshal number into Go struct field "
                                                       "spec.podSelector.matchLabels.version of type string"),
    ({"ingress": {"from": []}}, "cannot unmarshal object into Go struct field spec.ingress of type array"),
    ({"ingress": [{"ports": [{"port": True}]}]}, "cannot unmarshal bool"),
])
def test_a_body_that_does_not_decode_is_refused(spec: dict[str, Any], wording: str) -> None:
    with pytest.raises(Undecodable, match=wording):
        admit({"metadata": {"name": "x"}, "spec": spec})


@pytest.mark.parametrize(("spec", "field", "wording"), [
    ({"ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]", "must specify a peer"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}, "spec.ingress[0].from[0]",
     "may not specify both ipBlock and another peer"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]", "strict subset"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0/8"}}]}]}, "spec.egress[0].to[0].ipBlock.cidr", "valid CIDR"),
    ({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}, "spec.ingress[0].ports[0].endPort",
     "non-numeric"),
    ({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "spec.ingress[0].ports[0].endPort",
     "greater than or equal"),
    ({"ingress": [{"ports": [{"port": 0}]}]}, "spec.ingress[0].ports[0].port", "between 1 and 65535"),
    ({"ingress": [{"ports": [{"port": "8080"}]}]}, "spec.ingress[0].ports[0].port", "IANA_SVC_NAME"),
    ({"ingress": [{"ports": [{"port": 80, "protocol": "ICMP"}]}]}, "spec.ingress[0].ports[0].protocol",
     "Unsupported value"),
    ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     "spec.podSelector.matchExpressions[0].values", "must be specified"),
    ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["a"]}]}},
     "spec.podSelector.matchExpressions[0].values", "may not be specified"),
    ({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["a"]}]}},
     "spec.podSelector.matchExpressions[0].operator", "not a valid selector operator"),
    ({"podSelector": {"matchLabels": {"app": "not ok"}}}, "spec.podSelector.matchLabels", "a valid label"),
    ({"policyTypes": ["Ingress", "Egress", "Ingress"]}, "spec.policyTypes", "more than two"),
    ({"policyTypes": ["ingress"]}, "spec.policyTypes[0]", "Unsupported value"),
])
def test_what_the_api_server_refuses_is_refused_with_its_field(spec: dict[str, Any], field: str,
                                                              wording: str) -> None:
    with pytest.raises(Invalid) as refused:
        admit({"metadata": {"name": "x"}, "spec": spec})
    assert any(path == field and wording in message for path, message in refused.value.causes), \
        refused.value.causes


def test_every_valid_shape_is_admitted_whatever_it_means() -> None:
    """Nothing is refused for a shape the emulation does not "understand": only the API server's checks."""
    for spec in ({"podSelector": {}, "policyTypes": ["Egress"]},
                 {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
                  "ingress": [{"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                               "ports": [{"port": 1000, "endPort": 2000, "protocol": "SCTP"}]}],
                  "egress": [{}]}):
        admit({"metadata": {"name": "odd"}, "spec": spec})
    with pytest.raises(Invalid, match="RFC 1123"):
        admit({"metadata": {"name": "Not_A_Name"}, "spec": {}})


# ---------------------------------------------------------------------------------------------- the sandbox

def test_what_the_sandbox_cannot_carry_out_is_named() -> None:
    gateway = PodRef("istio-ingressgateway", "istio-system", {"app": "istio-ingressgateway"})
    pods = [FRONTEND, REVIEWS]
    assert sandbox_limits(target_drop(), pods, gateway) == [
        "Ingress: the sandbox's Prometheus is not a pod and scrapes every pod unfiltered; on a cluster its scrapes "
        "(port 15020) need an ingress rule too"]
    egress = policy("egress", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 53, "protocol": "UDP"}]},
        {"ports": [{"port": 9090}, {"port": "grpc"}]}]})
    notes = sandbox_limits(egress, pods, gateway)
    assert notes[0].startswith("Egress: only the mesh's pod-to-pod connections exist here; on a cluster DNS")
    assert "egress[0].ports[0]: protocol UDP: the sandbox carries only TCP" in notes
    assert any(n.startswith("egress[0].to[0].ipBlock 10.0.0.0/8: every pod's IP is 127.0.0.1 here, so it admits "
                            "no pod") for n in notes)
    assert "egress[1].ports[0]: port 9090 carries no traffic here (the pods serve 8080)" in notes
    assert "egress[1].ports[1]: named port 'grpc' is no container port of any pod here" in notes
    at_gateway = policy("gw", {"podSelector": {"matchLabels": {"app": "istio-ingressgateway"}}}, "istio-system")
    assert any("traffic from outside the cluster is not filtered" in n
               for n in sandbox_limits(at_gateway, pods, gateway))
