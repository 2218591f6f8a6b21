"""`chaosmesh-qa coverage`: the default mesh's promises, which shipped experiments exercise them, what a mesh with
more than the experiments know about shows, the broken twins' promises that cannot work, and bad input.

All in process (the unit lane): the mesh is read from YAML, the experiments from JSON, nothing runs.  The rules
themselves are tested on small experiments written here (``_experiment``), one rule a case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from junitparser import Failure, JUnitXml

from chaosmesh_qa.mesh.promises import list_promises
from chaosmesh_qa.report.coverage import coverage
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir
from tests.support.editing import append, mesh_with, replace
from tests.support.inprocess import assert_one_line_error, run_main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "experiments").glob("*.json"))
MESHES = ROOT / "experiments" / "meshes"
SCHEMA = xmlschema.XMLSchema(Path(__file__).with_name("junit.xsd"))

# The default mesh's promises and what the shipped experiments make of them (the figure in the README).
DEFAULT = {
    "retries:catalog:VirtualService/catalog:spec.http[0]": "covered",
    "timeout:catalog:VirtualService/catalog:spec.http[0]": "uncovered",  # no fault on catalog outlasts 2 s
    "timeout:inventory:VirtualService/inventory:spec.http[0]": "covered",
    "match:reviews:VirtualService/reviews:spec.http[0]": "covered",
    "routing:reviews:VirtualService/reviews:spec.http[1]": "covered",
    "outlier-detection:catalog": "covered",
    "connect-timeout:catalog": "covered",
    "connection-pool:inventory": "covered",
    "connect-timeout:reviews": "uncovered",  # no experiment blackholes a reviews pod
    "mtls:catalog": "covered", "mtls:frontend": "covered", "mtls:inventory": "covered", "mtls:reviews": "covered",
    "authz-rule:default/inventory-callers:0": "covered",
    "trace-propagation:catalog": "covered", "trace-propagation:frontend": "covered",
}


def _statuses(directory: Path, paths: list[Path]) -> dict[str, str]:
    return {e.promise.id: e.status for e in coverage(directory, paths).entries}


def test_every_promise_of_the_default_mesh_names_its_file_resource_and_field() -> None:
    found = {p.id: p for p in list_promises(default_mesh_dir()).promises}
    assert set(found) == set(DEFAULT)
    where = {key: (Path(p.source.file).name, p.source.resource, p.source.field) for key, p in found.items()}
    assert where["retries:catalog:VirtualService/catalog:spec.http[0]"] == (
        "traffic.yaml", "VirtualService/catalog", "spec.http[0].retries")
    assert where["match:reviews:VirtualService/reviews:spec.http[0]"] == (
        "traffic.yaml", "VirtualService/reviews", "spec.http[0].match")
    assert where["outlier-detection:catalog"] == (
        "traffic.yaml", "DestinationRule/catalog", "spec.trafficPolicy.outlierDetection")
    assert where["connection-pool:inventory"] == (
        "traffic.yaml", "DestinationRule/inventory", "spec.trafficPolicy.connectionPool")
    assert where["mtls:reviews"] == ("security.yaml", "PeerAuthentication/default", "spec.mtls.mode")
    assert where["authz-rule:default/inventory-callers:0"] == (
        "security.yaml", "AuthorizationPolicy/inventory-callers", "spec.rules[0]")
    assert where["trace-propagation:frontend"] == ("mesh.yaml", "Mesh/shop", "spec.services[0].app.calls")
    # Istio's defaults are nobody's promise: inventory's and reviews' routes set no retries
    assert not [key for key in found if key.startswith("retries:") and "catalog" not in key]
    assert found["routing:reviews:VirtualService/reviews:spec.http[1]"].settings["shares"] == {
        "reviews/v1": 80, "reviews/v2": 20}


def test_coverage_of_the_shipped_experiments_over_the_default_mesh() -> None:
    result = coverage(default_mesh_dir(), SHIPPED)
    assert {e.promise.id: e.status for e in result.entries} == DEFAULT
    assert (result.covered, len(result.entries), round(result.percent, 1)) == (14, 16, 87.5)
    by = {e.promise.id: {(Path(x.experiment).stem, x.fault, x.probe) for x in e.exercised_by}
          for e in result.entries}
    # only the probe that checks the pool acts: latency alone is what the route timeout already bounds
    assert by["connection-pool:inventory"] == {
        ("latency-circuit-breaker", "delay-catalog-to-inventory-4s", "inventory-circuit-breaker-overflowed")}
    # recovered-within-5s-of-heal judges the time after the heal: not what the timeout did during the fault
    assert by["timeout:inventory:VirtualService/inventory:spec.http[0]"] == {
        ("latency-circuit-breaker", "delay-catalog-to-inventory-4s", "frontend-p99-during-the-fault-prometheus")}
    # catalog's retries hide a dead pod from callers: only the ejection probes count for outlier detection
    assert {probe for _, _, probe in by["outlier-detection:catalog"]} == {
        "outlier-detection-ejected-the-dead-pod", "outlier-detection-ejected-the-blackholed-replica"}
    # the canary header route is reached: routing-canary's traffic carries x-canary and frontend propagates it
    assert by["match:reviews:VirtualService/reviews:spec.http[0]"] == {
        ("routing-canary", None, "reviews-shares-as-declared")}
    assert not result.unattached


def test_cli_reports_the_figure_and_lists_the_uncovered_promises(tmp_path: Path) -> None:
    result = run_main("coverage", *map(str, SHIPPED), cwd=tmp_path)
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout.startswith("mesh 'shop': 14 of 16 promises covered (87.5 %) by 9 experiments\n")
    uncovered = [line.split(None, 2)[2] for line in result.stdout.splitlines() if line.startswith("uncovered ")]
    assert uncovered == ["catalog: requests time out after 2s", "reviews: a connection attempt gives up after 1s"]
    assert "VirtualService/catalog: spec.http[0].timeout" in result.stdout
    assert run_main("coverage", "--fail-under", "87.5", *map(str, SHIPPED), cwd=tmp_path).code == 0
    assert run_main("coverage", "--fail-under", "90", *map(str, SHIPPED), cwd=tmp_path).code == 1


MORE = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: frontend}
spec:
  hosts: [frontend]
  http:
  - route:
    - destination: {host: frontend}
    timeout: 3s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: frontend}
spec:
  host: frontend
  trafficPolicy:
    connectionPool:
      http: {http1MaxPendingRequests: 32}
"""
MORE_AUTHZ = """---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-callers}
spec:
  selector:
    matchLabels: {app: reviews}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/frontend]
"""
NEW = {"timeout:frontend:VirtualService/frontend:spec.http[0]", "connection-pool:frontend",
       "authz-rule:default/reviews-callers:0"}


