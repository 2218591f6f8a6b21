"""`chaosmesh-qa generate`: the suite it writes exercises every promise that can work (by `chaosmesh-qa coverage`'s
rules), leaves out those that cannot with explain's code, is the same on every run, and its game days load.

In process (the unit lane), except the runs through the real `chaos` on each broken twin: the one experiment of the
default mesh's suite that covers the promise the twin breaks (~10-25 s each).  The runs that must pass (the generated
game day on the default mesh, the host outage) are judged by budgets: test_suite_runs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaosmesh_qa.report.coverage import coverage
from chaosmesh_qa.report.gameday import load_suite
from chaosmesh_qa.scaffold.suite import generate_suite
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from tests.support.editing import append, mesh_with
from tests.support.generated import DEFAULT_SUITE, MESHES, write_suite
from tests.support.inprocess import assert_one_line_error, run_main
from tests.support.runs import CASES

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_meshs_suite_covers_every_promise(tmp_path: Path) -> None:
    suite = generate_suite(default_mesh_dir(), "")
    assert {g.name: g.covers for g in suite.experiments} == DEFAULT_SUITE and not suite.skipped
    out = write_suite(tmp_path)
    result = coverage(default_mesh_dir(), sorted(out.glob("*.json")))
    assert (result.covered, len(result.entries)) == (16, 16), [e.promise.id for e in result.entries
                                                              if e.status != "covered"]
    for entry in result.entries:  # each promise by the experiment written for it
        written = next(name for name, covers in DEFAULT_SUITE.items() if entry.promise.id in covers)
        assert written in {Path(x.experiment).stem for x in entry.exercised_by}, entry.promise.id


def test_a_locality_promise_gets_the_zone_failover_the_rules_predict(tmp_path: Path) -> None:
    """On experiments/meshes/two-zones the locality promise (catalog's outlier detection over two zones) gets the
    shipped zone-failover's experiment, numbers and all (the same mesh, the same rules): its traffic, fault and
    probes are the shipped file's, whose runs through `chaos` pass on that mesh and fail on its twin
    (tests/experiments, and the Kubernetes target's tests/targets/kubernetes/test_experiments.py)."""
    mesh = MESHES / "two-zones"
    suite = generate_suite(mesh, str(mesh))
    generated = {g.name: g for g in suite.experiments}["zone-failover-catalog"]
    assert generated.covers == ["locality:catalog"] and not any(k.startswith("locality") for k, _ in suite.skipped)
    shipped = json.loads((ROOT / "experiments" / "zone-failover.json").read_text())
    for part in ("method", "steady-state-hypothesis"):
        mine = [(a["provider"]["func"], a["provider"].get("arguments")) for a in
                (generated.experiment[part] if part == "method" else generated.experiment[part]["probes"])]
        theirs = [(a["provider"]["func"], a["provider"].get("arguments")) for a in
                  (shipped[part] if part == "method" else shipped[part]["probes"])]
        assert mine == theirs, part
    traffic = generated.experiment["configuration"]["chaosmesh_qa_traffic"]
    assert traffic == shipped["configuration"]["chaosmesh_qa_traffic"]
    assert "baseEjectionTime, 5 s" in generated.experiment["description"]
    out = write_suite(tmp_path, mesh)
    entries = {e.promise.id: e for e in coverage(mesh, sorted(out.glob("*.json"))).entries}
    assert entries["locality:catalog"].status == "covered", entries["locality:catalog"]


PAYMENTS = "api.payments.example.com"


def test_a_hosts_route_timeout_gets_an_outage_and_its_other_guards_say_why_not(tmp_path: Path) -> None:
    """experiments/meshes/external-payments: the payment provider's own 500 ms timeout is exercised by blackholing
    it for every caller (the only fault its own route sees); its retries, outlier detection, pool and connect
    timeout cannot be shown to act in an outage of a host, and say so; a cluster's game day leaves the outage out."""
    mesh = MESHES / "external-payments"
    suite = generate_suite(mesh, str(mesh))
    outage = {g.name: g for g in suite.experiments}["outage-api-payments-example-com"]
    assert outage.covers == [f"timeout:{PAYMENTS}:VirtualService/payments:spec.http[0]"]
    fault = outage.experiment["method"][0]["provider"]["arguments"]
    assert fault == {"a": "*", "b": PAYMENTS, "direction": "to", "mode": "drop", "duration_s": 30}
    bound = outage.experiment["steady-state-hypothesis"]["probes"][0]
    # 2 tries of 250 ms to connect reach the 500 ms timeout; nothing on the way retries checkout's 502: clients wait
    # ~0.5 s, bounded at 1.5 x that; without the timeout checkout's callers' 1 s timeout would be what ends it
    assert bound["tolerance"]["range"][1] == 800 and "without the timeout they would wait 1 s" in \
        outage.experiment["description"]
    skipped = dict(suite.skipped)
    for kind in ("retries", "outlier-detection", "connection-pool", "connect-timeout"):
        key = next(k for k in skipped if k.startswith(f"{kind}:{PAYMENTS}"))
        assert skipped[key].startswith(f"a ServiceEntry host's own {kind}: "), skipped[key]
    out = write_suite(tmp_path, mesh)
    entries = {e.promise.id: e for e in coverage(mesh, sorted(out.glob("*.json"))).entries}
    assert entries[outage.covers[0]].status == "covered"
    cluster_day = (out / "gameday-kubernetes.yaml").read_text()
    assert "experiment: outage-api-payments-example-com.json" not in cluster_day
    assert "runs on the local target only: a drop partition toward a host" in cluster_day
    assert "experiment: outage-api-payments-example-com.json" in (out / "gameday.yaml").read_text()


def test_thresholds_come_from_the_mesh_and_are_explained() -> None:
    experiments = {g.name: g.experiment for g in generate_suite(default_mesh_dir(), "").experiments}
    latency = experiments["latency-catalog"]
    fault = latency["method"][0]["provider"]["arguments"]
    bound = next(p for p in latency["steady-state-hypothesis"]["probes"] if p["name"] == "client-p99-during-the-fault")
    # catalog's route: 500 ms per try x 4 tries = its 2 s timeout: clients wait ~2 s, the p99 bound is 1.5 x that
    assert (fault["delay_ms"], bound["tolerance"]["range"][1]) == (4000, 3000)
    assert "500 ms per try, 3 retries, 2 s timeout" in latency["description"]
    routing = experiments["routing-reviews-0"]
    assert routing["configuration"]["chaosmesh_qa_traffic"]["paths"] == [{"path": "/", "headers": {"x-canary": "true"}}]
    probe = routing["steady-state-hypothesis"]["probes"][0]["provider"]["arguments"]
    assert probe == {"service": "reviews", "expected": {"v2": 1.0}, "window_s": 5, "tolerance": 0.06}
    plain = experiments["routing-reviews-1"]["steady-state-hypothesis"]["probes"][0]["provider"]["arguments"]
    assert plain["expected"] == {"v1": 0.8, "v2": 0.2}  # this mesh's weights, written in: the twin's are not
    authz = experiments["authz"]["steady-state-hypothesis"]["probes"][0]["provider"]["arguments"]
    assert authz == {"expected": {"inventory": ["catalog"]}}  # intent from the call graph
    partition = experiments["partition-reviews"]
    limit = partition["steady-state-hypothesis"]["probes"][0]["tolerance"]["range"][1]
    assert limit == 2000 and "the connect timeout, 1 s" in partition["description"]  # 1.5 x (1 s + 300 ms)


def test_the_same_mesh_gives_the_same_files(tmp_path: Path) -> None:
    first = write_suite(tmp_path / "a")
    second = write_suite(tmp_path / "b")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) == sorted(
        [f"{n}.json" for n in DEFAULT_SUITE] + ["gameday.yaml", "gameday-kubernetes.yaml"])
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)


