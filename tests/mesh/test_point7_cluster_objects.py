"""Issue 18 point 7: ordinary Istio objects of a cluster load, and mean what Istio makes of them.

Five shapes that made the mesh model fail (and so the mesh QA verdicts on a cluster): a second VirtualService for
a host, a ServiceEntry and the VirtualService / DestinationRule of its host, a DestinationRule originating TLS
(``SIMPLE`` / ``MUTUAL``), a delegate VirtualService, and AuthorizationPolicies with ``action: CUSTOM`` or
``AUDIT``.  Each is loaded from a mesh directory (the local target) and, at the end, from what a cluster's API
returns (``targets.kubernetes.declared``, with a stand-in for the API): no process, no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidMeshConfig, MeasurementFailed
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.loader import LoadedMesh
from chaosmesh_qa.mesh.model import Route, StringMatch
from chaosmesh_qa.mesh.routing import expected_shares
from chaosmesh_qa.targets.kubernetes.declared import declared_mesh
from chaosmesh_qa.targets.kubernetes.objects import AUTHORIZATIONPOLICY, CONFIGMAP, Kind
from chaosmesh_qa.targets.local.envoy import clusters

MESH = """\
apiVersion: chaosmesh-qa.io/v1alpha1
kind: Mesh
metadata: {name: shop}
spec:
  ingress: {service: frontend}
  services:
  - name: frontend
    versions: [{name: v1}]
    app:
      calls: [{service: catalog, path: /items}, {service: reviews, path: /r}]
  - name: catalog
    versions: [{name: v1}]
  - name: reviews
    versions: [{name: v1}, {name: v2}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
"""

CATALOG_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog}
spec:
  hosts: [catalog]
  http:
  - route: [{destination: {host: catalog}}]
    timeout: 2s
"""

SECOND_CATALOG_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog-admin}
spec:
  hosts: [catalog.default.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /admin}}]
    route: [{destination: {host: catalog}}]
    timeout: 9s
"""

PAYMENTS = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments}
spec:
  hosts: [api.payments.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: payments}
spec:
  hosts: [api.payments.example.com]
  http:
  - timeout: 3s
    route: [{destination: {host: api.payments.example.com}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments}
spec:
  host: api.payments.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, sni: api.payments.example.com}
"""

