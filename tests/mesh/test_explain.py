"""`chaosmesh-qa explain`: every broken twin's defect is found, and the pod-kill prediction matches a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaosmesh_qa.mesh.explain import explain
from chaosmesh_qa.report.verdict import load_journal
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from tests.conftest import run_cli
from tests.report.runs import Run

ROOT = Path(__file__).resolve().parents[2]
MESHES = ROOT / "experiments" / "meshes"
# each twin in experiments/meshes/ -> the finding (code, service in its message) that names its defect
DEFECTS = {
    "no-retries-no-outlier-detection": ("CMQ-O001", "catalog"),
    "no-timeout-no-connection-pool": ("CMQ-C001", "inventory"),
    "single-catalog-replica": ("CMQ-O002", "catalog"),
    "canary-subset-wrong-pods": ("CMQ-R002", "reviews"),
    "permissive-workload": ("CMQ-S001", "reviews"),
}


def test_every_twin_is_covered() -> None:
    assert {p.name for p in MESHES.iterdir() if p.is_dir()} <= set(DEFECTS), "add the new twin's defect here"


@pytest.mark.parametrize("twin", sorted(DEFECTS))
def test_explain_finds_each_twins_defect(twin: str) -> None:
    code, service = DEFECTS[twin]
    findings = explain(MESHES / twin)["findings"]
    hits = [f for f in findings if f["code"] == code and f["message"].startswith(service)]
    assert hits, [f"{f['code']} {f['message']}" for f in findings]
    assert str(MESHES / twin) in hits[0]["location"] and hits[0]["experiment"]
    default = explain(default_mesh_dir())["findings"]
    assert not [f for f in default if f["code"] == code and f["message"].startswith(service)], \
        "the default mesh does not have the twin's defect"


def test_cli_json_and_bad_input() -> None:
    ok = run_cli("explain", "--mesh", str(MESHES / "permissive-workload"), "--json", "--rps", "100")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert {f["code"] for f in result["findings"]} >= {"CMQ-S001"} and result["pod_kill"]
    bad = run_cli("explain", "--mesh", str(ROOT / "no-such-mesh"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no-such-mesh" in bad.stderr


def test_pod_kill_prediction_matches_the_measured_experiment(broken_run: Run) -> None:
    """pod-kill-failover on the twin without retries and outlier detection, 100 rps, 1 of 2 catalog pods.

    Predicted: catalog gets 100 rps, half on the dead pod, callers send to it until its endpoint
    leaves (1 s): 50 failed client requests.  Tolerance: within 50 % (the kill lands at a random
    moment of the endpoint publication, requests in flight fail too, Locust holds the rate within a
    few requests per second).
    """
    twin = "no-retries-no-outlier-detection"
    predicted = {p["service"]: p for p in explain(MESHES / twin, rps=100)["pod_kill"]}["catalog"]
    assert predicted["ejection_s"] is None and not predicted["retried"]
    assert broken_run.process.returncode == 1, broken_run.process.stderr[-2000:]  # the run of the twin: deviated
    assert load_journal(broken_run.journal)["chaosmesh_qa"]["traffic"]["phases"]["before"]["failures"] == 0
    # every second of the client timeline (the phases leave out the second the kill straddles)
    seconds = [json.loads(line) for line in broken_run.timeline.read_text().splitlines() if line.strip()]
    measured = sum(s["failures"] for s in seconds)
    assert abs(measured - predicted["failed_requests"]) <= 0.5 * predicted["failed_requests"], (measured, predicted)
    # the default mesh: retries hide the kill and outlier detection ejects well inside the endpoint delay
    default = {p["service"]: p for p in explain(default_mesh_dir(), rps=100)["pod_kill"]}["catalog"]
    assert default["retried"] and default["failed_requests"] == 0 and default["ejection_s"] < 1
