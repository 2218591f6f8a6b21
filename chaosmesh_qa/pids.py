"""Whether a process id still names a live process: the one liveness check of the package.

Used where a process is known only by its pid, written in a file by another process: the
sandbox's supervisor (``targets.local.sandbox``: is a sandbox running, has it stopped) and the
Kubernetes target's detached reapers (``targets.kubernetes.reaper``).  A zombie counts as gone:
it runs nothing, and whoever should reap it may be gone too.
"""

from __future__ import annotations

import contextlib
import os


def alive(pid: int) -> bool:
    """``pid`` runs (not a zombie).  Our own exited child is reaped on the way, so it reads as gone."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return not os.path.isdir("/proc/self")  # no procfs: kill(0) succeeded, which is all we can know