def test_a_route_rule_and_policy_the_experiments_do_not_know_are_uncovered(tmp_path: Path) -> None:
    mesh = mesh_with(tmp_path, append("traffic.yaml", MORE), append("security.yaml", MORE_AUTHZ))
    statuses = _statuses(mesh, SHIPPED)
    assert {key: statuses[key] for key in NEW} == dict.fromkeys(NEW, "uncovered")
    assert {key: value for key, value in statuses.items() if key not in NEW} == DEFAULT
    gate = run_main("coverage", "--mesh", str(mesh), "--fail-under", "100", *map(str, SHIPPED), cwd=tmp_path)
    assert gate.code == 1 and "14 of 19 promises covered (73.7 %)" in gate.stdout
    assert gate.stderr == "chaosmesh-qa: coverage 73.7 % is below --fail-under 100 %\n"
    for new in ("frontend: requests time out after 3s", "frontend: at most 32 pending_requests",
                "reviews-callers: ALLOW from cluster.local/ns/default/sa/frontend on reviews"):
        assert next(line for line in gate.stdout.splitlines() if new in line).startswith("uncovered ")


# each broken twin -> the promise it breaks, the explain code that says it cannot work
TWINS = {
    "single-catalog-replica": ("outlier-detection:catalog", "CMQ-O002"),
    "canary-subset-wrong-pods": ("routing:reviews:VirtualService/reviews:spec.http[1]", "CMQ-R002"),
    "permissive-workload": ("mtls:reviews", "CMQ-S001"),
    "authz-widened": ("authz-rule:default/inventory-callers:1", "CMQ-S004"),
}


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_a_promise_explain_finds_cannot_work_is_unworkable_with_its_code(twin: str) -> None:
    key, code = TWINS[twin]
    entries = {e.promise.id: e for e in coverage(MESHES / twin, SHIPPED).entries}
    assert entries[key].status == "unworkable" and {u["code"] for u in entries[key].unworkable} == {code}
    others = {k for k, e in entries.items() if e.status == "unworkable"} - {key}
    allowed = {"canary-subset-wrong-pods": {"match:reviews:VirtualService/reviews:spec.http[0]"}}.get(twin, set())
    assert others == allowed, "only the promise the twin breaks (and one on the same subset) cannot work"
    if twin == "authz-widened":
        assert entries["authz-rule:default/inventory-callers:0"].status == "covered", "the catalog rule still works"


