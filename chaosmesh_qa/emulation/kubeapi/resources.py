"""What the Kubernetes API emulation serves: its resource table and the discovery documents built from it.

``server`` routes every request through ``RESOURCES`` (unknown group/version/resource → a 404
``Status``, a verb the table does not list → a 405 ``Status``) and answers ``/api``, ``/apis``
and ``/apis/<group>[/<version>]`` from it, which is what ``kubectl`` and the python client's
dynamic client read before they make a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SERVER_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0+chaosmesh-qa-emulation",
                  "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "",
                  "compiler": "", "platform": "linux/amd64"}

READ = ("get", "list")
CRUD = ("create", "get", "list", "delete")


@dataclass(frozen=True)
class Resource:
    group: str  # "" for core
    versions: tuple[str, ...]  # preferred first
    name: str  # plural
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    applied: bool = False  # stored objects change the sandbox (apply.Applier: which, and how)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version


ISTIO_NET = ("v1", "v1beta1", "v1alpha3")
RESOURCES: tuple[Resource, ...] = (
    Resource("", ("v1",), "namespaces", "Namespace", False, READ, ("ns",)),
    Resource("", ("v1",), "nodes", "Node", False, READ, ("no",)),
    Resource("", ("v1",), "pods", "Pod", True, ("get", "list", "watch", "delete", "patch"), ("po",)),
    Resource("", ("v1",), "services", "Service", True, READ, ("svc",)),
    Resource("", ("v1",), "endpoints", "Endpoints", True, READ, ("ep",)),
    Resource("", ("v1",), "configmaps", "ConfigMap", True,
             ("create", "get", "list", "update", "patch", "delete"), ("cm",)),
    Resource("networking.istio.io", ISTIO_NET, "virtualservices", "VirtualService", True, READ, ("vs",)),
    Resource("networking.istio.io", ISTIO_NET, "destinationrules", "DestinationRule", True, READ, ("dr",)),
    Resource("networking.istio.io", ISTIO_NET, "gateways", "Gateway", True, READ, ("gw",)),
    Resource("networking.istio.io", ISTIO_NET, "serviceentries", "ServiceEntry", True, READ, ("se",)),
    Resource("networking.istio.io", ISTIO_NET, "workloadentries", "WorkloadEntry", True, READ, ("we",)),
    Resource("networking.istio.io", ISTIO_NET, "envoyfilters", "EnvoyFilter", True, CRUD, applied=True),
    Resource("security.istio.io", ("v1", "v1beta1"), "peerauthentications", "PeerAuthentication", True, READ,
             ("pa",)),
    Resource("security.istio.io", ("v1", "v1beta1"), "authorizationpolicies", "AuthorizationPolicy", True,
             ("create", "get", "list", "update", "patch", "delete"), ("ap",), applied=True),
    Resource("gateway.networking.k8s.io", ("v1", "v1beta1"), "httproutes", "HTTPRoute", True, READ),
    Resource("policy", ("v1",), "poddisruptionbudgets", "PodDisruptionBudget", True,
             ("create", "get", "list", "update", "patch", "delete"), ("pdb",)),
    Resource("networking.k8s.io", ("v1",), "networkpolicies", "NetworkPolicy", True,
             ("create", "get", "list", "update", "patch", "delete"), ("netpol",), applied=True),
)


# subresources served, (group, resource, subresource) -> verbs; RBAC names them "<resource>/<subresource>"
SUBRESOURCES: dict[tuple[str, str, str], tuple[str, ...]] = {("", "pods", "log"): ("get",),
                                                               ("", "pods", "proxy"): ("get",),
                                                               ("", "pods", "eviction"): ("create",)}


def find(group: str, version: str, name: str) -> Resource | None:
    return next((r for r in RESOURCES if r.group == group and r.name == name and version in r.versions), None)


def groups() -> dict[str, tuple[str, ...]]:
    """Named API groups and their versions (preferred first)."""
    found: dict[str, tuple[str, ...]] = {}
    for r in RESOURCES:
        if r.group:
            found[r.group] = tuple(dict.fromkeys([*found.get(r.group, ()), *r.versions]))
    return found


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group(group: str) -> dict[str, Any] | None:
    versions = groups().get(group)
    if versions is None:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
            "preferredVersion": entries[0]}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [api_group(g) for g in groups()]}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    chosen = [r for r in RESOURCES if r.group == group and version in r.versions]
    if not chosen:
        return None
    entries: list[dict[str, Any]] = []
    for r in chosen:
        entries.append({"name": r.name, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                        "verbs": list(r.verbs), "shortNames": list(r.short_names)})
        entries += [{"name": f"{r.name}/{sub}", "singularName": "", "namespaced": r.namespaced, "kind": r.kind,
                     "verbs": list(verbs)}
                    for (g, parent, sub), verbs in SUBRESOURCES.items() if (g, parent) == (group, r.name)]
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": entries}
