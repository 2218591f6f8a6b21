"""The command lines the tests drive: the repository root, ``chaosmesh-qa`` (as ``python -m``), ``chaos``.

Used by the conftest files, ``tests.support.sandbox``/``kube``/``runs``/``traffic`` and every test module
that runs the CLI or the Chaos Toolkit itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "chaosmesh_qa"]
CHAOS = str(Path(sys.executable).with_name("chaos"))  # the Chaos Toolkit CLI of this venv


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120,
            cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``chaosmesh-qa ARGS`` run to its end from ``cwd``, output captured; ``env`` is added to this environment."""
    return subprocess.run([*CLI, *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
