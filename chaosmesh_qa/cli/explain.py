"""``chaosmesh-qa explain``: print the resilience findings of a declared mesh (``mesh.explain``).

Registered on the CLI group in ``chaosmesh_qa.cli``.  Exit codes: 0 — analysed (findings are
advice, not failures); 2 — a bad mesh or option, one line on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from chaosmesh_qa.errors import ChaosMeshQAError, one_line
from chaosmesh_qa.mesh.explain import DEFAULT_ENDPOINT_DELAY_S, explain
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir


@click.command("explain")
@click.option("--mesh", "mesh_dir", type=click.Path(path_type=Path), default=None, envvar="CHAOSMESH_QA_MESH",
              help="Mesh definition directory [default: built-in demo mesh].")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--rps", type=click.FloatRange(min=0, min_open=True, max=1e6), default=None,
              help="Requests per second into the ingress: predict what killing one pod of each service costs.")
@click.option("--endpoint-delay", type=click.FloatRange(min=0, max=600), default=DEFAULT_ENDPOINT_DELAY_S,
              show_default=True, help="Seconds until a dead pod leaves its callers' endpoints (for --rps).")
@click.option("--experiment", "experiments", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Also check this experiment's latency SLOs against the metrics' histogram (repeatable).")
@click.option("--dialect", type=click.Choice(["envoy", "istio"]), default="envoy", show_default=True,
              help="Metric dialect whose histogram buckets --experiment is checked against (istio: a cluster).")
def explain_command(mesh_dir: Path | None, as_json: bool, rps: float | None, endpoint_delay: float,
                    experiments: tuple[Path, ...], dialect: str) -> None:
    """Which resilience settings of the mesh cannot work, and the experiment that would show it."""
    try:
        result = explain(mesh_dir or default_mesh_dir(), rps, endpoint_delay, list(experiments), dialect)
    except ChaosMeshQAError as exc:
        click.echo("chaosmesh-qa: " + one_line(str(exc)), err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"mesh {result['mesh']!r}: {len(result['findings'])} findings")
    for f in result["findings"]:
        shown_by = f["experiment"] if "/" in f["experiment"] else f"experiments/{f['experiment']}.json"
        click.echo(f"{f['code']} {f['severity']}: {f['message']}\n    at {f['location']}\n    why: {f['why']}\n"
                   f"    shown by: {shown_by}")
    for p in result.get("pod_kill", []):
        eject = "never ejected" if p["ejection_s"] is None else f"ejected after {p['ejection_s'] * 1000:.0f} ms"
        tail = "; no other pod: down until replaced" if p["sole_pod"] else ""
        click.echo(f"pod kill {p['service']} at {p['rps_into_service']:g} rps into it: {eject}, callers exposed "
                   f"{p['exposed_s']:g} s, ~{p['failed_requests']:g} failed client requests"
                   f"{' (retried away)' if p['retried'] else ''}{tail}")
