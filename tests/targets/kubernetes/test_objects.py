"""The object builders of the Kubernetes target: the shapes the contract (docs/kubernetes-target.md) names."""

from __future__ import annotations

import json

import re2

from chaosmesh_qa.targets.kubernetes import objects


def test_every_object_carries_manager_fault_id_and_expiry() -> None:
    bodies = [
        objects.envoy_filter("abort-1a2b3c4d", 1700000000.5, "shop", {"app": "reviews"}, [9080],
                             objects.abort_fault(503, 30), None),
        objects.network_policy("partition-0f0f0f0f", 1700000000.0, "shop", "to", "frontend", "reviews", False),
        objects.authorization_policy("partition-0f0f0f0f", 1.0, "shop", "from", "frontend",
                                     ["cluster.local/ns/shop/sa/reviews"], True),
        objects.lease_configmap({"fault_id": "latency-00000001", "owner": "host:1", "expires_at": 2.0}, [], "shop"),
    ]
    for body in bodies:
        metadata = body["metadata"]
        assert metadata["labels"][objects.MANAGED_BY] == "chaosmesh-qa"
        assert metadata["labels"][objects.FAULT_ID].split("-")[0] in ("abort", "partition", "latency")
        assert float(metadata["annotations"][objects.EXPIRES_AT]) > 0
        assert metadata["namespace"] == "shop"


def test_edge_fault_is_an_inbound_fault_filter_of_its_own_matching_the_callers_last_xfcc_element() -> None:
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


def test_partition_policies_select_the_callee_and_spare_everyone_but_the_caller() -> None:
    drop = objects.network_policy("partition-abcd1234", 1.0, "shop", "to", "frontend", "reviews", True)
    selector = drop["spec"]["podSelector"]["matchLabels"]
    assert selector == {"app": "reviews", "chaosmesh-qa.io/partition-abcd1234": "true"}
    others = {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["frontend"]}]}
    assert drop["spec"]["ingress"] == [{"from": [{"podSelector": others},
                                                 {"namespaceSelector": {}, "podSelector": others}]}]
    assert drop["metadata"]["name"] == "chaosmesh-qa-partition-abcd1234-to"
    reject = objects.authorization_policy("partition-abcd1234", 1.0, "shop", "to", "reviews",
                                          ["cluster.local/ns/shop/sa/frontend"], False)
    assert reject["spec"]["action"] == "DENY"
    assert reject["spec"]["selector"] == {"matchLabels": {"app": "reviews"}}
    assert reject["spec"]["rules"] == [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/frontend"]}}]}]


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
