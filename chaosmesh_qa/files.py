"""Whole-file writes a concurrent reader never sees half done: write a hidden temporary file beside the
target, then rename it over the target (atomic on POSIX).

Used wherever a file is read by another process while it may be rewritten: the sandbox's status, the control
plane's Envoy bootstraps, the Prometheus configuration and rules, the Locust run state, the Kubernetes API
emulation's stored objects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    """Replace ``path`` with ``text`` in one step; ``mode`` sets its permissions before it appears."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    if mode is not None:
        tmp.chmod(mode)
    os.replace(tmp, path)


def atomic_write_json(path: Path, document: Any, mode: int | None = None) -> None:
    """``atomic_write_text`` of ``document`` as indented JSON."""
    atomic_write_text(path, json.dumps(document, indent=1), mode)
