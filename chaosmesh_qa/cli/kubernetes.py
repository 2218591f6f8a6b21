"""``chaosmesh-qa reap`` and ``chaosmesh-qa plan``: the Kubernetes target's commands.

Registered on the main CLI group by ``chaosmesh_qa.cli``; here, above the activities, because ``plan``
runs the fault actions (``chaosmesh_qa.actions``), which no target may import.  ``reap`` reverts expired
fault leases (once, or ``--watch``); ``plan EXPERIMENT.json`` runs the experiment's fault actions against
the cluster in dry-run mode and prints every object and patch they would apply, touching nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click
import yaml

from chaosmesh_qa.errors import InvalidArgument

FAULT_ACTIONS = ("kill_pods", "fail_pods", "kill_app", "inject_latency", "inject_abort", "partition")
KUBECONFIG = click.option("--kubeconfig", default=None, help="Kubeconfig file [default: KUBECONFIG, ~/.kube/config, "
                          "or the in-cluster service account].")
CONTEXT = click.option("--context", default=None, help="Kubeconfig context [default: the current one].")
NAMESPACE = click.option("--namespace", "-n", "namespaces", multiple=True,
                         help="Namespace to work in (repeatable) [default: the context's].")


@click.command()
@KUBECONFIG
@CONTEXT
@NAMESPACE
@click.option("--watch", is_flag=True, help="Keep reaping every --interval seconds.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds between passes with --watch.")
@click.option("--until", "until_s", type=click.FloatRange(min=0), default=None,
              help="With --watch: stop after this many seconds [default: never].")
@click.option("--keep-history", type=click.FloatRange(min=0), default=24 * 3600.0, show_default=True,
              help="Seconds an ended lease is kept as fault history before reap deletes it.")
@click.option("--owner", default=None, hidden=True, help="Only this run's leases (the local reaper).")
@click.option("--while-pid", type=int, default=None, hidden=True,
              help="With --watch: exit once this process is gone and no lease is active.")
def reap(kubeconfig: str | None, context: str | None, namespaces: tuple[str, ...], watch: bool, interval: float,
         until_s: float | None, keep_history: float, owner: str | None, while_pid: int | None) -> None:
    """Revert every expired fault lease (idempotent; safe to run several at once)."""
    from chaosmesh_qa.targets.kubernetes.cluster import Cluster
    from chaosmesh_qa.targets.kubernetes.reaper import reap_loop
    from chaosmesh_qa.targets.kubernetes.settings import KubeSettings, api_client

    settings = KubeSettings.from_configuration({}, chaosmesh_qa_kubeconfig=kubeconfig,
                                               chaosmesh_qa_kube_context=context,
                                               chaosmesh_qa_namespaces=list(namespaces) or None)
    cluster = Cluster(api_client(settings))

    def report(result: dict[str, Any]) -> None:
        for record in result["expired"]:
            click.echo(f"reverted {record['fault_id']} ({record['kind']}, expired "
                       f"{time.time() - float(record['expires_at']):.1f} s ago)")
        for name in result["forgotten"]:
            click.echo(f"deleted ended lease {name} (history older than {keep_history:g} s)")

    until = time.time() + until_s if until_s is not None else None
    ended = reap_loop(cluster, settings.namespaces, watch, interval, until, owner, while_pid, report, keep_history)
    if not watch:
        click.echo(f"{ended} expired fault(s) reverted in {', '.join(settings.namespaces)}")


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False, path_type=Path))
@KUBECONFIG
@CONTEXT
@NAMESPACE
def plan(experiment: Path, kubeconfig: str | None, context: str | None, namespaces: tuple[str, ...]) -> None:
    """Print the objects and patches each fault action of EXPERIMENT would apply on the cluster; change nothing."""
    from chaoslib.configuration import load_configuration
    from chaoslib.exceptions import ChaosException
    from chaoslib.loader import load_experiment

    from chaosmesh_qa import actions
    from chaosmesh_qa.targets.factory import TARGET_ENV

    try:
        loaded = load_experiment(str(experiment))
        configuration = dict(load_configuration(loaded.get("configuration") or {}))
    except (ChaosException, OSError, ValueError) as exc:
        raise InvalidArgument(f"{experiment}: {' '.join(str(exc).split())}") from None
    configuration.update(chaosmesh_qa_target="kubernetes", chaosmesh_qa_dry_run=True)
    os.environ[TARGET_ENV] = "kubernetes"  # this process only plans for the cluster
    for key, value in (("chaosmesh_qa_kubeconfig", kubeconfig), ("chaosmesh_qa_kube_context", context),
                       ("chaosmesh_qa_namespaces", list(namespaces) or None)):
        if value:
            configuration[key] = value
    activities = [("method", a) for a in loaded.get("method") or []] + \
                 [("rollbacks", a) for a in loaded.get("rollbacks") or []]
    for section, activity in activities:
        provider = activity.get("provider") or {}
        func = provider.get("func")
        title = f"# {section}: {activity.get('name')} ({provider.get('module')}.{func})"
        if provider.get("module") != "chaosmesh_qa.actions" or func not in FAULT_ACTIONS:
            click.echo(f"{title}: changes nothing it would need to plan"
                       + (" (heal reverts this run's faults)" if func == "heal" else ""))
            continue
        record = getattr(actions, func)(**(provider.get("arguments") or {}), configuration=configuration)
        click.echo(f"{title}: {len(record['planned'])} change(s), fault {record['fault_id']}")
        click.echo(yaml.safe_dump_all([_readable(p) for p in record["planned"]], sort_keys=False).rstrip())
        click.echo("---")


def _readable(planned: dict[str, Any]) -> dict[str, Any]:
    """Lease bodies carry JSON strings; show them as data."""
    body = planned.get("body")
    if isinstance(body, dict) and planned["kind"] == "ConfigMap":
        data = {k: json.loads(v) for k, v in (body.get("data") or {}).items()}
        planned = {**planned, "body": {**body, "data": data}}
    return planned
