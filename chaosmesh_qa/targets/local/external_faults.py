"""Faults toward a ServiceEntry's host in the sandbox: at its callers' sidecars, as Istio places them.

``faults.FaultManager`` inherits ``ExternalFaults`` and hands it a fault whose ``service`` (or partition ``b``) is
a host of ``MeshModel.external_hosts`` rather than a service.  The host's stand-in (``standins``) has no sidecar,
so every fault lives in its callers' Envoys:

* latency / abort: the runtime keys of the fault filter on the callers' routes toward the host
  (``envoy.external``), on the pods of every caller or of ``source``: where Istio injects a VirtualService fault,
  before the caller's router (``CALLER_SIDE``, in the record as ``placement``);
* partition (``a`` -> the host, direction ``to``; ``both`` is the same edge, the host calling nothing; ``a`` is
  ``*`` for every caller of the host): each such caller's cluster of the host re-pointed at the supervisor's sink
  (``drop``: a tarpit, connections hang until the DestinationRule's connect timeout; ``reject``: refused at once),
  as the network would cut an egress.  That one is seen by the caller's timeouts, retries and outlier detection
  like a real outage.

The ``FaultManager`` methods used here are declared below with their signatures; ``faults`` defines them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets import policy
from chaosmesh_qa.targets.local import runtime_keys
from chaosmesh_qa.targets.local.envoy import external
from chaosmesh_qa.targets.local.leases import FaultHost, Lease, Plan
from chaosmesh_qa.targets.local.pods import Pod

CONFIRM_TIMEOUT_S = runtime_keys.CONFIRM_TIMEOUT_S
CALLER_SIDE = ("caller-side: injected by the fault filter of the callers' own sidecars on their routes toward the "
               "external host, before their router (where Istio injects a VirtualService fault; there is no callee "
               "sidecar): the callers' timeout and retries toward that host do not see the delay or abort, and "
               "outlier detection never counts it")


class ExternalFaults:
    supervisor: FaultHost

    # ------------------------------------------------------------------ defined by faults.FaultManager

    def _find_pod(self, name: str) -> Pod | None:
        raise NotImplementedError

    def _conflict(self, kind: str, target: dict[str, Any]) -> None:
        raise NotImplementedError

    def _sink(self, mode: str) -> int:
        raise NotImplementedError

    def _restore(self, edge: tuple[str, str], port: int, clusters: tuple[str, ...] = ()
                 ) -> Callable[[], Awaitable[dict[str, Any]]]:
        raise NotImplementedError

    async def _endpoints_point_to(self, edges: list[tuple[str, str]], port: int, chosen: frozenset[str] | None,
                                  zone: str | None = None, clusters: tuple[str, ...] = (), away: bool = False
                                  ) -> tuple[bool, dict[str, str]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ the faults

    def _running_host(self, host: str, argument: str) -> MeshModel:
        model = self.supervisor.model
        assert model is not None
        if not model.external_hosts[host].runs:
            raise FaultRejected(f"{argument}: external host {host!r} has no stand-in in the sandbox (see the warnings "
                                "of `chaosmesh-qa validate`): nothing calls it")
        return model

    def _external_l7(self, kind: str, p: dict[str, Any]) -> Plan:
        """A latency or abort toward a ServiceEntry's host: runtime keys on its callers' sidecars (CALLER_SIDE)."""
        host, source = p["service"], p.get("source")
        model = self._running_host(host, "service")
        callers = model.external_callers(host)
        if source is not None and source not in callers:
            raise FaultRejected(f"source: {source!r} does not call {host!r} (callers: {', '.join(callers) or 'none'})")
        if not callers:
            raise FaultRejected(f"service: no service calls external host {host!r}")
        self._conflict(kind, {"service": host, "source": source})
        prefix = external.runtime_prefix(host)
        if kind == "latency":
            keys = {f"{prefix}.delay.fixed_delay_percent": str(p["percent"]),
                    f"{prefix}.delay.fixed_duration_ms": str(p["delay_ms"])}
        else:
            keys = {f"{prefix}.abort.abort_percent": str(p["percent"]),
                    f"{prefix}.abort.http_status": str(p["http_status"])}
        chosen = [source] if source else callers
        counter = "delays_injected" if kind == "latency" else "aborts_injected"

        def caller_pods() -> list[Pod]:
            return sorted((pod for pod in self.supervisor.pods.values() if pod.spec.service in chosen),
                          key=lambda pod: pod.name)

        async def apply(lease: Lease) -> None:
            await runtime_keys.apply(lease, caller_pods, self._find_pod, keys, counter, "outbound")

        return Plan({"service": host, "source": source}, apply,
                    {"runtime_keys": keys, "external_host": host, "caller_services": chosen,
                     "placement": CALLER_SIDE})

    def _external_partition(self, kind: str, p: dict[str, Any]) -> Plan:
        """``a``'s egress to a ServiceEntry's host cut (``a`` ``*``: every caller's): its cluster of the host
        re-pointed at a sink."""
        a, host, direction, mode = p["a"], p["b"], p.get("direction", "both"), p.get("mode", "drop")
        model = self._running_host(host, "b")
        callers = model.external_callers(host)
        if not callers:
            raise FaultRejected(f"b: no service calls external host {host!r}")
        if a != policy.EVERY_CALLER and a not in callers:
            raise FaultRejected(f"a: {a!r} does not call {host!r} (callers: {', '.join(callers) or 'none'})")
        policy.partition_edges(a, host, direction)
        if direction == "from":
            raise FaultRejected(f"direction: 'from' cuts {host!r} -> {a!r}, and an external host calls nothing in "
                                "the mesh: use 'to'")
        if any(p.get(k) is not None for k in ("count", "percent", "version", "pods")):
            raise FaultRejected(f"count/percent/version: external host {host!r} has one stand-in, nothing to choose")
        if p.get("zone") is not None or p.get("isolate"):
            raise FaultRejected(f"zone/isolate: external host {host!r} has no locality in the mesh")
        self._conflict("partition", {"a": a, "b": host, "direction": direction})
        port = self._sink(mode)
        edges = [(caller, host) for caller in (callers if a == policy.EVERY_CALLER else [a])]
        names = tuple(external.cluster_name(host, n) for n in model.external_hosts[host].http_ports())

        async def apply(lease: Lease) -> None:
            for edge in edges:
                await lease.step(f"cluster of {host} at {edge[0]} re-pointed",
                                 partial(self.supervisor.redirect, edge, (port, None, None)),
                                 self._restore(edge, port, names), uncertain=True)
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                confirmed, skipped = await self._endpoints_point_to(edges, port, None, clusters=names)
            lease.changes.update(confirmed=confirmed, skipped_pods=skipped)

        return Plan({"a": a, "b": host, "direction": direction}, apply,
                    {"edges": [list(edge) for edge in edges], "mode": mode, "sink_port": port, "pods": "all",
                     "external_host": host})
