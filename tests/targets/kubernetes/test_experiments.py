"""The shipped experiments on the kubernetes target, unchanged: only the environment switches the target.

Each case runs the real `chaos` CLI with CHAOSMESH_QA_TARGET=kubernetes and the emulation's kubeconfig
against an embedded mesh (default or broken twin) serving the Kubernetes API emulation: faults go through
the API as EnvoyFilters / NetworkPolicies / AuthorizationPolicies / pod deletes, probes read the Istio
metric names.  Each must pass on the default mesh and deviate on its twin (or miss its baseline), exactly
as on the local target (tests/experiments/), and `chaosmesh-qa verdict` reads the journal the same way.

The three resilience experiments share one default-mesh sandbox (they run one after the other on it,
as experiments do on a cluster); each broken twin brings up its own mesh.  `make test` runs the three and
their twins (about 3 minutes); the mesh QA experiments (routing, mTLS, tracing), whose kubernetes code is
covered by test_verdicts.py, run on this target in the slow suite (`make test-all`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaosmesh_qa.report.verdict import load_journal, verdict
from chaosmesh_qa.targets.kubernetes.reaper import LOCAL_INTERVAL_S, stop_local_reapers
from tests.support.cli import CHAOS
from tests.support.kube import KubeSandbox, start
from tests.support.runs import CASES

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
RESILIENCE = ("pod-kill-failover", "latency-circuit-breaker", "partition-failover")
DEFAULT = [pytest.param(*c, id=f"{c[0]}-on-default-mesh") for c in CASES if c[0] in RESILIENCE and c[1] is None]
OWN_MESH = [pytest.param(*c, id=f"{c[0]}-on-{c[1] or 'default-mesh'}",
                         marks=() if c[0] in RESILIENCE else pytest.mark.slow)
            for c in CASES if c[1] is not None or c[0] not in RESILIENCE]


@pytest.fixture(scope="module")
def default_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    box = start(tmp_path_factory.mktemp("kube-experiments") / "state")
    try:
        yield box
    finally:
        stop_local_reapers()
        box.down()


@pytest.mark.parametrize(("name", "mesh", "expected"), DEFAULT)
def test_resilience_experiment_passes_on_the_default_mesh(default_mesh: KubeSandbox, name: str, mesh: None,
                                                          expected: str, tmp_path: Path) -> None:
    _run_and_judge(default_mesh, name, expected, tmp_path)


@pytest.mark.parametrize(("name", "mesh", "expected"), OWN_MESH)
def test_experiment_on_its_own_mesh(name: str, mesh: str | None, expected: str, tmp_path: Path) -> None:
    extra = ("--mesh", str(ROOT / "experiments" / "meshes" / mesh)) if mesh else ()
    kube = start(tmp_path / "state", *extra)
    try:
        _run_and_judge(kube, name, expected, tmp_path)
    finally:
        stop_local_reapers()
        kube.down()


def _run_and_judge(kube: KubeSandbox, name: str, expected: str, work: Path) -> None:
    env = {**kube.env(), "CHAOSMESH_QA_TIMELINE": str(work / "timeline.jsonl"), "CHAOSMESH_QA_MESH": ""}
    subprocess.run([CHAOS, "--no-version-check", "--log-file", str(work / "chaos.log"), "run",
                    "--journal-path", str(work / "journal.json"), str(ROOT / "experiments" / f"{name}.json")],
                   cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    leftovers = kube.kubectl("get", "envoyfilters,authorizationpolicies,networkpolicies", "-l",
                             "app.kubernetes.io/managed-by=chaosmesh-qa", "-o", "name", check=False)
    _wait_for_run_reapers(kube)
    assert leftovers.returncode == 0 and leftovers.stdout.strip() == "", leftovers.stdout
    result = verdict(load_journal(work / "journal.json"), work / "journal.json")
    assert result.outcome == expected, (result.reasons, (work / "chaos.log").read_text()[-3000:])
    verdict_cli = subprocess.run([sys.executable, "-m", "chaosmesh_qa", "verdict", str(work / "journal.json")],
                                 capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert verdict_cli.returncode == (0 if expected == "passed" else 1), verdict_cli.stdout + verdict_cli.stderr
    faults = [r["output"] for r in result.journal["run"]
              if isinstance(r.get("output"), dict) and "fault_id" in r["output"]]
    if expected == "baseline-not-met":
        assert not faults, "nothing is injected into a mesh already off its steady state"
        return
    extra_state = result.journal["chaosmesh_qa"]
    # issue 18 point 14: the journal names the target, its context and API server, and says "emulation"
    named = extra_state["target"]
    assert named["kind"] == "kubernetes" and named["emulation"] is True, named
    assert named["api_server"].startswith("https://127.0.0.1:") and "emulation" in named["name"], named
    assert f"target: kubernetes: {named['name']}" in verdict_cli.stdout
    assert extra_state["traffic"]["phases"]["during"]["requests"] > 0, "traffic flowed through the fault"
    assert faults and all(f["namespace"] == "default" and "lease" in f for f in faults), "kubernetes records"
    assert extra_state["healed_at_end"] == [], "rollbacks healed everything before the safety control looked"


def _wait_for_run_reapers(kube: KubeSandbox) -> None:
    """The run's detached reaper exits by itself once the run is gone and nothing is active (within one
    interval); wait for that before the sandbox goes (else it would retry an absent API), then stop stragglers."""
    def reapers() -> list[int]:
        ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
        return [int(line.split()[0]) for line in ps.splitlines() if " reap " in line and str(kube.kubeconfig) in line]

    deadline = time.monotonic() + 3 * LOCAL_INTERVAL_S
    while reapers() and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in reapers():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

