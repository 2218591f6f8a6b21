"""What every Envoy of the mesh should have, by resource type: the xDS server's source of truth.

Resources live in *groups*, and each Envoy (an xDS node) sees the union of its groups: the
control plane keeps one group per calling service (its clusters, routes and its own view of
every cluster's endpoints, shared by all its replicas) and one per pod (its listeners).  A
group's type gets a new version only when the content of some resource changed, and only
the nodes in that group are told, so a push reaches exactly the Envoys whose configuration
changed.  Pure bookkeeping, no I/O: ``controlplane.ControlPlane`` writes to it,
``xds.server.AdsServer`` serves from it, ``envoy_validation`` reads it back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chaosmesh_qa.targets.local.xds.resources import name_of

JSON = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    name: str
    digest: str
    document: JSON


@dataclass
class _Group:
    resources: dict[str, dict[str, Resource]] = field(default_factory=dict)  # type -> name -> resource
    versions: dict[str, int] = field(default_factory=dict)
    members: set[str] = field(default_factory=set)


def _resource(type_url: str, document: JSON) -> Resource:
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"))  # as resources.pack digests it
    return Resource(name_of(type_url, document), hashlib.sha256(blob.encode()).hexdigest()[:20], document)


class ConfigStore:
    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._nodes: dict[str, tuple[str, ...]] = {}
        self._listeners: list[Callable[[set[str], str], None]] = []

    def on_change(self, listener: Callable[[set[str], str], None]) -> None:
        """Call ``listener(nodes, type_url)`` whenever what ``nodes`` should have of a type changed."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ writing

    def put(self, group: str, type_url: str, documents: Iterable[JSON]) -> bool:
        """Make ``documents`` the group's whole set of ``type_url``; returns whether anything changed."""
        state = self._groups.setdefault(group, _Group())
        new = {r.name: r for r in (_resource(type_url, d) for d in documents)}
        old = state.resources.get(type_url)
        if old is not None and {n: r.digest for n, r in old.items()} == {n: r.digest for n, r in new.items()}:
            return False
        state.resources[type_url] = new
        state.versions[type_url] = state.versions.get(type_url, 0) + 1
        self._notify(set(state.members), type_url)
        return True

    def add_node(self, node: str, groups: Iterable[str]) -> None:
        self.remove_node(node)
        self._nodes[node] = tuple(groups)
        for group in self._nodes[node]:
            self._groups.setdefault(group, _Group()).members.add(node)

    def remove_node(self, node: str) -> None:
        for group in self._nodes.pop(node, ()):
            self._groups[group].members.discard(node)

    def drop_group(self, group: str) -> None:
        state = self._groups.pop(group, None)
        if state is not None and state.members:
            raise ValueError(f"xDS group {group} still has nodes: {sorted(state.members)}")

    # ------------------------------------------------------------------ reading

    def has_node(self, node: str) -> bool:
        return node in self._nodes

    def view(self, node: str, type_url: str) -> tuple[int, dict[str, Resource]]:
        """``(version, resources by name)`` of one type for one node; the version only grows."""
        version = 0
        resources: dict[str, Resource] = {}
        for group in self._nodes.get(node, ()):
            state = self._groups[group]
            version += state.versions.get(type_url, 0)
            resources.update(state.resources.get(type_url, {}))
        return version, resources

    def documents(self, node: str, type_url: str) -> list[JSON]:
        return [r.document for r in self.view(node, type_url)[1].values()]

    def _notify(self, nodes: set[str], type_url: str) -> None:
        if nodes:
            for listener in self._listeners:
                listener(nodes, type_url)