def test_the_game_days_load_for_both_targets(tmp_path: Path) -> None:
    out = write_suite(tmp_path)
    for name, target in (("gameday.yaml", "local"), ("gameday-kubernetes.yaml", "kubernetes")):
        suite, plan = load_suite(out / name)
        assert len(plan) == len(DEFAULT_SUITE) and suite.defaults.target == target
    day = (out / "gameday.yaml").read_text()
    assert "for_s: 11" in day  # a latency experiment fails clients for its 6 s + 4 s budget + 1 s by design
    experiment = json.loads((out / "pod-kill-catalog.json").read_text())
    assert experiment["configuration"]["chaosmesh_qa_mesh"]["default"] == ""  # the built-in mesh


@pytest.mark.parametrize(("twin", "promise", "code"), [
    ("single-catalog-replica", "outlier-detection:catalog", "CMQ-O002"),
    ("permissive-workload", "mtls:reviews", "CMQ-S001"),
    ("authz-widened", "authz-rule:default/inventory-callers:1", "CMQ-S004"),
    ("canary-subset-wrong-pods", "routing:reviews:VirtualService/reviews:spec.http[1]", "CMQ-R002"),
])
def test_what_cannot_work_is_not_generated(twin: str, promise: str, code: str) -> None:
    suite = generate_suite(MESHES / twin, str(MESHES / twin))
    assert (promise, f"cannot work: {code}") in suite.skipped
    assert not any(promise in g.covers for g in suite.experiments)


