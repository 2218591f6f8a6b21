"""``chaosmesh-qa env``: the environment that points ``chaos run`` at a running sandbox, as ``export`` lines.

``eval "$(chaosmesh-qa env --state-dir DIR)"`` sets, for a sandbox started with ``up --kube-api``, what a
rehearsal on the Kubernetes API emulation needs (docs/reference/kubernetes-target.md: the target, the kubeconfig, the
ingress service, the Prometheus and ingress URLs, the state directory, and the Zipkin query URL that
tracing probes read); for a plain sandbox, what the local target reads (the target, the state directory and
the sandbox's mesh).  The values are the sandbox's own status (``status --json``), each quoted for the shell
(``shlex.quote``).  No sandbox running (or one not ready): one line on stderr, exit 2.  Registered on the
CLI group in ``chaosmesh_qa.cli`` (``LazyGroup``); ``up --kube-api`` prints the ``eval`` line to run.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from chaosmesh_qa.cli import STATE_DIR
from chaosmesh_qa.errors import TargetUnavailable
from chaosmesh_qa.targets.factory import TARGET_ENV
from chaosmesh_qa.targets.local import sandbox
from chaosmesh_qa.targets.local.state import STATE_DIR_ENV, default_state_dir

KUBECONFIG_ENV = "KUBECONFIG"  # chaostoolkit-kubernetes' convention, read by the Kubernetes target too
MESH_ENV = "CHAOSMESH_QA_MESH"
# variable -> the sandbox status key that holds its value (each described in docs/hooks/reference.py's table)
KUBE_STATUS = (
    ("CHAOSMESH_QA_INGRESS_SERVICE", "ingress_service"),
    ("CHAOSMESH_QA_INGRESS_GATEWAY", "ingress_gateway_workload"),
    ("CHAOSMESH_QA_PROMETHEUS_URL", "prometheus_url"),
    ("CHAOSMESH_QA_INGRESS_URL", "ingress_url"),
)
TRACING_ENV = "CHAOSMESH_QA_TRACING_URL"


def variables(status: dict[str, Any], state_dir: Path) -> list[tuple[str, str]]:
    """(name, value) for each variable, in the order printed; the state directory as given (absolute)."""
    if status.get("kube_api_url"):
        pairs = [(TARGET_ENV, "kubernetes"), (KUBECONFIG_ENV, str(status["kubeconfig"]))]
        pairs += [(name, str(status[key])) for name, key in KUBE_STATUS if status.get(key)]
        pairs.append((STATE_DIR_ENV, str(state_dir)))
        tracing = status.get("tracing") or {}
        if tracing.get("url"):
            pairs.append((TRACING_ENV, str(tracing["url"])))
        return pairs
    pairs = [(TARGET_ENV, "local"), (STATE_DIR_ENV, str(state_dir))]
    if status.get("mesh_dir"):
        pairs.append((MESH_ENV, str(status["mesh_dir"])))
    return pairs


def export_lines(status: dict[str, Any], state_dir: Path) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in variables(status, state_dir)]


@click.command("env")
@STATE_DIR
def env(state_dir: Path | None) -> None:
    """Print `export` lines that point `chaos run` at the running sandbox: eval "$(chaosmesh-qa env)".

    For a sandbox started with `up --kube-api`: the Kubernetes target on the API emulation
    (CHAOSMESH_QA_TARGET=kubernetes, KUBECONFIG, CHAOSMESH_QA_INGRESS_SERVICE, CHAOSMESH_QA_INGRESS_GATEWAY,
    CHAOSMESH_QA_PROMETHEUS_URL,
    CHAOSMESH_QA_INGRESS_URL, CHAOSMESH_QA_STATE_DIR, and CHAOSMESH_QA_TRACING_URL for tracing probes).
    Otherwise the local target (CHAOSMESH_QA_TARGET=local, CHAOSMESH_QA_STATE_DIR, CHAOSMESH_QA_MESH).
    """
    directory = (state_dir or default_state_dir()).absolute()
    try:
        current = sandbox.status(directory)
    except TargetUnavailable as exc:
        raise TargetUnavailable(f"{exc} (start one: chaosmesh-qa up --kube-api --state-dir {directory})") from None
    if current.get("state") != "ready":
        raise TargetUnavailable(f"the sandbox in {directory} is {current.get('state')}, not ready")
    for line in export_lines(current, directory):
        click.echo(line)