def test_json_markdown_and_junit(tmp_path: Path) -> None:
    as_json = run_main("coverage", "--json", *map(str, SHIPPED), cwd=tmp_path)
    document = json.loads(as_json.stdout)
    assert (document["promises"], document["covered"], document["percent"]) == (16, 14, 87.5)
    entry = next(e for e in document["entries"] if e["id"] == "outlier-detection:catalog")
    assert entry["source"].endswith("traffic.yaml: DestinationRule/catalog: spec.trafficPolicy.outlierDetection")
    assert entry["settings"]["consecutive_5xx"] == 3 and entry["status"] == "covered" and entry["exercised_by"]

    as_markdown = run_main("coverage", "--markdown", *map(str, SHIPPED), cwd=tmp_path)
    rows = [line for line in as_markdown.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 16 and "**87.5 %**" in as_markdown.stdout

    mesh = MESHES / "single-catalog-replica"
    report = tmp_path / "out" / "coverage.xml"
    written = run_main("coverage", "--mesh", str(mesh), "--junit", str(report), *map(str, SHIPPED), cwd=tmp_path)
    assert written.code == 0, written.stderr
    SCHEMA.validate(str(report))
    cases = {case.name: case for suite in JUnitXml.fromfile(str(report)) for case in suite}
    statuses = {e.promise.id: e.status for e in coverage(mesh, SHIPPED).entries}
    assert set(cases) == set(statuses)
    for name, case in cases.items():
        failures = [r for r in case.result if isinstance(r, Failure)]
        assert [f.type for f in failures] == ([] if statuses[name] == "covered" else [statuses[name]]), name
    assert "CMQ-O002" in next(r for r in cases["outlier-detection:catalog"].result).message


def _experiment(tmp_path: Path, method: list[dict[str, Any]], probes: list[dict[str, Any]],
                traffic: dict[str, Any] | None = None, name: str = "e") -> Path:
    """A minimal experiment in the shipped ones' shape: the traffic control, the given method and probes."""
    document = {"title": name, "description": "a rule's case", "configuration": {
        "chaosmesh_qa_traffic": traffic or {"users": 10, "rate_rps": 50, "paths": [{"path": "/"}]}},
        "controls": [{"name": "traffic", "provider": {"type": "python", "module": "chaosmesh_qa.controls.traffic"}}],
        "steady-state-hypothesis": {"title": "t", "probes": [
            {"type": "probe", "name": f"p{i}", "tolerance": p.pop("tolerance", True),
             "provider": {"type": "python", "module": p.pop("module", "chaosmesh_qa.probes.prometheus"), **p}}
            for i, p in enumerate(probes)]},
        "method": [{"type": "action", "name": f"f{i}", "provider": {"type": "python", "module": "chaosmesh_qa.actions",
                                                                     **m}} for i, m in enumerate(method)]}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document))
    return path


def _recovery(budget: float = 5, p99: float = 500, **extra: Any) -> dict[str, Any]:
    return {"module": "chaosmesh_qa.probes.recovery", "func": "recovered_within", "tolerance": {
        "type": "range", "range": [0, budget]}, "arguments": {"budget_s": budget, "slo": {
            "max_error_ratio": 0.01, "max_p99_ms": p99}, "measure": "client", **extra}}


def _latency(service: str, delay_ms: int, **extra: Any) -> dict[str, Any]:
    return {"func": "inject_latency", "arguments": {"service": service, "delay_ms": delay_ms, "duration_s": 10,
                                                   **extra}}


