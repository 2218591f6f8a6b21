"""Fork server for the built-in demo app: imports it once, then forks one process per pod.

Started by the local sandbox's supervisor (``targets.local.forkserver.ForkServer``) as
``python -m chaosmesh_qa.apps.forkserver``.  Importing the demo app (aiohttp's server and client,
asyncio, ssl) costs ~0.4 s of CPU per process; a fork of this warmed-up process costs about a
millisecond and shares those pages copy-on-write, which is what makes a 60-pod mesh start in
seconds on two cores.

Protocol (JSON lines): on stdin ``{"id": n, "env": {...}, "log": path}`` asks for a pod's app;
stdout answers ``{"id": n, "pid": p}`` (or ``{"id": n, "error": "..."}``) and reports every exit
as ``{"exit": pid, "status": s}`` (``s`` as ``Popen.returncode``: negative for a signal).  Each
app is an ordinary process: its own pid (kill it like any pod's app), its environment replaced by
the request's, stdout/stderr to its log, and ``PR_SET_PDEATHSIG(SIGKILL)`` so it dies with this
server, which dies with the supervisor.  End of stdin: the server SIGKILLs its apps and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import sys
import traceback
from typing import Any

from setproctitle import setproctitle

import chaosmesh_qa.apps.demo as demo

_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _run_app(request: dict[str, Any], server_pid: int, keep: set[int]) -> None:
    """In the forked child: become the pod's app process; never returns."""
    status = 1
    try:
        _die_with(server_pid)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own descriptors, open until it exits
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        # what `ps` shows (and /proc/PID/cmdline): which pod this is, not the fork server's command line
        setproctitle(f"chaosmesh_qa.apps.demo service={os.environ.get('CHAOSMESH_SERVICE', '?')} "
                     f"pod={os.environ.get('CHAOSMESH_POD', '?')}")
        demo.main()
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def _status(raw: int) -> int:
    return -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)


def serve() -> None:
    server_pid = os.getpid()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
    children: set[int] = set()
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, "request")
    selector.register(wake_r, selectors.EVENT_READ, "signal")
    pending = b""
    keep = {wake_r, wake_w, out.fileno(), selector.fileno()}

    def reap() -> None:
        while children:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            out.write(json.dumps({"exit": pid, "status": _status(raw)}) + "\n")

    try:
        while True:
            for key, _ in selector.select():
                if key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    reap()
                    continue
                data = os.read(0, 65536)
                if not data:
                    return
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    request = json.loads(line)
                    try:
                        pid = os.fork()
                    except OSError as exc:
                        out.write(json.dumps({"id": request["id"], "error": f"fork: {exc.strerror}"}) + "\n")
                        continue
                    if pid == 0:
                        _run_app(request, server_pid, keep)
                    children.add(pid)
                    out.write(json.dumps({"id": request["id"], "pid": pid}) + "\n")
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    serve()
