"""The supervisor's side of the demo app's fork server (``chaosmesh_qa.apps.forkserver``).

``ForkServer.spawn(env, log)`` returns a ``ForkedProcess``: the pod's app, a process of its own
that ``pods.Pod`` treats like any child (``pid``, ``returncode``, ``wait``, ``send_signal``).
Signals go through a pidfd taken right after the fork, so a recycled pid can never be hit; exit
statuses come from the fork server, which reaps its children.  If the fork server dies, every app
it started dies with it (death signal) and is reported exited; the next ``spawn`` starts a new one.
Used by ``supervisor`` for pods that run the built-in demo app; a team's own ``command`` is an
ordinary child (``processes.spawn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from chaosmesh_qa.errors import ProcessNotReady
from chaosmesh_qa.targets.local import processes

LOST_STATUS = -signal.SIGKILL  # an app whose fork server died: killed with it


class ForkedProcess:
    """One app forked by the fork server; the subset of ``asyncio.subprocess.Process`` pods use."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # gone already: its exit report is on its way
            self._pidfd = None

    def _exit(self, status: int) -> None:
        if self.returncode is None:
            self.returncode = status
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    def __init__(self, log: Path) -> None:
        self.log = log
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._apps: dict[int, ForkedProcess] = {}
        self._lock = asyncio.Lock()

    async def spawn(self, env: dict[str, str], log: Path) -> ForkedProcess:
        """Fork one app with ``env`` added to the environment, stdout/stderr appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        async with self._lock:
            if self._process is None or self._process.returncode is not None:
                await self._start()
            assert self._process is not None and self._process.stdin is not None
            request_id = next(self._ids)
            answer = self._waiting[request_id] = asyncio.get_running_loop().create_future()
            self._process.stdin.write(json.dumps({"id": request_id, "env": env, "log": str(log)}).encode() + b"\n")
            await self._process.stdin.drain()
            reply = await answer
            if "error" in reply:
                raise ProcessNotReady(f"demo app fork server: {reply['error']} (log: {self.log})")
            app = self._apps[reply["pid"]] = ForkedProcess(reply["pid"])
            return app

    async def _start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chaosmesh_qa.apps.forkserver", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log, preexec_fn=processes.die_with_parent)
        self._reader = asyncio.get_running_loop().create_task(self._read(self._process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            message = json.loads(line)
            if "exit" in message:
                app = self._apps.pop(message["exit"], None)
                if app is not None:
                    app._exit(message["status"])
            else:
                future = self._waiting.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
        await process.wait()  # the fork server is gone, and every app it started with it
        for app in self._apps.values():
            app._exit(LOST_STATUS)
        self._apps.clear()
        for future in self._waiting.values():
            if not future.done():
                future.set_result({"error": f"exited with status {process.returncode}"})
        self._waiting.clear()

    async def close(self) -> None:
        """Stop the fork server; it SIGKILLs the apps it still has (pods stop theirs first)."""
        if self._process is not None and self._process.returncode is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.wait(), 2)
            await processes.stop(self._process)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
