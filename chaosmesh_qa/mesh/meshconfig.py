"""Istio's mesh configuration as a mesh directory (or a cluster) gives it: the ``istio`` ConfigMap of ``istio-system``.

istiod reads its MeshConfig from the ``mesh`` key of that ConfigMap (a YAML document).  Of it the sandbox uses the
trust domain (``trustDomain``, default ``cluster.local``: every workload's SPIFFE identity is
``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``) and its aliases (``trustDomainAliases``); the rest
is listed once as not used.  ``loader`` calls ``is_mesh_config`` / ``validate`` for each ConfigMap document,
``build`` calls ``trust_domains`` for the model, and ``authz`` calls ``TrustDomains.principals`` for every principal
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
USED_KEYS = ("trustDomain", "trustDomainAliases")
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


def is_mesh_config(raw: dict[str, Any]) -> bool:
    metadata = raw.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return (raw.get("kind") == "ConfigMap" and str(raw.get("apiVersion")) == "v1"
            and metadata.get("name") == NAME and metadata.get("namespace") == NAMESPACE)


def validate(raw: dict[str, Any], where: str, problems: list[str], notes: list[str]) -> TrustDomains | None:
    """The trust domains of an ``istio`` ConfigMap document, or None with a problem appended."""
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
    return TrustDomains(local=local, aliases=tuple(aliases))


def trust_domains(configs: list[TrustDomains]) -> TrustDomains:
    """The mesh's trust domains: its ``istio`` ConfigMap's, else Istio's default."""
    return configs[-1] if configs else TrustDomains()