DELEGATING = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-root}
spec:
  hosts: [reviews]
  http:
  - name: canary
    match: [{headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: api
    match: [{uri: {prefix: /api}}]
    delegate: {name: reviews-api}
    timeout: 4s
  - name: gone
    delegate: {name: nowhere, namespace: default}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: elsewhere
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
    timeout: 1s
"""

CUSTOM_AND_AUDIT = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz}
spec:
  selector: {matchLabels: {app: catalog}}
  action: CUSTOM
  provider: {name: opa}
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-deletes}
spec:
  action: AUDIT
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-deletes}
spec:
  selector: {matchLabels: {app: catalog}}
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
"""


def load(tmp_path: Path, **files: str) -> LoadedMesh:
    """A mesh directory of ``MESH`` plus ``files`` (name -> text; read in name order, as kubectl applies them)."""
    root = tmp_path / "mesh"
    root.mkdir(parents=True)
    (root / "mesh.yaml").write_text(MESH)
    for name, text in files.items():
        (root / f"{name}.yaml").write_text(text)
    return load_mesh(root)


def refused(tmp_path: Path, **files: str) -> str:
    with pytest.raises(InvalidMeshConfig) as info:
        load(tmp_path, **files)
    message = str(info.value)
    assert "\n" not in message and len(info.value.problems) == 1, info.value.problems
    return message


def warned(loaded: LoadedMesh, *fragments: str) -> list[str]:
    found = [w for w in loaded.warnings if all(f in w for f in fragments)]
    assert found, loaded.warnings
    return found


def timeouts(routes: tuple[Route, ...]) -> list[float | None]:
    return [r.timeout_s for r in routes]


# --------------------------------------------------------------------------- 1. several VirtualServices, one host


def test_point7_a_second_virtualservice_for_a_host_is_ignored_and_the_oldest_takes_effect(tmp_path: Path) -> None:
    loaded = load(tmp_path, a_catalog=CATALOG_VS, b_extra=SECOND_CATALOG_VS)  # a_ is read (applied) first
    assert timeouts(loaded.model.routes["catalog"]) == [2.0]
    (warning,) = warned(loaded, "VirtualService/catalog-admin: spec.hosts[0]:", "already has an older VirtualService")
    assert "a_catalog.yaml: VirtualService/catalog)" in warning and "IST0109" in warning


def test_point7_of_two_virtualservices_for_a_host_the_one_read_first_is_the_oldest(tmp_path: Path) -> None:
    loaded = load(tmp_path, a_extra=SECOND_CATALOG_VS, b_catalog=CATALOG_VS)
    assert timeouts(loaded.model.routes["catalog"]) == [9.0]
    warned(loaded, "VirtualService/catalog: spec.hosts[0]:", "a_extra.yaml: VirtualService/catalog-admin")


def test_point7_a_host_own_virtualservice_wins_over_an_older_wildcard_one_without_a_warning(tmp_path: Path) -> None:
    wildcard = CATALOG_VS.replace("name: catalog}", "name: everything}").replace(
        "hosts: [catalog]", 'hosts: ["*.default.svc.cluster.local"]').replace("timeout: 2s", "timeout: 7s")
    loaded = load(tmp_path, a_wildcard=wildcard, b_catalog=CATALOG_VS)
    assert timeouts(loaded.model.routes["catalog"]) == [2.0]
    assert timeouts(loaded.model.routes["reviews"]) == [7.0]
    assert not [w for w in loaded.warnings if "already has" in w]


def test_point7_virtualservices_of_one_gateway_host_are_merged_oldest_first(tmp_path: Path) -> None:
    gateway = ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: public}\nspec:\n"
               "  selector: {istio: ingressgateway}\n  servers:\n"
               "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [shop.example.com]\n")

    def bound(name: str, prefix: str, host: str) -> str:
        return (f"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n"
                f"spec:\n  hosts: [shop.example.com]\n  gateways: [public]\n  http:\n"
                f"  - match: [{{uri: {{prefix: {prefix}}}}}]\n    route: [{{destination: {{host: {host}}}}}]\n")

    mesh = MESH.replace("  ingress: {service: frontend}\n", "")
    root = tmp_path / "mesh"
    root.mkdir()
    (root / "mesh.yaml").write_text(mesh)
    (root / "a.yaml").write_text(gateway + bound("shop-reviews", "/reviews", "reviews"))
    (root / "b.yaml").write_text(bound("shop-front", "/", "frontend"))
    (host,) = load_mesh(root).model.gateway_hosts
    assert [(r.matches[0].uri, r.destinations[0].service) for r in host.routes] == [
        (StringMatch("prefix", "/reviews"), "reviews"), (StringMatch("prefix", "/"), "frontend")]


# --------------------------------------------------------------------------- 2. ServiceEntry


def test_point7_a_serviceentry_host_keeps_its_virtualservice_and_destinationrule_without_sandbox_routes(
        tmp_path: Path) -> None:
    loaded = load(tmp_path, payments=PAYMENTS)
    external = loaded.model.external_hosts["api.payments.example.com"]
    assert (external.location, external.resolution, external.ports) == ("MESH_EXTERNAL", "DNS",
                                                                         ((443, "HTTPS", "https"),))
    assert timeouts(external.routes) == [3.0]
    assert [d.service for d in external.routes[0].destinations] == ["api.payments.example.com"]
    assert external.routed_by.endswith("VirtualService/payments")
    assert external.policy is not None and external.policy.tls_mode == "SIMPLE"
    assert ("sni", "api.payments.example.com") in external.tls_settings
    assert set(loaded.model.routes) <= set(loaded.model.services)  # nothing for the sandbox to route
    assert len(warned(loaded, "the sandbox runs no stand-in for it")) == 2  # the VS, the DR: an HTTPS port only
    warned(loaded, "ServiceEntry/payments: spec.hosts[0]: 'api.payments.example.com' is kept in the model, but it "
                   "has no HTTP port")


def test_point7_a_wildcard_serviceentry_covers_the_hosts_under_it_and_a_wildcard_rule_its_hosts(
        tmp_path: Path) -> None:
    loaded = load(tmp_path, payments=PAYMENTS.replace("hosts: [api.payments.example.com]\n  ports",
                                                      'hosts: ["*.payments.example.com"]\n  ports'))
    assert timeouts(loaded.model.external_hosts["*.payments.example.com"].routes) == [3.0]
    loaded = load(tmp_path / "rule", payments=PAYMENTS.replace("host: api.payments.example.com\n  trafficPolicy",
                                                               'host: "*.example.com"\n  trafficPolicy'))
    assert loaded.model.external_hosts["api.payments.example.com"].policy_by.endswith("DestinationRule/payments")


