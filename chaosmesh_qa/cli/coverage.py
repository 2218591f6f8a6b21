"""``chaosmesh-qa coverage``: which resilience promises of a mesh the given experiments exercise.

Registered on the CLI group in ``chaosmesh_qa.cli`` (``LazyGroup``).  The promises come from
``mesh.promises``, the rules that match experiments to them from ``report.coverage``, the outputs from
``report.coverage_output``.  With ``--target kubernetes`` the mesh is the cluster's objects, written into a scratch
directory by ``KubernetesTarget.write_declared_mesh`` (the calls between services from Istio's metrics) and read
like any mesh directory.  Exit codes: 0 — reported; 1 — ``--fail-under`` and the coverage is below it; 2 — a bad
mesh, experiment, option or cluster setting, one line on stderr (nothing is written).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import click

from chaosmesh_qa.cli import MESH_DIR, CheckedPath
from chaosmesh_qa.cli.kubernetes import CONTEXT, KUBECONFIG, NAMESPACE
from chaosmesh_qa.errors import ChaosMeshQAError, one_line
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir


@click.command("coverage")
@click.argument("experiments", nargs=-1, type=CheckedPath(path_type=Path, dir_okay=False))
@MESH_DIR
@click.option("--json", "as_json", is_flag=True, help="Print the coverage as JSON.")
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the coverage as a Markdown table.")
@click.option("--junit", "junit_file", type=CheckedPath(path_type=Path, dir_okay=False), default=None,
              help="Also write JUnit XML: one testcase per promise, uncovered or unworkable ones failing.")
@click.option("--fail-under", type=click.FloatRange(0, 100), default=None, callback=lambda _c, _p, v: _percent(v),
              help="Exit 1 when fewer than PERCENT % of the promises are covered (a CI gate).")
@click.option("--target", type=click.Choice(["local", "kubernetes"]), default="local", show_default=True,
              help="kubernetes: the mesh is the cluster's objects (KUBECONFIG, CHAOSMESH_QA_NAMESPACES), its calls "
                   "those Istio's metrics saw (CHAOSMESH_QA_PROMETHEUS_URL).")
@KUBECONFIG
@CONTEXT
@NAMESPACE
@click.option("--calls-window", default="1h", show_default=True, metavar="DURATION",
              help="With --target kubernetes: how far back Istio's metrics are read for the calls (PromQL: 30m, 1h).")
def coverage_command(experiments: tuple[Path, ...], mesh_dir: Path | None, as_json: bool, as_markdown: bool,
                     junit_file: Path | None, fail_under: float | None, target: str, kubeconfig: str | None,
                     context: str | None, namespaces: tuple[str, ...], calls_window: str) -> None:
    """Which resilience promises of the mesh EXPERIMENTS exercise (a fault that makes each act, and a probe that
    fails if it does not), and which cannot work."""
    from chaosmesh_qa.report.coverage import coverage  # chaoslib's validator: loaded only when asked
    from chaosmesh_qa.report.coverage_output import markdown, table, write_junit

    if as_json and as_markdown:
        _fail("--json and --markdown: give one of them")
    if target == "kubernetes" and mesh_dir is not None:
        _fail("--mesh: with --target kubernetes the mesh is the cluster's objects; give one of them")
    if target == "local" and (kubeconfig or context or namespaces):
        _fail("--kubeconfig/--context/--namespace: only with --target kubernetes")
    if not re.fullmatch(r"[1-9][0-9]*[smhd]", calls_window):
        _fail(f"--calls-window: expected a duration such as 30m or 1h, got {calls_window!r}")
    try:
        if target == "kubernetes":
            with tempfile.TemporaryDirectory(prefix="chaosmesh-qa-cluster-") as scratch:
                label, notes = _cluster_mesh(Path(scratch), kubeconfig, context, namespaces, calls_window)
                result = coverage(scratch, list(experiments), label)
            result = dataclasses.replace(result, warnings=(*notes, *result.warnings))
        else:
            result = coverage(mesh_dir or default_mesh_dir(), list(experiments))
        if junit_file is not None:
            write_junit(result, junit_file)
    except ChaosMeshQAError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"--junit {junit_file}: cannot write it ({exc.strerror or exc})")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    elif as_markdown:
        click.echo(markdown(result), nl=False)
    else:
        click.echo(table(result))
    if fail_under is not None and result.percent < fail_under:
        click.echo(f"chaosmesh-qa: coverage {result.percent:.1f} % is below --fail-under {fail_under:g} %", err=True)
        sys.exit(1)


def _cluster_mesh(directory: Path, kubeconfig: str | None, context: str | None, namespaces: tuple[str, ...],
                  calls_window: str) -> tuple[str, list[str]]:
    """Write the cluster's mesh into ``directory``; what to call it, and what the API could not tell."""
    from chaosmesh_qa.targets.kubernetes.settings import KubeSettings
    from chaosmesh_qa.targets.kubernetes.target import KubernetesTarget

    settings = KubeSettings.from_configuration({}, chaosmesh_qa_kubeconfig=kubeconfig,
                                               chaosmesh_qa_kube_context=context,
                                               chaosmesh_qa_namespaces=list(namespaces) or None)
    cluster = KubernetesTarget(settings)
    notes = cluster.write_declared_mesh(directory, calls_window)
    return f"cluster {cluster.cluster.host}", notes


def _percent(value: float | None) -> float | None:
    if value is not None and math.isnan(value):  # click's FloatRange lets NaN through
        raise click.BadParameter("expected a percentage in [0, 100], got nan")
    return value


def _fail(message: str) -> NoReturn:
    click.echo("chaosmesh-qa: " + one_line(message), err=True)
    sys.exit(2)
