"""Which run owns the faults: the run state of this process.

``run_owner()`` names the faults this run injects, so that ``heal()`` without an id heals exactly this
run's faults and probes see only this run's faults.  Called by the actions, probes and controls (and by
the Kubernetes target, for its local reaper).

A process that runs several experiments (``chaoslib.experiment.run_experiment`` in a loop) starts each
with ``begin_run()`` (the controls' ``before_experiment_control`` hooks call it): every run gets its own
owner, so a later run never mistakes an earlier run's faults for its own.
"""

from __future__ import annotations

import itertools
import os
import socket
from typing import Any

OWNER_ENV = "CHAOSMESH_QA_OWNER"

_runs = itertools.count(1)
_run: dict[str, Any] = {"number": None, "open": False}


def begin_run() -> bool:
    """Start a new experiment run unless one is under way; returns whether this call started it.

    Idempotent within a run (every control's ``before_experiment_control`` may call it);
    ``end_run`` (the controls' clean-up) lets the next call start the next run.
    """
    if _run["open"]:
        return False
    _run.update(number=next(_runs), open=True)
    return True


def end_run() -> None:
    """The run is over (its owner stays in use until the next ``begin_run``, for late clean-up)."""
    _run["open"] = False


def run_owner() -> str:
    """The owner recorded on every fault this run injects: ``$CHAOSMESH_QA_OWNER``, else host:pid[/run N]."""
    owner = os.environ.get(OWNER_ENV) or f"{socket.gethostname()}:{os.getpid()}"
    return owner if _run["number"] is None or os.environ.get(OWNER_ENV) else f"{owner}/run{_run['number']}"