@pytest.mark.parametrize(("edit", "fragment"), [
    (("hosts: [api.payments.example.com]\n  ports", 'hosts: ["*"]\n  ports'), "ServiceEntry/payments: spec.hosts[0]:"),
    (("ports: [{number: 443, name: https, protocol: HTTPS}]",
      "ports: [{number: 443, name: https, protocol: HTTPS}, {number: 8443, name: https}]"),
     "ServiceEntry/payments: spec: Value error, ports: port name https given twice"),
    (("protocol: HTTPS}", "protocol: QUIC}"), "spec.ports[0].protocol: Value error, 'QUIC' is not a protocol"),
    (("resolution: DNS", "resolution: NONE\n  endpoints: [{address: 10.0.0.1}]"),
     "endpoints: not allowed with resolution NONE"),
], ids=["full-wildcard", "port-name-twice", "unknown-protocol", "endpoints-without-resolution"])
def test_point7_a_serviceentry_istiod_refuses_is_refused_on_one_line(tmp_path: Path, edit: tuple[str, str],
                                                                     fragment: str) -> None:
    message = refused(tmp_path, payments=PAYMENTS.replace(*edit))
    assert "payments.yaml: ServiceEntry/payments: spec" in message
    assert fragment.replace("Value error, ", "") in message, message


def test_point7_serviceentry_fields_the_sandbox_does_not_read_are_warned(tmp_path: Path) -> None:
    loaded = load(tmp_path, payments=PAYMENTS.replace("  resolution: DNS", "  resolution: DNS\n"
                                                                           "  addresses: [240.0.0.1]"))
    warned(loaded, "ServiceEntry/payments: spec.addresses: unsupported field, ignored")


def test_point7_a_mesh_route_toward_an_external_host_is_refused_saying_why(tmp_path: Path) -> None:
    egress = CATALOG_VS.replace("route: [{destination: {host: catalog}}]",
                                "route: [{destination: {host: api.payments.example.com}}]")
    message = refused(tmp_path, a_payments=PAYMENTS, b_catalog=egress)
    assert "VirtualService/catalog: spec.http[0].route[0].destination.host:" in message
    assert "the sandbox does not send traffic to external hosts" in message


def test_point7_rules_for_a_host_outside_the_mesh_without_serviceentry_warn_and_have_no_effect(
        tmp_path: Path) -> None:
    alone = PAYMENTS.split("---\n", 1)[1]  # the VirtualService and the DestinationRule, no ServiceEntry
    loaded = load(tmp_path, payments=alone)
    assert loaded.model.external_hosts == {}
    warned(loaded, "VirtualService/payments: spec.hosts[0]:", "outside the mesh and no ServiceEntry declares it")
    warned(loaded, "DestinationRule/payments: spec.host:", "this rule has no effect")
    assert "unknown host 'reviws'" in refused(tmp_path / "typo", catalog=CATALOG_VS.replace(
        "hosts: [catalog]", "hosts: [reviws]"))  # a short name is still taken for a misspelt service


# --------------------------------------------------------------------------- 3. TLS origination


def test_point7_simple_tls_toward_a_strict_mesh_service_is_plaintext_here_and_says_calls_fail(
        tmp_path: Path) -> None:
    rule = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: catalog}\nspec:\n"
            "  host: catalog\n  trafficPolicy:\n    tls: {mode: SIMPLE, sni: catalog.example.com}\n")
    loaded = load(tmp_path, catalog=rule)
    policy = loaded.model.policies["catalog"]
    assert (policy.tls_mode, policy.tls_explicit) == ("SIMPLE", True)
    warned(loaded, "tls.mode SIMPLE toward 'catalog' v1", "STRICT", "every call to it fails")
    spec = clusters.caller_clusters(loaded.model, ["catalog"])[0]
    rendered = clusters.cluster(spec, ("cert.pem", "key.pem"), "ca.pem", "spiffe://cluster.local/ns/default/sa/x")
    assert "transport_socket" not in rendered and "transport_socket_matches" not in rendered  # plaintext


