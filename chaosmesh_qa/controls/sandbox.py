"""Sandbox control: bring the embedded mesh up for an experiment when none is running.

Declare it first among the experiment's controls (before the traffic control)::

    {"name": "chaosmesh-qa-sandbox",
     "provider": {"type": "python", "module": "chaosmesh_qa.controls.sandbox"}}

Before the experiment, for the local target, it starts a sandbox in the configured state
directory (``chaosmesh_qa_state_dir``) with the configured mesh (``chaosmesh_qa_mesh``, a
directory; default: the built-in demo mesh) unless one is already running there; at
clean-up, after every other control's ``after`` hook, it stops only what it started.
A sandbox that cannot start interrupts the run (nothing is injected).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from chaoslib.exceptions import InterruptExecution

from chaosmesh_qa.errors import ChaosMeshQAError
from chaosmesh_qa.targets import STATE_DIR_KEY, TARGET_KEY
from chaosmesh_qa.targets.local import sandbox
from chaosmesh_qa.targets.local.state import SandboxPaths, default_state_dir

__all__ = ["before_experiment_control", "cleanup_control", "configure_control"]

MESH_KEY = "chaosmesh_qa_mesh"
log = logging.getLogger("chaostoolkit")
_started: list[Path] = []
_configuration: dict[str, Any] = {}


def configure_control(configuration: dict[str, Any] | None = None, **_: Any) -> None:
    _configuration.clear()
    _configuration.update(configuration or {})


def before_experiment_control(context: Any, configuration: dict[str, Any] | None = None, **_: Any) -> None:
    configuration = configuration or _configuration
    if configuration.get(TARGET_KEY, "local") != "local":
        return
    state = configuration.get(STATE_DIR_KEY)
    state_dir = Path(state).absolute() if state else default_state_dir()
    if sandbox.is_running(SandboxPaths(state_dir)):
        log.info("chaosmesh-qa: using the sandbox already running in %s", state_dir)
        return
    mesh = configuration.get(MESH_KEY)
    mesh_dir = Path(mesh) if mesh else sandbox.default_mesh_dir()
    log.info("chaosmesh-qa: starting a sandbox for %s in %s", mesh_dir, state_dir)
    try:
        status, _loaded = sandbox.up(mesh_dir, state_dir)
    except ChaosMeshQAError as exc:
        raise InterruptExecution(f"chaosmesh-qa sandbox: {exc}") from None
    _started.append(state_dir)
    log.info("chaosmesh-qa: sandbox ready in %.1f s, ingress %s", status["startup_s"], status["ingress_url"])


def cleanup_control() -> None:
    while _started:
        state_dir = _started.pop()
        sandbox.down(state_dir)
        log.info("chaosmesh-qa: stopped the sandbox in %s", state_dir)
