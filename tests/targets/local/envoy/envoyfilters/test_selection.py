"""Which EnvoyFilters reach a proxy and in which order (``envoyfilters.selection``), as istiod decides.
"""

from __future__ import annotations

from chaosmesh_qa.targets.local.envoy import envoyfilters as ef
from chaosmesh_qa.targets.local.envoy.envoyfilters import Proxy
from tests.support.envoyfilters import (
    FAULT,
    GATEWAY,
    JSON,
    ROUTER,
    SIDECAR,
    apply_listeners,
    cp,
    fault_value,
    filt,
    http_filters,
    inbound,
    insert_fault,
    on_hcm,
)

# --------------------------------------------------------------------------- selection and order


def test_root_namespace_filters_reach_every_proxy_others_only_their_namespace() -> None:
    root = filt(namespace="istio-system", name="root")
    own = filt(namespace="shop", name="own")
    other = filt(namespace="billing", name="other")
    assert [o.name for o in ef.filters_for([other, own, root], SIDECAR)] == ["root", "own"]
    assert [o.name for o in ef.filters_for([other, own, root], GATEWAY)] == ["root"]  # gateway lives in the root
    assert [o.name for o in ef.filters_for([root], SIDECAR, root_namespace="mesh-root")] == []


def test_workload_selector_must_be_a_subset_of_the_proxy_labels() -> None:
    def chosen(labels: dict[str, str] | None) -> bool:
        selected = filt() if labels is None else filt(workloadSelector={"labels": labels})
        return bool(ef.filters_for([selected], SIDECAR))

    assert chosen(None)
    assert chosen({})
    assert chosen({"app": "catalog"})
    assert chosen({"app": "catalog", "version": "v1"})
    assert not chosen({"app": "catalog", "version": "v2"})
    assert not chosen({"app": "catalog", "tier": "web"})
    root = filt(namespace="istio-system", workloadSelector={"labels": {"app": "reviews"}})
    assert ef.filters_for([root], SIDECAR) == []  # the root namespace does not widen a selector


def test_target_refs_only_reach_the_gateway_api_gateway_they_name() -> None:
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web"}
    with_ref = filt(targetRefs=[ref])
    assert ef.filters_for([with_ref], SIDECAR) == []  # istiod ignores a targetRefs policy on a sidecar
    web = Proxy("shop", {"gateway.networking.k8s.io/gateway-name": "web"}, "gateway")
    other = Proxy("shop", {"gateway.networking.k8s.io/gateway-name": "api"}, "gateway")
    assert ef.filters_for([with_ref], web) == [with_ref]
    assert ef.filters_for([with_ref], other) == []
    assert ef.filters_for([filt()], web) != []  # no targetRefs: the selector (none) decides


def test_order_is_priority_then_root_namespace_then_creation_then_name() -> None:
    objects = [
        filt(namespace="shop", name="b-late", order=5),
        filt(namespace="shop", name="a-late", order=5),
        filt(namespace="shop", name="early", order=1),
        filt(namespace="istio-system", name="root-late", order=9),
        filt(namespace="shop", name="first", order=7, priority=-10),
        filt(namespace="istio-system", name="root-last", order=0, priority=10),
    ]
    assert [o.name for o in ef.filters_for(objects, SIDECAR)] == [
        "first", "root-late", "early", "a-late", "b-late", "root-last"]


def test_patches_apply_in_filter_order_each_seeing_the_previous_result() -> None:
    """Two INSERT_BEFORE router: the later filter's lands between the earlier's and the router."""
    first = filt(insert_fault(), name="first", order=1)
    second = filt(cp("HTTP_FILTER", "INSERT_BEFORE", fault_value("second"), context="SIDECAR_INBOUND",
                     listener=on_hcm(ROUTER)), name="second", order=2)
    out = apply_listeners([inbound()], second, first)
    assert http_filters(out[0]) == [FAULT, "team.fault", "second", ROUTER]
    prioritised = filt(cp("HTTP_FILTER", "INSERT_BEFORE", fault_value("second"), context="SIDECAR_INBOUND",
                          listener=on_hcm(ROUTER)), name="second", order=2, priority=-1)
    assert http_filters(apply_listeners([inbound()], prioritised, first)[0]) == [FAULT, "second", "team.fault",
                                                                                   ROUTER]


def test_proxy_match_on_version_regex_and_metadata() -> None:
    def applies(proxy_match: JSON) -> bool:
        patch = insert_fault()
        patch["match"]["proxy"] = proxy_match
        return "team.fault" in http_filters(apply_listeners([inbound()], filt(patch))[0])

    assert applies({"proxyVersion": r"^1\.29.*"})
    assert not applies({"proxyVersion": r"^1\.28.*"})
    assert applies({"metadata": {"CLUSTER_ID": "Kubernetes"}})
    assert not applies({"metadata": {"CLUSTER_ID": "remote"}})
    assert not applies({"proxyVersion": "1" * 1025})  # too long: istiod fails closed