def test_point7_mutual_tls_toward_a_permissive_service_warns_that_the_hop_is_not_mutual_tls(tmp_path: Path) -> None:
    rule = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: catalog}\nspec:\n"
            "  host: catalog\n  trafficPolicy:\n    tls: {mode: MUTUAL, credentialName: catalog-client}\n"
            "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: catalog}\nspec:\n"
            "  selector: {matchLabels: {app: catalog}}\n  mtls: {mode: PERMISSIVE}\n")
    loaded = load(tmp_path, catalog=rule)
    warned(loaded, "tls.mode MUTUAL toward 'catalog' v1", "not mutual TLS for mtls_enforced")


@pytest.mark.parametrize(("tls", "fragment"), [
    ("{mode: MUTUAL}", "clientCertificate and privateKey (or credentialName) are required"),
    ("{mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}", "credentialName: cannot be given with"),
    ("{mode: SIMPLER}", "spec.trafficPolicy.tls.mode:"),
], ids=["mutual-without-certificates", "credential-and-files", "unknown-mode"])
def test_point7_client_tls_istiod_refuses_is_refused_on_one_line(tmp_path: Path, tls: str, fragment: str) -> None:
    message = refused(tmp_path, payments=PAYMENTS.replace("{mode: SIMPLE, sni: api.payments.example.com}", tls))
    assert "DestinationRule/payments: spec.trafficPolicy.tls" in message and fragment in message, message


def test_point7_settings_of_an_istio_mutual_rule_stay_warned_as_not_read(tmp_path: Path) -> None:
    rule = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: catalog}\nspec:\n"
            "  host: catalog\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL, sni: catalog}\n")
    (warning,) = warned(load(tmp_path, catalog=rule), "spec.trafficPolicy.tls.sni")
    assert "DestinationRule/catalog: spec.trafficPolicy.tls.sni: unsupported field, ignored" in warning


# --------------------------------------------------------------------------- 4. delegate VirtualServices


def test_point7_delegate_routes_take_the_root_route_place_with_the_matches_merged_as_istiod(tmp_path: Path) -> None:
    loaded = load(tmp_path, reviews=DELEGATING)
    routes = loaded.model.routes["reviews"]
    # canary (root), the delegate's /api/v2 and catch-all (the /other one falls outside /api), the root's last route
    assert [r.matches[0].uri if r.matches else None for r in routes] == [
        None, StringMatch("prefix", "/api/v2"), StringMatch("prefix", "/api"), None]
    assert timeouts(routes) == [None, 4.0, 1.0, None]  # a delegate route's own timeout wins over the root's
    assert routes[1].where.endswith("reviews.yaml: VirtualService/reviews-api (delegate of VirtualService/"
                                    "reviews-root spec.http[1]): spec.http[0]")
    warned(loaded, "VirtualService/reviews-api (delegate of", "spec.http[1].match: falls outside the match of")
    warned(loaded, "VirtualService/reviews-root: spec.http[2].delegate: VirtualService default/nowhere does not exist")
    assert expected_shares(loaded.model, "reviews", path="/api/v2/x").shares == {"v2": 1.0}
    assert expected_shares(loaded.model, "reviews", path="/api/v1").shares == {"v1": 1.0}
    assert expected_shares(loaded.model, "reviews", path="/").shares == {"v1": 1.0}


def test_point7_a_delegate_match_inside_root_headers_is_merged_and_a_contradicting_one_dropped(
        tmp_path: Path) -> None:
    root = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: root}\nspec:\n"
            "  hosts: [reviews]\n  http:\n  - match: [{uri: {prefix: /r}, headers: {x-team: {exact: a}}}]\n"
            "    delegate: {name: leaf}\n  - route: [{destination: {host: reviews, subset: v1}}]\n---\n"
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: leaf}\nspec:\n  http:\n"
            "  - match: [{headers: {x-user: {exact: u}}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n"
            "  - match: [{headers: {x-team: {exact: b}}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n")
    loaded = load(tmp_path, reviews=root)
    first = loaded.model.routes["reviews"][0].matches[0]
    assert first.uri == StringMatch("prefix", "/r")
    assert dict(first.headers) == {"x-team": StringMatch("exact", "a"), "x-user": StringMatch("exact", "u")}
    assert len(loaded.model.routes["reviews"]) == 2
    warned(loaded, "VirtualService/leaf (delegate of", "spec.http[1].match: falls outside")


