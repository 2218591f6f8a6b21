"""Fault leases: opened before the first change, undone change by change, ended by heal, expiry or rollback.

``FaultManager`` (``faults.py``) opens a ``Lease`` in a ``LeaseBook`` -- registered, with its
expiry timer running -- before it touches anything, then applies the fault as a sequence of
changes through ``Lease.step``; each change registers its own undo.  A lease ends in one of
three ways, always by running its undos newest first under the lease's lock:

* ``healed``: ``heal`` (an activity, the CLI, the safety control, supervisor shutdown);
* ``expired``: its timer, in the supervisor, so a fault never outlives its TTL;
* ``rolled-back``: a change (or the confirmation) failed part-way; the caller gets one line
  (``FaultRejected`` or ``TargetUnavailable``) and the history keeps the record.

Heal and expiry wait for an injection in progress (the lock), so they never undo half of a
fault while the other half is still being applied.

``FaultHost`` is what the fault manager needs from the supervisor; the supervisor implements
it, and the unit tests implement it without processes.

Test hook (not part of any public API): ``LeaseBook.fail_change_at = N`` makes the *N*-th
change of the next fault fail before it is applied, as a refusing sidecar would.  The sandbox
arms it only over its control socket's ``/debug/fail-change`` route, which exists only when the
supervisor starts with ``CHAOSMESH_QA_TEST_HOOKS=1`` in its environment (the tests set it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from chaosmesh_qa.errors import FaultRejected, TargetUnavailable, error_line
from chaosmesh_qa.targets.policy import new_fault_id

if TYPE_CHECKING:
    from chaosmesh_qa.mesh.model import MeshModel
    from chaosmesh_qa.targets.local.pods import Pod

log = logging.getLogger("chaosmesh_qa.faults")
MAX_HISTORY = 1000
STEP_TIMEOUT_S = 10.0  # one change (an admin call, a kill): far above the milliseconds it takes
UNDO_TIMEOUT_S = 45.0  # one undo: a replacement pod must start (pods.READY_TIMEOUT_S is 30 s)
TEST_HOOKS_ENV = "CHAOSMESH_QA_TEST_HOOKS"

Undo = Callable[[], Awaitable[dict[str, Any] | None]]
LeaseState = Literal["applying", "active", "ended"]
# a sink port, the callee pods it applies to (None: all), and the zone whose callers it spares (a zone partition)
Redirect = tuple[int, frozenset[str] | None, str | None]


class FaultHost(Protocol):
    """What ``FaultManager`` needs from the supervisor: the mesh, its pods (each with its admin client), endpoints."""

    @property
    def model(self) -> MeshModel | None: ...

    @property
    def pods(self) -> dict[str, Pod]: ...

    @property
    def ingress(self) -> Pod | None: ...

    def callees_of(self, caller: str) -> list[str]:
        """The services ``caller`` (a service, or the ingress) sends traffic to."""
        ...

    def redirect(self, edge: tuple[str, str], to: Redirect | None) -> None:
        """Re-point the caller's endpoints of the callee at a sink (``None``: back to the pods); rewrites EDS."""
        ...

    def publish_endpoints(self) -> None: ...

    def kill_pod(self, name: str) -> Pod:
        """Delete a pod (SIGKILL app and sidecar); it leaves the endpoint set."""
        ...

    async def replace_pod(self, dead: Pod) -> Pod | None:
        """Start a pod with a new name in place of a deleted one; ``None`` if it failed to start."""
        ...

    async def recover_pod(self, pod: Pod) -> None:
        """Bring a failed pod back under its name."""
        ...


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
    holds: frozenset[str] = frozenset()  # pods this fault holds (pod faults pick no pod another one holds)
    state: LeaseState = "applying"
    applied: int = 0  # changes applied so far
    report: Callable[[], Awaitable[dict[str, Any]]] | None = None  # what the fault did, read before undoing
    fail_at: int | None = None  # test hook: this change fails before it is applied
    timer: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _undo: list[tuple[str, Undo]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "fault_id": self.id, "kind": self.kind, "owner": self.owner, "target": self.target,
            "parameters": self.parameters, "started_at": self.started_at, "expires_at": self.expires_at,
            "remaining_s": round(max(0.0, self.expires_at - time.time()), 3), "changes": self.changes,
            "state": self.state,
        }

    async def step(self, what: str, do: Callable[[], object], undo: Undo, uncertain: bool = False) -> None:
        """Apply one change (``do``, plain or a coroutine function) and register its undo.

        ``uncertain``: a failure may still have applied it (an admin call that timed out), so
        the undo is registered first; such an undo must be harmless when nothing changed.
        """
        if self.fail_at is not None and self.applied + 1 == self.fail_at:
            raise TargetUnavailable(f"{what}: refused by the test hook (change {self.fail_at})")
        if uncertain:
            self._undo.append((what, undo))
        async with asyncio.timeout(STEP_TIMEOUT_S):
            result = do()
            if asyncio.iscoroutine(result):
                await result
        if not uncertain:
            self._undo.append((what, undo))
        self.applied += 1

    def add_undo(self, what: str, undo: Undo) -> None:
        """Register the undo of a change made on the lease's behalf outside ``step`` (a pod that joined)."""
        self._undo.append((what, undo))

    async def undo_all(self) -> tuple[dict[str, Any], list[str]]:
        """Run every undo, newest first; merge what they report; collect (never raise) their errors."""
        merged: dict[str, Any] = {}
        errors: list[str] = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                async with asyncio.timeout(UNDO_TIMEOUT_S):
                    _merge(merged, await undo() or {})
            except Exception as exc:
                log.exception("fault %s: undo of %r failed", self.id, what)
                errors.append(f"undo of {what}: {error_line(exc)}")
        return merged, errors


