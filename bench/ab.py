"""The package at an earlier commit against the working tree, on this machine, in alternating rounds.

``python -m bench.ab REF BENCH [--rounds 3]`` (``make bench-ab REF=... BENCH=hop``): checks ``REF`` out into a
temporary git worktree and runs one benchmark (``bench/<BENCH>_bench.py`` of the working tree) ``--rounds`` times on
each side, alternating, so that drift of a shared host falls on both.  Only the package changes between the sides:
the benchmark's code, its meshes and the virtualenv are the working tree's, and ``chaosmesh_qa`` is imported from
``REF`` (a directory on ``PYTHONPATH`` that links to it, inherited by every process the bench starts: the CLI, the
supervisor, Locust).  Prints each figure's rounds and median per side.

A goal such as "no worse than on 2026-12-05" cannot be a fixed number: a figure measured on another day is of
another host.  This is how such a goal is judged (docs/figures).  Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import results

ROOT = Path(__file__).resolve().parents[1]


def _worktree(ref: str, directory: Path) -> Path:
    tree = directory / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), ref], check=True)
    return tree


def _package_from(tree: Path, directory: Path) -> Path:
    """A directory for ``PYTHONPATH``: ``chaosmesh_qa`` from ``tree``, ``bench`` from the working tree."""
    path = directory / "path"
    path.mkdir()
    (path / "chaosmesh_qa").symlink_to(tree / "chaosmesh_qa")
    (path / "bench").symlink_to(ROOT / "bench")
    return path


def _one_round(bench: str, pythonpath: Path, result: Path) -> dict[str, Any]:
    # run from the result's directory: the working tree as the current directory would come first on sys.path
    env = {**os.environ, results.RESULT_ENV: str(result), "PYTHONPATH": str(pythonpath)}
    program = (f"from bench import results, {bench}_bench as b; s = results.machine_speed_s(); b.main(); "
               "results.write(s, results.machine_speed_s())")
    subprocess.run([sys.executable, "-c", program], cwd=result.parent, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return dict(json.loads(result.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="the earlier commit (anything git rev-parse takes)")
    parser.add_argument("bench", help="a module of bench/ without '_bench': sandbox, faults, experiment, hop, ...")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not (ROOT / "bench" / f"{args.bench}_bench.py").is_file():
        parser.error(f"bench: no bench/{args.bench}_bench.py")
    sides: dict[str, list[dict[str, Any]]] = {args.ref: [], "working tree": []}
    with tempfile.TemporaryDirectory(prefix="chaosmesh-ab-") as tmp:
        directory = Path(tmp)
        tree = _worktree(args.ref, directory)
        try:
            earlier = _package_from(tree, directory)
            for index in range(args.rounds):
                for side, path in ((args.ref, earlier), ("working tree", ROOT)):
                    sides[side].append(_one_round(args.bench, path, directory / f"{index}-{len(sides[side])}.json"))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    speeds = [r["machine_speed_s"]["start"] for side in sides.values() for r in side]
    print(f"{args.bench} bench, {args.rounds} alternating rounds per side; machine speed "
          f"{min(speeds):.3f}-{max(speeds):.3f} s (a quiet 2-core host: about 0.2 s)")
    names = list(sides["working tree"][0]["figures"])
    for name in names:
        label = sides["working tree"][0]["figures"][name]["label"]
        print(f"  {label}")
        for side, rounds in sides.items():
            values = [r["figures"][name]["value"] for r in rounds if name in r["figures"]]
            if values:
                unit = rounds[0]["figures"][name]["unit"]
                shown = ", ".join(f"{v:.3f}" for v in values)
                print(f"    {side:<14} median {statistics.median(values):9.3f} {unit:<4} ({shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
