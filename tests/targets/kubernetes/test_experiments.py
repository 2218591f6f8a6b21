"""The shipped experiments on the kubernetes target, unchanged: only the environment switches the target.

Each case starts the embedded mesh (default or broken twin) with the Kubernetes API emulation, then runs the
real `chaos` CLI with CHAOSMESH_QA_TARGET=kubernetes and the emulation's kubeconfig: faults go through the
API as EnvoyFilters / NetworkPolicies / pod deletes, probes read the Istio metric names.  Each must pass on
the default mesh and deviate on its twin, exactly as on the local target (tests/experiments/).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chaosmesh_qa.report.verdict import load_journal, verdict
from chaosmesh_qa.targets.kubernetes.reaper import stop_local_reapers
from tests.experiments.test_experiments import CASES
from tests.targets.kubernetes.conftest import start

# Slow for now: partition-failover passes on the default mesh and deviates on its twin, but under heavy load
# (2 shared cores, load ~17) pod-kill-failover and latency-circuit-breaker deviated on the default mesh too
# (see the report of issue 9); move back into `make test` once they pass on a quiet machine.
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
CHAOS = str(Path(sys.executable).with_name("chaos"))


@pytest.mark.parametrize(("name", "mesh", "expected"), CASES,
                         ids=[f"{n}-on-{m or 'default-mesh'}" for n, m, _ in CASES])
def test_experiment_on_the_kubernetes_target(name: str, mesh: str | None, expected: str, tmp_path: Path) -> None:
    extra = ("--mesh", str(ROOT / "experiments" / "meshes" / mesh)) if mesh else ()
    kube = start(tmp_path / "state", *extra)
    try:
        env = {**kube.env(), "CHAOSMESH_QA_TIMELINE": str(tmp_path / "timeline.jsonl"), "CHAOSMESH_QA_MESH": ""}
        subprocess.run([CHAOS, "--no-version-check", "--log-file", str(tmp_path / "chaos.log"), "run",
                        "--journal-path", str(tmp_path / "journal.json"),
                        str(ROOT / "experiments" / f"{name}.json")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
        leftovers = kube.kubectl("get", "envoyfilters,authorizationpolicies,networkpolicies", "-l",
                                 "app.kubernetes.io/managed-by=chaosmesh-qa", "-o", "name")
    finally:
        stop_local_reapers()
        kube.down()
    assert leftovers.returncode == 0 and leftovers.stdout.strip() == "", leftovers.stdout
    result = verdict(load_journal(tmp_path / "journal.json"), tmp_path / "journal.json")
    assert result.outcome == expected, (result.reasons, (tmp_path / "chaos.log").read_text()[-3000:])
    extra_state = result.journal["chaosmesh_qa"]
    assert extra_state["traffic"]["phases"]["during"]["requests"] > 0, "traffic flowed through the fault"
    faults = [r["output"] for r in result.journal["run"]
              if isinstance(r.get("output"), dict) and "fault_id" in r["output"]]
    assert faults and all(f["namespace"] == "default" and "lease" in f for f in faults), "kubernetes records"
    assert extra_state["healed_at_end"] == [], "rollbacks healed everything before the safety control looked"