@dataclass
class Plan:
    """A checked fault, nothing applied yet: its target, what it will change, and how (``faults``)."""

    target: dict[str, Any]
    apply: Callable[[Lease], Awaitable[None]]
    changes: dict[str, Any] = field(default_factory=dict)
    holds: frozenset[str] = frozenset()


class LeaseBook:
    """The active leases (with their expiry timers) and the bounded history of ended ones."""

    def __init__(self, max_history: int = MAX_HISTORY) -> None:
        self.leases: dict[str, Lease] = {}
        self.ended: list[dict[str, Any]] = []  # records of ended faults, oldest first
        self.max_history = max_history
        self.fail_change_at: int | None = None  # test hook, one-shot: see the module docstring

    def active(self) -> list[dict[str, Any]]:
        return [lease.record() for lease in sorted(self.leases.values(), key=lambda lease: lease.started_at)]

    def history(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every fault still known, ended ones first: what phases of a run are computed from."""
        return [r for r in [*self.ended, *self.active()] if owner is None or r["owner"] == owner]

    def open(self, kind: str, owner: str, target: dict[str, Any], parameters: dict[str, Any], ttl_s: float,
             changes: dict[str, Any] | None = None, holds: frozenset[str] = frozenset()) -> Lease:
        """Register a lease and start its expiry timer: before the fault's first change.

        Synchronous on purpose: a conflict check just before it and the registration are atomic
        with respect to other injections.
        """
        now = time.time()
        lease = Lease(new_fault_id(kind), kind, owner, target, parameters, now, now + ttl_s,
                      dict(changes or {}), holds, fail_at=self.fail_change_at)
        self.fail_change_at = None
        self.leases[lease.id] = lease
        lease.timer = asyncio.get_running_loop().create_task(self._expire(lease))
        return lease

    async def apply(self, lease: Lease, apply: Callable[[Lease], Awaitable[None]]) -> None:
        """Run ``apply`` for an open lease; on any failure roll back and raise one line."""
        async with lease.lock:
            try:
                await apply(lease)
            except BaseException as exc:
                applied = lease.applied
                record = await self._finish(lease, "rolled-back", error=error_line(exc))
                if not isinstance(exc, Exception):
                    raise  # cancelled: rolled back all the same
                message = (f"{lease.kind} fault not applied, {applied} change(s) rolled back: {error_line(exc)}"
                           + (f" (rollback incomplete: {record['undo_errors'][0]})" if "undo_errors" in record
                              else ""))
                raise (FaultRejected if isinstance(exc, FaultRejected) else TargetUnavailable)(message) from None
            lease.state = "active"

    async def end(self, lease: Lease, how: str) -> dict[str, Any]:
        """End a lease (``healed`` or ``expired``); idempotent."""
        async with lease.lock:
            if lease.state == "ended":
                return {**lease.record(), "ended": "already-ended"}
            return await self._finish(lease, how)

    async def heal(self, fault_id: str | None = None, owner: str | None = None) -> list[dict[str, Any]]:
        """End one lease, every lease of ``owner``, or (neither given) every lease, newest first; idempotent."""
        chosen = [lease for lease in sorted(self.leases.values(), key=lambda lease: lease.started_at, reverse=True)
                  if (fault_id is None or lease.id == fault_id) and (owner is None or lease.owner == owner)]
        return [await self.end(lease, "healed") for lease in chosen]

    async def _expire(self, lease: Lease) -> None:
        await asyncio.sleep(max(0.0, lease.expires_at - time.time()))
        await self.end(lease, "expired")

    async def _finish(self, lease: Lease, how: str, error: str | None = None) -> dict[str, Any]:
        """Under the lease's lock: undo everything, forget the lease, keep its record."""
        report: dict[str, Any] = {}
        if lease.report is not None:
            try:
                report = await lease.report()
            except Exception as exc:  # a report is informative only: never block the undo
                log.warning("fault %s: report failed: %s", lease.id, error_line(exc))
        reverted, errors = await lease.undo_all()
        lease.state = "ended"
        self.leases.pop(lease.id, None)
        if lease.timer is not None and lease.timer is not asyncio.current_task():
            lease.timer.cancel()
        record = {**lease.record(), "ended": how, "ended_at": time.time(), "reverted": {**reverted, **report}}
        record.pop("state")
        if error is not None:
            record["error"] = error
            record["applied_changes"] = lease.applied
        if errors:
            record["undo_errors"] = errors
        self.ended = [*self.ended[-(self.max_history - 1):], record]
        return record


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, list):
            known = into.setdefault(key, [])
            known.extend(v for v in value if v not in known)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value
        else:
            into[key] = value
