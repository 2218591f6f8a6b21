"""Editing a copy of the default mesh: copy it, then replace or append text in its files.

Shared by the mesh validation tests (tests/mesh: loader errors, strict input, sidecars, explain; the ServiceEntry and
WorkloadEntry tests edit their own meshes), the CLI validation tests and tests/targets/local/test_user_services.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from chaosmesh_qa.targets.local.sandbox import default_mesh_dir

Edit = Callable[[Path], None]


def mesh_with(tmp_path: Path, *edits: Edit, source: Path | None = None) -> Path:
    """Copy the default mesh (or ``source``) into ``tmp_path/mesh`` and apply ``edits`` to the copy."""
    root = tmp_path / "mesh"
    shutil.copytree(source or default_mesh_dir(), root)
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


def write(file: str, text: str) -> Edit:
    """``file`` with ``text`` as its whole content (a new file, or one replaced)."""

    def edit(root: Path) -> None:
        (root / file).write_text(text, encoding="utf-8")

    return edit


def edited(tmp_path: Path, source: Path, file: str, old: str, new: str, extra: dict[str, str] | None = None) -> Path:
    """A copy of the mesh ``source`` with ``old`` replaced by ``new`` in ``file``, and the files of ``extra``."""
    return mesh_with(tmp_path, replace(file, old, new), *(write(name, body) for name, body in (extra or {}).items()),
                     source=source)


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
