"""The object builders of the Kubernetes target: the shapes the contract (docs/reference/kubernetes-target.md) names."""

from __future__ import annotations

import json
from typing import Any

import pytest
import re2

from chaosmesh_qa.targets.kubernetes import objects
from chaosmesh_qa.targets.kubernetes.workloads import selector_matches


def test_every_object_carries_manager_fault_id_and_expiry() -> None:
    bodies = [
        objects.envoy_filter("abort-1a2b3c4d", 1700000000.5, "shop", {"app": "reviews"}, [9080],
                             objects.abort_fault(503, 30), None),
        objects.network_policy("partition-0f0f0f0f", 1700000000.0, "shop", "to", {"app": "frontend"},
                               {"app": "reviews"}, False),
        objects.lease_configmap({"fault_id": "latency-00000001", "owner": "host:1", "expires_at": 2.0}, [], "shop"),
    ]
    for body in bodies:
        metadata = body["metadata"]
        assert metadata["labels"][objects.MANAGED_BY] == "chaosmesh-qa"
        assert metadata["labels"][objects.FAULT_ID].split("-")[0] in ("abort", "partition", "latency")
        assert float(metadata["annotations"][objects.EXPIRES_AT]) > 0
        assert metadata["namespace"] == "shop"


def test_point11_and_point3_an_edge_fault_is_an_inbound_filter_of_its_own_matching_the_last_xfcc_element() -> None:
    """Issue 18 points 3 and 11: the Service's own selector, one patch per target port, a filter name of its own,
    and the caller matched whole in the last XFCC element (what the callee's sidecar appended)."""
    selector = {"app.kubernetes.io/name": "reviews-api"}
    body = objects.envoy_filter("latency-1", 10.0, "shop", selector, [9080, 8080], objects.delay_fault(200, 100),
                                objects.spiffe_principal("shop", "frontend", trust_domain="prod.example.com"))
    assert body["apiVersion"] == "networking.istio.io/v1alpha3"
    assert body["spec"]["workloadSelector"] == {"labels": selector}
    patches = body["spec"]["configPatches"]
    assert [p["match"]["listener"]["portNumber"] for p in patches] == [8080, 9080]
    for patch in patches:
        assert patch["match"]["context"] == "SIDECAR_INBOUND"
        assert patch["patch"]["operation"] == "INSERT_BEFORE"
        assert patch["patch"]["value"]["name"] == "chaosmesh-qa.latency-1"
        typed = patch["patch"]["value"]["typed_config"]
        assert typed["delay"] == {"fixed_delay": "0.200s", "percentage": {"numerator": 100,
                                                                         "denominator": "HUNDRED"}}
        (matcher,) = typed["headers"]
        assert matcher["name"] == "x-forwarded-client-cert"
    regex = re2.compile(matcher["string_match"]["safe_regex"]["regex"])
    me = "URI=spiffe://prod.example.com/ns/shop/sa/frontend"
    assert regex.search(f'By=spiffe://prod.example.com/ns/shop/sa/reviews;Hash=ab;Subject="";{me};DNS=f.shop.svc')
    assert regex.search(f"By=x;Hash=1;{me}")
    assert regex.search(f"By=a;Hash=0;URI=spiffe://prod.example.com/ns/shop/sa/gateway,By=x;Hash=1;{me}")
    for other in (f"By=x;Hash=1;{me}-v2", f"By=x;Hash=1;{me},By=y;Hash=2;URI=spiffe://prod.example.com/ns/shop/sa/x",
                  "By=x;Hash=1;URI=spiffe://cluster.local/ns/shop/sa/frontend"):
        assert not regex.search(other), other
    service_wide = objects.envoy_filter("abort-1", 10.0, "shop", selector, [9080], objects.abort_fault(503, 30), None)
    assert "headers" not in service_wide["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]


def test_a_drop_policy_selects_the_callee_and_spares_every_pod_the_caller_selector_does_not_select() -> None:
    """The Services' own selectors (issue 18 point 2): "not the caller" is one peer per label of its selector."""
    caller = {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "shop"}
    drop = objects.network_policy("partition-abcd1234", 1.0, "shop", "to", caller,
                                  {"app.kubernetes.io/name": "reviews-api"}, True)
    selector = drop["spec"]["podSelector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "reviews-api", "chaosmesh-qa.io/partition-abcd1234": "true"}
    peers = [{"matchExpressions": [{"key": "app.kubernetes.io/instance", "operator": "NotIn", "values": ["shop"]}]},
             {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "NotIn", "values": ["web"]}]}]
    assert drop["spec"]["ingress"] == [{"from": [*({"podSelector": p} for p in peers),
                                                 *({"namespaceSelector": {}, "podSelector": p} for p in peers)]}]
    assert drop["metadata"]["name"] == "chaosmesh-qa-partition-abcd1234-to"


