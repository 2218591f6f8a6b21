"""Localities (region/zone/subzone) of pods, and the priorities and weights Istio gives them per caller.

Where a pod's locality comes from, as in Istio: its ``istio-locality`` label (``region.zone.subzone``, dots
because a label value cannot hold ``/``), else the topology labels ``topology.kubernetes.io/region``,
``topology.kubernetes.io/zone`` and ``topology.istio.io/subzone`` (on a cluster those are the node's; here a
manifest's pod template or a version's ``labels`` carry them), else the ``Mesh`` document's ``versions[].zones``
(``build`` calls ``replica_localities``).

What a caller's sidecar gets for one cluster (``assign``, called by ``targets.local.envoy.locality`` for every
caller view of every cluster, and by ``explain``) follows istiod's ``ApplyLocalityLoadBalancer``
(pilot/pkg/networking/core/loadbalancer/loadbalancer.go), rewritten here from its rules:

* ``enabled: false`` (``LocalityLbSetting.enabled``): no locality load balancing at all (no weights either);
* ``distribute`` (applied whether or not outlier detection is set): the first entry whose ``from`` matches the
  caller's locality sets each destination group's weight, ``ceil(group weight * weight / sum of the matched
  groups' weights)``; endpoints in a locality no ``to`` entry matches get no traffic;
* otherwise, only when the DestinationRule sets ``outlierDetection`` (Envoy never fails over without it):
  ``failoverPriority`` (ordered labels, ``label=value`` overriding the caller's value) splits each locality by
  the first label where an endpoint differs from the caller; ``failover`` (``from`` region -> ``to`` region) or the
  default rule then ranks by region/zone/subzone match (0 same subzone, 1 same zone, 2 same region, 3 other
  region, 4 another region than the ``to`` of the caller's region's ``failover`` entry); priorities are then
  renumbered 0..N without gaps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
ISTIO_LOCALITY_LABEL = "istio-locality"
TOPOLOGY_LABELS = (REGION_LABEL, ZONE_LABEL, SUBZONE_LABEL)
DEFAULT_REGION = "region-1"  # the Mesh document's ``spec.region`` when it gives none
_SEGMENT = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", re.ASCII)  # a label value, non-empty


@dataclass(frozen=True, order=True)
class Locality:
    region: str = ""
    zone: str = ""
    subzone: str = ""

    def __str__(self) -> str:
        """``region/zone/subzone`` without empty trailing parts ('' for none; ``/z`` for a zone without region)."""
        parts = [self.region, self.zone, self.subzone]
        while parts and not parts[-1]:
            parts.pop()
        return "/".join(parts)

    @classmethod
    def parse(cls, text: str) -> Locality:
        """``region[/zone[/subzone]]`` (no check: ``check_locality`` does that for input)."""
        parts = [*text.split("/", 2), "", ""]
        return cls(parts[0], parts[1], parts[2])

    def labels(self) -> dict[str, str]:
        """The topology labels Istio adds to an endpoint's (and a proxy's) labels for its locality."""
        pairs = zip(TOPOLOGY_LABELS, (self.region, self.zone, self.subzone), strict=True)
        return {key: value for key, value in pairs if value}


@dataclass(frozen=True)
class Distribute:
    from_: str  # a locality, '*' allowed at the end
    to: tuple[tuple[str, int], ...]  # locality -> weight (summing to 100)


@dataclass(frozen=True)
class LocalityLbSetting:
    """A DestinationRule's ``loadBalancer.localityLbSetting`` (``None`` in the model: Istio's mesh default,
    enabled with no rule)."""

    enabled: bool = True
    distribute: tuple[Distribute, ...] = ()
    failover: tuple[tuple[str, str], ...] = ()  # (from region, to region)
    failover_priority: tuple[str, ...] = ()  # label names, or label=value


@dataclass(frozen=True)
class Group:
    """Endpoints of one cluster in one locality, with the priority and weight a caller gives them."""

    locality: Locality
    endpoints: tuple[str, ...]  # pod names, in the order given
    priority: int = 0
    weight: int = 0  # 0: as many as endpoints


@dataclass(frozen=True)
class Member:
    """One endpoint as ``assign`` needs it: its pod, locality and labels (without the topology labels)."""

    pod: str
    locality: Locality
    labels: Mapping[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------ input


def check_locality(text: str, segments: tuple[int, int] = (1, 3)) -> str:
    """A locality as written (``region/zone/subzone``, each a label value); raises ``ValueError``."""
    parts = text.split("/")
    if not segments[0] <= len(parts) <= segments[1] or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise ValueError(f"{text!r} is not a locality (region, region/zone or region/zone/subzone, each a label "
                         "value: letters, digits, '-', '_', '.')")
    return text


def check_rule_locality(text: str) -> str:
    """A locality in a ``distribute`` rule: like ``check_locality``, with ``*`` allowed once, as its last part."""
    parts = text.split("/")
    wildcard = parts[-1] == "*"
    if not 1 <= len(parts) <= 3 or not all(_SEGMENT.fullmatch(p) for p in parts[:-1]) \
            or not (wildcard or _SEGMENT.fullmatch(parts[-1])) or "*" in "".join(parts[:-1]):
        raise ValueError(f"{text!r} is not a locality (region, region/zone or region/zone/subzone, each a label "
                         "value; '*' as the last part matches any)")
    return text


def from_labels(labels: Mapping[str, str]) -> Locality | None:
    """A pod's locality from its labels, as istiod reads it (``istio-locality`` first); ``None``: none given."""
    if labels.get(ISTIO_LOCALITY_LABEL):
        value = labels[ISTIO_LOCALITY_LABEL]
        return Locality.parse(value if "/" in value else value.replace(".", "/"))
    if not any(labels.get(k) for k in TOPOLOGY_LABELS):
        return None
    return Locality(labels.get(REGION_LABEL, ""), labels.get(ZONE_LABEL, ""), labels.get(SUBZONE_LABEL, ""))