def test_a_mesh_with_more_gets_experiments_for_it(tmp_path: Path) -> None:
    more = """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: frontend}
spec:
  host: frontend
  trafficPolicy:
    connectionPool:
      http: {http1MaxPendingRequests: 32}
"""
    mesh = mesh_with(tmp_path, append("traffic.yaml", more))
    out = write_suite(tmp_path, mesh)
    result = coverage(mesh, sorted(out.glob("*.json")))
    assert result.covered == len(result.entries) == 17
    assert json.loads((out / "latency-frontend.json").read_text())["configuration"]["chaosmesh_qa_mesh"][
        "default"] == str(mesh)


def test_bad_input(tmp_path: Path) -> None:
    assert_one_line_error(run_main("generate", "--mesh", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                                   cwd=tmp_path), "none")
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert_one_line_error(run_main("generate", "--out", str(blocked / "o"), cwd=tmp_path), "--out")
    assert run_main("generate", cwd=tmp_path).code == 2  # --out is required


# each broken twin -> the experiment of the default mesh's generated suite that covers the promise it breaks
TWIN_FAILS = {
    "no-retries-no-outlier-detection": "pod-kill-catalog",  # catalog's retries and outlier detection removed
    "single-catalog-replica": "pod-kill-catalog",  # catalog's outlier detection cannot eject its only pod
    "no-timeout-no-connection-pool": "latency-inventory",  # inventory's timeout and connection pool removed
    "canary-subset-wrong-pods": "routing-reviews-1",  # the v2 subset selects v1's pods: the 80/20 split is gone
    "permissive-workload": "mtls",  # reviews accepts plaintext
    "drops-trace-headers": "tracing",  # a program in the call path drops the trace context
    "authz-widened": "authz",  # inventory lets frontend in too
    "authz-removed": "authz",  # inventory's AuthorizationPolicy deleted: every workload gets in
}


def test_every_twin_breaks_a_promise_the_default_suite_covers() -> None:
    # the twins of the default mesh: those a shipped experiment passing on the default mesh must fail on (the twins
    # of zone-failover's and external-dependency's own meshes break promises the default mesh does not make)
    twins = {mesh for name, mesh, outcome in CASES if mesh and outcome != "passed" and (name, None, "passed") in CASES}
    assert twins == set(TWIN_FAILS), "add the new twin here"
    for twin, experiment in TWIN_FAILS.items():
        assert experiment in DEFAULT_SUITE, (twin, experiment)


@pytest.mark.processes  # one real run per twin, each bringing its own sandbox up and down (~2 min in all)
@pytest.mark.parametrize("twin", sorted(TWIN_FAILS))
def test_the_default_suite_fails_on_each_twin_where_the_twin_breaks_it(tmp_path: Path, twin: str) -> None:
    """The experiment covering the broken promise, generated from the default mesh, run on the twin through the
    real `chaos` (`chaosmesh-qa run`, the mesh given as CHAOSMESH_QA_MESH): it does not pass."""
    from chaosmesh_qa.targets.local.sandbox import down
    from tests.support.cli import run_cli

    suite = write_suite(tmp_path)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    name = TWIN_FAILS[twin]
    try:
        process = run_cli("run", str(suite / f"{name}.json"), "--out", str(tmp_path / "out"),
                          env={"CHAOSMESH_QA_STATE_DIR": str(state), "CHAOSMESH_QA_MESH": str(MESHES / twin)},
                          timeout=300)
    finally:
        down(state)
    assert process.returncode == 1, process.stdout[-3000:]
    assert f"{name}: PASSED" not in process.stdout and "0 of 1 experiment(s) passed" in process.stdout

