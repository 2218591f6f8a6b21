"""``chaosmesh-qa generate``: write a suite of experiments that exercises every promise of a mesh, and its game days.

Registered on the CLI group in ``chaosmesh_qa.cli`` (``LazyGroup``); the suite is ``scaffold.suite``'s.  Files are
written into ``--out`` (created; files of the same names replaced, no other touched); the promises no experiment
can exercise are printed with the reason.  Exit codes: 0 — written; 2 — a bad mesh or option, or an unwritable
directory, one line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from chaosmesh_qa.cli import MESH_DIR, CheckedPath
from chaosmesh_qa.errors import ChaosMeshQAError, one_line
from chaosmesh_qa.files import atomic_write_text
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir


@click.command("generate")
@MESH_DIR
@click.option("--out", "out_dir", type=CheckedPath(file_okay=False, path_type=Path), required=True,
              help="Directory to write the experiments and game days into.")
def generate(mesh_dir: Path | None, out_dir: Path) -> None:
    """Write experiments that exercise every promise of the mesh (chaosmesh-qa coverage's rules), and game days
    listing them for the local target and for a cluster."""
    from chaosmesh_qa.scaffold.suite import generate_suite, suite_files

    try:
        suite = generate_suite(mesh_dir or default_mesh_dir(), str(mesh_dir) if mesh_dir else "")
        files = suite_files(suite)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            atomic_write_text(out_dir / name, text)
    except ChaosMeshQAError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"--out {out_dir}: cannot write it ({exc.strerror or exc})")
    for g in suite.experiments:
        click.echo(f"{out_dir / (g.name + '.json')}: {', '.join(g.covers)}")
    for key, why in suite.skipped:
        click.echo(f"not generated: {key}: {why}")
    click.echo(f"game days: {out_dir / 'gameday.yaml'} (local), {out_dir / 'gameday-kubernetes.yaml'} (kubernetes)")


def _fail(message: str) -> NoReturn:
    click.echo("chaosmesh-qa: " + one_line(message), err=True)
    sys.exit(2)
