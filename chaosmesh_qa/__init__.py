"""chaosmesh-qa: a Chaos Toolkit extension that QA-tests service meshes.

Faults (pod kills, L7 latency and aborts, partitions) go through a ``MeshTarget``;
the embedded local target runs the team's Istio YAML on real Envoy sidecars.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("chaosmesh-qa")  # written once, in pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def discover(discover_system: bool = True) -> dict[str, Any]:
    """Chaos Toolkit discovery: every action, probe and control this extension provides."""
    from chaoslib.discovery.discover import discover_actions, discover_probes, initialize_discovery_result

    discovery: dict[str, Any] = initialize_discovery_result("chaosmesh-qa", __version__, "service-mesh")
    activities = [*discover_actions("chaosmesh_qa.actions"), *discover_actions("chaosmesh_qa.traffic.actions"),
                  *(probe for module in ("prometheus", "recovery", "client", "routing", "mtls")
                    for probe in discover_probes(f"chaosmesh_qa.probes.{module}"))]
    for activity in activities:
        _name_optional_types(activity)
    discovery["activities"].extend(activities)
    return discovery


def _name_optional_types(activity: dict[str, Any]) -> None:
    """chaoslib calls every ``X | None`` argument an "object"; name it by ``X`` instead."""
    import importlib
    import types
    import typing

    from chaoslib.discovery.discover import portable_type_name

    function = getattr(importlib.import_module(activity["mod"]), activity["name"])
    hints = typing.get_type_hints(function)
    for argument in activity["arguments"]:
        hint = hints.get(argument["name"])
        if isinstance(hint, types.UnionType) and type(None) in hint.__args__:
            inner = [t for t in hint.__args__ if t is not type(None)]
            if len(inner) == 1:
                argument["type"] = portable_type_name(inner[0])