@pytest.mark.parametrize(("selector", "labels", "selected"), [
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
])
def test_label_selectors_select_as_kubernetes_does(selector: dict[str, Any], labels: dict[str, str],
                                                   selected: bool) -> None:
    assert selector_matches(selector, labels) is selected


def test_pod_mark_and_restore_give_back_exactly_the_original() -> None:
    original = {"name": "reviews-v1-abc", "labels": {"app": "reviews", "zone": "a"},
                "annotations": {"keep": "me"}}
    label = {objects.partition_label("partition-11112222"): "true", "zone": "b"}
    patch = objects.mark_pod_patch(original, "partition-11112222", label)
    marked = _merge(original, patch["metadata"])
    assert marked["labels"]["zone"] == "b" and marked["labels"]["chaosmesh-qa.io/partition-11112222"] == "true"
    # a second fault marks the same pod: each restores only its own change
    second = objects.mark_pod_patch(marked, "partition-33334444", {"chaosmesh-qa.io/partition-33334444": "true"})
    marked = _merge(marked, second["metadata"])
    first_restore = objects.restore_pod_patch(marked, "partition-11112222")
    assert first_restore is not None
    marked = _merge(marked, first_restore["metadata"])
    assert marked["labels"]["zone"] == "a" and "chaosmesh-qa.io/partition-33334444" in marked["labels"]
    last = objects.restore_pod_patch(marked, "partition-33334444")
    assert last is not None
    assert _merge(marked, last["metadata"]) == original
    assert objects.restore_pod_patch(original, "partition-33334444") is None, "nothing of it left: no patch"


def test_lease_names_the_record_and_its_undo_list() -> None:
    record = {"fault_id": "abort-99998888", "owner": "laptop:4242", "expires_at": 12.5}
    undo = [objects.object_ref(objects.ENVOYFILTER, "shop", "chaosmesh-qa-abort-99998888")]
    lease = objects.lease_configmap(record, undo, "shop")
    assert lease["metadata"]["name"] == "chaosmesh-qa-lease-abort-99998888"
    assert lease["metadata"]["labels"][objects.OWNER_HASH] == objects.owner_hash("laptop:4242")
    assert json.loads(lease["data"]["record.json"]) == record
    assert json.loads(lease["data"]["undo.json"]) == undo


def _merge(metadata: dict, patch: dict) -> dict:  # type: ignore[type-arg]
    """JSON merge patch (RFC 7386) of labels/annotations, as the API server applies it."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in metadata.items()}
    for field in ("labels", "annotations"):
        for key, value in (patch.get(field) or {}).items():
            current = merged.setdefault(field, {})
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        if field in merged and not merged[field] and field not in metadata:
            del merged[field]
    return merged


def test_issue21_a_fault_toward_an_external_host_is_an_outbound_filter_matching_its_authority_only() -> None:
    from chaosmesh_qa.targets.kubernetes import external

    one = external.outbound_fault_filter("latency-1a2b3c4d", 1.0, "shop", {"app": "checkout"},
                                         "api.payments.example.com", objects.delay_fault(4000, 100), "f")
    every = external.outbound_fault_filter("latency-1a2b3c4d", 1.0, "shop", None, "api.payments.example.com",
                                           objects.delay_fault(4000, 100), "f")
    assert one["spec"]["workloadSelector"] == {"labels": {"app": "checkout"}}
    assert "workloadSelector" not in every["spec"]
    (patch,) = every["spec"]["configPatches"]
    assert patch["match"]["context"] == "SIDECAR_OUTBOUND" and "portNumber" not in patch["match"]["listener"]
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    value = patch["patch"]["value"]
    assert value["name"] == "chaosmesh-qa.latency-1a2b3c4d"
    (header,) = value["typed_config"]["headers"]
    assert header["name"] == ":authority"
    pattern = re2.compile(header["string_match"]["safe_regex"]["regex"])
    for authority, hit in (("api.payments.example.com", True), ("api.payments.example.com:80", True),
                           ("api.payments.example.com.evil", False), ("apixpayments.example.com", False),
                           ("checkout", False)):
        assert bool(pattern.fullmatch(authority)) is hit, authority