def replica_localities(zones: list[str], replicas: int, region: str) -> tuple[str, ...]:
    """``versions[].zones`` spread over ``replicas`` pods, round-robin (replica ``i`` in ``zones[i % n]``), as a
    topology spread constraint would; a bare zone is in ``region``."""
    spread = [zone if "/" in zone else f"{region}/{zone}" for zone in zones]
    return tuple(spread[i % len(spread)] for i in range(replicas)) if spread else ()


def version_localities(labels: Mapping[str, str], zones: list[str] | None, replicas: int, region: str,
                       where: str, problems: list[str]) -> tuple[str, ...]:
    """The localities of a version's replicas (``VersionModel.localities``): its ``zones``, spread, or the one its
    labels give every pod; both is a problem (appended, naming ``where``, the version's field path)."""
    labelled = from_labels(labels)
    if zones and labelled is not None:
        problems.append(f"{where}.zones: the version's labels already give its locality ({labelled}); give one or "
                        "the other")
        return ()
    if zones:
        return replica_localities(zones, replicas, region)
    return (str(labelled),) * replicas if labelled is not None and replicas else ()


# ------------------------------------------------------------------ Istio's rules


def matches(locality: Locality, rule: str) -> bool:
    """Istio's locality match: ``rule`` is ``region[/zone[/subzone]]``, ``*`` matching anything from there on."""
    parts = [*rule.split("/", 2), "", ""]
    region, zone, subzone = parts[0], parts[1], parts[2]
    if region == "*":
        return True
    return (locality.region == region and zone in ("*", "", locality.zone)
            and subzone in ("*", "", locality.subzone))


def match_priority(caller: Locality, endpoint: Locality) -> int:
    """0: same region, zone and subzone; 1: same region and zone; 2: same region; 3: another region."""
    if caller.region != endpoint.region:
        return 3
    if caller.zone != endpoint.zone:
        return 2
    return 0 if caller.subzone == endpoint.subzone else 1


def assign(caller: Locality, caller_labels: Mapping[str, str], members: Iterable[Member],
           setting: LocalityLbSetting | None, outlier_detection: bool) -> list[Group]:
    """The locality groups of one cluster as a caller's sidecar gets them (priority, weight), by Istio's rules."""
    groups = _by_locality(members)
    setting = setting or LocalityLbSetting()
    if not setting.enabled:
        return groups
    if setting.distribute:
        return _distribute(caller, groups, setting.distribute)
    if not outlier_detection:
        return groups
    if setting.failover_priority:
        labels = {**caller_labels, **caller.labels()}
        groups = _by_labels(labels, list(members), setting.failover_priority)
        if setting.failover:
            groups = _by_match(caller, groups, dict(setting.failover))
        return groups
    return _by_match(caller, groups, dict(setting.failover))


def _by_locality(members: Iterable[Member]) -> list[Group]:
    found: dict[Locality, list[str]] = {}
    for member in members:
        found.setdefault(member.locality, []).append(member.pod)
    return [Group(loc, tuple(pods), 0, len(pods)) for loc, pods in sorted(found.items())]


def _renumbered(groups: list[Group]) -> list[Group]:
    ranks = {p: i for i, p in enumerate(sorted({g.priority for g in groups}))}
    return [Group(g.locality, g.endpoints, ranks[g.priority], g.weight) for g in groups]


def _by_match(caller: Locality, groups: list[Group], failover: dict[str, str]) -> list[Group]:
    ranked = []
    for group in groups:
        priority = match_priority(caller, group.locality)
        if priority == 3 and caller.region in failover and group.locality.region != failover[caller.region]:
            priority = 4
        ranked.append(Group(group.locality, group.endpoints, group.priority * 5 + priority, group.weight))
    return _renumbered(ranked)


def _by_labels(caller_labels: Mapping[str, str], members: list[Member], priorities: tuple[str, ...]) -> list[Group]:
    if not caller_labels:
        return _by_locality(members)
    names = [p.split("=", 1)[0] for p in priorities]
    wanted = {p.split("=", 1)[0]: p.split("=", 1)[1] for p in priorities if "=" in p}
    split: dict[tuple[Locality, int], list[str]] = {}
    for member in members:
        labels = {**member.labels, **member.locality.labels()}
        priority = 0
        for index, name in enumerate(names):
            if wanted.get(name, caller_labels.get(name)) != labels.get(name):
                priority = len(names) - index
                break
        split.setdefault((member.locality, priority), []).append(member.pod)
    return _renumbered([Group(loc, tuple(pods), priority, len(pods))
                        for (loc, priority), pods in sorted(split.items())])


def _distribute(caller: Locality, groups: list[Group], rules: tuple[Distribute, ...]) -> list[Group]:
    rule = next((r for r in rules if matches(caller, r.from_)), None)
    if rule is None:
        return groups
    weights: dict[int, int] = {}
    for target, weight in rule.to:
        chosen = [i for i, g in enumerate(groups) if i not in weights and matches(g.locality, target)]
        total = sum(groups[i].weight for i in chosen)
        for i in chosen:
            weights[i] = math.ceil(groups[i].weight * weight / total)
    return [Group(g.locality, g.endpoints, 0, weights[i]) for i, g in enumerate(groups) if i in weights]
