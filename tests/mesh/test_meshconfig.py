"""istiod's MeshConfig from the `istio` ConfigMap (mesh.meshconfig): the trust domain, and principals as istiod reads
them for it (a `cluster.local` or alias principal stands for the local trust domain and each alias)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.mesh.loader import load_mesh
from chaosmesh_qa.mesh.meshconfig import MeshConfig, TrustDomains, validate

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "custom-trust-domain"


def config(mesh: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": mesh}}


def test_principals_of_the_local_domain_cluster_local_and_aliases_stand_for_all_of_them() -> None:
    domains = TrustDomains(local="prod.example.com", aliases=("old.example.com",))
    both = ("prod.example.com/ns/shop/sa/web", "old.example.com/ns/shop/sa/web")
    assert domains.principals(("cluster.local/ns/shop/sa/web",)) == both  # "cluster.local" points to the local one
    assert domains.principals(("old.example.com/ns/shop/sa/web",)) == both
    assert domains.principals(("other.example.com/ns/shop/sa/web",)) == ("other.example.com/ns/shop/sa/web",)
    assert domains.principals(("*", "*/ns/shop/sa/web", "shop/*")) == ("*", "*/ns/shop/sa/web", "shop/*")
    assert TrustDomains().principals(("cluster.local/ns/a/sa/b",)) == ("cluster.local/ns/a/sa/b",)


def test_the_configmap_gives_the_trust_domain_and_a_bad_one_is_one_line() -> None:
    problems: list[str] = []
    notes: list[str] = []
    found = validate(config("trustDomain: prod.example.com\naccessLogFile: /dev/stdout\n"), "istio.yaml", problems,
                     notes)
    assert found == MeshConfig(local="prod.example.com") and not problems
    assert notes == ["istio.yaml: data.mesh: accessLogFile not used by the sandbox (it reads trustDomain, "
                     "trustDomainAliases, rootNamespace, defaultConfig, outboundTrafficPolicy)"]
    assert validate(config(""), "istio.yaml", problems, notes) == MeshConfig()  # istiod's default
    assert validate(config("trustDomain: Prod Example\n"), "istio.yaml", problems, notes) is None
    assert problems == ["istio.yaml: data.mesh.trustDomain: 'Prod Example' is not a SPIFFE trust domain (lower-case "
                        "letters, digits, '.', '-', '_')"]


@pytest.mark.parametrize("mesh", ["[a, b]", "trustDomain: [x"])
def test_a_mesh_key_that_is_not_a_meshconfig_is_one_line(mesh: str) -> None:
    problems: list[str] = []
    assert validate(config(mesh), "istio.yaml", problems, []) is None
    assert len(problems) == 1 and problems[0].startswith("istio.yaml: data.mesh: ") and "\n" not in problems[0]


def test_the_custom_trust_domain_profile_names_every_identity_in_its_domain() -> None:
    model = load_mesh(PROFILE).model
    assert model.trust_domains.local == "prod.example.com"
    assert model.services["catalog"].spiffe_id == "spiffe://prod.example.com/ns/default/sa/catalog"
    # the profile's gateway is Istio's Helm-installed istio-ingress (gateway.yaml)
    assert model.ingress_spiffe == "spiffe://prod.example.com/ns/istio-ingress/sa/istio-ingress"
    # security.yaml names inventory's caller as cluster.local/...: istiod reads it as the local trust domain
    (policy,) = model.authz
    assert policy.rules[0].sources[0].principals == ("prod.example.com/ns/default/sa/catalog",)
    assert model.services["catalog"].fqdn == "catalog.default.svc.cluster.local"  # DNS is not the trust domain


def test_proxy_headers_are_read_and_a_value_istio_does_not_know_is_one_line() -> None:
    """defaultConfig.proxyHeaders decides what the sidecars forward in x-forwarded-client-cert (issue 18 point 3)."""
    def configmap(mesh: str) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
                "data": {"mesh": mesh}}

    problems: list[str] = []
    read = validate(configmap("defaultConfig:\n  proxyHeaders:\n    forwardedClientCert: SANITIZE\n"), "m.yaml",
                    problems, [])
    assert read is not None and read.forwarded_client_cert == "SANITIZE" and not read.xfcc_names_the_caller
    assert validate(configmap("defaultConfig:\n  proxyHeaders:\n    forwardedClientCert: KEEP\n"), "m.yaml",
                    problems, []) is None
    assert problems == ["m.yaml: data.mesh.defaultConfig.proxyHeaders.forwardedClientCert: 'KEEP' is not one of "
                        "APPEND_FORWARD, SANITIZE_SET, SANITIZE, FORWARD_ONLY, ALWAYS_FORWARD_ONLY"]
