"""The target factory: ``get_target(configuration)`` builds the ``MeshTarget`` an experiment asks for.

It picks the implementation from the experiment's configuration (``chaosmesh_qa_target``: ``local``,
the default, or ``kubernetes``; the environment variable ``CHAOSMESH_QA_TARGET``, when set, wins, so one
experiment file runs on either target), after checking it (``InvalidArgument`` naming the configuration
key, before any contact).  This is the one module above the targets that names a concrete one: the
activities (actions, probes, controls) call it and see only ``targets.base.MeshTarget`` (``make lint``
enforces that).  Each target is imported only when chosen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.targets.base import MeshTarget

TARGET_KEY = "chaosmesh_qa_target"
STATE_DIR_KEY = "chaosmesh_qa_state_dir"
TARGETS = ("local", "kubernetes")
TARGET_ENV = "CHAOSMESH_QA_TARGET"


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
