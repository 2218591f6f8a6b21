"""The sandbox's L7 faults as Envoy runtime keys: set them on sidecars, read them back, count what they injected.

``faults.FaultManager`` (latency / abort at a callee's sidecars) and ``external_faults.ExternalFaults`` (latency /
abort toward a ServiceEntry's host, at its callers' sidecars) both realise a fault the same way: the fault filter's
runtime keys written through each sidecar's ``/runtime_modify`` (an empty value deletes a key), one lease step per
pod with its own undo, then read back from ``/runtime`` to confirm the live processes hold them.  This module is
that one way; the two callers differ only in which pods, which keys, and which side's counters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets.local.leases import Lease
from chaosmesh_qa.targets.local.pods import SERVING_STATES, Pod

CONFIRM_TIMEOUT_S = 5.0


def sidecar_up(pod: Pod) -> bool:
    """The pod serves and its Envoy runs: its admin API can answer."""
    return pod.state in SERVING_STATES and pod.envoy is not None and pod.envoy.returncode is None


def serving(pods: list[Pod]) -> tuple[list[Pod], dict[str, str]]:
    """The pods whose sidecar answers, and the others with their state (skipped, and said so)."""
    up = [pod for pod in pods if sidecar_up(pod)]
    names = {pod.name for pod in up}
    return up, {pod.name: pod.state if pod.state not in SERVING_STATES else "sidecar down"
                for pod in pods if pod.name not in names}


async def modify(pods: list[Pod], keys: dict[str, str]) -> None:
    """Set ``keys`` on every serving pod's sidecar; refused in one line if a sidecar refuses."""
    for pod in pods:
        if pod.state not in SERVING_STATES:
            continue
        async with pod.admin.post("/runtime_modify", params=keys) as response:
            if response.status != 200:
                raise FaultRejected(f"pod {pod.name}: sidecar refused runtime update: {await response.text()}")


async def confirmed(pods: list[Pod], keys: dict[str, str]) -> bool:
    """Read the keys back from every sidecar: the live data-plane processes hold the fault."""
    for pod in pods:
        async with pod.admin.get("/runtime?format=json") as response:
            if response.status != 200:
                return False
            entries = (await response.json()).get("entries", {})
        if any(entries.get(k, {}).get("final_value") != v for k, v in keys.items()):
            return False
    return True


async def fault_counter(pods: list[Pod], name: str, side: str = "inbound") -> int:
    """The sum of the fault filter's counter ``name`` (``delays_injected``, ``aborts_injected``) on ``side``."""
    total = 0
    for pod in pods:
        url = f"/stats?filter=^http\\.{side}\\.fault\\.{name}$"
        try:
            async with pod.admin.get(url) as response:
                text = await response.text()
            total += sum(int(line.rsplit(":", 1)[1]) for line in text.splitlines() if ":" in line)
        except (OSError, ValueError, TimeoutError):
            continue
    return total


def clear(find: Callable[[str], Pod | None], pod_name: str, keys: dict[str, str]
          ) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The undo of ``keys`` on one pod, found by name (``find``) when the undo runs: it may be gone by then."""
    async def undo() -> dict[str, Any]:
        pod = find(pod_name)
        if pod is None or not sidecar_up(pod):
            return {}  # gone, or its Envoy restarts without the keys
        await modify([pod], dict.fromkeys(keys, ""))
        return {"pods_cleared": [pod_name]}

    return undo


async def apply(lease: Lease, pods_now: Callable[[], list[Pod]], find: Callable[[str], Pod | None],
                keys: dict[str, str], counter: str, side: str) -> None:
    """A lease's L7 fault: ``keys`` on the sidecars of ``pods_now()`` one step per pod, what they inject counted from
    now (the lease's report at the heal), confirmed by reading them back.  Pods that do not serve are skipped and
    listed."""
    pods, skipped = serving(pods_now())
    baseline = await fault_counter(pods, counter, side)

    async def report() -> dict[str, Any]:
        current, _ = serving(pods_now())
        injected = await fault_counter(current, counter, side) - baseline
        return {"runtime_keys_cleared": len(keys), f"requests_{counter}": max(0, injected)}

    lease.report = report
    for pod in pods:
        await lease.step(f"runtime keys on {pod.name}", partial(modify, [pod], keys), clear(find, pod.name, keys),
                         uncertain=True)
    lease.changes.update(pods=[pod.name for pod in pods], skipped_pods=skipped)
    async with asyncio.timeout(CONFIRM_TIMEOUT_S):
        lease.changes["confirmed"] = await confirmed(pods, keys)
