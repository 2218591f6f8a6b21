"""Istio host names as the mesh model resolves them: a service of the mesh, or a ServiceEntry's external host.

``build.build_model`` makes one ``HostResolver`` from the services and the hosts the ServiceEntries declare
(``serviceentries.declared_hosts``) and hands it to every per-kind step that reads a host (DestinationRules,
VirtualServices).  A service is named by its short name, ``name.namespace``, ``name.namespace.svc`` or its FQDN;
a wildcard (``*``, ``*.ns.svc.cluster.local``, ``*.local``) names every service whose FQDN it matches.  A host
that names no service may name a ServiceEntry host (``external``): the same name, or one the other's
``*.<domain>`` covers, as Istio matches a VirtualService's host against its registry.  One that names neither
and that no Kubernetes Service can have (``outside_cluster``: not under ``.svc`` or the cluster domain, nor
``<name>.<namespace>`` of a namespace of the mesh, e.g. ``api.example.com``) is a host outside the mesh that
Istio would accept a DestinationRule or VirtualService for; any other is taken for a misspelt service.
"""

from __future__ import annotations

from chaosmesh_qa.mesh.model import CLUSTER_DOMAIN, ROOT_NAMESPACE, ServiceModel


class HostResolver:
    """Maps Istio host names to service names, and to the ServiceEntry hosts they name."""

    def __init__(self, services: dict[str, ServiceModel], external: tuple[str, ...] = ()) -> None:
        self.by_host: dict[str, str] = {}
        self.fqdns = {host: svc.name for svc in services.values() for host in (svc.hosts or (svc.fqdn,))}
        self.external_hosts = external  # the ServiceEntries' hosts, lower-case, oldest entry first
        self.internal_hosts = {h for svc in services.values() for h in svc.hosts}  # MESH_INTERNAL entries' services
        self.namespaces = {svc.namespace for svc in services.values()} | {ROOT_NAMESPACE}
        for svc in services.values():  # a MESH_INTERNAL ServiceEntry's service: by its hosts only
            for host in svc.host_names:
                self.by_host[host] = svc.name

    def resolve(self, host: str) -> str | None:
        return self.by_host.get(host)

    def matching(self, host: str) -> list[str] | None:
        """The services a host names: one for a service's name, every match for a wildcard; None
        when a concrete host names no service."""
        if host.startswith("*"):
            return sorted(name for fqdn, name in self.fqdns.items() if fqdn.endswith(host[1:]))
        found = self.resolve(host)
        return None if found is None else [found]

    def external(self, host: str) -> str | None:
        """The ServiceEntry host that ``host`` names (the first declared, if several), or None."""
        wanted = host.lower()
        return next((h for h in self.external_hosts if covers(h, wanted) or covers(wanted, h)), None)

    def outside_cluster(self, host: str) -> bool:
        """A concrete host that no Kubernetes Service of the cluster can be named by (``api.example.com``)."""
        labels = host.lower().rstrip(".").split(".")
        if host.startswith("*") or len(labels) == 1 or labels[-1] == "svc" or host.endswith(f".{CLUSTER_DOMAIN}"):
            return False
        return not (len(labels) == 2 and labels[1] in self.namespaces)

    @staticmethod
    def specificity(host: str) -> tuple[int, int]:
        """Sort key: concrete hosts first, then wildcards from the longest suffix to the shortest."""
        return (1, -len(host)) if host.startswith("*") else (0, 0)


def covers(pattern: str, host: str) -> bool:
    """``pattern`` is ``host``, or a ``*.<domain>`` (or ``*``) wildcard that matches it."""
    if pattern == host or pattern == "*":
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
