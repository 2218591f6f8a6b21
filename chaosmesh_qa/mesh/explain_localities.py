"""``chaosmesh-qa explain`` findings for locality load balancing settings that cannot work (codes CMQ-L0nn).

``explain.explain`` calls ``locality_findings`` with the model and its ``at(kind, service, field)`` (where a
resource's field is declared).  The rules are Istio's (``mesh.localities``): failover needs outlier detection, a
failover's ``to`` region needs endpoints, a ``distribute`` target needs endpoints for its share to exist, and a
``failoverPriority`` label ranks nothing when no pod carries it.  Invalid settings (weights not summing to 100,
``distribute`` with ``failover``...) never get here: the loader refuses them, as istiod's webhook does.
"""

from __future__ import annotations

from collections.abc import Callable

from chaosmesh_qa.mesh.findings import Finding
from chaosmesh_qa.mesh.localities import Locality, matches
from chaosmesh_qa.mesh.model import MeshModel

_FIELD = "spec.trafficPolicy.loadBalancer.localityLbSetting"
EXPERIMENT = "pod-kill-failover"  # the shipped experiment that kills a replica: where failover shows


def locality_findings(model: MeshModel, at: Callable[[str, str, str], str]) -> list[Finding]:
    found = []
    for name in sorted(model.services):
        setting = model.policies[name].locality_lb
        if setting is None or not setting.enabled:
            continue
        svc = model.services[name]
        pods = [(Locality.parse(v.locality(i)), {**v.labels, **Locality.parse(v.locality(i)).labels()})
                for v in svc.versions for i in range(v.replicas)]
        if not setting.distribute and model.policies[name].outlier is None:
            found.append(Finding(
                "CMQ-L001", "warning", at("DestinationRule", name, _FIELD),
                f"{name}: localityLbSetting without outlierDetection",
                "Istio applies locality priorities only with outlier detection (Envoy could never move to a lower "
                "priority without it): callers spread over every locality as if the setting were absent, and a "
                "zone outage is not failed over", EXPERIMENT))
        regions = {loc.region for loc, _ in pods}
        for i, (source, target) in enumerate(setting.failover):
            if target not in regions:
                found.append(Finding(
                    "CMQ-L002", "warning", at("DestinationRule", name, f"{_FIELD}.failover[{i}].to"),
                    f"{name}: failover from {source} to region {target!r}, where it has no pod",
                    f"callers in {source} fail over to the other regions as if the rule were absent (it has pods in "
                    f"{', '.join(sorted(r or '(none)' for r in regions))})", EXPERIMENT))
        for i, rule in enumerate(setting.distribute):
            for target, weight in rule.to:
                if not any(matches(loc, target) for loc, _ in pods):
                    found.append(Finding(
                        "CMQ-L003", "warning", at("DestinationRule", name, f"{_FIELD}.distribute[{i}].to"),
                        f"{name}: distribute sends {weight}% from {rule.from_} to {target}, where it has no pod",
                        "Envoy spreads that share over the other localities by their weights: the declared shares "
                        "do not hold", EXPERIMENT))
        for i, label in enumerate(setting.failover_priority):
            key = label.split("=", 1)[0]
            if not any(key in labels for _, labels in pods):
                found.append(Finding(
                    "CMQ-L004", "warning", at("DestinationRule", name, f"{_FIELD}.failoverPriority[{i}]"),
                    f"{name}: failoverPriority label {key!r} is on none of its pods",
                    "every endpoint differs from (or matches) the caller alike on it: the label ranks nothing",
                    EXPERIMENT))
    return found
