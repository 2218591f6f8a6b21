"""A SIGKILLed `chaos run` on the kubernetes target leaves nothing behind longer than TTL + the reaper's interval.

Slow suite: 20 repetitions of the real `chaos` CLI injecting an edge abort (EnvoyFilter), a partition
reject (AuthorizationPolicy) and a one-pod partition drop (NetworkPolicy + a pod label patch) through the
emulated API, killed with SIGKILL (its whole process group) while every fault is live.  The run's detached
reaper must revert every object and every patched pod label by the latest expiry + ``LOCAL_INTERVAL_S``
(plus the API round trips), mark each lease expired, and then exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.targets import get_target
from chaosmesh_qa.targets.kubernetes.reaper import LOCAL_INTERVAL_S
from tests.support.cli import CHAOS
from tests.support.kube import KubeSandbox

pytestmark = [pytest.mark.processes, pytest.mark.slow]
REPETITIONS = int(os.environ.get("CHAOSMESH_QA_SIGKILL_REPETITIONS", "20"))
TTL_S = 4.0
SLACK_S = 2.0  # API round trips of the reaper's pass (list, revert, end the lease)
MANAGED = "app.kubernetes.io/managed-by=chaosmesh-qa"


def _experiment(ttl_s: float) -> dict[str, Any]:
    def action(name: str, func: str, **arguments: Any) -> dict[str, Any]:
        return {"type": "action", "name": name, "provider": {"type": "python", "module": "chaosmesh_qa.actions",
                                                             "func": func, "arguments": arguments}}

    return {
        "version": "1.0.0", "title": "SIGKILLed mid-fault", "description": "killed while three faults are live",
        "configuration": {"chaosmesh_qa_target": "kubernetes"},
        "method": [
            action("abort", "inject_abort", service="reviews", http_status=503, percent=50, source="frontend",
                   duration_s=ttl_s),
            action("reject", "partition", a="catalog", b="inventory", duration_s=ttl_s, direction="to",
                   mode="reject"),
            {**action("drop", "partition", a="frontend", b="reviews", duration_s=ttl_s, direction="to",
                      mode="drop", count=1), "pauses": {"after": 120}},
        ],
    }


def _leftovers(kube: KubeSandbox) -> list[str]:
    objects = kube.kubectl("get", "envoyfilters,authorizationpolicies,networkpolicies", "-l", MANAGED, "-o", "name")
    pods = kube.kubectl("get", "pods", "-o", "json")
    assert objects.returncode == 0 and pods.returncode == 0, objects.stderr + pods.stderr
    marked = [f"pod/{p['metadata']['name']} label {k}" for p in json.loads(pods.stdout)["items"]
              for k in (p["metadata"].get("labels") or {}) if k.startswith("chaosmesh-qa.io/")]
    return objects.stdout.split() + marked


def _reapers_of(owner: str) -> list[str]:
    ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in ps.splitlines() if " reap " in line and owner in line]


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_a_sigkilled_chaos_run_is_reverted_within_ttl_plus_the_reaper_interval(
        kube: KubeSandbox, tmp_path: Path, repetition: int) -> None:
    owner = f"sigkill-chaos-run:{os.getpid()}:{repetition}"
    experiment = tmp_path / "experiment.json"
    experiment.write_text(json.dumps(_experiment(TTL_S)))
    target = get_target(kube.configuration())
    run = subprocess.Popen([CHAOS, "--no-version-check", "--log-file", str(tmp_path / "chaos.log"), "run",
                            str(experiment)], env={**kube.env(), "CHAOSMESH_QA_OWNER": owner},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        live: list[dict[str, Any]] = []
        while len(live) < 3:  # readiness: all three leases are open and their changes applied
            assert run.poll() is None, (tmp_path / "chaos.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the run did not inject its three faults"
            live = [f for f in target.fault_history(owner) if "lease" in f and "ended" not in f]
            time.sleep(0.1)
        assert _leftovers(kube), "the faults are visible through the API"
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # chaos and its process group; the reaper runs in its own session
        run.wait(10)
    deadline = max(f["expires_at"] for f in live) + LOCAL_INTERVAL_S + SLACK_S
    while _leftovers(kube) and time.time() < deadline:
        time.sleep(0.2)
    reverted_at = time.time()
    assert _leftovers(kube) == [], f"left {reverted_at - deadline + LOCAL_INTERVAL_S + SLACK_S:.1f} s after expiry"
    history = target.fault_history(owner)
    assert sorted(f["ended"] for f in history) == ["expired"] * 3
    late = {f["fault_id"]: round(f["ended_at"] - f["expires_at"], 2) for f in history}
    assert all(f["ended_at"] <= deadline for f in history), f"leases ended s after expiry: {late}"
    stop = time.monotonic() + 3 * LOCAL_INTERVAL_S
    while _reapers_of(owner) and time.monotonic() < stop:
        time.sleep(0.2)
    assert not _reapers_of(owner), "the reaper exits once its run is gone and nothing is left to reap"
