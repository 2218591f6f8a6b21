"""Istio's mesh configuration as a mesh directory (or a cluster) gives it: the ``istio`` ConfigMap of ``istio-system``.

istiod reads its MeshConfig from the ``mesh`` key of that ConfigMap (a YAML document).  Of it the sandbox uses the
trust domain (``trustDomain``, default ``cluster.local``: every workload's SPIFFE identity is
``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``), its aliases (``trustDomainAliases``), the root
namespace whose policies are mesh-wide (``rootNamespace``, default ``istio-system``) and how the sidecars set
``x-forwarded-client-cert`` (``defaultConfig.proxyHeaders``): ``MeshConfig``; the rest is listed once as not used.
``loader`` calls ``is_mesh_config`` / ``validate`` for each ConfigMap document, ``build`` calls ``trust_domains`` for
the model, and ``authz`` calls ``TrustDomains.principals`` for every principal
of an AuthorizationPolicy: as istiod does (its trust-domain bundle), a principal whose trust domain is
``cluster.local`` or one of the aliases stands for the local trust domain and each alias; one of another trust
domain is kept as written (and matches no workload of this mesh).  Problems are one line each, appended.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

NAME, NAMESPACE = "istio", "istio-system"
DEFAULT_TRUST_DOMAIN = "cluster.local"
USED_KEYS = ("trustDomain", "trustDomainAliases", "rootNamespace", "defaultConfig", "outboundTrafficPolicy")
# outboundTrafficPolicy.mode: what a sidecar does with a host no service or ServiceEntry declares (istiod's catch-all
# virtual host: PassthroughCluster for ALLOW_ANY, BlackHoleCluster's direct 502 for REGISTRY_ONLY)
OUTBOUND_POLICIES = ("ALLOW_ANY", "REGISTRY_ONLY")
DEFAULT_ROOT_NAMESPACE = "istio-system"
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# ProxyConfig.proxyHeaders.forwardedClientCert (Envoy's ForwardClientCertDetails on the sidecars' inbound)
FORWARDED_CLIENT_CERT = ("APPEND_FORWARD", "SANITIZE_SET", "SANITIZE", "FORWARD_ONLY", "ALWAYS_FORWARD_ONLY")
SETS_CURRENT_CERT = ("APPEND_FORWARD", "SANITIZE_SET")  # the two that put the caller's certificate in the header
_TRUST_DOMAIN = re.compile(r"[a-z0-9]([-a-z0-9._]{0,253}[a-z0-9])?")


class TrustDomains(BaseModel):
    """The local trust domain, then its aliases (a ``Document``'s spec for the ``istio`` ConfigMap)."""

    model_config = ConfigDict(frozen=True)

    local: str = DEFAULT_TRUST_DOMAIN
    aliases: tuple[str, ...] = ()

    def spiffe(self, namespace: str, account: str) -> str:
        return f"spiffe://{self.local}/ns/{namespace}/sa/{account}"

    def principals(self, written: tuple[str, ...]) -> tuple[str, ...]:
        """Istio-form principals (``<td>/ns/<ns>/sa/<sa>``) as istiod expands them for this trust domain."""
        found: list[str] = []
        for principal in written:
            parts = principal.split("/")
            domain = parts[0] if len(parts) == 5 else ""
            if domain in ("", "*") or domain.startswith("*") or not (
                    domain == DEFAULT_TRUST_DOMAIN or domain in (self.local, *self.aliases)):
                found.append(principal)  # no trust domain to enforce, a pattern, or another mesh's: as written
                continue
            found += ["/".join([td, *parts[1:]]) for td in (self.local, *self.aliases)]
        return tuple(dict.fromkeys(found))


class MeshConfig(TrustDomains):
    """The MeshConfig settings the sandbox reads: the trust domains, and how the sidecars' inbound sets
    ``x-forwarded-client-cert`` (``defaultConfig.proxyHeaders``: ``forwardedClientCert``, default
    ``APPEND_FORWARD``, and ``setCurrentClientCertDetails.uri``, default true), which istiod puts in every
    sidecar's inbound HTTP connection manager (pilot/pkg/networking/core/listener_inbound.go)."""

    forwarded_client_cert: str = "APPEND_FORWARD"
    xfcc_uri: bool = True
    # where mesh-wide policies live (PeerAuthentication, AuthorizationPolicy, Sidecar, EnvoyFilter): rootNamespace
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    outbound_policy: str = "ALLOW_ANY"  # outboundTrafficPolicy.mode (OUTBOUND_POLICIES), Istio's default ALLOW_ANY

    @property
    def xfcc_names_the_caller(self) -> bool:
        """Whether the callee's sidecar puts its caller's SPIFFE id (URI) into the header it forwards."""
        return self.forwarded_client_cert in SETS_CURRENT_CERT and self.xfcc_uri


def proxy_headers(mesh: dict[str, Any], where: str, problems: list[str], notes: list[str]) -> tuple[str, bool]:
    """``defaultConfig.proxyHeaders``' ``forwardedClientCert`` and ``setCurrentClientCertDetails.uri`` of a
    MeshConfig (or of a pod's ``proxy.istio.io/config``), defaults where absent; a bad value is a problem."""
    default = mesh.get("defaultConfig") or {}
    headers = (default.get("proxyHeaders") or {}) if isinstance(default, dict) else {}
    if not isinstance(headers, dict):
        headers = {}
    unused = sorted(set(default) - {"proxyHeaders"}) if isinstance(default, dict) else []
    if unused:
        notes.append(f"{where}: data.mesh.defaultConfig: {', '.join(unused)} not used by the sandbox (it reads "
                     "proxyHeaders.forwardedClientCert and setCurrentClientCertDetails.uri)")
    forwarded = headers.get("forwardedClientCert", "APPEND_FORWARD") or "APPEND_FORWARD"
    if forwarded not in FORWARDED_CLIENT_CERT:
        problems.append(f"{where}: data.mesh.defaultConfig.proxyHeaders.forwardedClientCert: {forwarded!r} is not "
                        f"one of {', '.join(FORWARDED_CLIENT_CERT)}")
    details = headers.get("setCurrentClientCertDetails") or {}
    uri = details.get("uri", True) if isinstance(details, dict) else True
    return str(forwarded), uri is not False


def is_mesh_config(raw: dict[str, Any]) -> bool:
    metadata = raw.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return (raw.get("kind") == "ConfigMap" and str(raw.get("apiVersion")) == "v1"
            and metadata.get("name") == NAME and metadata.get("namespace") == NAMESPACE)


def validate(raw: dict[str, Any], where: str, problems: list[str], notes: list[str]) -> MeshConfig | None:
    """The trust domains and proxy headers of an ``istio`` ConfigMap document, or None with a problem appended."""
    data = raw.get("data") or {}
    text = data.get("mesh", "") if isinstance(data, dict) else None
    if not isinstance(text, str):
        problems.append(f"{where}: data.mesh: expected the mesh configuration as a YAML string")
        return None
    try:
        mesh = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        problems.append(f"{where}: data.mesh: not YAML: {' '.join(str(exc).split())}")
        return None
    if not isinstance(mesh, dict):
        problems.append(f"{where}: data.mesh: expected a mapping (a MeshConfig)")
        return None
    local = mesh.get("trustDomain", DEFAULT_TRUST_DOMAIN) or DEFAULT_TRUST_DOMAIN
    aliases = mesh.get("trustDomainAliases") or []
    for field, value in [("trustDomain", local), *((f"trustDomainAliases[{i}]", a) for i, a in enumerate(aliases))]:
        if not isinstance(value, str) or not _TRUST_DOMAIN.fullmatch(value):
            problems.append(f"{where}: data.mesh.{field}: {value!r} is not a SPIFFE trust domain (lower-case "
                            "letters, digits, '.', '-', '_')")
            return None
    unused = sorted(set(mesh) - set(USED_KEYS))
    if unused:
        notes.append(f"{where}: data.mesh: {', '.join(unused)} not used by the sandbox (it reads "
                     f"{', '.join(USED_KEYS)})")
    root = mesh.get("rootNamespace") or DEFAULT_ROOT_NAMESPACE
    if not isinstance(root, str) or not _NAMESPACE.fullmatch(root):
        problems.append(f"{where}: data.mesh.rootNamespace: {root!r} is not a namespace name")
        return None
    outbound = mesh.get("outboundTrafficPolicy") or {}
    mode = outbound.get("mode") or "ALLOW_ANY" if isinstance(outbound, dict) else None
    if mode not in OUTBOUND_POLICIES:
        problems.append(f"{where}: data.mesh.outboundTrafficPolicy.mode: {mode!r} is not one of "
                        f"{', '.join(OUTBOUND_POLICIES)}")
        return None
    before = len(problems)
    forwarded, uri = proxy_headers(mesh, where, problems, notes)
    if len(problems) > before:
        return None
    return MeshConfig(local=local, aliases=tuple(aliases), forwarded_client_cert=forwarded, xfcc_uri=uri,
                      root_namespace=root, outbound_policy=str(mode))


def trust_domains(configs: list[TrustDomains]) -> TrustDomains:
    """The mesh's trust domains: its ``istio`` ConfigMap's, else Istio's default."""
    return configs[-1] if configs else TrustDomains()
