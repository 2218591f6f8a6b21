"""Faults of the local sandbox as leases: plan, apply change by change, confirm, revert on heal or expiry.

The supervisor owns one ``FaultManager``; its control API hands it ``inject`` and
``heal`` requests from the ``LocalTarget`` (and so from the Chaos Toolkit actions and
the CLI).  Each fault is a lease (``leases``): checked and planned without touching
anything, registered with its expiry timer *before* its first change, applied one change
at a time (each registers its own undo), and rolled back whole if a change fails part-way.
Expiry is enforced here, in the supervisor, so a fault never outlives its TTL even when
the ``chaos`` process that injected it is SIGKILLed.

How each fault is realised:

* latency / abort: the callee sidecars' fault filter, through ``/runtime_modify`` (``runtime_keys``, which the
  ServiceEntry faults share).  Requests
  carry their caller in ``x-envoy-downstream-service-cluster``, and for those Envoy reads
  only the per-caller keys ``fault.http.<caller>.*``; a service-wide fault therefore sets
  the keys of every caller (and the global keys, for callers outside the mesh).  An empty
  value deletes a key again.  Pods that start later (replacements, recovered pods,
  restarted sidecars) get the keys of the active faults when they become ready.
* pod kill / pod failure / app kill: signals to the pod's processes via ``pods.Pod``.  A pod
  fault picks only serving pods that no other fault holds.
* latency / abort toward a ServiceEntry's host (no callee sidecar: its stand-in has none): the callers' own
  sidecars, through the runtime keys of the fault filter on their routes toward that host
  (``envoy.external``), on the pods of every caller or of ``source``.  That is where Istio injects a
  VirtualService fault (the caller's outbound, before its router): the record says so (``placement``).
* partition: the caller's EDS for the callee re-pointed at a socket the supervisor owns —
  one that listens and never accepts (``drop``: handshakes hang, callers time out) or one
  that is bound but not listening (``reject``: connections are refused at once).  A zone
  partition re-points only the callee pods in the zone, and only for the caller's endpoint
  views (``ControlPlane.caller_views``: one per locality) outside the zone.
* zone: ``in_zone`` of ``targets.policy`` narrows the pods a pod fault or partition chooses from to
  those whose sidecar's locality is in the zone; a zone's latency or abort sets its runtime keys only on the
  callee's pods in the zone (and on the pods that start there later).

Confirmation reads back only sidecars that serve (a failed or killed pod has no admin
API to ask); the record lists the pods it skipped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiohttp

from chaosmesh_qa.errors import FaultRejected, TargetUnavailable, error_line
from chaosmesh_qa.targets import policy
from chaosmesh_qa.targets.local import runtime_keys
from chaosmesh_qa.targets.local.envoy.common import INGRESS
from chaosmesh_qa.targets.local.external_faults import ExternalFaults
from chaosmesh_qa.targets.local.leases import FaultHost, Lease, LeaseBook, Plan
from chaosmesh_qa.targets.local.pods import SERVING_STATES, Pod

log = logging.getLogger("chaosmesh_qa.faults")
DEFAULT_MAX_TTL_S = 3600.0
CONFIRM_TIMEOUT_S = runtime_keys.CONFIRM_TIMEOUT_S

class FaultManager(ExternalFaults):
    def __init__(self, supervisor: FaultHost, max_ttl_s: float = DEFAULT_MAX_TTL_S) -> None:
        self.supervisor = supervisor
        self.max_ttl_s = max_ttl_s
        self.book = LeaseBook()
        self._sinks: dict[str, socket.socket] = {}
        self._closing = False  # the sandbox stops: heals need no confirmation

    # ------------------------------------------------------------------ public

    @property
    def leases(self) -> dict[str, Lease]:
        return self.book.leases

    def active(self) -> list[dict[str, Any]]:
        return self.book.active()

    def history(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every fault still known, ended ones first: what phases of a run are computed from."""
        return self.book.history(owner)

    async def inject(self, kind: str, parameters: dict[str, Any], owner: str, ttl_s: float) -> dict[str, Any]:
        """Check, open the lease, apply; raises one line (``FaultRejected``/``TargetUnavailable``) after a rollback."""
        planners = {"latency": self._l7, "abort": self._l7, "pod-kill": self._pod_kill,
                    "pod-failure": self._pod_failure, "app-kill": self._app_kill, "partition": self._partition}
        policy.check_ttl(ttl_s, self.max_ttl_s, "the sandbox's max TTL")
        plan = planners[policy.check_kind(kind)](kind, parameters)
        # no await between the conflict checks of planning and the registration of the lease
        lease = self.book.open(kind, owner, plan.target, parameters, ttl_s, plan.changes, plan.holds)
        await self.book.apply(lease, plan.apply)
        return lease.record()

    async def heal(self, fault_id: str | None = None, owner: str | None = None) -> list[dict[str, Any]]:
        """Revert one fault, every fault of ``owner``, or (neither given) every fault; idempotent."""
        return await self.book.heal(fault_id, owner)

    async def pod_ready(self, pod: Pod) -> None:
        """A new or restarted pod inherits the active L7 faults on its service."""
        for lease in list(self.leases.values()):
            # an external host's fault lives on its callers' pods (caller_services)
            if lease.kind not in policy.L7_KINDS or pod.spec.service not in lease.changes.get(
                    "caller_services", [lease.target["service"]]) or not _holds(lease.target, pod, service=False):
                continue
            async with lease.lock:
                if lease.state != "active" or pod.name not in self.supervisor.pods or not runtime_keys.sidecar_up(pod):
                    continue
                keys = lease.changes["runtime_keys"]
                lease.add_undo(f"runtime keys on {pod.name}", runtime_keys.clear(self._find_pod, pod.name, keys))
                try:
                    await runtime_keys.modify([pod], keys)
                except Exception as exc:
                    log.error("fault %s: could not apply to new pod %s: %s", lease.id, pod.name, error_line(exc))

    async def close(self) -> None:
        self._closing = True
        await self.heal()
        for sink in self._sinks.values():
            sink.close()

    # ------------------------------------------------------------------ selection helpers

    def _conflict(self, kind: str, target: dict[str, Any]) -> None:
        policy.check_conflicts(kind, target, ({"fault_id": lease.id, "kind": lease.kind, "target": lease.target}
                                              for lease in self.leases.values()))

    def _service(self, name: str, argument: str = "service") -> str:
        model = self.supervisor.model
        assert model is not None
        if name not in model.services:
            owner = next((s.name for s in model.services.values() if name.lower() in s.hosts), None)
            if owner is not None:  # a MESH_INTERNAL ServiceEntry's host: its service is named after the entry
                raise FaultRejected(f"{argument}: {name!r} is a host of the MESH_INTERNAL ServiceEntry {owner!r}, a "
                                    f"service of the mesh: name it {owner!r}")
            raise FaultRejected(f"{argument}: unknown service {name!r} (known: {', '.join(sorted(model.services))})")
        return name

    def _pick_pods(self, parameters: dict[str, Any], exclude_held: bool = True) -> list[Pod]:
        service = self._service(parameters["service"])
        version = parameters.get("version")
        model = self.supervisor.model
        assert model is not None
        if version is not None and version not in {v.name for v in model.services[service].versions}:
            raise FaultRejected(f"version: service {service!r} has no version {version!r}")
        held = {name for lease in self.leases.values() for name in lease.holds} if exclude_held else set()
        pods = sorted((p for p in self.supervisor.pods.values() if p.spec.service == service
                       and (version is None or p.spec.version == version) and p.state in SERVING_STATES
                       and p.name not in held), key=lambda p: p.name)
        if parameters.get("zone") is not None:
            pods = self._in_zone(pods, parameters["zone"], service)
        names = parameters.get("pods")  # explicit pod names (the Kubernetes API emulation's label selections)
        if names is not None:
            missing = sorted(set(names) - {p.name for p in pods})
            if missing or not names:
                raise FaultRejected(f"pods: {', '.join(missing) or 'none'} not running pods of {service!r}")
            return [p for p in pods if p.name in names]
        return policy.select_pods(pods, parameters.get("count"), parameters.get("percent"), service, version,
                                  held_excluded=bool(held))

    def _in_zone(self, pods: list[Pod], zone: str, service: str) -> list[Pod]:
        """``pods`` (one service's) in ``zone``; refused in one line for a zone no pod of the mesh is in, or none of
        ``pods`` is (``policy.in_zone``)."""
        model = self.supervisor.model
        assert model is not None
        everywhere = [v.locality(i) for s in model.services.values() for v in s.versions
                      for i in range(max(v.replicas, 1))]
        return policy.in_zone(pods, zone, lambda p: p.spec.locality, service, everywhere)

    # ------------------------------------------------------------------ L7 faults

    def _l7(self, kind: str, p: dict[str, Any]) -> Plan:
        model = self.supervisor.model
        assert model is not None
        if p["service"] not in model.services and p["service"] in model.external_hosts:
            return self._external_l7(kind, p)
        service, source = self._service(p["service"]), p.get("source")
        callers = model.callers(service)
        if source is not None and source not in callers:
            raise FaultRejected(f"source: {source!r} does not call {service!r} (callers: {', '.join(callers)})")
        zone = p.get("zone")
        if zone is not None:  # a zone's latency or abort: only at the callee's pods in the zone
            self._in_zone([pod for pod in self.supervisor.pods.values() if pod.spec.service == service
                           and pod.state in SERVING_STATES], zone, service)
        target = {"service": service, "source": source, **({"zone": zone} if zone is not None else {})}
        self._conflict(kind, target)
        percent = p["percent"]
        prefixes = [f"fault.http.{caller}." for caller in ([source] if source else callers)]
        if source is None:
            prefixes.append("fault.http.")  # callers that do not name themselves
        if kind == "latency":
            values = {"delay.fixed_delay_percent": str(percent), "delay.fixed_duration_ms": str(p["delay_ms"])}
        else:
            values = {"abort.abort_percent": str(percent), "abort.http_status": str(p["http_status"])}
        keys = {prefix + key: value for prefix in prefixes for key, value in values.items()}
        counter = "delays_injected" if kind == "latency" else "aborts_injected"

        def pods_now() -> list[Pod]:
            return sorted((pod for pod in self.supervisor.pods.values() if _holds(target, pod)),
                          key=lambda pod: pod.name)

        async def apply(lease: Lease) -> None:
            await runtime_keys.apply(lease, pods_now, self._find_pod, keys, counter, "inbound")

        return Plan(target, apply, {"runtime_keys": keys})

    def _find_pod(self, name: str) -> Pod | None:
        return self.supervisor.pods.get(name)

    # ------------------------------------------------------------------ pod faults

    def _pod_kill(self, kind: str, p: dict[str, Any]) -> Plan:
        victims = self._pick_pods(p)

        async def apply(lease: Lease) -> None:
            for pod in victims:
                await lease.step(f"kill pod {pod.name}", partial(self.supervisor.kill_pod, pod.name),
                                 self._replace(pod))
            lease.changes["confirmed"] = all(pod.name not in self.supervisor.pods for pod in victims)

        return Plan(_pod_target(p), apply, {"killed_pods": [pod.name for pod in victims]},
                    frozenset(pod.name for pod in victims))

    def _replace(self, dead: Pod) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def undo() -> dict[str, Any]:
            pod = await self.supervisor.replace_pod(dead)
            if pod is None:  # the record says so (undo_errors); the service stays a pod short
                raise TargetUnavailable(f"the replacement of {dead.name} did not start (supervisor log)")
            return {"replacement_pods": [pod.name]}

        return undo

    def _pod_failure(self, kind: str, p: dict[str, Any]) -> Plan:
        victims = self._pick_pods(p)

        async def apply(lease: Lease) -> None:
            for pod in victims:
                await lease.step(f"fail pod {pod.name}", partial(pod.kill, state="failed"), self._recover(pod))
            self.supervisor.publish_endpoints()
            lease.changes["confirmed"] = all(pod.state == "failed" for pod in victims)

        return Plan(_pod_target(p), apply, {"failed_pods": [pod.name for pod in victims]},
                    frozenset(pod.name for pod in victims))

    def _recover(self, pod: Pod) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def undo() -> dict[str, Any]:
            await self.supervisor.recover_pod(pod)
            if pod.state != "ready":
                raise TargetUnavailable(f"{pod.name} did not recover: {pod.state} (supervisor log)")
            return {"recovered_pods": [pod.name]}

        return undo

    def _app_kill(self, kind: str, p: dict[str, Any]) -> Plan:
        victims = self._pick_pods(p)

        async def apply(lease: Lease) -> None:
            for pod in victims:
                await lease.step(f"kill app of {pod.name}", partial(pod.kill_container, "app", hold=True),
                                 self._release(pod))
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await asyncio.gather(*(pod.app.wait() for pod in victims if pod.app is not None))
            lease.changes["confirmed"] = all(pod.app is None or pod.app.returncode is not None for pod in victims)

        return Plan(_pod_target(p), apply, {"app_killed_in_pods": [pod.name for pod in victims]},
                    frozenset(pod.name for pod in victims))

    def _release(self, pod: Pod) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def undo() -> dict[str, Any]:
            pod.release("app")
            return {"app_restarting_in_pods": [pod.name] if pod.state != "terminated" else []}

        return undo

    # ------------------------------------------------------------------ partitions

    def _partition(self, kind: str, p: dict[str, Any]) -> Plan:
        model = self.supervisor.model
        assert model is not None
        if p["b"] not in model.services and p["b"] in model.external_hosts:
            return self._external_partition(kind, p)
        a, b, direction, mode = p["a"], p["b"], p.get("direction", "both"), p.get("mode", "drop")
        if a == policy.EVERY_CALLER:
            raise FaultRejected(policy.every_caller_refused(b))
        if a != INGRESS:
            self._service(a, "a")
        self._service(b, "b")
        wanted = policy.partition_edges(a, b, direction)
        edges = [(caller, callee) for caller, callee in wanted if callee in self.supervisor.callees_of(caller)]
        if not edges:
            raise FaultRejected(f"a/b: no traffic flows {direction!r} between {a!r} and {b!r}, nothing to partition")
        zone = p.get("zone")
        spared_zone = None if p.get("isolate") else zone  # an isolated zone spares no caller
        some = any(p.get(k) is not None for k in ("count", "percent", "version", "pods", "zone"))
        policy.check_partition_scope(direction, some)
        picked = {**p, "service": b, **({"percent": 100.0} if zone is not None and p.get("count") is None
                                         and p.get("percent") is None else {})}
        chosen = frozenset(pod.name for pod in self._pick_pods(picked, exclude_held=False)) if some else None
        self._conflict("partition", {"a": a, "b": b, "direction": direction})
        port = self._sink(mode)

        async def apply(lease: Lease) -> None:
            for edge in edges:
                await lease.step(f"endpoints of {edge[1]} at {edge[0]} re-pointed",
                                 partial(self.supervisor.redirect, edge, (port, chosen, spared_zone)),
                                 self._restore(edge, port), uncertain=True)
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                confirmed, skipped = await self._endpoints_point_to(edges, port, chosen, spared_zone)
            lease.changes.update(confirmed=confirmed, skipped_pods=skipped)

        spared = sorted(pod.name for pod in self.supervisor.pods.values() if pod.spec.service == a
                        and policy.spares(pod.spec.locality, spared_zone)) if zone is not None else []
        where = {"zone": zone, **({"isolate": True} if spared_zone is None else {})} if zone is not None else {}
        return Plan({"a": a, "b": b, "direction": direction, **where}, apply,
                    {"edges": [list(e) for e in edges], "mode": mode, "sink_port": port,
                     "pods": sorted(chosen) if chosen is not None else "all",
                     **({"spared_callers": spared} if zone is not None else {})})

    def _restore(self, edge: tuple[str, str], port: int, clusters: tuple[str, ...] = ()
                 ) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def undo() -> dict[str, Any]:
            self.supervisor.redirect(edge, None)
            try:  # heal returns once the callers' sidecars route to the callee again, as apply returns once they do not
                if not self._closing and not (await self._endpoints_point_to([edge], port, None, clusters=clusters,
                                                                                 away=True))[0]:
                    log.info("partition heal on %s: callers not confirmed within 1 s", edge)
            except (aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError):  # a caller going away
                log.info("partition heal on %s: not confirmed", edge)
            return {"edges_restored": [list(edge)]}

        return undo

    def sink_port(self, mode: str) -> int:
        """The supervisor's ``drop`` tarpit or ``reject`` socket (``_sink``): NetworkPolicy denials use the tarpit."""
        return self._sink(mode)

    def _sink(self, mode: str) -> int:
        """A port owned by the supervisor: a tarpit (``drop``) or a refusing socket (``reject``)."""
        if mode not in self._sinks:
            sink = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sink.bind(("127.0.0.1", 0))
            if mode == "drop":
                sink.listen(1)  # never accept(): handshakes queue up, then SYNs are dropped
            self._sinks[mode] = sink
        return int(self._sinks[mode].getsockname()[1])

    async def _endpoints_point_to(self, edges: list[tuple[str, str]], port: int, chosen: frozenset[str] | None,
                                  zone: str | None = None, clusters: tuple[str, ...] = (), away: bool = False
                                  ) -> tuple[bool, dict[str, str]]:
        """Whether every serving caller sidecar's ``/clusters`` has the chosen callee hosts on ``port`` (away: none;
        a zone partition's callers in the zone are spared: not asked; ``clusters``: for an external host)."""
        deadline = time.monotonic() + 1.0
        skipped: dict[str, str] = {}
        asked: list[tuple[Pod, str]] = []
        for caller, callee in edges:
            callers = [self.supervisor.ingress] if caller == INGRESS else [
                pod for pod in self.supervisor.pods.values() if pod.spec.service == caller
                and not policy.spares(pod.spec.locality, zone)]
            pods, down = runtime_keys.serving([pod for pod in callers if pod is not None])
            skipped.update(down)
            asked += [(pod, callee) for pod in pods]

        async def shows(pod: Pod, callee: str) -> bool:  # every caller asked at once: a 61-pod mesh's dumps are large
            names = clusters or (callee,)  # an external host's: outbound|<port>||<host>
            while True:
                async with pod.admin.get("/clusters?format=json") as response:
                    if response.status != 200:
                        return False
                    statuses = (await response.json())["cluster_statuses"]
                hosts = [h for c in statuses if c["name"] in names for h in c.get("host_statuses", [])]
                redirected = {h["hostname"] for h in hosts if h["address"]["socket_address"]["port_value"] == port}
                if (not redirected) if away else \
                        redirected >= (chosen if chosen is not None else {h["hostname"] for h in hosts}):
                    return True
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.002)

        return all(await asyncio.gather(*(shows(pod, callee) for pod, callee in asked))), skipped


def _pod_target(p: dict[str, Any]) -> dict[str, Any]:
    return {"service": p["service"], "version": p.get("version"), **({"zone": p["zone"]} if p.get("zone") else {})}


def _holds(target: dict[str, Any], pod: Pod, service: bool = True) -> bool:
    """Whether an L7 fault on ``target`` acts at ``pod``: a pod of its service (unless ``service`` is False: the
    caller checked), in its zone when it has one."""
    zone = target.get("zone")
    return ((not service or pod.spec.service == target["service"])
            and (zone is None or policy.zone_matches(pod.spec.locality, zone)))

