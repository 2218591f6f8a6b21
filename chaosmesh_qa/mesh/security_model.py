"""Who may call whom, as the mesh model holds it: AuthorizationPolicies and PeerAuthentications, resolved.

``build`` (through ``authz`` and ``peerauth``) makes these from the validated documents into ``model.MeshModel``;
``access`` decides requests against them, the local target renders them as Envoy RBAC filters and TLS modes, and
the Kubernetes API emulation hands them to the sandbox.  Plain frozen data, like the rest of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AuthzSource:
    """Every value is an Istio string match: exact, ``prefix*``, ``*suffix`` or ``*`` (present)."""

    principals: tuple[str, ...]  # Istio form, without "spiffe://"
    namespaces: tuple[str, ...]
    not_principals: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzOperation:
    paths: tuple[str, ...]
    methods: tuple[str, ...]
    hosts: tuple[str, ...] = ()  # matched against the authority, ignoring case
    not_paths: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzCondition:
    """A ``rules[].when`` entry the sandbox evaluates: ``request.headers[<name>]``,
    ``source.principal`` or ``source.namespace``."""

    key: str
    values: tuple[str, ...]
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthzRule:
    """Matches when any source matches, any operation matches (an empty list matches all) and
    every condition holds."""

    sources: tuple[AuthzSource, ...]
    operations: tuple[AuthzOperation, ...]
    conditions: tuple[AuthzCondition, ...] = ()


@dataclass(frozen=True)
class AuthzPolicy:
    name: str
    namespace: str
    selector: dict[str, str] | None
    action: Literal["ALLOW", "DENY"]
    rules: tuple[AuthzRule, ...]


@dataclass(frozen=True)
class PeerAuthPolicy:
    namespace: str
    selector: dict[str, str] | None
    mode: str
    port_modes: tuple[tuple[int, str], ...] = ()  # portLevelMtls (honoured with a selector, as in Istio)
