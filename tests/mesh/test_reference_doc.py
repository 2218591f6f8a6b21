"""docs/reference/mesh.md cannot drift from the schema: every field the loader reads is documented in its
kind's section, and no field the section lists as "not supported" is one the loader reads.

The schema is the pydantic models the loader validates with (``mesh.schema``, ``mesh.gateways``,
``mesh.httproutes``, ``mesh.authz``, ``mesh.serviceentries``, ``mesh.manifests``,
``mesh.rollouts``); a field is documented when
its YAML name appears inside a backticked span of the section (``retries`` in `retries`, `perTryTimeout` in
`retries.perTryTimeout`).
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from chaosmesh_qa.mesh import authz, gateways, httproutes, manifests, rollouts, schema, serviceentries

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "mesh.md"
SECTIONS: dict[str, tuple[type[BaseModel], ...]] = {
    "The `Mesh` kind": (schema.MeshSpec,),
    "VirtualService": (schema.VirtualServiceSpec,),
    "DestinationRule": (schema.DestinationRuleSpec,),
    "Sidecar": (schema.SidecarSpec,),
    "PeerAuthentication": (schema.PeerAuthenticationSpec,),
    "AuthorizationPolicy": (authz.AuthorizationPolicySpec,),
    "ServiceEntry": (serviceentries.ServiceEntrySpec,),
    "WorkloadEntry and MESH_INTERNAL ServiceEntries": (serviceentries.WorkloadEntry,),
    "Gateways": (gateways.GatewaySpec, httproutes.K8sGatewaySpec, httproutes.HTTPRouteSpec),
    "Kubernetes manifests": (manifests.WorkloadSpec, manifests.ServiceSpec),
    "Argo Rollouts": (rollouts.RolloutSpec,),
}


def _sections() -> dict[str, str]:
    parts = re.split(r"^## (.+)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _fields(root: type[BaseModel]) -> set[str]:
    """YAML names of every field under ``root`` (nested models included)."""
    names: set[str] = set()
    seen: set[type[BaseModel]] = set()
    stack = [root]
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
            stack.extend(_models(info.annotation))
    return names


def _backticked(body: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", body)


@pytest.mark.parametrize("title", sorted(SECTIONS))
def test_every_field_the_loader_reads_is_documented_in_its_section(title: str) -> None:
    body = _sections()[title]
    spans = _backticked(body)
    missing = sorted(f for root in SECTIONS[title] for f in _fields(root)
                     if not any(re.search(rf"(?<![A-Za-z0-9]){re.escape(f)}(?![A-Za-z0-9])", s) for s in spans))
    assert not missing, f"docs/reference/mesh.md, section {title!r}: fields read but not documented: {missing}"


@pytest.mark.parametrize("title", sorted(SECTIONS))
def test_nothing_listed_as_unsupported_is_read(title: str) -> None:
    body = _sections()[title]
    unsupported = re.search(r"Not supported[^:]*:(.*?)(?:\n\n|\Z)", body, flags=re.DOTALL)
    if unsupported is None:
        return
    read = {f for root in SECTIONS[title] for f in _fields(root)}
    # bare names only: a qualified one (`http[].headers`) says which of two same-named fields it means
    listed = {s for s in _backticked(unsupported.group(1)) if re.fullmatch(r"[A-Za-z0-9]+", s)}
    assert not listed & read, f"section {title!r} lists as not supported what the loader reads: {listed & read}"
