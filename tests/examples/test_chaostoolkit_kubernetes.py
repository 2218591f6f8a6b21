"""examples/chaostoolkit-kubernetes/experiment.json, run with the real `chaos` CLI against the Kubernetes API
emulation, its kubeconfig pointed at the emulation as tests/support/kube.py does (``KubeSandbox.env``).

The experiment uses only chaostoolkit-kubernetes' activities (terminate_pods, count_pods, read_pod_logs,
should_be_found_in_logs): it must run to completion with every tolerance met, the terminated catalog pod
replaced by a new one whose app logged its start.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import CHAOS
from tests.support.kube import KubeSandbox

EXPERIMENT = Path(__file__).resolve().parents[2] / "examples" / "chaostoolkit-kubernetes" / "experiment.json"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    kube = KubeSandbox(tmp_path_factory.mktemp("ctk-kubernetes") / "state")
    kube.up("--kube-api")
    try:
        yield kube
    finally:
        kube.down()


def test_the_experiment_uses_only_the_kubernetes_extension() -> None:
    experiment = json.loads(EXPERIMENT.read_text())
    activities = [*experiment["steady-state-hypothesis"]["probes"], *experiment["method"],
                  *experiment["rollbacks"]]
    providers = [a["provider"] for a in activities] + [a["tolerance"]["provider"] for a in activities
                                                       if isinstance(a.get("tolerance"), dict)]
    assert {p["module"] for p in providers} == {"chaosk8s.pod.probes", "chaosk8s.pod.actions"}
    assert "controls" not in experiment and "configuration" not in experiment


@pytest.mark.processes
def test_the_experiment_completes_against_the_emulation(box: KubeSandbox, tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.json"
    before = {p["name"] for p in box.status()["pods"] if p["service"] == "catalog"}
    run = subprocess.run([CHAOS, "--no-version-check", "--log-file", str(tmp_path / "chaos.log"), "run",
                          "--journal-path", str(journal_path), str(EXPERIMENT)],
                         cwd=tmp_path, env=box.env(), capture_output=True, text=True, timeout=180,
                         stdin=subprocess.DEVNULL)
    log = (tmp_path / "chaos.log").read_text()[-3000:]
    assert run.returncode == 0, log
    journal: dict[str, Any] = json.loads(journal_path.read_text())
    assert (journal["status"], journal["deviated"]) == ("completed", False), log
    for phase in ("before", "after"):
        probes = journal["steady_states"][phase]["probes"]
        assert [(p["status"], p["tolerance_met"]) for p in probes] == [("succeeded", True)] * 2, log
    assert all(step["status"] == "succeeded" for step in journal["run"]), log

    terminated = journal["run"][0]["output"]
    assert len(terminated) == 1 and terminated[0] in before
    after = journal["steady_states"]["after"]["probes"]
    assert after[0]["output"] == 2
    logs: dict[str, str] = after[1]["output"]
    (replacement,) = set(logs) - before
    assert terminated[0] not in logs and replacement.startswith("catalog-v1-")
    assert f"catalog v1 (pod {replacement}) serving on http://127.0.0.1:" in logs[replacement]
    sidecars = journal["run"][1]["output"]  # read with `last`: the API's sinceSeconds, timestamps on
    assert set(sidecars) == set(logs)
    calls = [json.loads(line) for line in box.call_file.read_text().splitlines()]
    assert {(c["verb"], c.get("subresource"), c["code"]) for c in calls if c.get("resource") == "pods"} >= {
        ("list", None, 200), ("delete", None, 200), ("get", "log", 200)}
