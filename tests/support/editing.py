"""Editing a copy of the default mesh: copy it, then replace or append text in its files.

Shared by the mesh validation tests (tests/mesh: loader errors, strict input, sidecars, explain), the CLI
validation tests and tests/targets/local/test_user_services.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from chaosmesh_qa.targets.local.sandbox import default_mesh_dir

Edit = Callable[[Path], None]


def mesh_with(tmp_path: Path, *edits: Edit) -> Path:
    """Copy the default mesh into ``tmp_path/mesh`` and apply ``edits`` to the copy."""
    root = tmp_path / "mesh"
    shutil.copytree(default_mesh_dir(), root)
    for edit in edits:
        edit(root)
    return root


def replace(file: str, old: str, new: str) -> Edit:
    """Replace the single occurrence of ``old`` in ``file`` (fails loudly if the default mesh changed)."""

    def edit(root: Path) -> None:
        path = root / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} should occur exactly once in {file}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    return edit


def append(file: str, text: str) -> Edit:
    def edit(root: Path) -> None:
        path = root / file
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        path.write_text(existing + text, encoding="utf-8")

    return edit


def remove_all_yaml(root: Path) -> None:
    for path in root.glob("*.yaml"):
        path.unlink()


def copy_file(source: str, target: str) -> Edit:
    return lambda root: shutil.copy(root / source, root / target)
