"""The Kubernetes API emulation as the tests reach it: ``KubeSandbox`` and managed Istio / NetworkPolicy objects.

``KubeSandbox`` is a sandbox started with ``up --kube-api``: its kubeconfig, ``kubectl`` on it, the emulation's
call log, and the configuration / environment that point a kubernetes target (or an unchanged experiment)
at it.  ``start`` brings one up with ``--wait-metrics``.  ``envoy_filter``, ``deny_policy`` and ``drop_policy``
build the objects a kubernetes target writes for a fault.
Used by tests/targets/kubernetes (its conftest's ``kube``) and tests/emulation/kubeapi (``kube_sandbox``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chaosmesh_qa.targets.kubernetes.cluster import Cluster
from chaosmesh_qa.targets.kubernetes.dataplane import ListenerWatch
from chaosmesh_qa.targets.kubernetes.objects import MANAGED_SELECTOR
from chaosmesh_qa.targets.kubernetes.reaper import stop_local_reapers
from chaosmesh_qa.targets.kubernetes.settings import KubeSettings, api_client
from tests.support.cli import run_cli
from tests.support.sandbox import Sandbox

MANAGED_LABELS = {"app.kubernetes.io/managed-by": "chaosmesh-qa"}
SA = "cluster.local/ns/default/sa/{}"


class KubeSandbox(Sandbox):
    """A sandbox with the Kubernetes API emulation, and the configuration of a kubernetes target on it."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.kubeconfig = state_dir / "kubeconfig"  # written by `up --kube-api` (``status()["kubeconfig"]``)
        self.call_file = state_dir / "kube-api-calls.jsonl"

    def configuration(self, **extra: Any) -> dict[str, Any]:
        status = self.status()
        return {"chaosmesh_qa_target": "kubernetes", "chaosmesh_qa_kubeconfig": str(self.kubeconfig),
                "chaosmesh_qa_prometheus_url": status["prometheus_url"], "chaosmesh_qa_ingress_url":
                status["ingress_url"], "chaosmesh_qa_ingress_service": "frontend",
                "chaosmesh_qa_ingress_gateway": status["ingress_gateway_workload"], **extra}

    def env(self) -> dict[str, str]:
        """The environment that switches an unchanged experiment file to this emulated cluster: what a cluster
        user sets too (kubeconfig, Prometheus, ingress, and the Zipkin query API that tracing probes read,
        here the sandbox's own receiver)."""
        config = self.configuration()
        return {**os.environ, "CHAOSMESH_QA_TARGET": "kubernetes", "KUBECONFIG": str(self.kubeconfig),
                "CHAOSMESH_QA_PROMETHEUS_URL": config["chaosmesh_qa_prometheus_url"],
                "CHAOSMESH_QA_INGRESS_URL": config["chaosmesh_qa_ingress_url"],
                "CHAOSMESH_QA_INGRESS_SERVICE": "frontend",
                "CHAOSMESH_QA_INGRESS_GATEWAY": config["chaosmesh_qa_ingress_gateway"],
                "CHAOSMESH_QA_TRACING_URL": str(self.status()["tracing"]["url"])}

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS`` on this cluster; with ``check``, a non-zero exit fails the test with its stderr."""
        result = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert not check or result.returncode == 0, result.stderr
        return result

    def managed_envoy_filters(self) -> list[dict[str, Any]]:
        """The EnvoyFilters chaosmesh-qa manages in every namespace, as ``kubectl get -o json`` lists them."""
        listed = self.kubectl("get", "envoyfilters", "-A", "-l", MANAGED_SELECTOR, "-o", "json").stdout
        return list(json.loads(listed)["items"])

    def call_log(self, since: int = 0) -> list[dict[str, Any]]:
        """The calls the emulation logged, from the ``since``-th on (none before the first call)."""
        lines = self.call_file.read_text().splitlines() if self.call_file.exists() else []
        return [json.loads(line) for line in lines[since:] if line.strip()]


@contextlib.contextmanager
def running(state_dir: Path, *extra: str) -> Iterator[KubeSandbox]:
    """``start``, then, whatever the body did, the local reapers it started and the sandbox stopped."""
    box = start(state_dir, *extra)
    try:
        yield box
    finally:
        stop_local_reapers()
        box.down()


def start(state_dir: Path, *extra: str) -> KubeSandbox:
    """A sandbox up with the emulation and its metrics ready (``up --kube-api --wait-metrics``)."""
    box = KubeSandbox(state_dir)
    result = run_cli("up", "--kube-api", "--wait-metrics", "--state-dir", str(state_dir), *extra)
    assert result.returncode == 0, result.stderr
    return box


def managed_meta(name: str, ttl_s: float = 60) -> dict[str, Any]:
    """Metadata of an object as chaosmesh-qa manages it: its labels, fault id and expiry."""
    return {"name": name, "labels": {**MANAGED_LABELS, "chaosmesh-qa.io/fault-id": name},
            "annotations": {"chaosmesh-qa.io/expires-at": f"{time.time() + ttl_s:.3f}"}}


def envoy_filter(name: str, callee: str, fault: dict[str, Any], caller_sa: str | None = None,
                 ttl_s: float = 60) -> dict[str, Any]:
    typed = {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault", **fault}
    if caller_sa:
        typed["headers"] = [{"name": "x-forwarded-client-cert",
                             "string_match": {"contains": f"URI=spiffe://{SA.format(caller_sa)}"}}]
    return {"apiVersion": "networking.istio.io/v1", "kind": "EnvoyFilter", "metadata": managed_meta(name, ttl_s),
            "spec": {"workloadSelector": {"labels": {"app": callee}}, "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
                    "name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"}}}}},
                "patch": {"operation": "INSERT_BEFORE",
                          "value": {"name": "envoy.filters.http.fault", "typed_config": typed}}}]}}


def deny_policy(name: str, caller_sa: str, callee: str) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": managed_meta(name),
            "spec": {"action": "DENY", "selector": {"matchLabels": {"app": callee}},
                     "rules": [{"from": [{"source": {"principals": [SA.format(caller_sa)]}}]}]}}


def drop_policy(name: str, caller: str, callee: str) -> dict[str, Any]:
    not_caller = {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": [caller]}]}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": managed_meta(name),
            "spec": {"podSelector": {"matchLabels": {"app": callee}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": not_caller},
                                           {"namespaceSelector": {}, "podSelector": not_caller}]}]}}


def listener_watch(box: KubeSandbox, service: str) -> ListenerWatch:
    """The listener counters of ``service``'s serving pods now (``targets.kubernetes.dataplane.ListenerWatch``)."""
    cluster = Cluster(api_client(KubeSettings.from_configuration(box.configuration())))
    pods = [p["name"] for p in box.status()["pods"] if p["service"] == service and p["state"] == "ready"]
    return ListenerWatch(cluster, "default", pods)


def until_sidecars_settle(watch: ListenerWatch, timeout_s: float = 10.0) -> None:
    """Wait until an EnvoyFilter change reached every pod ``watch`` (taken before the change) follows: their
    listeners changed, and what the change replaced has drained, so no pooled connection still runs the old
    filters (the sandbox's sidecars drain immediately, for 2 s)."""
    confirmed, why = watch.changed(timeout_s)
    assert confirmed, why
    assert watch.drained(timeout_s), f"the sidecars of {watch.pods} still drain {timeout_s} s later"
