"""Mesh targets: where faults land and metrics come from, and which run owns the faults.

``get_target(configuration)`` picks the implementation from the experiment's
configuration (``chaosmesh_qa_target``: ``local``, the default, or ``kubernetes``; the environment
variable ``CHAOSMESH_QA_TARGET``, when set, wins, so one experiment file runs on either target), after
checking it (``InvalidArgument`` naming the configuration key, before any contact);
``run_owner()`` names the faults this run injects, so that ``heal()`` without an id heals
exactly this run's faults and probes see only this run's faults.  Called by the actions,
probes and controls.

A process that runs several experiments (``chaoslib.experiment.run_experiment`` in a loop)
starts each with ``begin_run()`` (the controls' ``before_experiment_control`` hooks call it):
every run gets its own owner, so a later run never mistakes an earlier run's faults for its own.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.targets.base import MeshTarget

TARGET_KEY = "chaosmesh_qa_target"
STATE_DIR_KEY = "chaosmesh_qa_state_dir"
OWNER_ENV = "CHAOSMESH_QA_OWNER"
TARGETS = ("local", "kubernetes")
TARGET_ENV = "CHAOSMESH_QA_TARGET"

_runs = itertools.count(1)
_run: dict[str, Any] = {"number": None, "open": False}


def get_target(configuration: Mapping[str, Any] | None) -> MeshTarget:
    configuration = checks.mapping("configuration", {} if configuration is None else configuration)
    if os.environ.get(TARGET_ENV):  # the environment switches a run without editing the experiment
        kind = checks.choice(TARGET_ENV, os.environ[TARGET_ENV], TARGETS)
    else:
        kind = checks.choice(f"configuration.{TARGET_KEY}", configuration.get(TARGET_KEY, "local"), TARGETS)
    if kind == "local":
        from chaosmesh_qa.targets.local.state import default_state_dir
        from chaosmesh_qa.targets.local.target import LocalTarget

        state_dir = configuration.get(STATE_DIR_KEY)
        if state_dir is None or state_dir == "":
            return LocalTarget(default_state_dir())
        return LocalTarget(Path(checks.file_path(f"configuration.{STATE_DIR_KEY}", state_dir)).absolute())
    from chaosmesh_qa.targets.kubernetes.settings import KubeSettings
    from chaosmesh_qa.targets.kubernetes.target import KubernetesTarget

    return KubernetesTarget(KubeSettings.from_configuration(configuration))


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
