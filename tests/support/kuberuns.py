"""An unchanged experiment run on the Kubernetes API emulation through the real `chaos` CLI, and judged.

``run_and_judge`` runs the file with ``KubeSandbox.env()`` (only the environment switches the target), checks
that no managed object is left and the run's reaper exits, judges the journal as `chaosmesh-qa verdict` does and
checks what every kubernetes run's journal must say (the target named, traffic through the fault, kubernetes
fault records, nothing left to heal).  Used by tests/targets/kubernetes (test_experiments, test_profiles).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from chaosmesh_qa.report.verdict import Verdict, load_journal, verdict
from chaosmesh_qa.targets.kubernetes.reaper import LOCAL_INTERVAL_S
from tests.support.cli import CHAOS
from tests.support.kube import KubeSandbox

ROOT = Path(__file__).resolve().parents[2]


def run_and_judge(kube: KubeSandbox, experiment: Path, expected: str, work: Path) -> Verdict:
    env = {**kube.env(), "CHAOSMESH_QA_TIMELINE": str(work / "timeline.jsonl"), "CHAOSMESH_QA_MESH": ""}
    subprocess.run([CHAOS, "--no-version-check", "--log-file", str(work / "chaos.log"), "run",
                    "--journal-path", str(work / "journal.json"), str(experiment)],
                   cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    leftovers = kube.kubectl("get", "envoyfilters,authorizationpolicies,networkpolicies", "-l",
                             "app.kubernetes.io/managed-by=chaosmesh-qa", "-o", "name", check=False)
    wait_for_run_reapers(kube)
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
        return result
    extra_state = result.journal["chaosmesh_qa"]
    # issue 18 point 14: the journal names the target, its context and API server, and says "emulation"
    named = extra_state["target"]
    assert named["kind"] == "kubernetes" and named["emulation"] is True, named
    assert named["api_server"].startswith("https://127.0.0.1:") and "emulation" in named["name"], named
    assert f"target: kubernetes: {named['name']}" in verdict_cli.stdout
    assert extra_state["traffic"]["phases"]["during"]["requests"] > 0, "traffic flowed through the fault"
    assert faults and all(f["namespace"] == "default" and "lease" in f for f in faults), "kubernetes records"
    assert extra_state["healed_at_end"] == [], "rollbacks healed everything before the safety control looked"
    return result


def wait_for_run_reapers(kube: KubeSandbox) -> None:
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

