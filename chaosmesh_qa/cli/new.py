"""``chaosmesh-qa new``: scaffolding, in one command with two modes chosen by the option given.

* ``--fault KIND``: a ready-to-run Chaos Toolkit experiment for one fault on the mesh (``--mesh``, default the
  built-in one), on ``--service`` (and ``--source``, the caller, for latency, abort and partition), or on the
  service or edge that fault exercises best when they are left out; written to ``-o FILE`` (stdout without).
* ``--from DIR -o OUT``: a mesh directory from a team's Kubernetes manifests and Istio YAML.

The options, the checks click makes and what is printed are here; the scaffolding is ``chaosmesh_qa.scaffold``.
Registered on the CLI group in ``chaosmesh_qa.cli`` (``LazyGroup``).  Exit codes: 0 written; 2 bad input
(an unknown fault kind, service or edge, a mesh that does not load, an output that exists), one line on
stderr and nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from chaosmesh_qa.cli import MESH_DIR, CheckedPath, _warn
from chaosmesh_qa.errors import InvalidArgument, InvalidMeshConfig
from chaosmesh_qa.files import atomic_write_text
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from chaosmesh_qa.targets.policy import FAULT_KINDS

EXPERIMENT_ONLY = ("service", "source", "mesh_dir", "force")
MESH_ONLY = ("ingress", "name")


def _services(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of --service / --source: the services of the mesh named so far (or the built-in one)."""
    from chaosmesh_qa.mesh import load_mesh

    try:
        model = load_mesh(ctx.params.get("mesh_dir") or default_mesh_dir()).model
    except Exception:  # a completion never fails: it offers nothing instead
        return []
    names = sorted(model.services) + (["ingress"] if param.name == "source" else [])
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


@click.command("new")
@click.option("--fault", type=click.Choice(FAULT_KINDS), default=None,
              help="Write an experiment for this fault: pod-kill, pod-failure, app-kill (pods of --service); "
                   "latency, abort (requests into --service, from --source only if given); partition (--source "
                   "cut off from --service).")
@click.option("--service", metavar="NAME", default=None, shell_complete=_services,
              help="With --fault: the service hit [default: the one the fault exercises best].")
@click.option("--source", metavar="NAME", default=None, shell_complete=_services,
              help="With --fault latency/abort/partition: the caller, so the fault is on the edge SOURCE -> SERVICE "
                   "('ingress' is the gateway).")
@MESH_DIR
@click.option("--from", "from_dir", metavar="DIR", type=CheckedPath(file_okay=False, path_type=Path), default=None,
              help="Write a mesh directory from the Kubernetes manifests / Istio YAML in DIR (to -o OUT).")
@click.option("--ingress", metavar="NAME", default=None,
              help="With --from: the service outside traffic enters by [default: guessed; none with a Gateway].")
@click.option("--name", metavar="NAME", default=None, help="With --from: the mesh's name [default: DIR's name].")
@click.option("-o", "--output", type=CheckedPath(path_type=Path), default=None,
              help="With --fault: the experiment file [default: stdout]. With --from: the mesh directory to "
                   "create (absent or empty).")
