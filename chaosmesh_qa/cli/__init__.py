"""The ``chaosmesh-qa`` command: run and inspect the embedded sandbox.

The CLI layer, the top of the package: every module that uses click is in this package (``make lint``
enforces the layers below it).  Here: ``up`` / ``status`` / ``heal`` / ``down`` / ``validate`` /
``verdict``; in their own modules, imported when used (``LazyGroup``): ``run``, ``gameday``,
``explain``, ``coverage``, ``generate``, ``env`` (the environment that points ``chaos run`` at a running
sandbox), ``new`` (a ready-to-run experiment, or a mesh directory from manifests) and the Kubernetes target's
``reap`` and ``plan``.  Every argument is checked before anything starts (paths the OS can take, finite numbers in
range, well-formed fault ids).  Conventions: ``--version`` (the installed package's version), ``NO_COLOR``
(``cli.terminal``), shell completion from click (``_CHAOSMESH_QA_COMPLETE=bash_source chaosmesh-qa``;
``main`` names the program so the variable is the same under ``python -m chaosmesh_qa``).
Exit codes, for every command:

* 0 — done (``verdict``: the experiment passed);
* 1 — ``verdict``: the experiment did not pass; ``status``: no sandbox running;
* 2 — any error a user can cause: bad usage or option value (click), a ``ChaosMeshQAError`` (bad mesh,
  bad argument, no sandbox to talk to, a fault rejected, ...) or an OS refusal (permission denied):
  one line ``chaosmesh-qa: <reason>`` on stderr, never a traceback;
* 130 — interrupted (Ctrl-C).
"""

from __future__ import annotations

import importlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import click

from chaosmesh_qa import checks
from chaosmesh_qa.cli.terminal import color_allowed
from chaosmesh_qa.emulation.kubeapi import parse_forbid, supervisor_entry
from chaosmesh_qa.errors import ChaosMeshQAError, TargetUnavailable, one_line
from chaosmesh_qa.targets.local import sandbox
from chaosmesh_qa.targets.local.state import STATE_DIR_ENV, default_state_dir
from chaosmesh_qa.targets.local.target import LocalTarget


