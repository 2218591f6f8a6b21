"""Mesh targets: where faults land and metrics come from.

``get_target(configuration)`` picks the implementation from the experiment's
configuration (``chaosmesh_qa_target``: ``local``, the default, or ``kubernetes``; the environment
variable ``CHAOSMESH_QA_TARGET``, when set, wins, so one experiment file runs on either target);
``run_owner()`` names the faults this process injects, so that ``heal()`` without an
id heals exactly this run's faults.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.targets.base import MeshTarget

TARGET_KEY = "chaosmesh_qa_target"
STATE_DIR_KEY = "chaosmesh_qa_state_dir"
OWNER_ENV = "CHAOSMESH_QA_OWNER"
TARGET_ENV = "CHAOSMESH_QA_TARGET"


def get_target(configuration: dict[str, Any] | None) -> MeshTarget:
    configuration = configuration or {}
    kind = os.environ.get(TARGET_ENV) or configuration.get(TARGET_KEY) or "local"  # the env switches a run
    if kind == "local":
        from chaosmesh_qa.targets.local.state import default_state_dir
        from chaosmesh_qa.targets.local.target import LocalTarget

        state_dir = configuration.get(STATE_DIR_KEY)
        return LocalTarget(Path(state_dir).absolute() if state_dir else default_state_dir())
    if kind == "kubernetes":
        from chaosmesh_qa.targets.kubernetes.settings import KubeSettings
        from chaosmesh_qa.targets.kubernetes.target import KubernetesTarget

        return KubernetesTarget(KubeSettings.from_configuration(configuration))
    raise InvalidArgument(f"configuration.{TARGET_KEY}: unknown target {kind!r} (expected 'local' or 'kubernetes')")


def run_owner() -> str:
    """The owner recorded on every fault this process injects (one ``chaos run`` = one owner)."""
    return os.environ.get(OWNER_ENV) or f"{socket.gethostname()}:{os.getpid()}"