CASES = {  # name -> (method, probes, the promises it covers among the default mesh's)
    "latency-beyond-the-timeout-with-a-bound-below-it": (
        [_latency("catalog", 3000)], [_recovery(p99=500)],
        {"timeout:catalog:VirtualService/catalog:spec.http[0]",  # 3 s > 2 s, p99 bound 500 ms < 3 s
         "retries:catalog:VirtualService/catalog:spec.http[0]"}),  # 3 s > 500 ms per try, retried on 5xx
    "latency-below-the-timeout": ([_latency("catalog", 1500)], [_recovery(p99=500)],
                                  {"retries:catalog:VirtualService/catalog:spec.http[0]"}),
    "a-bound-above-the-delay-would-pass-without-the-timeout": ([_latency("inventory", 1500)], [_recovery(p99=2000)],
                                                              set()),
    "a-latency-fault-from-a-service-that-never-calls": ([_latency("inventory", 3000, source="frontend")],
                                                        [_recovery()], set()),
    "an-abort-the-retries-do-not-retry": ([{"func": "inject_abort", "arguments": {
        "service": "catalog", "http_status": 429, "percent": 50, "duration_s": 10}}], [_recovery()], set()),
    "a-503-abort-is-retried-and-ejects": (
        [{"func": "inject_abort", "arguments": {"service": "catalog", "http_status": 503, "percent": 50,
                                                "duration_s": 10}}],
        [_recovery(), {"func": "policy_engaged", "arguments": {"policy": "outlier_ejection", "service": "catalog"}}],
        {"retries:catalog:VirtualService/catalog:spec.http[0]", "outlier-detection:catalog"}),
    "killing-every-pod-ejects-nothing": ([{"func": "kill_pods", "arguments": {"service": "catalog", "percent": 100}}],
                                         [{"func": "policy_engaged", "arguments": {
                                             "policy": "outlier_ejection", "service": "catalog"}}], set()),
    "a-pool-probe-without-latency": ([{"func": "kill_pods", "arguments": {"service": "inventory"}}],
                                     [{"func": "policy_engaged", "arguments": {
                                         "policy": "circuit_breaker", "service": "inventory"}}], set()),
    "a-blackhole-of-every-reviews-pod": (
        [{"func": "partition", "arguments": {"a": "frontend", "b": "reviews", "direction": "to", "duration_s": 10}}],
        [_recovery()], {"connect-timeout:reviews"}),
    "routing-without-the-canary-header": (
        [], [{"module": "chaosmesh_qa.probes.routing", "func": "routing_matches", "tolerance": ["pass"],
              "arguments": {"service": "reviews", "expected": {"v1": 0.8, "v2": 0.2}}}],
        {"routing:reviews:VirtualService/reviews:spec.http[1]"}),
    "routing-without-intent": (  # expects what the mesh it runs on declares: a wrong subset passes it
        [], [{"module": "chaosmesh_qa.probes.routing", "func": "routing_matches", "tolerance": ["pass"],
              "arguments": {"service": "reviews"}}], set()),
    "authorization-without-intent": (
        [], [{"module": "chaosmesh_qa.probes.authz", "func": "authz_enforced", "tolerance": ["pass"],
              "arguments": {}}], set()),
    "mtls-on-some-services": (
        [], [{"module": "chaosmesh_qa.probes.mtls", "func": "mtls_enforced", "tolerance": ["pass"],
              "arguments": {"services": ["inventory"]}}], {"mtls:inventory"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rules(tmp_path: Path, case: str) -> None:
    method, probes, expected = CASES[case]
    path = _experiment(tmp_path, json.loads(json.dumps(method)), json.loads(json.dumps(probes)))
    covered = {key for key, status in _statuses(default_mesh_dir(), [path]).items() if status == "covered"}
    assert covered == expected


def test_method_probes_and_experiments_without_traffic_exercise_nothing(tmp_path: Path) -> None:
    routing = {"module": "chaosmesh_qa.probes.routing", "func": "routing_matches", "tolerance": ["pass"],
               "arguments": {"service": "reviews"}}
    path = _experiment(tmp_path, [], [dict(routing)])
    document = json.loads(path.read_text())
    document["method"] = [{**document["steady-state-hypothesis"]["probes"][0], "name": "in-the-method"}]
    document["method"][0].pop("tolerance")
    document["steady-state-hypothesis"]["probes"] = []
    path.write_text(json.dumps(document))
    assert "covered" not in _statuses(default_mesh_dir(), [path]).values(), "a method probe's result fails nothing"
    quiet = _experiment(tmp_path, [], [dict(routing)], name="quiet")
    document = json.loads(quiet.read_text())
    document["controls"] = []
    quiet.write_text(json.dumps(document))
    assert "covered" not in _statuses(default_mesh_dir(), [quiet]).values(), "no traffic: nothing acts"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert_one_line_error(run_main("coverage", str(listed), cwd=tmp_path), str(listed), "not a Chaos Toolkit")
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text((default_mesh_dir() / "mesh.yaml").read_text())
    assert_one_line_error(run_main("coverage", str(mesh_file), cwd=tmp_path), str(mesh_file), "invalid experiment")
    missing = tmp_path / "nowhere.json"
    assert_one_line_error(run_main("coverage", str(SHIPPED[0]), str(missing), cwd=tmp_path), "nowhere.json")
    broken = mesh_with(tmp_path, replace("traffic.yaml", "consecutive5xxErrors: 3", "consecutive5xxErrors: many"))
    assert_one_line_error(run_main("coverage", "--mesh", str(broken), str(SHIPPED[0]), cwd=tmp_path),
                          "DestinationRule/catalog", "consecutive5xxErrors")
    assert_one_line_error(run_main("coverage", "--mesh", str(tmp_path / "no-mesh"), cwd=tmp_path), "no-mesh")
    assert_one_line_error(run_main("coverage", "--json", "--markdown", cwd=tmp_path), "--json and --markdown")
    assert_one_line_error(run_main("coverage", "--fail-under", "nan", cwd=tmp_path), "--fail-under", "nan")
    assert_one_line_error(run_main("coverage", str(tmp_path), cwd=tmp_path), "is a directory")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert_one_line_error(run_main("coverage", "--junit", str(blocked / "x.xml"), str(SHIPPED[0]), cwd=tmp_path),
                          "--junit")
    assert not (blocked.parent / "x.xml").exists()
    # the cluster's mode: its options, refused before any contact
    assert_one_line_error(run_main("coverage", "--target", "kubernetes", "--mesh", str(default_mesh_dir()),
                                   cwd=tmp_path), "--mesh", "--target kubernetes")
    assert_one_line_error(run_main("coverage", "--kubeconfig", "k", cwd=tmp_path), "--kubeconfig",
                          "--target kubernetes")
    assert_one_line_error(run_main("coverage", "--target", "kubernetes", "--calls-window", "an hour", cwd=tmp_path),
                          "--calls-window", "'an hour'")


def test_the_run_html_section_is_per_mesh_the_experiments_ran_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from chaosmesh_qa.report.coverage import run_coverage
    from chaosmesh_qa.report.coverage_output import html_section
    from chaosmesh_qa.report.html import render_html
    from chaosmesh_qa.report.run import load_experiment

    monkeypatch.delenv("CHAOSMESH_QA_MESH", raising=False)
    loaded = [(path, load_experiment(path)) for path in SHIPPED]
    on_a_cluster = json.loads(json.dumps(loaded[0][1]))
    on_a_cluster["configuration"]["chaosmesh_qa_target"] = "kubernetes"
    found, notes = run_coverage([*loaded, (Path("cluster.json"), on_a_cluster)], None)
    # each experiment judged on the mesh it runs on: zone-failover and external-dependency name their own meshes
    assert (found[0].directory, found[0].covered, len(found[0].entries)) == (str(default_mesh_dir()), 14, 16)
    assert [c.directory for c in found][1:] == ["experiments/meshes/external-payments", "experiments/meshes/two-zones"]
    assert notes == ["cluster.json: ran on the kubernetes target, whose mesh is the cluster's objects: not in the "
                     "coverage"]
    page = render_html([], coverage=[html_section(found[0])])
    assert "Resilience coverage: mesh shop" in page and "87.5 %" in page
    section = page.split("Resilience coverage: mesh shop", 1)[1]
    assert section.count('<tr class="failed">') == 2 and section.count("<tr class=") == 16
    monkeypatch.setenv("CHAOSMESH_QA_MESH", str(MESHES / "single-catalog-replica"))  # as chaos resolves it
    found, _ = run_coverage(loaded, None)
    assert [c.directory for c in found] == [str(MESHES / "single-catalog-replica")]


@pytest.mark.processes
def test_run_html_shows_the_coverage_of_what_ran(tmp_path: Path) -> None:
    """A trivial experiment through the real `chaos`: the report's section says it covers none of the promises."""
    from tests.support.cli import run_cli

    experiment = tmp_path / "sleep.json"
    experiment.write_text(json.dumps({"title": "sleep", "description": "no sandbox needed", "method": [
        {"type": "action", "name": "sleep", "provider": {"type": "process", "path": "sleep", "arguments": "0"}}]}))
    out = run_cli("run", str(experiment), "--out", str(tmp_path / "out"), "--html", str(tmp_path / "r.html"),
                  env={"CHAOSMESH_QA_STATE_DIR": str(tmp_path / "state")}, timeout=60)
    assert "html report:" in out.stdout, out.stdout + out.stderr
    page = (tmp_path / "r.html").read_text()
    assert "Resilience coverage: mesh shop" in page and "0 of 16 promises" in page


ODD = {  # chaoslib may accept these or not: either way no traceback, and nothing covered
    "a-list-of-arguments": ([{"func": "kill_pods", "arguments": ["catalog"]}], [_recovery()]),
    "a-service-list": ([{"func": "kill_pods", "arguments": {"service": ["catalog"]}}], [_recovery()]),
    "a-source-number": ([{"func": "inject_latency", "arguments": {"service": "catalog", "delay_ms": 3000,
                                                                 "duration_s": 5, "source": 7}}], [_recovery()]),
    "a-text-delay": ([{"func": "inject_latency", "arguments": {"service": "catalog", "delay_ms": "3000",
                                                              "duration_s": 5}}], [_recovery()]),
    "a-probe-on-a-list": ([{"func": "kill_pods", "arguments": {"service": "catalog"}}],
                          [{"func": "policy_engaged", "arguments": {"policy": "retries", "service": ["catalog"]}},
                           {**_recovery(), "arguments": {"budget_s": 5, "slo": [1], "service": ["x"]}}]),
    "services-as-text": ([], [{"module": "chaosmesh_qa.probes.mtls", "func": "mtls_enforced", "tolerance": ["pass"],
                               "arguments": {"services": "inventory"}}]),
}


@pytest.mark.parametrize("case", sorted(ODD))
def test_odd_arguments_cover_nothing_and_never_crash(tmp_path: Path, case: str) -> None:
    method, probes = ODD[case]
    path = _experiment(tmp_path, json.loads(json.dumps(method)), json.loads(json.dumps(probes)))
    result = run_main("coverage", "--json", str(path), cwd=tmp_path)
    if result.code == 2:
        assert_one_line_error(result, str(path))
        return
    assert (result.code, json.loads(result.stdout)["covered"]) == (0, 0), result.stderr


def test_a_timeout_the_tries_always_beat_is_never_exercised(tmp_path: Path) -> None:
    """4 tries x 300 ms per try end a delayed request at 1.2 s: catalog's 2 s timeout never acts, whatever the delay
    (with 500 ms per try the tries reach 2 s: the timeout cuts the last one, and the same fault exercises it)."""
    mesh = mesh_with(tmp_path, replace("traffic.yaml", "perTryTimeout: 500ms", "perTryTimeout: 300ms"))
    path = _experiment(tmp_path, [_latency("catalog", 5000)], [_recovery(p99=500)])
    key = "timeout:catalog:VirtualService/catalog:spec.http[0]"
    assert _statuses(mesh, [path])[key] == "uncovered"
    assert _statuses(default_mesh_dir(), [path])[key] == "covered"


@pytest.mark.processes
def test_the_console_script_gates_in_ci(tmp_path: Path) -> None:
    """The installed `chaosmesh-qa` as a CI job runs it: exit 1 under --fail-under, the JUnit file written anyway."""
    from tests.support.cli import run_cli

    mesh = mesh_with(tmp_path, append("traffic.yaml", MORE))
    gate = run_cli("coverage", "--mesh", str(mesh), "--fail-under", "100", "--junit", str(tmp_path / "c.xml"),
                   *map(str, SHIPPED), timeout=60)
    assert gate.returncode == 1 and gate.stderr == "chaosmesh-qa: coverage 77.8 % is below --fail-under 100 %\n"
    SCHEMA.validate(str(tmp_path / "c.xml"))
    assert run_cli("coverage", "--fail-under", "87.5", *map(str, SHIPPED), timeout=60).returncode == 0


# The two experiments that bring their own mesh, over it: each promise's status, and why it is left uncovered.
OWN = {
    ("zone-failover", "two-zones"): {
        "locality:catalog": "covered",  # zone a isolated from the frontend (in zone a), judged by failover_matches
        "retries:catalog:VirtualService/catalog:spec.http[0]": "covered",  # refused zone-a pod, clients recovered
        "outlier-detection:catalog": "uncovered",  # retries hide the refused pod; no outlier_ejection probe
        "connect-timeout:catalog": "uncovered",  # the partition refuses (reject): no connection hangs
        "timeout:catalog:VirtualService/catalog:spec.http[0]": "uncovered",  # no latency, no blackhole
        "timeout:inventory:VirtualService/inventory:spec.http[0]": "uncovered",  # inventory is not faulted
        "connection-pool:inventory": "uncovered",  # ditto, and no circuit_breaker probe
        "connect-timeout:reviews": "uncovered",  # reviews is not faulted
        "match:reviews:VirtualService/reviews:spec.http[0]": "uncovered",  # no routing_matches
        "routing:reviews:VirtualService/reviews:spec.http[1]": "uncovered",  # no routing_matches
        "mtls:catalog": "uncovered", "mtls:frontend": "uncovered", "mtls:inventory": "uncovered",
        "mtls:reviews": "uncovered",  # no mtls_enforced
        "authz-rule:default/inventory-callers:0": "uncovered",  # no authz_enforced
        "trace-propagation:catalog": "uncovered", "trace-propagation:frontend": "uncovered",  # no traces_complete
    },
    ("external-dependency", "external-payments"): {
        # the provider's 4 s delay holds checkout's answers; the frontend's p99 during the fault is bound at 3000 ms
        "timeout:checkout:VirtualService/checkout:spec.http[0]": "covered",
        "outlier-detection:checkout": "uncovered",  # its 502s under the abort: no outlier_ejection probe
        "connection-pool:checkout": "uncovered",  # no circuit_breaker probe
        "connect-timeout:checkout": "uncovered",  # no blackhole of checkout's pods
        "trace-propagation:frontend": "uncovered",  # no traces_complete
        # the provider's own guards: the delay and the abort are injected before checkout's router, never seen
        "retries:api.payments.example.com:VirtualService/payments:spec.http[0]": "uncovered",
        "timeout:api.payments.example.com:VirtualService/payments:spec.http[0]": "uncovered",
        "outlier-detection:api.payments.example.com": "uncovered",
        "connection-pool:api.payments.example.com": "uncovered",
        "connect-timeout:api.payments.example.com": "uncovered",
    },
}
FIGURES = {("zone-failover", "two-zones"): (2, 17, 11.8), ("external-dependency", "external-payments"): (1, 10, 10.0)}


@pytest.mark.parametrize(("experiment", "mesh"), sorted(OWN))
def test_coverage_of_the_shipped_experiments_over_their_own_mesh(experiment: str, mesh: str) -> None:
    result = coverage(MESHES / mesh, [ROOT / "experiments" / f"{experiment}.json"])
    assert {e.promise.id: e.status for e in result.entries} == OWN[(experiment, mesh)]
    assert (result.covered, len(result.entries), round(result.percent, 1)) == FIGURES[(experiment, mesh)]
    by = {e.promise.id: {(x.fault, x.probe) for x in e.exercised_by} for e in result.entries}
    if mesh == "two-zones":
        assert by["locality:catalog"] == {
            ("zone-a-of-catalog-unreachable", "traffic-failed-over-to-zone-b-and-came-back")}
    else:  # the latency fault, not the abort: checkout's 502s are fast, the timeout has nothing to cut
        assert by["timeout:checkout:VirtualService/checkout:spec.http[0]"] == {
            ("the-payment-provider-goes-slow", "frontend-p99-during-the-fault-prometheus")}


def test_locality_and_external_promises_name_their_file_resource_and_field() -> None:
    zones = {p.id: p for p in list_promises(MESHES / "two-zones").promises}
    assert (Path(zones["locality:catalog"].source.file).name, zones["locality:catalog"].source.resource,
            zones["locality:catalog"].source.field) == (
        "traffic.yaml", "DestinationRule/catalog", "spec.trafficPolicy.outlierDetection")
    # the twin without outlier detection makes no locality promise: Istio gives catalog's callers no preference
    assert not [p for p in list_promises(MESHES / "two-zones-no-outlier-detection").promises if p.kind == "locality"]
    assert not [p for p in list_promises(default_mesh_dir()).promises if p.kind == "locality"], "no localities"
    external = {p.id: p for p in list_promises(MESHES / "external-payments").promises}
    timeout = external["timeout:api.payments.example.com:VirtualService/payments:spec.http[0]"]
    assert (timeout.source.resource, timeout.source.field, timeout.targets, timeout.callers) == (
        "VirtualService/payments", "spec.http[0].timeout", ("api.payments.example.com",), ("checkout",))
    assert timeout.settings["connect_timeout_s"] == 0.25
    pool = external["connection-pool:api.payments.example.com"]
    assert (pool.source.resource, pool.source.field, pool.settings) == (
        "DestinationRule/payments", "spec.trafficPolicy.connectionPool",
        {"max_connections": 50, "max_pending_requests": 20})
    assert not [key for key in external if "rates.fx" in key], "a host with no guard of its own promises nothing"


_FAILOVER = {"module": "chaosmesh_qa.probes.failover", "func": "failover_matches", "tolerance": ["pass"],
             "arguments": {"caller": "frontend", "service": "catalog"}}
_PAYMENTS = "api.payments.example.com"
_PROVIDER = {key: f"{key}:{_PAYMENTS}" + (":VirtualService/payments:spec.http[0]" if key in ("retries", "timeout")
                                         else "") for key in ("retries", "timeout", "connect-timeout")}
OWN_MESH_CASES = {  # name -> (mesh, method, probes, the promises it covers)
    "the-callers-zone-killed": ("two-zones", [{"func": "kill_pods", "arguments": {"service": "catalog", "zone": "a"}}],
                                [_FAILOVER], {"locality:catalog"}),
    "another-zone-killed-moves-nothing": (  # the frontend is in zone a: losing zone b leaves its home as it was
        "two-zones", [{"func": "kill_pods", "arguments": {"service": "catalog", "zone": "b"}}], [_FAILOVER], set()),
    "one-pod-of-the-zone": (  # count may spare some of the zone's pods
        "two-zones", [{"func": "kill_pods", "arguments": {"service": "catalog", "zone": "a", "count": 1}}],
        [_FAILOVER], set()),
    "a-zone-partition-that-spares-the-callers-zone": (  # not isolated: the frontend's zone-a pod still reaches zone a
        "two-zones", [{"func": "partition", "arguments": {"a": "frontend", "b": "catalog", "zone": "a",
                                                          "direction": "to", "duration_s": 5}}],
        [_FAILOVER, _recovery()], set()),
    "a-zone-fault-without-the-verdict": (
        "two-zones", [{"func": "kill_pods", "arguments": {"service": "catalog", "zone": "a"}}], [_recovery()],
        {"retries:catalog:VirtualService/catalog:spec.http[0]"}),  # no failover_matches: the locality stays uncovered
    "a-drop-partition-toward-the-host": (  # the caller's cluster re-pointed: its guards see a real outage
        "external-payments", [{"func": "partition", "arguments": {"a": "checkout", "b": _PAYMENTS, "direction": "to",
                                                                  "duration_s": 5}}],
        [_recovery()], set(_PROVIDER.values())),
    "a-reject-partition-toward-the-host": (  # on a cluster, a 503 answered before checkout's router
        "external-payments", [{"func": "partition", "arguments": {"a": "checkout", "b": _PAYMENTS, "direction": "to",
                                                                  "mode": "reject", "duration_s": 5}}],
        [_recovery()], set()),
    "latency-on-the-host": (  # never seen by the provider's 500 ms timeout; seen by checkout's callers' 1 s one
        "external-payments", [_latency(_PAYMENTS, 3000)], [_recovery(p99=500)],
        {"timeout:checkout:VirtualService/checkout:spec.http[0]"}),
    "a-503-abort-on-the-host": (  # checkout answers 502: its gateway errors eject it
        "external-payments", [{"func": "inject_abort", "arguments": {"service": _PAYMENTS, "http_status": 503,
                                                                     "percent": 100, "duration_s": 5}}],
        [{"func": "policy_engaged", "arguments": {"policy": "outlier_ejection", "service": "checkout"}},
         {"func": "policy_engaged", "arguments": {"policy": "outlier_ejection", "service": _PAYMENTS}}],
        {"outlier-detection:checkout"}),
    "a-429-abort-on-the-host": (  # the built-in app answers 200 when a call gets a 4xx: nothing fails above it
        "external-payments", [{"func": "inject_abort", "arguments": {"service": _PAYMENTS, "http_status": 429,
                                                                     "percent": 100, "duration_s": 5}}],
        [{"func": "policy_engaged", "arguments": {"policy": "outlier_ejection", "service": "checkout"}}], set()),
    "latency-on-the-host-from-a-service-that-never-calls-it": (
        "external-payments", [_latency(_PAYMENTS, 3000, source="frontend")], [_recovery(p99=500)], set()),
}


@pytest.mark.parametrize("case", sorted(OWN_MESH_CASES))
def test_zone_and_external_rules(tmp_path: Path, case: str) -> None:
    mesh, method, probes, expected = OWN_MESH_CASES[case]
    path = _experiment(tmp_path, json.loads(json.dumps(method)), json.loads(json.dumps(probes)))
    covered = {key for key, status in _statuses(MESHES / mesh, [path]).items() if status == "covered"}
    assert covered == expected
