"""Istio's locality load balancing in Envoy's terms: a sidecar's node locality, and one cluster's endpoints grouped
by locality with the priority and weight a caller gives each group.

``clusters.load_assignment`` calls ``locality_endpoints`` for a cluster whose service has pods with a locality,
and ``clusters.cluster`` calls ``lb_config``; ``controlplane.write_pod`` puts ``node_locality`` in the bootstrap.
The rules themselves (which group gets which priority and weight) are ``mesh.localities.assign``'s.  What
happens when endpoints fail is Envoy's own, as in a cluster with istiod: a priority level takes
``min(100%, healthy share x 1.4)`` of the traffic (the overprovisioning factor Istio leaves at Envoy's default,
140), the rest spills to the next level, so a level whose endpoints are all ejected by outlier detection sends
everything on; inside a level, ``locality_weighted_lb_config`` picks a locality by its weight (scaled by its
healthy share) and then an endpoint of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from chaosmesh_qa.mesh.localities import Locality, LocalityLbSetting, Member, assign
from chaosmesh_qa.targets.local.envoy.common import JSON


@dataclass(frozen=True)
class CallerView:
    """What a caller's endpoints depend on: its pods' locality and labels (``failoverPriority`` matches them)."""

    locality: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


def node_locality(locality: str) -> JSON | None:
    """The bootstrap ``node.locality`` of a pod in ``locality`` ('region/zone/subzone'); ``None`` for none."""
    if not locality:
        return None
    parsed = Locality.parse(locality)
    return _envoy(parsed)


def _envoy(locality: Locality) -> JSON:
    pairs = (("region", locality.region), ("zone", locality.zone), ("sub_zone", locality.subzone))
    return {key: value for key, value in pairs if value}


def enabled(setting: LocalityLbSetting | None) -> bool:
    """Istio's mesh default enables locality load balancing; a DestinationRule's ``enabled: false`` turns it off."""
    return setting is None or setting.enabled


def lb_config(setting: LocalityLbSetting | None) -> JSON:
    """What the cluster's ``common_lb_config`` gets: locality-weighted load balancing whenever it is enabled, as
    istiod sets it (each group's weight is its number of endpoints unless ``distribute`` says otherwise)."""
    return {"locality_weighted_lb_config": {}} if enabled(setting) else {}


def locality_endpoints(endpoints: Iterable[tuple[str, str, Mapping[str, str]]], view: CallerView,
                       setting: LocalityLbSetting | None, outlier_detection: bool,
                       render: Callable[[str], JSON]) -> list[JSON]:
    """``LocalityLbEndpoints`` for ``endpoints`` ((pod, locality, labels)) as ``view``'s caller gets them;
    ``render(pod)`` is a pod's ``LbEndpoint``."""
    members = [Member(pod, Locality.parse(loc), labels) for pod, loc, labels in endpoints]
    caller = Locality.parse(view.locality)
    weighted = enabled(setting)
    groups = assign(caller, view.labels, members, setting, outlier_detection) if weighted \
        else assign(caller, view.labels, members, LocalityLbSetting(enabled=False), False)
    out = []
    for group in groups:
        entry: JSON = {"lb_endpoints": [render(pod) for pod in group.endpoints]}
        if str(group.locality):
            entry["locality"] = _envoy(group.locality)
        if weighted:
            entry["load_balancing_weight"] = group.weight or len(group.endpoints)
        if group.priority:
            entry["priority"] = group.priority
        out.append(entry)
    return out
