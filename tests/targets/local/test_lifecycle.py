"""Sandbox lifecycle: `down` leaves nothing behind; children die with a SIGKILLed supervisor."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.targets.local.supervisor import ORPHAN_CHECK_S
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes


def _pids(status: dict[str, Any]) -> set[int]:
    pods = [*status["pods"], status["ingress"]]
    return {pid for p in pods for pid in p["pids"].values() if pid} | {status["pid"]}


def _ports(status: dict[str, Any]) -> set[int]:
    pods = [*status["pods"], status["ingress"]]
    prometheus_port = int(status["prometheus_url"].rsplit(":", 1)[1])
    return {port for p in pods for port in p["ports"].values()} | {prometheus_port}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_gone(pids: set[int], timeout_s: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while (alive := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


def test_down_leaves_no_process_and_no_listening_port(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "state")
    box.up()
    try:
        status = box.status()
        pids, ports = _pids(status), _ports(status)
        assert all(_listening(p) for p in ports)
        assert all(addr == "127.0.0.1" for addr in _bound_addresses(ports)), "everything binds loopback only"
    finally:
        box.down()
    assert _wait_gone(pids, timeout_s=1.0) == set()
    assert [p for p in ports if _listening(p)] == []
    assert not (tmp_path / "state" / "control.sock").exists()
    assert not (tmp_path / "state" / "xds").exists()
    box.down()  # idempotent


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "state")
    box.up()
    status = box.status()
    pids = _pids(status)
    try:
        os.kill(status["pid"], signal.SIGKILL)
        assert _wait_gone(pids) == set()
    finally:
        box.down()


def _bound_addresses(ports: set[int]) -> list[str]:
    """Local addresses of listening TCP sockets on ``ports`` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if state == "0A" and int(port, 16) in ports:
            octets = [str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)]
            found.append(".".join(octets))
    return found


def test_a_sandbox_whose_state_directory_is_deleted_stops_itself(tmp_path: Path) -> None:
    """Nobody can `down` a sandbox once its state directory is gone (a test's temporary directory cleaned
    up): it notices within ORPHAN_CHECK_S and stops every process instead of running forever."""
    box = Sandbox(tmp_path / "state")
    box.up()
    pids = _pids(box.status())
    shutil.rmtree(tmp_path / "state")
    left = _wait_gone(pids, timeout_s=ORPHAN_CHECK_S + 8)
    if left:
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert left == set(), "the orphaned sandbox kept running"
