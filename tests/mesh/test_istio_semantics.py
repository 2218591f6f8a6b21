"""Accepted input means what Istio documents, or is refused, or warns with its consequence.

A corpus of small configurations, written for these tests in the shapes teams' repositories use,
each with its expected result: accepted silently, a warning naming what the sandbox does
instead, or a one-line error.  Next to it, what the resolved model and the generated Envoy
configuration say for each silent-difference case of issue 10 (``*`` in AuthorizationPolicy
values, the deprecated ``fault.delay.percent``, auto mTLS toward a ``DISABLE`` workload,
``sourceLabels``, policies selecting the ingress gateway, relative weights, duplicate names).
The traffic side is ``tests/targets/local/test_istio_semantics_traffic.py``, on
``tests.support.semantics.SEMANTICS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidArgument, InvalidMeshConfig
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.authz import enforced_at_ingress
from chaosmesh_qa.mesh.callers import routes_seen_by
from chaosmesh_qa.mesh.loader import LoadedMesh
from chaosmesh_qa.mesh.routing import expected_shares
from chaosmesh_qa.targets.local.envoy import clusters, routes
from chaosmesh_qa.targets.local.envoy.common import cluster_name
from chaosmesh_qa.targets.local.envoy.rbac import rbac_filters
from chaosmesh_qa.targets.local.envoy_validation import validate_with_envoy
from tests.support.semantics import SEMANTICS, SUBSETS, write_mesh


def load(tmp_path: Path, istio: str) -> LoadedMesh:
    return load_mesh(write_mesh(tmp_path / "mesh", istio))


@dataclass(frozen=True)
class Case:
    id: str
    istio: str
    warning: str | None = None  # a warning holding this text is expected (None: no warning at all)
    error: str | None = None  # loading fails with a problem holding this text


def _vs(http: str, hosts: str = "[reviews]", name: str = "reviews") -> str:
    return (f"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n"
            f"spec:\n  hosts: {hosts}\n  http:\n{http}")


def _ap(spec: str, name: str = "policy", namespace: str = "default") -> str:
    return (f"---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}")


def _pa(spec: str, name: str = "peers") -> str:
    return f"---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}}}\nspec:\n{spec}"


TO_V1 = "  - route:\n    - destination: {host: reviews, subset: v1}\n"
THEN_V2 = "    route:\n    - destination: {host: reviews, subset: v2}\n"  # after a match
CORPUS = [
    Case("all-silent-difference-cases", SEMANTICS, warning=" is defined again in "),
    Case("weights-relative", SUBSETS + _vs("  - route:\n    - destination: {host: reviews, subset: v1}\n"
                                           "      weight: 1\n    - destination: {host: reviews, subset: v2}\n"
                                           "      weight: 1\n")),
    Case("weights-all-zero", SUBSETS + _vs("  - route:\n    - destination: {host: reviews, subset: v1}\n"
                                           "      weight: 0\n    - destination: {host: reviews, subset: v2}\n"),
         error="every weight is 0"),
    Case("delay-deprecated-percent", _vs("  - fault: {delay: {fixedDelay: 1s, percent: 10}}\n"
                                         "    route:\n    - destination: {host: reviews}\n")),
    Case("destination-port-of-the-service",
         _vs("  - route:\n    - destination: {host: reviews, port: {number: 8080}}\n")),
    Case("destination-port-unknown", _vs("  - route:\n    - destination: {host: reviews, port: {number: 9080}}\n"),
         error="'reviews' has no port 9080 (its port is 8080)"),
    Case("fqdn-host", SUBSETS + _vs(TO_V1, hosts="[reviews.default.svc.cluster.local]")),
    Case("wildcard-destination-rule", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                                      "metadata: {name: mesh-mtls, namespace: istio-system}\n"
                                      "spec:\n  host: '*.local'\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n"),
    Case("star-host-for-the-mesh", _vs(TO_V1.replace("reviews, subset: v1", "reviews"), hosts="['*']"),
         error="'*' is not allowed in a VirtualService bound to the mesh"),
    Case("wildcard-host-matches-nothing", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                                          "metadata: {name: other}\nspec:\n  host: '*.shop.svc.cluster.local'\n",
         warning="matches no service of the mesh: this rule has no effect"),
    Case("mirror-deprecated-percent", SUBSETS + _vs(TO_V1[:-1] + "\n    mirror: {host: reviews, subset: v2}\n"
                                                    "    mirrorPercent: 20\n")),
    Case("mirrors-list", SUBSETS + _vs(TO_V1 + "    mirrors:\n    - destination: {host: reviews, subset: v2}\n"
                                       "      percentage: {value: 5}\n")),
    Case("mirror-unknown-host", _vs("  - route:\n    - destination: {host: reviews}\n    mirror: {host: payments}\n"),
         error="spec.http[0].mirror.host: unknown host 'payments'"),
    Case("source-labels-whole-service", SUBSETS + _vs("  - match:\n    - sourceLabels: {app: mobile}\n" + THEN_V2
                                                      + TO_V1)),
    Case("source-labels-one-version-of-a-caller",
         SUBSETS + _vs(TO_V1, hosts="[ratings]", name="ratings").replace("reviews, subset: v1", "ratings")
         + _vs("  - match:\n    - sourceLabels: {app: reviews, version: v2}\n" + THEN_V2 + TO_V1),
         error="selects version(s) v2 of caller 'reviews' but not the others"),
    Case("source-namespace", SUBSETS + _vs("  - match:\n    - sourceNamespace: default\n" + THEN_V2)),
    Case("methods-star", _ap("  rules:\n  - to:\n    - operation: {methods: ['*'], hosts: ['reviews*']}\n")),
    Case("not-forms", _ap("  rules:\n  - from:\n    - source: {notPrincipals: ['*/sa/mobile'], notNamespaces: [test]}\n"
                          "    to:\n    - operation: {notPaths: ['/admin*'], notMethods: [DELETE]}\n")),
    Case("when-evaluated", _ap("  rules:\n  - when:\n    - {key: 'request.headers[x-user]', values: ['adm*']}\n"
                               "    - {key: source.namespace, notValues: [test]}\n"
                               "    - {key: source.principal, values: ['*']}\n")),
    Case("when-jwt-claim-allow", _ap("  rules:\n  - when:\n    - {key: 'request.auth.claims[iss]', values: [x]}\n"),
         warning="this ALLOW rule is left out, so requests only it would allow are denied (fail closed)"),
    Case("when-jwt-claim-deny", _ap("  action: DENY\n  rules:\n  - when:\n"
                                    "    - {key: 'request.auth.claims[iss]', values: [x]}\n"),
         warning="this DENY rule ignores that condition and denies every request its other conditions match"),
    Case("ip-blocks-allow", _ap("  rules:\n  - from:\n    - source: {ipBlocks: [10.0.0.0/8]}\n"),
         warning="spec.rules[0].from[0].source.ipBlocks cannot be evaluated by the sandbox"),
    Case("when-without-values", _ap("  rules:\n  - when:\n    - {key: source.namespace}\n"),
         error="a condition needs values or notValues"),
    Case("policy-for-the-ingress-gateway", _ap("  selector: {matchLabels: {istio: ingressgateway}}\n"
                                               "  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [/x]}\n",
                                               namespace="istio-system")),
    Case("ingress-labels-in-a-workload-namespace", _ap("  selector: {matchLabels: {istio: ingressgateway}}\n"),
         warning="runs in namespace 'istio-system', not 'default': this policy applies to no workload"),
    Case("selector-matches-nothing", _ap("  selector: {matchLabels: {app: productpage}}\n"),
         warning="matches no workload of the mesh (in namespace 'default'): this policy has no effect"),
    Case("peer-auth-selects-ingress",
         _pa("  selector: {matchLabels: {istio: ingressgateway}}\n  mtls: {mode: STRICT}\n").replace(
             "metadata: {name: peers}", "metadata: {name: peers, namespace: istio-system}"),
         warning="selects the ingress gateway, which takes plaintext from outside the mesh"),
    Case("port-level-mtls", _pa("  selector: {matchLabels: {app: details}}\n  mtls: {mode: STRICT}\n"
                                "  portLevelMtls:\n    8080: {mode: DISABLE}\n")),
    Case("port-level-mtls-other-port", _pa("  selector: {matchLabels: {app: details}}\n"
                                           "  portLevelMtls:\n    9090: {mode: DISABLE}\n"),
         warning="no workload this policy selects serves on port 9090 (portLevelMtls is keyed by the workload's "
                 "port, a Service's targetPort; theirs: 8080): this setting has no effect"),
    Case("port-level-settings", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n"
                                "spec:\n  host: reviews\n  trafficPolicy:\n    portLevelSettings:\n"
                                "    - port: {number: 8080}\n      loadBalancer: {simple: ROUND_ROBIN}\n"
                                "    - port: {number: 9080}\n      loadBalancer: {simple: RANDOM}\n",
         warning="portLevelSettings[1].port.number: the service has no port 9080"),
    Case("dr-forces-mtls-to-plaintext-workload",
         _pa("  selector: {matchLabels: {app: details}}\n  mtls: {mode: DISABLE}\n")
         + "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
           "spec:\n  host: details\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n",
         warning="every call to it fails, as in Istio"),
    Case("duplicate-virtual-service-name", SUBSETS + _vs(TO_V1) + _vs(TO_V1.replace("v1", "v2")),
         warning="keeps that later one and ignores this one"),
    # fields Istio reads and the sandbox does not: the warning says what happens instead
    Case("match-gateways-warns-its-consequence",
         SUBSETS + _vs("  - match: [{gateways: [mesh], headers: {x: {exact: 'y'}}}]\n" + THEN_V2 + TO_V1),
         warning="match[0].gateways: unsupported field, ignored: the match applies wherever the VirtualService "
                 "is bound"),
    Case("match-method-warns-its-consequence",
         SUBSETS + _vs("  - match: [{method: {exact: POST}}]\n" + THEN_V2 + TO_V1),
         warning="match[0].method: unsupported field, ignored: the route matches requests of every method"),
]


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_corpus_expectation(tmp_path: Path, case: Case) -> None:
    if case.error is not None:
        with pytest.raises(InvalidMeshConfig) as info:
            load(tmp_path, case.istio)
        assert any(case.error in p for p in info.value.problems), info.value.problems
        assert all("\n" not in p for p in info.value.problems)
        return
    loaded = load(tmp_path, case.istio)
    if case.warning is None:
        assert loaded.warnings == []
    else:
        assert [w for w in loaded.warnings if case.warning in w], loaded.warnings


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


# --------------------------------------------------------------------------- what the model and Envoy get


@pytest.fixture(scope="module")
def semantics(tmp_path_factory: pytest.TempPathFactory) -> LoadedMesh:
    return load_mesh(write_mesh(tmp_path_factory.mktemp("semantics") / "mesh", SEMANTICS))


def test_only_the_duplicate_is_warned(semantics: LoadedMesh) -> None:
    # creationTimestamp, managedFields, status, destination.port: nothing lost, nothing said
    assert len(semantics.warnings) == 1, semantics.warnings
    assert "AuthorizationPolicy/ratings: metadata.name: AuthorizationPolicy default/ratings is defined again" \
        in semantics.warnings[0]
    ratings = [p for p in semantics.model.authz if p.name == "ratings"]
    assert len(ratings) == 1 and ratings[0].rules, "the last definition (with its rule) is the one kept"


def _walk(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value, *(x for v in value.values() for x in _walk(v))]
    if isinstance(value, list):
        return [x for v in value for x in _walk(v)]
    return []


def test_star_is_a_presence_match_not_a_literal(semantics: LoadedMesh) -> None:
    config = rbac_filters(semantics.model.authz_for("ratings", "v1"))
    nodes = _walk(config)
    method = [n for n in nodes if n.get("name") == ":method"]
    assert method == [{"name": ":method", "present_match": True}]
    assert {"name": "x-deny", "present_match": True} in nodes  # header names compared lower-case
    assert {"prefix": "/x"} in nodes  # 'paths: [/x*]'
    assert not [n for n in nodes if n.get("exact") == "*"]


def test_deprecated_delay_percent_is_honoured(semantics: LoadedMesh) -> None:
    route = semantics.model.routes["ratings"][0]
    assert route.fault is not None and route.fault.delay_percent == 50.0
    envoy = routes.envoy_routes(route, "frontend")[0]
    delay = envoy["typed_per_filter_config"][routes.FAULT_FILTER]["config"]["delay"]
    assert delay["percentage"] == {"numerator": 500_000, "denominator": "MILLION"}


def test_callers_send_plaintext_to_a_disable_workload_and_mtls_to_the_others(semantics: LoadedMesh) -> None:
    model = semantics.model
    specs = {s.name: s for s in clusters.caller_clusters(model, ["details", "reviews"])}
    details = clusters.cluster(specs["details"], ("c", "k"), "ca", model.services["details"].spiffe_id)
    assert "transport_socket" not in details and "transport_socket_matches" in details
    endpoint = clusters.Endpoint("details-v1-0", 1, model.workload_labels("details", "v1"), "v1")
    assignment = clusters.load_assignment(specs["details"], [endpoint])
    assert "metadata" not in assignment["endpoints"][0]["lb_endpoints"][0]  # no tlsMode: plaintext
    reviews = clusters.cluster(specs["reviews"], ("c", "k"), "ca", model.services["reviews"].spiffe_id)
    assert "transport_socket" in reviews  # STRICT callee: mTLS as before


def test_source_labels_split_the_routes_per_caller(semantics: LoadedMesh) -> None:
    model = semantics.model
    frontend = routes_seen_by(model, "reviews", "frontend")
    mobile = routes_seen_by(model, "reviews", "mobile")
    assert [d.weight for d in frontend[0].destinations] == [1, 3] and frontend[0].matches[0].source_labels == ()
    assert len(mobile) == 1 and mobile[0].destinations[0].subset == "v1"


def test_source_labels_of_the_ingress_gateway(tmp_path: Path) -> None:
    loaded = load(tmp_path, SUBSETS + _vs("  - match:\n    - sourceLabels: {istio: ingressgateway}\n" + THEN_V2
                                          + TO_V1))
    assert routes_seen_by(loaded.model, "reviews", "ingress")[0].destinations[0].subset == "v2"
    assert [r.destinations[0].subset for r in routes_seen_by(loaded.model, "reviews", "frontend")] == ["v1"]


def test_declared_shares_of_caller_dependent_routes(semantics: LoadedMesh, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="callers frontend, mobile get different splits"):
        expected_shares(semantics.model, "reviews")
    same = load(tmp_path, SUBSETS + _vs("  - match:\n    - sourceNamespace: default\n" + THEN_V2 + TO_V1))
    found = expected_shares(same.model, "reviews")  # both callers are in 'default': one answer
    assert (found.shares, found.route_index) == ({"v2": 1.0}, 0)


def test_the_ingress_gateway_enforces_the_policy_selecting_it(semantics: LoadedMesh) -> None:
    assert [p.name for p in enforced_at_ingress(semantics.model)] == ["ingress-blocked"]


def test_mirror_is_an_envoy_mirror_policy(semantics: LoadedMesh) -> None:
    route = routes.envoy_routes(semantics.model.routes["details"][0], "frontend")[0]
    assert route["route"]["request_mirror_policies"] == [{
        "cluster": cluster_name("details", "v2"),
        "runtime_fraction": {"default_value": {"numerator": 1_000_000, "denominator": "MILLION"}},
    }]


def test_wildcard_hosts_apply_where_nothing_more_specific_does(tmp_path: Path) -> None:
    loaded = load(tmp_path, SUBSETS + "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                  "metadata: {name: all, namespace: istio-system}\nspec:\n  host: '*.default.svc.cluster.local'\n"
                  "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"
                  + _vs(TO_V1.replace("reviews, subset: v1", "ratings"), hosts="['*.default.svc.cluster.local']",
                        name="everything")
                  + _vs(TO_V1))
    model = loaded.model
    assert model.policies["ratings"].load_balancer == "RANDOM"
    assert model.policies["reviews"].load_balancer == "LEAST_REQUEST"  # its own rule wins
    assert model.routes["frontend"][0].destinations[0].service == "ratings"
    assert model.routes["reviews"][0].destinations[0].subset == "v1"  # its own VirtualService wins


def test_point8_the_oldest_of_two_workload_policies_wins_whatever_their_modes(tmp_path: Path) -> None:
    """Istio: when several policies of one level select a workload, the oldest applies (here: file order, as
    ``kubectl apply -f`` creates them; on a cluster: creation time).  It used to be the strictest."""
    selector = "  selector: {matchLabels: {app: details}}\n"
    older_permissive = (_pa(selector + "  mtls: {mode: PERMISSIVE}\n", "a")
                        + _pa(selector + "  mtls: {mode: STRICT}\n", "b"))
    assert load(tmp_path / "p", older_permissive).model.mtls_mode("details", "v1") == "PERMISSIVE"
    older_strict = _pa(selector + "  mtls: {mode: STRICT}\n", "a") + _pa(selector + "  mtls: {mode: DISABLE}\n", "b")
    assert load(tmp_path / "s", older_strict).model.mtls_mode("details", "v1") == "STRICT"


def test_point8_port_level_mtls_is_keyed_by_the_workloads_port_not_the_services(tmp_path: Path) -> None:
    """Istio keys ``portLevelMtls`` by the workload (target) port: a Service on 8080 whose pods serve 9080."""
    root = write_mesh(tmp_path / "mesh", _pa("  selector: {matchLabels: {app: details}}\n  mtls: {mode: STRICT}\n"
                                              "  portLevelMtls:\n    9080: {mode: DISABLE}\n"))
    mesh = root / "mesh.yaml"
    mesh.write_text(mesh.read_text().replace("  - name: details\n", "  - name: details\n    targetPort: 9080\n"))
    loaded = load_mesh(root)
    assert loaded.model.services["details"].pod_port == 9080 and loaded.warnings == []
    assert loaded.model.mtls_mode("details", "v1") == "DISABLE"
    by_service_port = load(tmp_path / "b", _pa("  selector: {matchLabels: {app: details}}\n  mtls: {mode: STRICT}\n"
                                               "  portLevelMtls:\n    9080: {mode: DISABLE}\n"))
    assert by_service_port.model.mtls_mode("details", "v1") == "STRICT"  # its pods serve 8080: no such port


def test_port_level_settings_and_mtls_apply_to_the_workload_port(tmp_path: Path) -> None:
    loaded = load(tmp_path, CORPUS[[c.id for c in CORPUS].index("port-level-mtls")].istio)
    assert loaded.model.mtls_mode("details", "v1") == "DISABLE"
    assert loaded.model.mtls_mode("reviews", "v1") == "PERMISSIVE"
    loaded = load(tmp_path / "b", CORPUS[[c.id for c in CORPUS].index("port-level-settings")].istio)
    assert loaded.model.policies["reviews"].load_balancer == "ROUND_ROBIN"


@pytest.mark.processes
def test_everything_generated_passes_envoy(tmp_path: Path) -> None:
    models = [("semantics", load(tmp_path, SEMANTICS).model)]
    for case in CORPUS:
        if case.error is None and case.id != "all-silent-difference-cases":
            models.append((case.id, load(tmp_path / case.id, case.istio).model))
    assert validate_with_envoy(models) == []


def _root_namespace_mesh(root: str) -> str:
    config = ("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
              f"data:\n  mesh: |\n    rootNamespace: {root}\n")
    policy = ("---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
              "metadata: {name: default, namespace: mesh-root}\nspec:\n  mtls: {mode: STRICT}\n")
    allow = ("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
             "metadata: {name: only-ingress, namespace: mesh-root}\nspec:\n  selector: {matchLabels: {app: details}}\n"
             "  rules:\n  - from:\n    - source: {namespaces: [istio-system]}\n")
    return config + policy + allow


def test_point8_the_root_namespace_is_the_mesh_configs(tmp_path: Path) -> None:
    """Istio: mesh-wide policies live in MeshConfig's ``rootNamespace`` (default istio-system), which was a constant
    here.  With ``rootNamespace: mesh-root`` a selector-less PeerAuthentication there is the mesh's mode and an
    AuthorizationPolicy there selects workloads of every namespace; with Istio's default the same objects in
    mesh-root are one namespace's (no workload runs there), so neither applies."""
    custom = load(tmp_path / "custom", _root_namespace_mesh("mesh-root")).model
    assert custom.root_namespace == "mesh-root" and custom.mtls_mode("details", "v1") == "STRICT"
    assert [p.name for p in custom.authz_for("details", "v1")] == ["only-ingress"]
    default = load(tmp_path / "default", _root_namespace_mesh("istio-system")).model
    assert default.root_namespace == "istio-system" and default.mtls_mode("details", "v1") == "PERMISSIVE"
    assert default.authz_for("details", "v1") == []
