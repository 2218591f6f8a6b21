"""Sandbox control: bring the embedded mesh up for an experiment when none is running.

Declare it first among the experiment's controls (before the traffic control)::

    {"name": "chaosmesh-qa-sandbox",
     "provider": {"type": "python", "module": "chaosmesh_qa.controls.sandbox"}}

Before the experiment it asks the target to provision the mesh (``MeshTarget.provision``):
the local target starts a sandbox in the configured state directory
(``chaosmesh_qa_state_dir``) with the configured mesh (``chaosmesh_qa_mesh``, a directory;
default: the built-in demo mesh) unless one already runs there; a cluster target has nothing
to start.  At clean-up, after every other control's ``after`` hook, it releases only what it
started.  A mesh that cannot start interrupts the run (nothing is injected).  Like every
chaosmesh-qa control it starts the run's per-run state (``chaosmesh_qa.controls.start_of_run``).
"""

from __future__ import annotations

import logging
from typing import Any

from chaoslib.exceptions import InterruptExecution

from chaosmesh_qa.controls import end_of_run, start_of_run
from chaosmesh_qa.errors import ChaosMeshQAError
from chaosmesh_qa.targets.base import MeshTarget
from chaosmesh_qa.targets.factory import get_target

__all__ = ["before_experiment_control", "cleanup_control", "configure_control"]

MESH_KEY = "chaosmesh_qa_mesh"
log = logging.getLogger("chaostoolkit")
_provisioned: list[MeshTarget] = []
_configuration: dict[str, Any] = {}


def configure_control(configuration: dict[str, Any] | None = None, **_: Any) -> None:
    _configuration.clear()
    _configuration.update(configuration or {})


def before_experiment_control(context: Any, configuration: dict[str, Any] | None = None, **_: Any) -> None:
    start_of_run()
    configuration = configuration or _configuration
    try:
        target = get_target(configuration)
        if target.provision(configuration.get(MESH_KEY) or None):
            _provisioned.append(target)
            log.info("chaosmesh-qa: started the %s target's mesh for this run", target.kind)
    except ChaosMeshQAError as exc:
        raise InterruptExecution(f"chaosmesh-qa sandbox: {exc}") from None


def cleanup_control() -> None:
    try:
        while _provisioned:
            target = _provisioned.pop()
            target.release()
            log.info("chaosmesh-qa: stopped the %s target's mesh", target.kind)
    finally:
        end_of_run()