class CheckedPath(click.Path):
    """A ``click.Path`` the OS can take (``checks.file_path``: no NUL byte, within PATH_MAX / NAME_MAX)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            checks.file_path("path", value)
        except ChaosMeshQAError as exc:
            self.fail(str(exc).removeprefix("path: "), param, ctx)
        return super().convert(value, param, ctx)


class Seconds(click.ParamType):
    """A finite number of seconds in ``[low, high]`` (click's FloatRange lets NaN through)."""

    name = "seconds"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return checks.number("seconds", float(value), self.low, self.high)
        except (TypeError, ValueError, ChaosMeshQAError):
            self.fail(f"expected a number in [{self.low:g}, {self.high:g}], got {checks.show(value)}", param, ctx)


PROG = "chaosmesh-qa"  # the program's name in usage lines and shell completion (_CHAOSMESH_QA_COMPLETE)
STATE_DIR = click.option("--state-dir", type=CheckedPath(file_okay=False, path_type=Path), default=None,
                         envvar=STATE_DIR_ENV, help="Sandbox state directory [default: ./.chaosmesh-qa].")
MESH_DIR = click.option("--mesh", "mesh_dir", type=CheckedPath(path_type=Path), default=None,
                        envvar="CHAOSMESH_QA_MESH", help="Mesh definition directory [default: built-in demo mesh].")


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo("chaosmesh-qa: " + one_line(message), err=True)
    sys.exit(code)


def _warn(warnings: list[str], notes: list[str] | None = None) -> None:
    for note in notes or []:
        click.echo(f"note: {note}", err=True)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


class LazyGroup(click.Group):
    """Commands kept in their own modules are imported when used: `up` need not load the report
    stack (numpy, Jinja2) or the Kubernetes client, and every sandbox start begins with this CLI."""

    LAZY: ClassVar[dict[str, str]] = {
        "run": "chaosmesh_qa.cli.run:run",  # chaosmesh-qa run: chaosmesh_qa/cli/run.py
        "gameday": "chaosmesh_qa.cli.gameday:gameday",  # chaosmesh_qa/cli/gameday.py
        "explain": "chaosmesh_qa.cli.explain:explain_command",  # chaosmesh_qa/cli/explain.py
        "coverage": "chaosmesh_qa.cli.coverage:coverage_command",  # chaosmesh_qa/cli/coverage.py
        "generate": "chaosmesh_qa.cli.generate:generate",  # chaosmesh_qa/cli/generate.py; the suite: scaffold/suite.py
        "reap": "chaosmesh_qa.cli.kubernetes:reap",  # the Kubernetes target's commands: cli/kubernetes.py
        "plan": "chaosmesh_qa.cli.kubernetes:plan",
        "env": "chaosmesh_qa.cli.env:env",  # chaosmesh_qa/cli/env.py
        "new": "chaosmesh_qa.cli.new:new",  # chaosmesh_qa/cli/new.py; the scaffolding: chaosmesh_qa/scaffold/
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            module, attribute = self.LAZY[name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chaosmesh-qa", prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """Chaos engineering for service meshes: an embedded Envoy mesh, faults and verdicts."""


def _forbid_rules(ctx: click.Context, param: click.Parameter, rules: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(parse_forbid(rule) for rule in rules)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@MESH_DIR
@STATE_DIR
@click.option("--timeout", type=Seconds(1, 3600), default=sandbox.START_TIMEOUT_S, show_default=True,
              help="Seconds to wait for the whole mesh to be ready.")
@click.option("--max-fault-ttl", type=Seconds(1, checks.MAX_SECONDS), default=3600.0, show_default=True,
              help="Longest lease (seconds) any fault may have in this sandbox (at most a week).")
@click.option("--endpoint-delay", type=Seconds(0, 600), default=1.0, show_default=True,
              help="Seconds before callers stop routing to a dead pod (Kubernetes endpoint propagation).")
@click.option("--wait-metrics", is_flag=True,
              help="Also wait until Prometheus has scraped every Envoy (about 5 s after it starts).")
@click.option("--scrape-interval", type=click.IntRange(1, 120), default=1, show_default=True,
              help="Seconds between Prometheus scrapes; 15 (or 30, 60) rehearses a cluster's Prometheus.")
@click.option("--kube-api", is_flag=True,
              help="Also serve a Kubernetes API emulation (HTTPS on 127.0.0.1) and write <state-dir>/kubeconfig.")
@click.option("--kube-api-forbid", multiple=True, metavar="VERB:RESOURCE", callback=_forbid_rules,
              help="Test hook: the emulation answers 403 to this verb on this resource (repeatable).")
def up(mesh_dir: Path | None, state_dir: Path | None, timeout: float, max_fault_ttl: float,
       endpoint_delay: float, wait_metrics: bool, scrape_interval: int, kube_api: bool,
       kube_api_forbid: tuple[str, ...]) -> None:
    """Start the sandbox in the background; return when every pod and the ingress serve and Prometheus is up."""
    if kube_api_forbid and not kube_api:
        raise click.BadParameter("needs --kube-api", param_hint="'--kube-api-forbid'")
    entry = supervisor_entry(kube_api_forbid) if kube_api else sandbox.SUPERVISOR_ENTRY  # the emulation: wired here
    status, loaded = sandbox.up(mesh_dir or sandbox.default_mesh_dir(), state_dir or default_state_dir(), timeout,
                                max_fault_ttl, endpoint_delay, wait_metrics, entry, scrape_interval)
    _warn(loaded.warnings, loaded.notes)
    click.echo(f"sandbox {status['mesh']!r} ready in {status['startup_s']:.2f} s: "
               f"{len(status['pods'])} pods")
    click.echo(f"  ingress:    {status['ingress_url']}")
    click.echo(f"  prometheus: {status['prometheus_url']}"
               + ("" if status["metrics_ready"] else " (first scrape of every Envoy within ~5 s)"))
    if status.get("kube_api_url"):
        click.echo(f"  kube API:   {status['kube_api_url']} (emulation; kubeconfig {status['kubeconfig']})")
        where = shlex.quote(str((state_dir or default_state_dir()).absolute()))
        click.echo(f"  rehearse:   eval \"$({PROG} env --state-dir {where})\"  (the Kubernetes target on it)")


@cli.command()
@STATE_DIR
@click.option("--json", "as_json", is_flag=True, help="Print the full status as JSON.")
def status(state_dir: Path | None, as_json: bool) -> None:
    """Show the pods, the ingress URL and the Prometheus URL."""
    try:
        current = sandbox.status(state_dir or default_state_dir())
    except TargetUnavailable as exc:
        _fail(str(exc), code=1)
    if as_json:
        click.echo(json.dumps(current, indent=2))
        return
    click.echo(f"sandbox {current['mesh']!r}: {current['state']}")
    click.echo(f"  ingress:    {current['ingress_url']}")
    click.echo(f"  prometheus: {current['prometheus_url']}")
    rows: list[tuple[str, ...]] = [("SERVICE", "VERSION", "POD", "STATE", "RESTARTS", "PIDS (app/sidecar)", "PORTS")]
    rows += [_pod_row(p) for p in current["pods"]]
    _table(rows)
    faults = current.get("faults", [])
    click.echo(f"  active faults: {len(faults)}")
    if faults:
        _table([("FAULT", "KIND", "TARGET", "OWNER", "REMAINING"),
                *((f["fault_id"], f["kind"], _target_text(f["target"]), f["owner"], f"{f['remaining_s']:.1f} s")
                  for f in faults)])


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _target_text(target: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in target.items() if v is not None)


def _pod_row(pod: dict[str, Any]) -> tuple[str, ...]:
    pids = f"{pod['pids']['app'] or '-'}/{pod['pids']['sidecar'] or '-'}"
    ports = " ".join(f"{k}={v}" for k, v in pod["ports"].items())
    return (pod["service"], pod["version"], pod["name"], pod["state"], str(pod["restarts"]), pids, ports)


@cli.command()
@STATE_DIR
def down(state_dir: Path | None) -> None:
    """Stop every process of the sandbox and remove its runtime files (idempotent)."""
    directory = state_dir or default_state_dir()
    stopped = sandbox.down(directory)
    click.echo("sandbox stopped" if stopped else f"no sandbox running in {directory}")


@cli.command()
@STATE_DIR
@click.argument("fault_id", required=False)
@click.option("--all", "heal_all", is_flag=True, help="Heal every active fault, whoever injected it.")
def heal(state_dir: Path | None, fault_id: str | None, heal_all: bool) -> None:
    """Remove one fault (FAULT_ID) or every fault (--all) from the sandbox; idempotent."""
    if (fault_id is not None) == heal_all:
        raise click.UsageError("give a FAULT_ID or --all")
    if fault_id is not None:
        checks.identifier("FAULT_ID", fault_id, "a fault id")
    target = LocalTarget(state_dir or default_state_dir())
    healed = target.heal(fault_id, None)
    for record in healed:
        click.echo(f"healed {record['fault_id']} ({record['kind']} on {_target_text(record['target'])})")
    if not healed:
        click.echo("no matching active fault")


@cli.command()
@click.argument("journal", type=CheckedPath(path_type=Path), default=Path("journal.json"))
def verdict(journal: Path) -> None:
    """Judge a `chaos run` journal: print a summary, exit 0 only when the experiment passed."""
    from chaosmesh_qa.report.verdict import load_journal, summary  # here: pydantic only for this command
    from chaosmesh_qa.report.verdict import verdict as verdict_of

    result = verdict_of(load_journal(journal), journal)
    for line in summary(result):
        click.echo(line)
    sys.exit(0 if result.passed else 1)


@cli.command()
@MESH_DIR
def validate(mesh_dir: Path | None) -> None:
    """Check a mesh definition without starting anything."""
    from chaosmesh_qa.mesh import load_mesh  # here: every other command starts without the mesh schema

    loaded = load_mesh(mesh_dir or sandbox.default_mesh_dir())
    _warn(loaded.warnings, loaded.notes)
    model = loaded.model
    click.echo(f"mesh {model.name!r} is valid: {len(model.services)} services, "
               f"{sum(v.replicas for s in model.services.values() for v in s.versions)} pods")


def main() -> None:
    """The console script: exit codes as the module docstring says, one line on stderr for every error."""
    try:
        cli.main(prog_name=PROG, standalone_mode=False, color=None if color_allowed() else False)
    except click.exceptions.Abort:
        _fail("aborted", code=130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.ClickException as exc:  # usage errors and bad option values
        _fail(exc.format_message())
    except ChaosMeshQAError as exc:
        _fail(str(exc))
    except OSError as exc:  # the OS refused (permission denied, read-only file system, ...)
        where = f"{checks.show(str(exc.filename))}: " if exc.filename is not None else ""
        _fail(f"{where}{exc.strerror or type(exc).__name__}")
