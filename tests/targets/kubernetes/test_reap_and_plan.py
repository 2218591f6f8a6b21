"""Leases outlive the runner (a SIGKILLed run's own reaper, concurrent `reap`), and dry runs change nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaosmesh_qa import actions
from chaosmesh_qa.targets import get_target
from chaosmesh_qa.targets.kubernetes.objects import ENVOYFILTER
from chaosmesh_qa.targets.kubernetes.reaper import LOCAL_INTERVAL_S
from tests.support.cli import CLI
from tests.support.kube import KubeSandbox

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
INJECT = """
import json, sys, time
from chaosmesh_qa.targets import get_target
target = get_target(json.loads(sys.argv[1]))
record = target.inject_abort("reviews", 503, 50, None, float(sys.argv[2]), sys.argv[3])
print(record["fault_id"], flush=True)
if sys.argv[4] == "wait":
    time.sleep(600)
"""


def _inject(kube: KubeSandbox, ttl_s: float, owner: str, wait: bool, **env: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", INJECT, json.dumps(kube.configuration()), str(ttl_s), owner,
                                "wait" if wait else "exit"], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, **env}, start_new_session=True, stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    fault_id = process.stdout.readline().strip()
    assert fault_id.startswith("abort-"), fault_id
    return process, fault_id


def _filter_gone(kube: KubeSandbox, fault_id: str) -> bool:
    return get_target(kube.configuration()).cluster.get(ENVOYFILTER, "default", f"chaosmesh-qa-{fault_id}") is None


def _reapers_of(owner: str) -> list[str]:
    ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in ps.splitlines() if " reap " in line and owner in line]


@pytest.mark.parametrize("repetition", range(1))
def test_a_sigkilled_run_leaves_nothing_behind_longer_than_ttl_plus_interval(kube: KubeSandbox,
                                                                             repetition: int) -> None:
    owner = f"sigkill-test:{os.getpid()}:{repetition}"
    process, fault_id = _inject(kube, 3.0, owner, wait=True)
    try:
        (record,) = get_target(kube.configuration()).fault_history(owner)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the run and its process group; its reaper has its own session
        process.wait(10)
    deadline = record["expires_at"] + LOCAL_INTERVAL_S + 2.0  # TTL + interval, plus the API round trips
    while not _filter_gone(kube, fault_id) and time.time() < deadline:
        time.sleep(0.2)
    assert _filter_gone(kube, fault_id), "the detached reaper reverted the fault"
    history = get_target(kube.configuration()).fault_history(owner)
    assert [(f["fault_id"], f["ended"]) for f in history] == [(fault_id, "expired")]
    assert history[0]["ended_at"] <= deadline
    stop = time.monotonic() + 3 * LOCAL_INTERVAL_S
    while _reapers_of(owner) and time.monotonic() < stop:
        time.sleep(0.2)
    assert not _reapers_of(owner), "the reaper exits once its run is gone and nothing is left to reap"


TWO_LEASES = """
import json, sys, time
from chaosmesh_qa.targets import get_target
target = get_target(json.loads(sys.argv[1]))
target.inject_abort("reviews", 503, 50, None, 2.5, sys.argv[2])  # expiries 0.8 s apart: off a 2 s grid
target.inject_latency("inventory", 100, 50, None, 3.3, sys.argv[2])
print("injected", flush=True)
time.sleep(600)
"""


def test_the_runs_reaper_ends_each_lease_at_its_expiry_not_on_its_interval(kube: KubeSandbox) -> None:
    """An experiment's outage must last what it declares: the run's reaper wakes when the next lease expires.
    Polling every LOCAL_INTERVAL_S made a 4 s zone outage last up to 6 s on a cluster, past the 5 s ejection
    the zone-failover experiment relies on.  Bound: the interval's quarter; what is left after the wake-up is
    one pass of a few API calls against the local emulation (tens of ms)."""
    owner = f"on-expiry:{os.getpid()}"
    process = subprocess.Popen([sys.executable, "-c", TWO_LEASES, json.dumps(kube.configuration()), owner],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               stdin=subprocess.DEVNULL)
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().strip() == "injected", process.stderr.read()
        target = get_target(kube.configuration())
        deadline = time.monotonic() + 3.3 + 2 * LOCAL_INTERVAL_S
        while time.monotonic() < deadline and not all("ended_at" in f for f in target.fault_history(owner)):
            time.sleep(0.2)
        history = target.fault_history(owner)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    lateness = [round(f["ended_at"] - f["expires_at"], 3) for f in history if "ended_at" in f]
    assert len(lateness) == 2 and all(f["ended"] == "expired" for f in history), history
    assert all(0 <= late < LOCAL_INTERVAL_S / 4 for late in lateness), lateness


def test_two_reapers_at_once_revert_an_expired_fault_exactly_once(kube: KubeSandbox) -> None:
    owner = f"no-reaper:{os.getpid()}"
    process, fault_id = _inject(kube, 0.5, owner, wait=False, CHAOSMESH_QA_LOCAL_REAPER="0")
    process.wait(30)
    time.sleep(0.6)  # let the lease expire: nothing else reaps it
    assert not _filter_gone(kube, fault_id), "without a reaper the fault stays past its TTL"
    reap = [*CLI, "reap", "--kubeconfig", str(kube.kubeconfig)]
    reapers = [subprocess.Popen(reap, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL) for _ in range(2)]
    outputs = [r.communicate(timeout=60) for r in reapers]
    assert [r.returncode for r in reapers] == [0, 0], outputs
    assert sum(out.count(f"reverted {fault_id}") for out, _ in outputs) == 1, outputs
    assert _filter_gone(kube, fault_id)
    (ended,) = get_target(kube.configuration()).fault_history(owner)
    assert ended["ended"] == "expired"
    again = subprocess.run([*reap, "--keep-history", "0"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and f"deleted ended lease chaosmesh-qa-lease-{fault_id}" in again.stdout
    assert get_target(kube.configuration()).fault_history(owner) == []


SKEWED = """
import json, sys, time
real = time.time
time.time = lambda: real() + float(sys.argv[3])  # this runner's clock is off by argv[3] seconds
from chaosmesh_qa.targets import get_target
target = get_target(json.loads(sys.argv[1]))
record = target.inject_abort("reviews", 503, 50, None, float(sys.argv[2]), "skewed-runner")
print(json.dumps(record), flush=True)
"""


@pytest.mark.parametrize("skew_s", [-300.0, 300.0])
def test_point5_expiry_is_the_api_servers_clock_not_the_runners(kube: KubeSandbox, skew_s: float) -> None:
    """Issue 18 point 5: a runner whose clock is five minutes off writes the lease in the API server's time
    (measured from its Date header), so a reaper with a right clock ends it at its TTL, not five minutes early
    (the fault would be cut short) or late (it would outlive its lease)."""
    ttl_s = 5.0
    injected = subprocess.run([sys.executable, "-c", SKEWED, json.dumps(kube.configuration()), str(ttl_s),
                               str(skew_s)], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              env={**os.environ, "CHAOSMESH_QA_LOCAL_REAPER": "0"})
    assert injected.returncode == 0, injected.stderr
    record = json.loads(injected.stdout)
    # the Date header has one-second resolution: the recorded expiry is the server's now + TTL within 1.5 s
    assert abs(record["expires_at"] - (time.time() + ttl_s)) < 1.5 + ttl_s, record
    reap = [*CLI, "reap", "--kubeconfig", str(kube.kubeconfig), "--owner", "skewed-runner"]
    early = subprocess.run(reap, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert early.returncode == 0, early.stderr
    if time.time() < record["expires_at"]:  # the pass surely ran before the expiry (a 300 s skew would not)
        assert record["fault_id"] not in early.stdout, "not reverted before its TTL"
        assert not _filter_gone(kube, record["fault_id"])
    time.sleep(max(0.0, record["expires_at"] - time.time()) + 0.2)
    due = subprocess.run(reap, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert due.returncode == 0 and f"reverted {record['fault_id']}" in due.stdout, due.stdout + due.stderr
    assert _filter_gone(kube, record["fault_id"])


def test_plan_prints_the_objects_and_changes_nothing(kube: KubeSandbox) -> None:
    since = len(kube.call_log())
    result = subprocess.run([*CLI, "plan", str(ROOT / "experiments" / "latency-circuit-breaker.json"),
                             "--kubeconfig", str(kube.kubeconfig)], capture_output=True, text=True, timeout=60,
                            cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "kind: EnvoyFilter" in result.stdout and "fixed_delay: 4.000s" in result.stdout
    assert "safe_regex" in result.stdout and "/ns/default/sa/catalog(" in result.stdout, "the edge fault's caller"
    assert "kind: ConfigMap" in result.stdout, "the lease is part of the plan"
    assert not [c for c in kube.call_log(since) if c["verb"] in WRITES]


def test_dry_run_configuration_returns_the_plan_and_changes_nothing(kube: KubeSandbox) -> None:
    since = len(kube.call_log())
    record = actions.partition("frontend", "catalog", 10, direction="to", mode="drop", count=1,
                               configuration=kube.configuration(chaosmesh_qa_dry_run=True))
    assert record["dry_run"] is True
    planned = [(p["verb"], p["kind"]) for p in record["planned"]]
    # the lease, the partition's claim of its edge (targets/kubernetes/claims.py), the pod mark, the policy
    assert planned == [("create", "ConfigMap"), ("create", "ConfigMap"), ("patch", "Pod"), ("create", "NetworkPolicy"),
                       ("update", "ConfigMap")]
    assert not [c for c in kube.call_log(since) if c["verb"] in WRITES]
    assert get_target(kube.configuration()).active_faults() == []
