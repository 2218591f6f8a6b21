"""Reaping expired fault leases: one pass, a watch loop, and the detached local reaper of a run.

``chaosmesh-qa reap`` (chaosmesh_qa.cli.kubernetes) calls ``reap_loop``; the in-cluster CronJob
of deploy/kubernetes/ runs that command.  ``KubernetesTarget`` calls ``ensure_local_reaper`` when a run
opens a lease: it starts ``chaosmesh-qa reap --watch`` for this run's owner in its own session (so a
SIGKILL of ``chaos run`` or of its process group does not reach it), which keeps reaping this owner's
leases every ``LOCAL_INTERVAL_S`` (at the run's own CPU priority: a lease must end at its TTL, and a reaper under
``nice`` woke up to 1.3 s late on a busy machine) and exits once the run's process is gone
and none of its leases is active.  A watching reaper also wakes when the next active lease expires (as the
API server's clock says), so a fault ends at its expiry and not up to an interval later: an experiment's
outage lasts what it declares on a cluster as in the sandbox.

A pass that could not revert an expired lease goes on with the others; ``reap_loop`` then raises
``ReapIncomplete`` (the command exits non-zero, so a CronJob whose reaper is forbidden something shows it)
when the last pass still had such a lease.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from chaosmesh_qa import sessions
from chaosmesh_qa.errors import ChaosMeshQAError
from chaosmesh_qa.pids import alive
from chaosmesh_qa.targets.kubernetes import leases
from chaosmesh_qa.targets.kubernetes.cluster import Cluster
from chaosmesh_qa.targets.kubernetes.settings import KubeSettings

log = logging.getLogger("chaosmesh_qa.reaper")
LOCAL_INTERVAL_S = 2.0
LOCAL_REAPER_ENV = "CHAOSMESH_QA_LOCAL_REAPER"  # "0": rely on the in-cluster reaper only (a runner inside the cluster)
EXPIRY_SLACK_S = 0.02  # wake this long after an expiry, so the pass finds the lease expired
UNREACHABLE_GIVE_UP_S = 600.0  # a local reaper whose run is gone stops trying after this long without an API
_local: dict[tuple[str | None, str | None, str], subprocess.Popen[bytes]] = {}


class ReapIncomplete(ChaosMeshQAError):
    """Expired leases that could not be reverted (each named with its reason); the others were."""


def reap_loop(cluster: Cluster, namespaces: list[str], watch: bool, interval_s: float, until: float | None,
              owner: str | None = None, while_pid: int | None = None,
              report: Callable[[dict[str, Any]], None] = lambda _: None,
              keep_history_s: float = leases.HISTORY_KEEP_S) -> int:
    """Reap once, or (``watch``) every ``interval_s`` until ``until`` (epoch s) or, with ``while_pid``,
    until that process is gone and no lease is active.  Returns how many leases it ended; raises
    ``ReapIncomplete`` when the last pass left expired leases it could not revert."""
    ended, failing_since = 0, None
    problems: list[str] = []  # what the last pass could not do: leases it could not revert, or the pass itself
    while True:
        pause = interval_s
        try:
            result = leases.reap(cluster, namespaces, owner, keep_history_s=keep_history_s)
            if result["next_expiry_s"] is not None:
                pause = min(interval_s, result["next_expiry_s"] + EXPIRY_SLACK_S)
            ended += len(result["expired"])
            problems = [f"{f['lease']}: {f['error']}" for f in result["failed"]]
            report(result)
            for problem in problems if watch else ():  # one pass: the ReapIncomplete line below says it all
                log.warning("reap: %s", problem)
            finished = while_pid is not None and result["active"] == 0 and not alive(while_pid)
            if finished and not problems:
                return ended
        except ChaosMeshQAError as exc:
            if not watch:
                raise
            problems = [str(exc)]
            log.warning("reap: %s", exc)
            finished = while_pid is not None and not alive(while_pid)
        failing_since = (failing_since or time.monotonic()) if problems else None
        gave_up = finished and failing_since is not None and time.monotonic() - failing_since > UNREACHABLE_GIVE_UP_S
        if gave_up or not watch or (until is not None and time.time() + pause > until):
            if problems:
                raise ReapIncomplete(f"reap: the last pass left {len(problems)} problem(s) ({ended} lease(s) "
                                     f"reverted in all): " + "; ".join(problems))
            return ended
        time.sleep(pause)


def ensure_local_reaper(settings: KubeSettings, owner: str) -> None:
    """Start (or keep) the detached reaper of this run's leases; idempotent per cluster and owner."""
    if os.environ.get(LOCAL_REAPER_ENV, "1") == "0":
        return
    key = (settings.kubeconfig, settings.context, owner)
    running = _local.get(key)
    if running is not None and running.poll() is None:
        return
    command = [sys.executable, "-m", "chaosmesh_qa", "reap", "--watch", "--interval", str(LOCAL_INTERVAL_S),
               "--owner", owner, "--while-pid", str(os.getpid()),
               *(["--kubeconfig", settings.kubeconfig] if settings.kubeconfig else []),
               *(["--context", settings.context] if settings.context else []),
               *[arg for namespace in settings.namespaces for arg in ("--namespace", namespace)]]
    _local[key] = sessions.spawn(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, close_fds=True)


def local_reapers() -> list[subprocess.Popen[bytes]]:
    return list(_local.values())


def stop_local_reapers(timeout_s: float = 5.0) -> None:
    """Stop the reapers this process started (tests; a run normally lets them finish on their own)."""
    for key, process in list(_local.items()):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        del _local[key]