def test_point7_a_delegate_no_root_names_warns_and_a_delegate_with_gateways_is_refused(tmp_path: Path) -> None:
    leaf = DELEGATING.split("---\n", 1)[1]
    warned(load(tmp_path, leaf=leaf), "VirtualService/reviews-api: spec.hosts: none, and no root")
    message = refused(tmp_path / "gw", leaf=leaf.replace("spec:\n", "spec:\n  gateways: [mesh]\n", 1))
    assert "VirtualService/reviews-api: spec: gateways: a VirtualService without hosts is a delegate" in message


@pytest.mark.parametrize(("http", "fragment"), [
    ("  - delegate: {name: leaf}\n    route: [{destination: {host: reviews}}]\n",
     "spec.http[0]: route: not allowed in a route with a delegate"),
    ("  - timeout: 1s\n", "spec.http[0]: route: Field required"),
], ids=["route-and-delegate", "neither"])
def test_point7_a_root_route_needs_destinations_or_a_delegate_not_both(tmp_path: Path, http: str,
                                                                      fragment: str) -> None:
    root = (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: root}}\nspec:\n"
            f"  hosts: [reviews]\n  http:\n{http}")
    assert fragment in refused(tmp_path, reviews=root)


# --------------------------------------------------------------------------- 5. CUSTOM and AUDIT


def test_point7_custom_and_audit_policies_load_and_neither_allows_nor_denies(tmp_path: Path) -> None:
    loaded = load(tmp_path, authz=CUSTOM_AND_AUDIT)
    assert [(p.name, p.action) for p in loaded.model.authz] == [("no-deletes", "DENY")]
    assert [p.name for p in loaded.model.authz_for("catalog", "v1")] == ["no-deletes"]  # no ALLOW: no default deny
    warned(loaded, "AuthorizationPolicy/ext-authz: spec.action: CUSTOM", "'opa'",
           "a verdict cannot tell what 'opa' would decide")
    warned(loaded, "AuthorizationPolicy/audit-deletes: spec.action: AUDIT", "never allows or denies")


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ("  provider: {name: opa}\n", "", "provider.name: required with action CUSTOM"),
    ("  rules: [{to: [{operation: {paths: [/admin*]}}]}]\n", "", "a CUSTOM policy without rules never applies"),
    ("action: CUSTOM", "action: ALLOW", "provider: only with action CUSTOM"),
    ("{to: [{operation: {paths: [/admin*]}}]}", "{from: [{source: {principals: [a/b/c]}}]}",
     "rules[0].from[0].source.principals: not supported with action CUSTOM"),
    ("{to: [{operation: {paths: [/admin*]}}]}", "{when: [{key: source.namespace, values: [x]}]}",
     "rules[0].when[0].key: 'source.namespace' is not supported with action CUSTOM"),
], ids=["no-provider", "no-rules", "provider-without-custom", "principals", "source-when"])
def test_point7_a_custom_policy_istiod_refuses_is_refused_on_one_line(tmp_path: Path, old: str, new: str,
                                                                      fragment: str) -> None:
    custom = CUSTOM_AND_AUDIT.split("---\n")[0]
    message = refused(tmp_path, authz=custom.replace(old, new))
    assert "AuthorizationPolicy/ext-authz: spec:" in message and fragment in message, message


# --------------------------------------------------------------------------- the same objects from a cluster's API


SERVICEENTRY = Kind("ServiceEntry", "networking.istio.io", "v1", "serviceentries")


