"""bench/ab.py's two sides: the earlier side imports the package from the earlier commit and the bench from the
working tree, in every process it starts; no benchmark is run (the figures belong to `make bench-ab`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import ab

pytestmark = pytest.mark.processes  # git and a Python interpreter

WHERE = "import bench, chaosmesh_qa; print(bench.__file__); print(chaosmesh_qa.__file__)"


def test_the_earlier_side_imports_the_package_of_its_commit_and_the_working_trees_bench(tmp_path: Path) -> None:
    tree = ab._worktree("HEAD", tmp_path)
    try:
        path = ab._package_from(tree, tmp_path)
        shown = subprocess.run([sys.executable, "-c", WHERE], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(path)},
                               capture_output=True, text=True, check=True).stdout.split()
        assert Path(shown[0]).resolve().is_relative_to(ab.ROOT / "bench")
        assert Path(shown[1]).resolve().is_relative_to(tree.resolve()), "the package of the earlier commit"
    finally:
        subprocess.run(["git", "-C", str(ab.ROOT), "worktree", "remove", "--force", str(tree)], check=False)
