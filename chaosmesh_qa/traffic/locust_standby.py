"""Locust imported ahead of its run: a process that loads Locust while the mesh comes up, then waits for its orders.

Importing Locust (gevent, its runners, its web modules) takes about a second, and every experiment paid it
between the mesh being up and its first request.  The traffic control calls ``prestart`` from its configure
hook, which Chaos Toolkit runs before any control's before-experiment hook, so the import overlaps the
sandbox control bringing the mesh up (and Chaos Toolkit's own start-up when the mesh already runs).
``chaosmesh_qa.traffic.runner.start`` then ``take``s the waiting process and ``launch``es it with the command
line it would otherwise have spawned Locust with, or spawns as before when none is waiting.

The waiting process is ``python -m chaosmesh_qa.traffic.locust_standby``: it imports Locust, reads one JSON line on
its standard input (arguments, working directory, log file), and becomes ``locust`` with them.  It was
started with the environment a spawned Locust gets (the run's id, the parent's pid), so the runner's checks
and the locustfile's parent watchdog hold as for any other Locust process (its title is left alone: retitling
rewrites the memory ``/proc/PID/environ`` reads, where those checks find the run's id).  It exits at the end of its
standard input: the run ended without traffic (``discard``) or the process that started it died.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chaosmesh_qa import sessions

WAIT_FOR_EXIT_S = 2.0


@dataclass
class Standby:
    process: subprocess.Popen[bytes]
    run_id: str
    env: dict[str, str]

    def started_with(self, env: dict[str, str], run_id: str) -> bool:
        """Whether this process has ``env`` but for its run id (every variable whose value is that id)."""
        return ({k: v for k, v in self.env.items() if v != self.run_id}
                == {k: v for k, v in env.items() if v != run_id})

    def launch(self, command: list[str], log_path: Path) -> subprocess.Popen[bytes] | None:
        """Make the waiting process ``command`` (``python -m locust ARGS``), logging to ``log_path``; ``None``
        if it is gone (the caller spawns instead)."""
        order = {"argv": command[3:], "cwd": str(log_path.parent), "log": str(log_path)}
        if self.process.poll() is not None or self.process.stdin is None:
            return None
        try:
            self.process.stdin.write(json.dumps(order).encode() + b"\n")
            self.process.stdin.close()
        except OSError:
            self.process.kill()
            self.process.wait()
            return None
        return self.process


_waiting: list[Standby] = []  # at most one


def prestart(env: dict[str, str], run_id: str) -> None:
    """Start one waiting Locust process with ``env`` (carrying ``run_id``), unless one with that environment already
    waits; one started with another (the caller's variables changed since) is discarded first."""
    if _waiting and _waiting[0].process.poll() is None and _waiting[0].started_with(env, run_id):
        return
    discard()
    neutral = tempfile.gettempdir()  # no locust.conf or pyproject.toml of the caller's directory applies
    process = sessions.spawn([sys.executable, "-m", __name__], env=env, cwd=neutral, stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
    _waiting.append(Standby(process, run_id, dict(env)))


def take() -> Standby | None:
    """The waiting process, if one is alive (it is no longer waiting for anyone else afterwards)."""
    standby = _waiting.pop() if _waiting else None
    return standby if standby is not None and standby.process.poll() is None else None


def discard() -> None:
    """Let a process that is still waiting exit (end of its input), and reap it."""
    while _waiting:
        standby = _waiting.pop()
        with contextlib.suppress(OSError):
            if standby.process.stdin is not None:
                standby.process.stdin.close()
        try:
            standby.process.wait(WAIT_FOR_EXIT_S)
        except subprocess.TimeoutExpired:
            standby.process.kill()
            standby.process.wait()


def main() -> None:
    import locust.main  # the second this process exists to spend early

    line = sys.stdin.buffer.readline()
    if not line.strip():
        return
    order = json.loads(line)
    os.chdir(order["cwd"])
    log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    quiet = os.open(os.devnull, os.O_RDONLY)
    os.dup2(quiet, 0)  # standard input as a spawned Locust's
    os.close(quiet)
    sys.argv = ["locust", *order["argv"]]
    locust.main.main()


if __name__ == "__main__":
    main()