class FakeCluster:
    """What ``declared_mesh`` reads of a cluster: Services, pods, the Istio objects by kind (``None``: forbidden)."""

    host = "https://cluster.example"

    def __init__(self, objects: dict[str, list[dict[str, Any]] | None]) -> None:
        self.objects = objects

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        return [{"metadata": {"name": name, "namespace": "shop"},
                 "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080}]}}
                for name in ("frontend", "catalog", "reviews")] if namespace == "shop" else []

    def list_pods(self, namespace: str, selector: str | None) -> list[dict[str, Any]]:
        pods = [("frontend", "v1"), ("catalog", "v1"), ("reviews", "v1"), ("reviews", "v2")]
        return [{"metadata": {"name": f"{app}-{version}-0", "namespace": "shop",
                              "labels": {"app": app, "version": version}},
                 "spec": {"serviceAccountName": app, "containers": [{"name": app}]}}
                for app, version in pods] if namespace == "shop" else []

    def list_custom(self, kind: Kind, namespace: str) -> list[dict[str, Any]]:
        found = self.objects.get(kind.plural, [])
        if found is None:
            from chaosmesh_qa.errors import TargetUnavailable
            raise TargetUnavailable(f"kubernetes: forbidden to list {kind.plural} (403)")
        return [o for o in found if o["metadata"]["namespace"] == namespace]

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind is CONFIGMAP
        return None


def istio(kind: str, name: str, spec: dict[str, Any], created: str, namespace: str = "shop") -> dict[str, Any]:
    group = "security.istio.io" if kind == "AuthorizationPolicy" else "networking.istio.io"
    return {"apiVersion": f"{group}/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created}, "spec": spec}


def cluster_objects() -> dict[str, list[dict[str, Any]] | None]:
    catalog = {"hosts": ["catalog"], "http": [{"route": [{"destination": {"host": "catalog"}}], "timeout": "2s"}]}
    newer = {"hosts": ["catalog.shop.svc.cluster.local"],
             "http": [{"route": [{"destination": {"host": "catalog"}}], "timeout": "9s"}]}
    return {
        # listed newest first and in the root namespace too: the oldest still takes effect
        "virtualservices": [
            istio("VirtualService", "a-newer", newer, "2026-03-02T00:00:00Z"),
            istio("VirtualService", "z-older", catalog, "2026-03-01T00:00:00Z"),
            istio("VirtualService", "payments", {"hosts": ["api.payments.example.com"], "http": [
                {"timeout": "3s", "route": [{"destination": {"host": "api.payments.example.com"}}]}]},
                "2026-03-01T00:00:00Z"),
            istio("VirtualService", "reviews", {"hosts": ["reviews"], "http": [
                {"match": [{"uri": {"prefix": "/api"}}], "delegate": {"name": "reviews-api"}},
                {"route": [{"destination": {"host": "reviews"}}]}]}, "2026-03-01T00:00:00Z"),
            istio("VirtualService", "reviews-api", {"http": [{"route": [{"destination": {"host": "reviews"}}],
                                                              "timeout": "1s"}]}, "2026-03-01T00:00:00Z"),
        ],
        "serviceentries": [istio("ServiceEntry", "payments", {
            "hosts": ["api.payments.example.com"], "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
            "resolution": "DNS"}, "2026-03-01T00:00:00Z")],
        "destinationrules": [istio("DestinationRule", "payments", {
            "host": "api.payments.example.com", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}},
            "2026-03-01T00:00:00Z")],
        AUTHORIZATIONPOLICY.plural: [
            istio("AuthorizationPolicy", "ext-authz", {"action": "CUSTOM", "provider": {"name": "opa"},
                                                       "rules": [{}]}, "2026-03-01T00:00:00Z"),
            istio("AuthorizationPolicy", "audit", {"action": "AUDIT", "rules": [{}]}, "2026-03-01T00:00:00Z",
                  namespace="istio-system")],
    }


def test_point7_the_declared_mesh_of_a_cluster_with_these_objects_resolves() -> None:
    model = declared_mesh(FakeCluster(cluster_objects()), ["shop"], "frontend")  # type: ignore[arg-type]
    assert timeouts(model.routes["catalog"]) == [2.0]  # z-older: created first, whatever the names and the order
    assert timeouts(model.routes["reviews"]) == [1.0, None]  # the delegate's route in the root's place
    assert model.routes["reviews"][0].matches[0].uri == StringMatch("prefix", "/api")
    assert model.external_hosts["api.payments.example.com"].policy is not None
    assert model.authz == ()
    assert sorted(model.services) == ["catalog", "frontend", "reviews"]


def test_point7_a_cluster_whose_serviceentries_cannot_be_read_says_so_when_a_host_is_unknown() -> None:
    objects = cluster_objects()
    objects["serviceentries"] = None  # a Role from before ServiceEntries were read
    objects["virtualservices"] = [istio("VirtualService", "payments", {
        "hosts": ["payments"], "http": [{"route": [{"destination": {"host": "payments"}}]}]}, "2026-03-01T00:00:00Z")]
    objects["destinationrules"] = []
    with pytest.raises(MeasurementFailed, match=r"unknown host 'payments'.*\(ServiceEntries could not be read: "):
        declared_mesh(FakeCluster(objects), ["shop"], "frontend")  # type: ignore[arg-type]
