"""Lease logic without processes: expiry, rollback newest first, idempotent heal, heal waiting for an injection.

``FakeHost`` implements ``leases.FaultHost`` (our own interface between the fault manager and
the supervisor) over ``Pod`` objects that run no process; the Envoy-facing side of faults is
covered against real sidecars in ``test_fault_composition``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import FaultRejected, TargetUnavailable
from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.mesh.model import MeshModel
from chaosmesh_qa.targets.local.controlplane import PodPorts, PodSpec
from chaosmesh_qa.targets.local.envoy.common import INGRESS
from chaosmesh_qa.targets.local.faults import FaultManager
from chaosmesh_qa.targets.local.leases import Lease, LeaseBook, Redirect
from chaosmesh_qa.targets.local.pods import Pod
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir


@pytest.fixture(scope="module")
def model() -> MeshModel:
    return load_mesh(default_mesh_dir()).model


class FakeHost:
    """The supervisor's side of ``FaultHost``, in memory: pods change state, nothing runs."""

    def __init__(self, model: MeshModel, tmp: Path) -> None:
        self.model = model
        self.tmp = tmp
        self.ingress: Pod | None = None
        self.pods: dict[str, Pod] = {}
        self.redirects: dict[tuple[str, str], Redirect] = {}
        self.events: list[str] = []
        self.replacements_fail = False
        for service in model.services.values():
            for version in service.versions:
                for i in range(version.replicas):
                    self._add(f"{service.name}-{version.name}-{i}", service.name, version.name)

    def _add(self, name: str, service: str, version: str) -> Pod:
        spec = PodSpec(name=name, service=service, version=version, ports=PodPorts(stats=0),
                       admin_socket=self.tmp / f"{name}.sock")
        pod = Pod(spec, self.tmp / "bootstrap.json", self.tmp / name, None, {}, "/", lambda pod: None, state="ready")
        self.pods[name] = pod
        return pod

    def callees_of(self, caller: str) -> list[str]:
        return [self.model.ingress_service] if caller == INGRESS else self.model.callees(caller)

    def redirect(self, edge: tuple[str, str], to: Redirect | None) -> None:
        self.events.append(f"redirect {edge[0]}->{edge[1]} {'sink' if to else 'back'}")
        if to is None:
            self.redirects.pop(edge, None)
        else:
            self.redirects[edge] = to

    def publish_endpoints(self) -> None:
        self.events.append("publish")

    def kill_pod(self, name: str) -> Pod:
        self.events.append(f"kill {name}")
        pod = self.pods.pop(name)
        pod.kill()
        return pod

    async def replace_pod(self, dead: Pod) -> Pod | None:
        self.events.append(f"replace {dead.name}")
        if self.replacements_fail:
            return None
        return self._add(f"{dead.name}-new", dead.spec.service, dead.spec.version)

    async def recover_pod(self, pod: Pod) -> None:
        self.events.append(f"recover {pod.name}")
        pod.state = "ready"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_failure_part_way_rolls_back_newest_first_and_leaves_no_lease(model: MeshModel, tmp_path: Path) -> None:
    async def scenario() -> None:
        host = FakeHost(model, tmp_path)
        faults = FaultManager(host)
        faults.book.fail_change_at = 3  # the test hook: the third change fails before it is applied
        with pytest.raises(TargetUnavailable) as raised:
            await faults.inject("pod-kill", {"service": "reviews", "percent": 100}, "me", 60)
        message = str(raised.value)
        assert "\n" not in message and "pod-kill fault not applied, 2 change(s) rolled back" in message
        assert host.events == ["kill reviews-v1-0", "kill reviews-v1-1",
                               "replace reviews-v1-1", "replace reviews-v1-0"], "undone newest first"
        assert faults.active() == [] and faults.book.fail_change_at is None, "the hook is one-shot"
        (record,) = faults.history("me")
        assert record["ended"] == "rolled-back" and record["applied_changes"] == 2
        assert record["reverted"]["replacement_pods"] == ["reviews-v1-1-new", "reviews-v1-0-new"]
        assert {n for n in host.pods if n.startswith("reviews")} == {"reviews-v1-0-new", "reviews-v1-1-new",
                                                                      "reviews-v2-0"}
        # the next fault is not affected by the (consumed) hook
        ok = await faults.inject("pod-failure", {"service": "catalog", "count": 1}, "me", 60)
        assert ok["changes"] == {"failed_pods": ["catalog-v1-0"], "confirmed": True}
        await faults.close()

    run(scenario())


def test_lease_expires_on_its_timer_and_heal_is_idempotent(model: MeshModel, tmp_path: Path) -> None:
    async def scenario() -> None:
        host = FakeHost(model, tmp_path)
        faults = FaultManager(host)
        short = await faults.inject("pod-failure", {"service": "catalog", "count": 1}, "me", 0.05)
        assert short["state"] == "active" and host.pods["catalog-v1-0"].state == "failed"
        timer = faults.leases[short["fault_id"]].timer
        assert timer is not None
        await timer  # the expiry itself, not a sleep
        assert host.pods["catalog-v1-0"].state == "ready" and faults.active() == []
        (expired,) = faults.history("me")
        assert expired["ended"] == "expired" and expired["reverted"] == {"recovered_pods": ["catalog-v1-0"]}

        long = await faults.inject("app-kill", {"service": "inventory", "count": 1}, "me", 60)
        (healed,) = await faults.heal(long["fault_id"])
        assert healed["ended"] == "healed" and healed["reverted"] == {"app_restarting_in_pods": ["inventory-v1-0"]}
        assert await faults.heal(long["fault_id"]) == [], "healing again finds nothing"
        assert host.pods["inventory-v1-0"].held == set()
        assert len(faults.history("me")) == 2

    run(scenario())


