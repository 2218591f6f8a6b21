"""Localities of pods and Istio's locality load balancing rules (issue 20), without a process.

Where a pod's locality comes from (the Mesh document's ``zones``, a manifest's topology labels or Istio's
``istio-locality`` label); the priorities and weights ``mesh.localities.assign`` gives a caller in zone a, rule by
rule as istiod's ``ApplyLocalityLoadBalancer`` derives them; the input istiod's webhook refuses (one line each);
and ``explain``'s findings for settings that cannot work.  The same rules measured on real Envoys:
tests/targets/local/test_locality_traffic.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.errors import InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.explain import explain
from chaosmesh_qa.mesh.localities import Distribute, Locality, LocalityLbSetting, Member, assign, from_labels
from tests.support.editing import append, mesh_with, replace
from tests.support.manifests import deployment, service

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
CALLER = Locality("r1", "a")


def members(*spec: str) -> list[Member]:
    """``pod@region/zone[/subzone][+label=value]`` -> members."""
    found = []
    for item in spec:
        pod, rest = item.split("@")
        where, _, label = rest.partition("+")
        labels = dict([label.split("=")]) if label else {}
        found.append(Member(pod, Locality.parse(where), labels))
    return found


def ranks(groups: list) -> dict[str, tuple[int, int]]:  # type: ignore[type-arg]
    return {pod: (g.priority, g.weight) for g in groups for pod in g.endpoints}


# ------------------------------------------------------------------ where localities come from


def test_zones_spread_the_replicas_round_robin_in_the_mesh_region() -> None:
    model = load_mesh(PROFILES / "zones").model
    assert model.services["frontend"].versions[0].localities == ("r1/a",)
    assert model.services["catalog"].versions[0].localities == ("r1/a", "r1/b")
    assert [model.services["catalog"].versions[0].locality(i) for i in range(3)] == ["r1/a", "r1/b", "r1/a"]


def test_a_zone_may_name_its_region_and_subzone_and_the_region_defaults(tmp_path: Path) -> None:
    mesh = mesh_with(tmp_path, replace("mesh.yaml", "- {name: v1, replicas: 2}\n    app:\n      calls:\n      - "
                                       "{service: inventory",
                                       "- {name: v1, replicas: 3, zones: [a, eu/b, eu/c/rack-1]}\n    app:\n"
                                       "      calls:\n      - {service: inventory"))
    version = load_mesh(mesh).model.services["catalog"].versions[0]
    assert version.localities == ("region-1/a", "eu/b", "eu/c/rack-1")
    assert load_mesh(mesh).model.services["inventory"].versions[0].localities == ()  # none given: none


def test_istio_labels_give_the_locality_of_a_manifest_pod(tmp_path: Path) -> None:
    labelled = deployment("cart", "cart").replace("tier: backend}", "tier: backend, topology.kubernetes.io/region: "
                                                  "us, topology.kubernetes.io/zone: us-1, topology.istio.io/subzone: "
                                                  "rack7}")
    overlay = ("apiVersion: chaosmesh-qa.io/v1alpha1\nkind: Mesh\nmetadata: {name: shop}\nspec:\n"
               "  ingress: {service: cart}\n")
    (tmp_path / "apps.yaml").write_text(f"{labelled}---\n{service('cart')}---\n{overlay}", encoding="utf-8")
    assert load_mesh(tmp_path).model.services["cart"].versions[0].localities == ("us/us-1/rack7",) * 2
    assert from_labels({"istio-locality": "eu.west-1.r2"}) == Locality("eu", "west-1", "r2")
    assert from_labels({"istio-locality": "eu.x", "topology.kubernetes.io/region": "us"}) == Locality("eu", "x")
    assert from_labels({"app": "x"}) is None
    assert str(from_labels({"topology.kubernetes.io/zone": "z"})) == "/z"  # a zone without region, as Istio keeps it
    assert Locality.parse("/z") == Locality("", "z") and str(Locality("r", "", "s")) == "r//s"


def test_an_overlay_spreads_a_manifest_workload_over_zones(tmp_path: Path) -> None:
    overlay = ("apiVersion: chaosmesh-qa.io/v1alpha1\nkind: Mesh\nmetadata: {name: shop}\nspec:\n  region: us\n"
               "  ingress: {service: cart}\n  services:\n  - name: cart\n    versions: [{name: v1, zones: [a, b]}]\n")
    (tmp_path / "apps.yaml").write_text(f"{deployment('cart', 'cart')}---\n{service('cart')}---\n{overlay}",
                                        encoding="utf-8")
    assert load_mesh(tmp_path).model.services["cart"].versions[0].localities == ("us/a", "us/b")


# ------------------------------------------------------------------ Istio's priorities and weights


def test_without_outlier_detection_there_is_no_locality_preference() -> None:
    groups = assign(CALLER, {}, members("a@r1/a", "b@r1/b", "c@r2/a"), None, outlier_detection=False)
    assert ranks(groups) == {"a": (0, 1), "b": (0, 1), "c": (0, 1)}


def test_default_failover_ranks_by_subzone_zone_region_match() -> None:
    caller = Locality("r1", "a", "s1")
    groups = assign(caller, {}, members("same@r1/a/s1", "zone@r1/a/s2", "region@r1/b/s1", "other@r2/a/s1",
                                        "same2@r1/a/s1"), None, outlier_detection=True)
    assert ranks(groups) == {"same": (0, 2), "same2": (0, 2), "zone": (1, 1), "region": (2, 1), "other": (3, 1)}


def test_priorities_have_no_gaps_for_the_zone_a_caller() -> None:
    groups = assign(CALLER, {}, members("a1@r1/a", "a2@r1/a", "b@r1/b"), None, outlier_detection=True)
    assert ranks(groups) == {"a1": (0, 2), "a2": (0, 2), "b": (1, 1)}  # 0 and 2 become 0 and 1


def test_failover_sends_another_region_to_the_declared_one_first() -> None:
    rule = LocalityLbSetting(failover=(("r1", "r2"),))
    groups = assign(CALLER, {}, members("b@r1/b", "r2@r2/a", "r3@r3/a"), rule, outlier_detection=True)
    assert ranks(groups) == {"b": (0, 1), "r2": (1, 1), "r3": (2, 1)}
    plain = assign(CALLER, {}, members("r2@r2/a", "r3@r3/a"), None, outlier_detection=True)
    assert ranks(plain) == {"r2": (0, 1), "r3": (0, 1)}  # without the rule: both alike
    # a rule from another region does not apply to a caller in r1
    other = assign(CALLER, {}, members("r2@r2/a", "r3@r3/a"), LocalityLbSetting(failover=(("r9", "r3"),)), True)
    assert ranks(other) == {"r2": (0, 1), "r3": (0, 1)}


def test_failover_priority_ranks_by_the_first_label_that_differs() -> None:
    rule = LocalityLbSetting(failover_priority=("tier", "topology.kubernetes.io/zone"))
    groups = assign(CALLER, {"tier": "gold"}, members("gold-b@r1/b+tier=gold", "gold-a@r1/a+tier=gold",
                                                      "silver-a@r1/a+tier=silver"), rule, outlier_detection=True)
    # gold in a: 0; gold in b: the zone differs (1); silver: the first label differs (2)
    assert ranks(groups) == {"gold-a": (0, 1), "gold-b": (1, 1), "silver-a": (2, 1)}
    forced = assign(CALLER, {"tier": "gold"}, members("g@r1/a+tier=gold", "s@r1/b+tier=silver"),
                    LocalityLbSetting(failover_priority=("tier=silver",)), outlier_detection=True)
    assert ranks(forced) == {"s": (0, 1), "g": (1, 1)}  # label=value overrides the caller's value


def test_failover_priority_with_failover_ranks_labels_first_then_regions() -> None:
    rule = LocalityLbSetting(failover=(("r1", "r3"),), failover_priority=("tier",))
    groups = assign(CALLER, {"tier": "gold"}, members("g2@r2/a+tier=gold", "g3@r3/a+tier=gold",
                                                      "s1@r1/a+tier=silver"), rule, outlier_detection=True)
    assert ranks(groups) == {"g3": (0, 1), "g2": (1, 1), "s1": (2, 1)}


def test_distribute_weights_the_localities_and_drops_the_others() -> None:
    rule = LocalityLbSetting(distribute=(Distribute("r1/a/*", (("r1/a/*", 80), ("r1/b/*", 20))),))
    groups = assign(CALLER, {}, members("a1@r1/a", "a2@r1/a/x", "b@r1/b", "c@r1/c"), rule, outlier_detection=False)
    # r1/a/* matches two groups (weights 1 and 1): 80 split by their weights; r1/c gets nothing
    assert ranks(groups) == {"a1": (0, 40), "a2": (0, 40), "b": (0, 20)}
    elsewhere = assign(Locality("r2", "a"), {}, members("a1@r1/a", "b@r1/b"), rule, outlier_detection=True)
    assert ranks(elsewhere) == {"a1": (0, 1), "b": (0, 1)}  # no 'from' matches: unchanged (and no failover)


def test_enabled_false_turns_it_off() -> None:
    groups = assign(CALLER, {}, members("a@r1/a", "b@r1/b"), LocalityLbSetting(enabled=False), True)
    assert ranks(groups) == {"a": (0, 1), "b": (0, 1)}


def test_the_destination_rule_setting_reaches_the_model_and_its_subsets() -> None:
    model = load_mesh(PROFILES / "locality-rules").model
    assert model.policies["remote"].locality_lb == LocalityLbSetting(failover=(("r1", "r2"),))
    assert model.policies["spread"].locality_lb == LocalityLbSetting(
        distribute=(Distribute("r1/a/*", (("r1/a/*", 80), ("r1/b/*", 20))),))
    assert model.policies["tiered"].locality_lb == LocalityLbSetting(failover_priority=("tier",))


# ------------------------------------------------------------------ bad input: one line, as istiod refuses it

LB = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: frontend}\nspec:\n" \
     "  host: frontend\n  trafficPolicy:\n    outlierDetection: {}\n    loadBalancer:\n      localityLbSetting:\n"


@pytest.mark.parametrize(("setting", "expected"), [
    ("        distribute: [{from: r1/a/*, to: {r1/a/*: 70, r1/b/*: 20}}]\n",
     "localityLbSetting: distribute[0].to: weights sum to 90, expected 100 (as in Istio)"),
    ("        distribute: [{from: r1/a/*, to: {r1/a/*: 0, r1/b/*: 100}}]\n",
     "distribute[0].to['r1/a/*']: weight must be in 1..100"),
    ("        distribute: [{from: r1/a, to: {r1/a: 100}}]\n        failover: [{from: r1, to: r2}]\n",
     "distribute, failover: cannot be given together"),
    ("        failover: [{from: r1, to: r1}]\n", "failover[0]: from and to are the same region 'r1'"),
    ("        failover: [{from: r1, to: r2/a}]\n", "failover[0]: from and to are regions"),
    ("        failover: [{from: r1, to: r2}]\n        failoverPriority: [topology.kubernetes.io/zone]\n",
     "failoverPriority: 'topology.kubernetes.io/zone' cannot be given with failover"),
    ("        distribute: [{from: 'r1/*/a', to: {r1: 100}}]\n", "is not a locality"),
    ("        distribute: [{from: r1, to: {r1: 50, r1/a: 50}}]\n", "'r1/a' overlaps 'r1'"),
])
def test_settings_istiod_refuses_are_one_line(tmp_path: Path, setting: str, expected: str) -> None:
    mesh = mesh_with(tmp_path, append("locality.yaml", LB + setting))
    with pytest.raises(InvalidMeshConfig) as err:
        load_mesh(mesh)
    line = str(err.value)
    assert "\n" not in line.strip() and "locality.yaml: DestinationRule/frontend: " \
        "spec.trafficPolicy.loadBalancer.localityLbSetting" in line and expected in line, line


@pytest.mark.parametrize(("edit", "expected"), [
    (replace("mesh.yaml", "- {name: v1, replicas: 2}\n    app:\n      calls:\n      - {service: inventory",
             "- {name: v1, replicas: 2, zones: [a/]}\n    app:\n      calls:\n      - {service: inventory"),
     "spec.services[1].versions[0].zones[0]: 'a/' is not a locality"),
    (replace("mesh.yaml", "- {name: v1, replicas: 2}\n    app:\n      calls:\n      - {service: inventory",
             "- {name: v1, replicas: 2, zones: []}\n    app:\n      calls:\n      - {service: inventory"),
     "spec.services[1].versions[0].zones"),
    (replace("mesh.yaml", "- {name: v1, replicas: 2}\n    app:\n      calls:\n      - {service: inventory",
             "- {name: v1, replicas: 2, zones: [a], labels: {topology.kubernetes.io/zone: b}}\n    app:\n"
             "      calls:\n      - {service: inventory"),
     "spec.services[1].versions[0].zones: the version's labels already give its locality"),
    (replace("mesh.yaml", "spec:\n  ingress:", "spec:\n  region: r/1\n  ingress:"), "spec.region"),
])
def test_bad_zones_are_one_line(tmp_path: Path, edit: object, expected: str) -> None:
    with pytest.raises(InvalidMeshConfig) as err:
        load_mesh(mesh_with(tmp_path, edit))  # type: ignore[arg-type]
    assert expected in str(err.value) and "mesh.yaml: Mesh/shop: " in str(err.value), str(err.value)


def test_locality_lb_setting_is_no_longer_an_unsupported_field(tmp_path: Path) -> None:
    mesh = mesh_with(tmp_path, append("locality.yaml", LB
                                      + "        enabled: false\n"))
    loaded = load_mesh(mesh)
    assert not [w for w in loaded.warnings if "localityLbSetting" in w]
    assert loaded.model.policies["frontend"].locality_lb == LocalityLbSetting(enabled=False)


# ------------------------------------------------------------------ explain


def _codes(mesh: Path) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for finding in explain(mesh)["findings"]:
        if finding["code"].startswith("CMQ-L"):
            found.setdefault(finding["code"], []).append(finding)
    return found


def test_explain_finds_the_locality_settings_that_cannot_work(tmp_path: Path) -> None:
    zoned = "- {name: v1, replicas: 2, zones: [r1/a, r2/a]}\n    app:\n      calls:\n      - {service: inventory"
    mesh = mesh_with(tmp_path, replace("mesh.yaml", "- {name: v1, replicas: 2}\n    app:\n      calls:\n      - "
                                       "{service: inventory", zoned),
                     replace("traffic.yaml", "    loadBalancer: {simple: ROUND_ROBIN}\n",
                             "    loadBalancer:\n      simple: ROUND_ROBIN\n      localityLbSetting:\n"
                             "        failover: [{from: r1, to: r9}]\n        failoverPriority: [tier]\n"),
                     replace("traffic.yaml", "  host: inventory\n  trafficPolicy:\n",
                             "  host: inventory\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n"
                             "        enabled: true\n"))
    found = _codes(mesh)
    assert [f["message"] for f in found["CMQ-L002"]] == [
        "catalog: failover from r1 to region 'r9', where it has no pod"]
    assert found["CMQ-L002"][0]["location"].endswith(
        "traffic.yaml: DestinationRule/catalog: spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].to")
    assert [f["message"] for f in found["CMQ-L004"]] == ["catalog: failoverPriority label 'tier' is on none of "
                                                         "its pods"]
    assert [f["message"] for f in found["CMQ-L001"]] == ["inventory: localityLbSetting without outlierDetection"]
    assert "CMQ-L003" not in found


def test_explain_finds_a_distribute_target_without_pods_and_is_quiet_on_working_rules(tmp_path: Path) -> None:
    assert _codes(PROFILES / "locality-rules") == {}
    assert _codes(PROFILES / "zones") == {}
    mesh = mesh_with(tmp_path, append("locality.yaml", LB.replace(
        "    outlierDetection: {}\n", "") + "        distribute: [{from: '*', to: {r1/a: 60, r5: 40}}]\n"),
        replace("mesh.yaml", "    - {name: v1, replicas: 1}\n", "    - {name: v1, replicas: 1, zones: [r1/a]}\n"))
    found = _codes(mesh)
    assert [f["message"] for f in found["CMQ-L003"]] == ["frontend: distribute sends 40% from * to r5, where it has "
                                                         "no pod"]
    assert "CMQ-L001" not in found  # distribute acts without outlier detection
