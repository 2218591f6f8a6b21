"""Child processes in a session of their own, at the CPU priority of the process that starts them.

With the kernel's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, on by default in Debian's and
most distributions' kernels) every session is one scheduling group, and a niceness only weighs against the
processes of the same session: a sandbox, a Locust or a reaper started with ``start_new_session`` by a process under
``nice`` ran at the full weight of a session of its own (as did the Kubernetes target's reaper, started under
``nice -n 10``).  ``spawn`` is ``subprocess.Popen`` in a new session whose group gets the starter's niceness (its
own, or its session's when that is higher), or ``niceness_at_least`` when that is higher still, by
writing the group's ``/proc/PID/autogroup`` (once more 0.1 s later when an unprivileged write meets the kernel's rate
limit).  Best effort: without autogroup there is nothing to write, and the niceness the child inherits is what
counts.

Called wherever the package starts a detached process: the sandbox's supervisor (``targets.local.sandbox``), Locust
(``traffic.runner``, ``traffic.locust_standby``), the reapers (``targets.kubernetes.reaper``), ``chaosmesh-qa
run``'s `chaos` (``report.run``).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["spawn"]

_AUTOGROUP_NICE = re.compile(r"\bnice (-?\d+)")
MAX_NICENESS = 19
AUTOGROUP_RATE_LIMIT_S = 0.11


def _starter_niceness() -> int:
    """The priority this process runs at against other sessions: its niceness or its session's, the higher."""
    own = os.getpriority(os.PRIO_PROCESS, 0)
    return max(own, _group_niceness(Path("/proc/self/autogroup")) or 0)


def spawn(command: list[str], *, niceness_at_least: int = 0, **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(command, start_new_session=True, **popen)`` whose session runs at this process's
    niceness, or at ``niceness_at_least`` when that is higher."""
    process: subprocess.Popen[bytes] = subprocess.Popen(command, start_new_session=True, **popen)
    wanted = min(max(_starter_niceness(), niceness_at_least), MAX_NICENESS)
    if wanted > 0:  # a new session's group starts at 0; lowering it needs no privilege
        _set_group_niceness(process.pid, wanted)
    return process


def _set_group_niceness(pid: int, value: int) -> None:
    group = Path(f"/proc/{pid}/autogroup")
    for _ in range(2):
        try:
            group.write_text(str(value))
            return
        except BlockingIOError:  # EAGAIN: unprivileged, one change per 0.1 s in the whole system (the kernel's
            time.sleep(AUTOGROUP_RATE_LIMIT_S)  # proc_sched_autogroup_set_nice)
        except OSError:  # no autogroup, or the process already gone
            return


def _group_niceness(path: Path) -> int | None:
    try:
        found = _AUTOGROUP_NICE.search(path.read_text())
    except OSError:
        return None
    return int(found.group(1)) if found else None