def test_heal_all_goes_newest_first_and_pod_faults_never_share_a_pod(model: MeshModel, tmp_path: Path) -> None:
    async def scenario() -> None:
        host = FakeHost(model, tmp_path)
        faults = FaultManager(host)
        first = await faults.inject("app-kill", {"service": "catalog", "count": 1}, "me", 60)
        second = await faults.inject("pod-failure", {"service": "catalog", "count": 1}, "me", 60)
        assert first["changes"]["app_killed_in_pods"] == ["catalog-v1-0"]
        assert second["changes"]["failed_pods"] == ["catalog-v1-1"], "a pod another fault holds is not picked"
        with pytest.raises(FaultRejected) as rejected:
            await faults.inject("pod-kill", {"service": "catalog", "count": 1}, "me", 60)
        assert str(rejected.value) == "count: 1 exceeds the 0 running pod(s) of 'catalog' that no other fault holds"
        assert len(faults.active()) == 2, "a rejected fault opens no lease"
        host.events.clear()
        healed = await faults.heal(owner="me")
        assert [h["fault_id"] for h in healed] == [second["fault_id"], first["fault_id"]]
        assert host.events == ["recover catalog-v1-1"]

    run(scenario())


def test_partition_conflict_is_rejected_before_any_change(model: MeshModel, tmp_path: Path) -> None:
    async def scenario() -> None:
        host = FakeHost(model, tmp_path)
        faults = FaultManager(host)
        cut = await faults.inject("partition", {"a": "frontend", "b": "catalog", "mode": "drop"}, "me", 60)
        assert cut["changes"]["edges"] == [["frontend", "catalog"]] and ("frontend", "catalog") in host.redirects
        # frontend's sidecar runs no Envoy here: confirmation skips it and says so
        assert cut["changes"]["skipped_pods"] == {"frontend-v1-0": "sidecar down"}
        events = list(host.events)
        with pytest.raises(FaultRejected, match=f"conflicts with active fault {cut['fault_id']}"):
            await faults.inject("partition", {"a": "frontend", "b": "catalog", "mode": "reject"}, "me", 60)
        assert host.events == events and len(faults.active()) == 1
        await faults.heal()
        assert host.redirects == {} and host.events[-1] == "redirect frontend->catalog back"
        await faults.close()

    run(scenario())


def test_heal_and_expiry_wait_for_an_injection_in_progress() -> None:
    async def scenario() -> list[str]:
        book, log = LeaseBook(), []
        gate = asyncio.Event()

        def change(name: str) -> Any:
            async def undo() -> dict[str, Any]:
                log.append(f"undo {name}")
                return {"undone": [name]}

            return undo

        async def apply(lease: Lease) -> None:
            await lease.step("one", lambda: log.append("do one"), change("one"))
            await gate.wait()  # an admin call in flight
            await lease.step("two", lambda: log.append("do two"), change("two"))

        lease = book.open("test", "me", {}, {}, 0.01)  # expires while still being applied
        injecting = asyncio.create_task(book.apply(lease, apply))
        await asyncio.sleep(0)
        assert book.active()[0]["state"] == "applying", "the lease exists before its first change completes"
        healing = asyncio.create_task(book.heal())
        await asyncio.sleep(0.05)
        assert log == ["do one"], "neither heal nor expiry undoes half an injection"
        gate.set()
        await injecting
        healed = await healing
        assert [h.get("ended") for h in healed] in (["healed"], ["already-ended"])
        (record,) = book.history()
        assert record["ended"] in ("healed", "expired") and record["reverted"] == {"undone": ["two", "one"]}
        return log

    assert run(scenario()) == ["do one", "do two", "undo two", "undo one"]


def test_uncertain_change_is_undone_and_undo_errors_are_recorded() -> None:
    async def scenario() -> None:
        book, log = LeaseBook(), []

        async def refused() -> None:
            log.append("sent")
            raise OSError("connection reset mid-answer\nsecond line")

        async def broken_undo() -> dict[str, Any]:
            raise RuntimeError("cannot undo")

        async def undo_sent() -> dict[str, Any]:
            log.append("undo sent")
            return {}

        async def apply(lease: Lease) -> None:
            await lease.step("first", lambda: log.append("first"), broken_undo)
            await lease.step("second", refused, undo_sent, uncertain=True)  # may have been applied

        with pytest.raises(TargetUnavailable) as raised:
            await book.apply(book.open("test", "me", {}, {}, 60), apply)
        assert str(raised.value).count("\n") == 0 and "OSError: connection reset mid-answer second line" in str(
            raised.value)
        assert "rollback incomplete: undo of first: RuntimeError: cannot undo" in str(raised.value)
        assert log == ["first", "sent", "undo sent"]
        (record,) = book.history()
        assert record["ended"] == "rolled-back"
        assert record["undo_errors"] == ["undo of first: RuntimeError: cannot undo"]
        assert book.active() == []

    run(scenario())


def test_a_replacement_that_does_not_start_is_an_undo_error(model: MeshModel, tmp_path: Path) -> None:
    async def scenario() -> None:
        host = FakeHost(model, tmp_path)
        faults = FaultManager(host)
        killed = await faults.inject("pod-kill", {"service": "inventory", "count": 1}, "me", 60)
        host.replacements_fail = True
        (healed,) = await faults.heal(killed["fault_id"])
        assert healed["ended"] == "healed" and healed["reverted"] == {}
        assert healed["undo_errors"] == ["undo of kill pod inventory-v1-0: the replacement of inventory-v1-0 did "
                                         "not start (supervisor log)"]
        assert faults.active() == []

    run(scenario())
