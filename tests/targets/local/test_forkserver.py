"""The demo app's fork server: apps serve, die like processes, die with the server, and start fast.

No Envoy here: the apps are the demo app on a loopback port, called directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from chaosmesh_qa.targets.local.forkserver import LOST_STATUS, ForkServer

pytestmark = pytest.mark.processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(pod: str, port: int) -> dict[str, str]:
    config = {"service": "shop", "version": "v1", "pod": pod, "port": port, "outbound_port": _free_port()}
    return {"CHAOSMESH_APP": json.dumps(config), "CHAOSMESH_SERVICE": "shop", "CHAOSMESH_POD": pod}


async def _healthy(port: int, timeout_s: float = 10) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    return dict(await response.json())
            except aiohttp.ClientError:
                assert time.monotonic() < deadline, f"app on {port} never healthy"
                await asyncio.sleep(0.01)


def test_apps_serve_die_alone_and_report_their_status(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = ForkServer(tmp_path / "forkserver.log")
        ports = [_free_port() for _ in range(3)]
        try:
            apps = [await server.spawn(_env(f"pod-{i}", port), tmp_path / f"app-{i}.log")
                    for i, port in enumerate(ports)]
            assert [(await _healthy(port))["pod"] for port in ports] == ["pod-0", "pod-1", "pod-2"]
            assert len({a.pid for a in apps}) == 3 and all(psutil.pid_exists(a.pid) for a in apps)
            assert "service=shop pod=pod-1" in " ".join(psutil.Process(apps[1].pid).cmdline())  # named in ps
            apps[1].kill()
            assert await asyncio.wait_for(apps[1].wait(), 5) == -signal.SIGKILL
            apps[2].terminate()  # the app's own SIGTERM handling: a clean exit
            assert await asyncio.wait_for(apps[2].wait(), 5) == 0
            assert (await _healthy(ports[0]))["pod"] == "pod-0", "the others keep serving"
            apps[1].kill()  # signalling an app that is gone is a no-op, never another process
        finally:
            await server.close()

    asyncio.run(scenario())


def test_apps_die_with_the_fork_server_and_are_reported_lost(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = ForkServer(tmp_path / "forkserver.log")
        port = _free_port()
        try:
            app = await server.spawn(_env("pod-0", port), tmp_path / "app.log")
            await _healthy(port)
            assert server._process is not None
            os.kill(server._process.pid, signal.SIGKILL)
            assert await asyncio.wait_for(app.wait(), 5) == LOST_STATUS
            deadline = time.monotonic() + 5
            while psutil.pid_exists(app.pid) and psutil.Process(app.pid).status() != psutil.STATUS_ZOMBIE:
                assert time.monotonic() < deadline, "the app outlived its fork server"
                await asyncio.sleep(0.01)
            again = await server.spawn(_env("pod-1", port), tmp_path / "app-1.log")  # a new server
            assert (await _healthy(port))["pod"] == "pod-1"
            again.kill()
            await asyncio.wait_for(again.wait(), 5)
        finally:
            await server.close()

    asyncio.run(scenario())


def test_a_fork_costs_a_fraction_of_a_fresh_interpreter(tmp_path: Path) -> None:
    """CPU to bring ten apps to healthy: forked, against what one interpreter importing the app costs."""
    async def scenario() -> float:
        server = ForkServer(tmp_path / "forkserver.log")
        try:
            await server.spawn(_env("warm-up", _free_port()), tmp_path / "warm.log")  # the server's own import
            before = psutil.Process().children(recursive=True)
            cpu_before = sum(sum(p.cpu_times()[:2]) for p in before)
            ports = [_free_port() for _ in range(10)]
            apps = [await server.spawn(_env(f"pod-{i}", p), tmp_path / f"app-{i}.log") for i, p in enumerate(ports)]
            await asyncio.gather(*(_healthy(p) for p in ports))
            cpu = sum(sum(p.cpu_times()[:2]) for p in psutil.Process().children(recursive=True)) - cpu_before
            for app in apps:
                app.kill()
            return cpu
        finally:
            await server.close()

    forked_cpu_s = asyncio.run(scenario())
    # a fresh `python -m chaosmesh_qa.apps.demo` spends ~0.4 s of CPU importing before it serves
    assert forked_cpu_s < 10 * 0.4 / 4, f"ten forked apps took {forked_cpu_s:.2f} s of CPU"
