"""Faults of the local sandbox as leases: apply, confirm at the data plane, revert on heal or expiry.

The supervisor owns one ``FaultManager``; its control API hands it ``inject`` and
``heal`` requests from the ``LocalTarget`` (and so from the Chaos Toolkit actions and
the CLI).  Expiry is enforced here, in the supervisor, so a fault never outlives its
TTL even when the ``chaos`` process that injected it is SIGKILLed.

How each fault is realised (reference/envoy.md §2, §5):

* latency / abort: the callee sidecars' fault filter, through ``/runtime_modify``.  Requests
  carry their caller in ``x-envoy-downstream-service-cluster``, and for those Envoy reads
  only the per-caller keys ``fault.http.<caller>.*``; a service-wide fault therefore sets
  the keys of every caller (and the global keys, for callers outside the mesh).
* pod kill / pod failure / app kill: signals to the pod's processes via ``pods.Pod``.
* partition: the caller's EDS for the callee re-pointed at a socket the supervisor owns —
  one that listens and never accepts (``drop``: handshakes hang, callers time out) or one
  that is bound but not listening (``reject``: connections are refused at once).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets.local.envoy.common import INGRESS
from chaosmesh_qa.targets.local.pods import SERVING_STATES, Pod

if TYPE_CHECKING:
    from chaosmesh_qa.targets.local.supervisor import Supervisor

DEFAULT_MAX_TTL_S = 3600.0
MAX_HISTORY = 1000
L7_KINDS = ("latency", "abort")


@dataclass
class Lease:
    id: str
    kind: str
    owner: str
    target: dict[str, Any]
    parameters: dict[str, Any]
    started_at: float
    expires_at: float
    changes: dict[str, Any] = field(default_factory=dict)
    revert: Callable[[], Awaitable[dict[str, Any]]] | None = None
    timer: asyncio.Task[None] | None = None

    def record(self) -> dict[str, Any]:
        return {
            "fault_id": self.id, "kind": self.kind, "owner": self.owner, "target": self.target,
            "parameters": self.parameters, "started_at": self.started_at, "expires_at": self.expires_at,
            "remaining_s": round(max(0.0, self.expires_at - time.time()), 3), "changes": self.changes,
        }


class FaultManager:
    def __init__(self, supervisor: Supervisor, max_ttl_s: float = DEFAULT_MAX_TTL_S) -> None:
        self.supervisor = supervisor
        self.max_ttl_s = max_ttl_s
        self.leases: dict[str, Lease] = {}
        self.ended: list[dict[str, Any]] = []  # records of reverted faults, oldest first (bounded)
        self._sinks: dict[str, socket.socket] = {}

    # ------------------------------------------------------------------ public

    def active(self) -> list[dict[str, Any]]:
        return [lease.record() for lease in sorted(self.leases.values(), key=lambda lease: lease.started_at)]

    def history(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every fault still known, ended ones first: what phases of a run are computed from."""
        return [r for r in [*self.ended, *self.active()] if owner is None or r["owner"] == owner]

    async def inject(self, kind: str, parameters: dict[str, Any], owner: str, ttl_s: float) -> dict[str, Any]:
        appliers = {"latency": self._l7, "abort": self._l7, "pod-kill": self._pod_kill,
                    "pod-failure": self._pod_failure, "app-kill": self._app_kill, "partition": self._partition}
        if kind not in appliers:
            raise FaultRejected(f"kind: unknown fault kind {kind!r}")
        if not 0 < ttl_s <= self.max_ttl_s:
            raise FaultRejected(f"duration_s: {ttl_s:g} is outside (0, {self.max_ttl_s:g}] (the sandbox's max TTL)")
        now = time.time()
        lease = Lease(f"{kind}-{secrets.token_hex(4)}", kind, owner, {}, parameters, now, now + ttl_s)
        await appliers[kind](lease, parameters)
        self.leases[lease.id] = lease
        lease.timer = asyncio.get_running_loop().create_task(self._expire(lease))
        return lease.record()

    async def heal(self, fault_id: str | None = None, owner: str | None = None) -> list[dict[str, Any]]:
        """Revert one fault, every fault of ``owner``, or (neither given) every fault; idempotent."""
        chosen = [lease for lease in list(self.leases.values())
                  if (fault_id is None or lease.id == fault_id) and (owner is None or lease.owner == owner)]
        return [await self._revert(lease, "healed") for lease in chosen]

    async def pod_ready(self, pod: Pod) -> None:
        """A new or restarted pod inherits the active L7 faults on its service."""
        for lease in self.leases.values():
            if lease.kind in L7_KINDS and lease.target["service"] == pod.spec.service:
                await self._runtime_modify([pod], lease.changes["runtime_keys"])

    async def close(self) -> None:
        await self.heal()
        for sink in self._sinks.values():
            sink.close()

    # ------------------------------------------------------------------ lease plumbing

    async def _expire(self, lease: Lease) -> None:
        await asyncio.sleep(max(0.0, lease.expires_at - time.time()))
        await self._revert(lease, "expired")

    async def _revert(self, lease: Lease, how: str) -> dict[str, Any]:
        if self.leases.pop(lease.id, None) is None:
            return {**lease.record(), "ended": "already-ended"}
        if lease.timer is not None and lease.timer is not asyncio.current_task():
            lease.timer.cancel()
        reverted = await lease.revert() if lease.revert else {}
        record = {**lease.record(), "ended": how, "ended_at": time.time(), "reverted": reverted}
        self.ended = [*self.ended[-(MAX_HISTORY - 1):], record]
        return record

    def _conflict(self, kind: str, clashes: Callable[[Lease], bool]) -> None:
        for lease in self.leases.values():
            if lease.kind == kind and clashes(lease):
                raise FaultRejected(f"conflicts with active fault {lease.id} ({kind} on {lease.target}); "
                                    f"heal it first")

    # ------------------------------------------------------------------ selection helpers

    def _service(self, name: str, argument: str = "service") -> str:
        model = self.supervisor.model
        assert model is not None
        if name not in model.services:
            raise FaultRejected(f"{argument}: unknown service {name!r} (known: {', '.join(sorted(model.services))})")
        return name

    def _pick_pods(self, parameters: dict[str, Any]) -> list[Pod]:
        service = self._service(parameters["service"])
        version = parameters.get("version")
        model = self.supervisor.model
        assert model is not None
        if version is not None and version not in {v.name for v in model.services[service].versions}:
            raise FaultRejected(f"version: service {service!r} has no version {version!r}")
        pods = sorted((p for p in self.supervisor.pods.values() if p.spec.service == service
                       and (version is None or p.spec.version == version) and p.state in SERVING_STATES),
                      key=lambda p: p.name)
        names = parameters.get("pods")  # explicit pod names (the Kubernetes API emulation's label selections)
        if names is not None:
            missing = sorted(set(names) - {p.name for p in pods})
            if missing or not names:
                raise FaultRejected(f"pods: {', '.join(missing) or 'none'} not running pods of {service!r}")
            return [p for p in pods if p.name in names]
        count = parameters.get("count")
        if count is None:
            percent = float(parameters.get("percent", 0))
            count = max(1, math.ceil(len(pods) * percent / 100)) if percent > 0 else 0
        if count < 1:
            raise FaultRejected("count: must select at least one pod")
        if count > len(pods):
            raise FaultRejected(f"count: {count} exceeds the {len(pods)} running pod(s) of {service!r}"
                                + (f" version {version!r}" if version else ""))
        return pods[:count]

    # ------------------------------------------------------------------ L7 faults

    async def _l7(self, lease: Lease, p: dict[str, Any]) -> None:
        model = self.supervisor.model
        assert model is not None
        service, source = self._service(p["service"]), p.get("source")
        callers = model.callers(service)
        if source is not None and source not in callers:
            raise FaultRejected(f"source: {source!r} does not call {service!r} (callers: {', '.join(callers)})")
        self._conflict(lease.kind, lambda other: other.target["service"] == service and (
            source is None or other.target.get("source") in (None, source)))
        percent = p["percent"]
        prefixes = [f"fault.http.{caller}." for caller in ([source] if source else callers)]
        if source is None:
            prefixes.append("fault.http.")  # callers that do not name themselves
        if lease.kind == "latency":
            values = {"delay.fixed_delay_percent": str(percent), "delay.fixed_duration_ms": str(p["delay_ms"])}
        else:
            values = {"abort.abort_percent": str(percent), "abort.http_status": str(p["http_status"])}
        keys = {prefix + key: value for prefix in prefixes for key, value in values.items()}
        pods = [pod for pod in self.supervisor.pods.values() if pod.spec.service == service]
        await self._runtime_modify(pods, keys)
        lease.target = {"service": service, "source": source}
        lease.changes = {"runtime_keys": keys, "pods": [pod.name for pod in pods],
                         "confirmed": await self._runtime_confirmed(pods, keys)}
        counter = "delays_injected" if lease.kind == "latency" else "aborts_injected"
        baseline = await self._fault_counter(pods, counter)

        async def revert() -> dict[str, Any]:
            current = [pod for pod in self.supervisor.pods.values() if pod.spec.service == service]
            await self._runtime_modify(current, dict.fromkeys(keys, ""))
            injected = await self._fault_counter(current, counter) - baseline
            return {"runtime_keys_cleared": len(keys), f"requests_{counter}": max(0, injected)}

        lease.revert = revert

    async def _runtime_modify(self, pods: list[Pod], keys: dict[str, str]) -> None:
        http = self.supervisor.http()
        for pod in pods:
            if pod.state not in SERVING_STATES:
                continue
            url = f"http://127.0.0.1:{pod.spec.ports.admin}/runtime_modify"
            async with http.post(url, params=keys) as response:
                if response.status != 200:
                    raise FaultRejected(f"pod {pod.name}: sidecar refused runtime update: {await response.text()}")

    async def _runtime_confirmed(self, pods: list[Pod], keys: dict[str, str]) -> bool:
        """Read the keys back from every sidecar: the live data-plane processes hold the fault."""
        http = self.supervisor.http()
        for pod in pods:
            async with http.get(f"http://127.0.0.1:{pod.spec.ports.admin}/runtime?format=json") as response:
                entries = (await response.json()).get("entries", {})
            if any(entries.get(k, {}).get("final_value") != v for k, v in keys.items()):
                return False
        return True

    async def _fault_counter(self, pods: list[Pod], name: str) -> int:
        http, total = self.supervisor.http(), 0
        for pod in pods:
            url = f"http://127.0.0.1:{pod.spec.ports.admin}/stats?filter=^http\\.inbound\\.fault\\.{name}$"
            try:
                async with http.get(url) as response:
                    text = await response.text()
                total += sum(int(line.rsplit(":", 1)[1]) for line in text.splitlines() if ":" in line)
            except (OSError, ValueError):
                continue
        return total

    # ------------------------------------------------------------------ pod faults

    async def _pod_kill(self, lease: Lease, p: dict[str, Any]) -> None:
        victims = self._pick_pods(p)
        for pod in victims:
            self.supervisor.kill_pod(pod.name)
        lease.target = {"service": p["service"], "version": p.get("version")}
        lease.changes = {"killed_pods": [pod.name for pod in victims],
                         "confirmed": all(pod.name not in self.supervisor.pods for pod in victims)}

        async def revert() -> dict[str, Any]:
            started = await asyncio.gather(*(self.supervisor.replace_pod(pod) for pod in victims))
            return {"replacement_pods": [pod.name for pod in started if pod is not None]}

        lease.revert = revert

    async def _pod_failure(self, lease: Lease, p: dict[str, Any]) -> None:
        victims = self._pick_pods(p)
        for pod in victims:
            pod.kill(state="failed")
        self.supervisor.publish_endpoints()
        lease.target = {"service": p["service"], "version": p.get("version")}
        lease.changes = {"failed_pods": [pod.name for pod in victims],
                         "confirmed": all(pod.state == "failed" for pod in victims)}

        async def revert() -> dict[str, Any]:
            await asyncio.gather(*(self.supervisor.recover_pod(pod) for pod in victims))
            return {"recovered_pods": [pod.name for pod in victims if pod.state == "ready"]}

        lease.revert = revert

    async def _app_kill(self, lease: Lease, p: dict[str, Any]) -> None:
        victims = self._pick_pods(p)
        for pod in victims:
            pod.kill_container("app", hold=True)
        await asyncio.gather(*(pod.app.wait() for pod in victims if pod.app is not None))
        lease.target = {"service": p["service"], "version": p.get("version")}
        lease.changes = {"app_killed_in_pods": [pod.name for pod in victims],
                         "confirmed": all(pod.app is None or pod.app.returncode is not None for pod in victims)}

        async def revert() -> dict[str, Any]:
            for pod in victims:
                pod.release("app")
            return {"app_restarting_in_pods": [pod.name for pod in victims if pod.state != "terminated"]}

        lease.revert = revert

    # ------------------------------------------------------------------ partitions

    async def _partition(self, lease: Lease, p: dict[str, Any]) -> None:
        model, cp = self.supervisor.model, self.supervisor.control_plane
        assert model is not None and cp is not None
        a, b, direction, mode = p["a"], p["b"], p.get("direction", "both"), p.get("mode", "drop")
        if a != INGRESS:
            self._service(a, "a")
        self._service(b, "b")
        if a == b:
            raise FaultRejected(f"b: cannot partition {a!r} from itself")
        wanted = {"both": [(a, b), (b, a)], "to": [(a, b)], "from": [(b, a)]}[direction]
        edges = [(caller, callee) for caller, callee in wanted if callee in cp.callees_of(caller)]
        if not edges:
            raise FaultRejected(f"a/b: no traffic flows {direction!r} between {a!r} and {b!r}, nothing to partition")
        chosen: frozenset[str] | None = None
        if any(p.get(k) is not None for k in ("count", "percent", "version", "pods")):
            if direction != "to":
                raise FaultRejected("direction: choosing some of b's pods (count/percent/version) needs direction='to'")
            everyone = {"percent": 100} if p.get("count") is None and p.get("percent") is None else {}
            chosen = frozenset(pod.name for pod in self._pick_pods({**p, "service": b, **everyone}))
        self._conflict("partition", lambda other: bool(set(map(tuple, other.changes["edges"])) & set(edges)))
        port = self._sink(mode)
        for edge in edges:
            cp.redirects[edge] = (port, chosen)
        self.supervisor.publish_endpoints()
        lease.target = {"a": a, "b": b, "direction": direction}
        lease.changes = {"edges": [list(e) for e in edges], "mode": mode, "sink_port": port,
                         "pods": sorted(chosen) if chosen is not None else "all",
                         "confirmed": await self._endpoints_point_to(edges, port, chosen)}

        async def revert() -> dict[str, Any]:
            for edge in edges:
                cp.redirects.pop(edge, None)
            self.supervisor.publish_endpoints()
            return {"edges_restored": [list(e) for e in edges]}

        lease.revert = revert

    def _sink(self, mode: str) -> int:
        """A port owned by the supervisor: a tarpit (``drop``) or a refusing socket (``reject``)."""
        if mode not in self._sinks:
            sink = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sink.bind(("127.0.0.1", 0))
            if mode == "drop":
                sink.listen(1)  # never accept(): handshakes queue up, then SYNs are dropped
            self._sinks[mode] = sink
        return int(self._sinks[mode].getsockname()[1])

    async def _endpoints_point_to(self, edges: list[tuple[str, str]], port: int,
                                  chosen: frozenset[str] | None) -> bool:
        """Ask every caller sidecar (``/clusters``) whether the chosen callee hosts now sit on ``port``."""
        http = self.supervisor.http()
        deadline = time.monotonic() + 1.0
        for caller, callee in edges:
            pods = [self.supervisor.ingress] if caller == INGRESS else [
                pod for pod in self.supervisor.pods.values() if pod.spec.service == caller]
            for pod in pods:
                if pod is None or pod.state not in SERVING_STATES:
                    continue
                url = f"http://127.0.0.1:{pod.spec.ports.admin}/clusters?format=json"
                while True:
                    async with http.get(url) as response:
                        statuses = (await response.json())["cluster_statuses"]
                    hosts = [h for c in statuses if c["name"] == callee for h in c.get("host_statuses", [])]
                    redirected = {h["hostname"] for h in hosts
                                  if h["address"]["socket_address"]["port_value"] == port}
                    if redirected >= (chosen if chosen is not None else {h["hostname"] for h in hosts}):
                        break
                    if time.monotonic() > deadline:
                        return False
                    await asyncio.sleep(0.002)
        return True
