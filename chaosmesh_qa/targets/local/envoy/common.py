"""Small Envoy v3 building blocks shared by the listener, route and cluster renderers."""

from __future__ import annotations

import math
from typing import Any

# the ingress gateway as a caller / node cluster, and its identity: the mesh's names, re-exported
from chaosmesh_qa.mesh.callers import INGRESS as INGRESS

TYPE = "@type"
API = "type.googleapis.com/envoy"
CALLER_HEADER = "x-envoy-downstream-service-cluster"

JSON = dict[str, Any]
MAX_DURATION_S = 9_223_372_035.999  # measured: Envoy takes 9223372035.999999999s, not 9223372036s


def address(port: int, host: str = "127.0.0.1") -> JSON:
    return {"socket_address": {"address": host, "port_value": port}}


def duration(seconds: float) -> str:
    """A protobuf JSON duration, exact to the millisecond (the mesh only holds whole milliseconds).

    Never rounds a positive value to ``0s``, which Envoy reads as "no timeout" for route timeouts;
    refuses what Envoy cannot take (negative, not finite, beyond ``MAX_DURATION_S``).
    """
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION_S:
        raise ValueError(f"duration {seconds!r} s cannot be given to Envoy (0 to {MAX_DURATION_S} s)")
    ms = max(round(seconds * 1000), 1 if seconds > 0 else 0)
    whole, rest = divmod(ms, 1000)
    return f"{whole}.{rest:03d}s" if rest else f"{whole}s"


def ads_source() -> JSON:
    """A config source served over the bootstrap's ADS stream (``xds.server``)."""
    return {"resource_api_version": "V3", "ads": {}}


def discovery_response(type_url: str, resources: list[JSON], version: int) -> JSON:
    return {
        "version_info": str(version),
        "resources": [{TYPE: f"{API}.{type_url}", **r} for r in resources],
    }


def cluster_name(service: str, subset: str | None = None) -> str:
    """Envoy cluster for a service (or one subset). DNS-1123 names cannot hold '_', so it is unambiguous."""
    return f"{service}_{subset}" if subset else service


def string_matcher(kind: str, value: str) -> JSON:
    if kind == "regex":
        return {"safe_regex": {"regex": value}}
    return {kind: value}