@click.option("--force", is_flag=True, help="With --fault: replace an existing experiment file.")
def new(fault: str | None, service: str | None, source: str | None, mesh_dir: Path | None, from_dir: Path | None,
        ingress: str | None, name: str | None, output: Path | None, force: bool) -> None:
    """Scaffold an experiment (--fault KIND) or a mesh directory from manifests (--from DIR).

    \b
    An experiment for the mesh, ready to run as is (then edit it as you need):
      chaosmesh-qa new --fault pod-kill -o pod-kill.json
      chaosmesh-qa new --fault latency --service inventory --source catalog --mesh mesh/ -o slow.json
      chaos run pod-kill.json && chaosmesh-qa verdict journal.json
    It has the shipped experiments' controls (sandbox, traffic, safety), their Locust traffic, a heal
    rollback, and a recovery probe whose budget comes from the mesh's retries, timeouts and outlier
    detection; its description says how.  The service (or edge) must exist in the mesh; left out, the
    one the fault exercises best is chosen and named on stderr.

    \b
    A mesh directory from the manifests and Istio YAML a team already has:
      chaosmesh-qa new --from k8s/ -o mesh/
    OUT gets copies of DIR's YAML and a Mesh document listing every service, with `calls` to fill in
    (who calls whom: the manifests cannot say); it is written only if the result loads.
    """
    ctx = click.get_current_context()
    if (fault is None) == (from_dir is None):
        raise click.UsageError("give --fault KIND (an experiment) or --from DIR (a mesh directory)"
                               + (", not both" if fault is not None else ""))
    wrong, mode, other = (MESH_ONLY, "--fault", "--from") if fault is not None else (EXPERIMENT_ONLY, "--from",
                                                                                      "--fault")
    for option in wrong:
        if ctx.get_parameter_source(option) not in (None, click.core.ParameterSource.DEFAULT,
                                                    click.core.ParameterSource.ENVIRONMENT):
            flag = next(p for p in ctx.command.params if p.name == option).opts[-1]
            raise click.BadParameter(f"only with {other}, not with {mode}", param_hint=f"'{flag}'")
    if fault is not None:
        _experiment(fault, service, source, mesh_dir, output, force)
    else:
        assert from_dir is not None
        _mesh(from_dir, output, ingress, name)


def _experiment(fault: str, service: str | None, source: str | None, mesh_dir: Path | None, output: Path | None,
                force: bool) -> None:
    from chaosmesh_qa.mesh import load_mesh
    from chaosmesh_qa.scaffold import new_experiment

    if output is not None:
        if output.exists() and (output.is_dir() or not force):
            raise InvalidArgument(f"-o: {output} exists" + ("" if output.is_dir() else " (--force replaces it)"))
        if not output.parent.is_dir():
            raise InvalidArgument(f"-o: {output.parent}: no such directory")
    try:
        loaded = load_mesh(mesh_dir or default_mesh_dir())
    except InvalidMeshConfig as exc:
        raise InvalidArgument(f"--mesh: {exc}") from None
    made = new_experiment(loaded.model, fault, service, source, "" if mesh_dir is None else str(mesh_dir))
    for note in made.notes:
        click.echo(f"note: {note}", err=True)
    text = json.dumps(made.experiment, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    atomic_write_text(output, text)
    recovery = made.experiment["steady-state-hypothesis"]["probes"][0]["provider"]["arguments"]["budget_s"]
    edge = f"{made.source} -> {made.service}" if made.source else made.service
    click.echo(f"wrote {output}: {made.kind} on {edge} of mesh {loaded.model.name!r}, recovery budget {recovery} s")
    click.echo(f"  run it: chaos run {output} && chaosmesh-qa verdict journal.json")
    if mesh_dir is not None and not mesh_dir.is_absolute():
        click.echo(f"  the experiment names its mesh as {mesh_dir}: run chaos from this directory, or set "
                   f"CHAOSMESH_QA_MESH")


def _mesh(from_dir: Path, output: Path | None, ingress: str | None, name: str | None) -> None:
    from chaosmesh_qa.scaffold import new_mesh_dir

    if output is None:
        raise click.BadParameter("needs -o OUT, the mesh directory to create", param_hint="'--from'")
    made = new_mesh_dir(from_dir, output, ingress, name)
    _warn(made.warnings, made.notes)
    front = f"ingress {made.ingress}" if made.ingress else "ingress driven by a Gateway"
    click.echo(f"wrote mesh directory {made.out_dir}: {len(made.services)} services ({', '.join(made.services)}), "
               f"{front}, {len(made.copied)} file(s) copied")
    click.echo(f"  next: fill in `calls` in {made.mesh_file}, then: chaosmesh-qa validate --mesh {made.out_dir}")
