"""Bad input on the Kubernetes target: one line each, and nothing changed on the cluster."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa import actions
from chaosmesh_qa.errors import ChaosMeshQAError, FaultRejected, InvalidArgument
from chaosmesh_qa.targets import get_target
from chaosmesh_qa.targets.kubernetes.reaper import stop_local_reapers
from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.cli import run_cli
from tests.support.kube import KubeSandbox, start

pytestmark = pytest.mark.processes

WRITES = {"create", "update", "patch", "delete", "deletecollection"}


@pytest.fixture(scope="module")
def forbidden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    """A second emulation whose API answers 403 to creating EnvoyFilters and to deleting NetworkPolicies (as a
    too-narrow Role would)."""
    box = start(tmp_path_factory.mktemp("forbidden") / "state", "--kube-api-forbid", "create:envoyfilters",
                "--kube-api-forbid", "delete:networkpolicies")
    try:
        yield box
    finally:
        stop_local_reapers()
        box.down()


def _one_line(error: ChaosMeshQAError) -> str:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def _nothing_changed(kube: KubeSandbox, since: int) -> None:
    calls = kube.call_log(since)
    writes = [c for c in calls if c["verb"] in WRITES and c.get("code", 200) < 300]
    created = Counter(c["resource"] for c in writes if c["verb"] == "create")  # the log names no created object
    deleted = Counter(c["resource"] for c in writes if c["verb"] == "delete")
    assert created <= deleted, f"everything created was rolled back: {writes}"
    assert all(c["verb"] in ("create", "delete") for c in writes), writes
    assert get_target(kube.configuration()).active_faults() == []


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda cfg: actions.inject_latency("nope", 100, 10, configuration=cfg), FaultRejected,
     "service: no Service 'nope' in namespace(s) default"),
    (lambda cfg: actions.partition("frontend", "nope", 10, configuration=cfg), FaultRejected,
     "b: no Service 'nope' in namespace(s) default"),
    (lambda cfg: actions.kill_pods("catalog", version="v9", configuration=cfg), FaultRejected,
     "service: 'catalog' version 'v9' has no running pod in namespace 'default'"),
    (lambda cfg: actions.inject_abort("reviews", 503, 10, 5, configuration={**cfg, "chaosmesh_qa_namespace": "gone"}),
     InvalidArgument, "configuration.chaosmesh_qa_namespace: namespace 'gone' does not exist"),
    (lambda cfg: actions.inject_abort("reviews", 503, 10, 5, configuration={**cfg, "chaosmesh_qa_kube_context": "x"}),
     InvalidArgument, "configuration.chaosmesh_qa_kube_context: no context 'x' in"),
    (lambda cfg: actions.fail_pods("catalog", 5, configuration=cfg), FaultRejected,
     "fail_pods: not available on the kubernetes target"),
    (lambda cfg: actions.kill_app("catalog", configuration=cfg), FaultRejected,
     "kill_app: not available on the kubernetes target"),
], ids=["unknown-service", "unknown-b", "no-running-pod-of-version", "missing-namespace",
        "unknown-context", "fail-pods", "kill-app"])
def test_bad_input_is_one_line_and_changes_nothing(kube: KubeSandbox, call: Any, error: type, message: str) -> None:
    since = len(kube.call_log())
    with pytest.raises(error) as raised:
        call(kube.configuration())
    assert _one_line(raised.value).startswith(message), raised.value
    _nothing_changed(kube, since)


def test_a_service_with_no_running_pod_is_refused(kube: KubeSandbox) -> None:
    local = LocalTarget(kube.state_dir)  # the sandbox's own fault: every inventory pod down, not replaced
    failed = local.fail_pods("inventory", 30, None, 100.0, None, "test:no-running-pods")
    try:
        since = len(kube.call_log())
        with pytest.raises(FaultRejected) as raised:
            actions.kill_pods("inventory", configuration=kube.configuration())
        assert _one_line(raised.value) == "service: 'inventory' has no running pod in namespace 'default'"
        _nothing_changed(kube, since)
    finally:
        local.heal(failed["fault_id"], None)


def test_a_403_part_way_rolls_back_the_lease(forbidden: KubeSandbox) -> None:
    since = len(forbidden.call_log())
    with pytest.raises(FaultRejected) as raised:
        actions.inject_abort("reviews", 503, 30, 10, configuration=forbidden.configuration())
    assert _one_line(raised.value).startswith("kubernetes: forbidden to create envoyfilters in namespace "
                                              "'default' (403)")
    calls = [(c["verb"], c.get("resource")) for c in forbidden.call_log(since)]
    assert ("create", "configmaps") in calls and ("delete", "configmaps") in calls, "the lease came and went"
    _nothing_changed(forbidden, since)


def test_point4_a_lease_the_reaper_cannot_revert_does_not_stop_it_and_fails_the_command(
        forbidden: KubeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18 point 4: one lease whose revert is forbidden (403) leaves the other expired leases reverted, and
    `reap` (once, and `--watch` as the CronJob runs it) exits non-zero naming it, so the CronJob shows it."""
    monkeypatch.setenv("CHAOSMESH_QA_LOCAL_REAPER", "0")  # the reaper under test is the command below
    stop_local_reapers()  # earlier tests' reapers reap this process's owner too: they would race the command
    cfg = forbidden.configuration()
    stuck = actions.partition("frontend", "catalog", 1.0, direction="to", mode="drop", configuration=cfg)
    fine = actions.kill_pods("catalog", count=1, restart_after_s=1.0, configuration=cfg)  # nothing to revert
    time.sleep(max(0.0, stuck["expires_at"] - time.time()) + 0.5)  # both leases have expired (TTL 1 s)
    once = run_cli("reap", "--kubeconfig", str(forbidden.kubeconfig))
    assert once.returncode == 2 and once.stderr.count("\n") == 1, once.stderr
    assert f"chaosmesh-qa-lease-{stuck['fault_id']}" in once.stderr and "(403)" in once.stderr, once.stderr
    assert "1 lease(s) reverted" in once.stderr, once.stderr
    watch = run_cli("reap", "--kubeconfig", str(forbidden.kubeconfig), "--watch", "--interval", "0.5", "--until", "1")
    assert watch.returncode == 2 and stuck["fault_id"] in watch.stderr, watch.stderr
    history = {f["fault_id"]: f for f in get_target(cfg).fault_history(None)}
    assert history[fine["fault_id"]]["ended"] == "expired", "the revertable lease was reverted"
    assert "ended" not in history[stuck["fault_id"]], "the stuck lease stays active, for the next pass to retry"


def test_unreachable_cluster_and_bad_cli_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("reap", "--kubeconfig", str(tmp_path / "missing"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "no kubeconfig file at" in result.stderr
    result = run_cli("plan", str(tmp_path / "missing.json"), "--kubeconfig", str(tmp_path / "missing"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
