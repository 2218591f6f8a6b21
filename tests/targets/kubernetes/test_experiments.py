"""The shipped experiments on the kubernetes target, unchanged: only the environment switches the target.

Each case runs the real `chaos` CLI with CHAOSMESH_QA_TARGET=kubernetes and the emulation's kubeconfig
(``KubeSandbox.env()``: kubeconfig, Prometheus, ingress, Zipkin) against an embedded mesh (default or broken
twin) serving the Kubernetes API emulation: faults go through the API as EnvoyFilters / NetworkPolicies /
AuthorizationPolicies / pod deletes, probes read the Istio metric names.  Each must pass on the default mesh
and deviate on its twin (or miss its baseline), exactly as on the local target (tests/experiments/), and
`chaosmesh-qa verdict` reads the journal the same way.

All seven (issue 18 point 16: the three resilience and the three mesh QA ones; issue 22's authorization verdict
since) run one after the other on the session's default-mesh sandbox (``kube``), as experiments do on a cluster
whose pods earlier runs replaced; each broken twin brings up its own mesh.  Point 17: latency-circuit-breaker's
p99 probe reads the fault's own window, so on the twin without route timeouts it deviates on the kubernetes
target, whose recovery probe takes longer than the local one's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.metrics.prometheus import PrometheusQuery
from chaosmesh_qa.report.verdict import Verdict
from chaosmesh_qa.targets.kubernetes.reaper import stop_local_reapers
from tests.support.kube import KubeSandbox, running, start
from tests.support.kuberuns import run_and_judge
from tests.support.runs import CASES

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
RESILIENCE = ("pod-kill-failover", "latency-circuit-breaker", "partition-failover")
ON_THEIR_OWN_MESH = ("zone-failover",)  # issue 20: its mesh has two zones; it and its twin each bring theirs up
MESH_QA = ("routing-canary", "mtls-strict", "tracing-complete", "authz-enforced")
# `make test` keeps one run per kind of proof (a resilience experiment passing and its twin deviating, the mesh QA
# verdicts that read the API and the trace store); the full matrix runs in the slow suite (`make slow`), as the
# same experiments run on the local target in tests/experiments.  routing-canary runs there only: after its pod
# kill its verdict counts a replacement's first Istio sample whole, and that sample holds every request the pod
# served before its first scrape (5 s late here, as Prometheus' target discovery is): v2 read 42.5 % of a 36 %
# share in one full-suite run of 2026-12-06 (it passed in the others; issue 18's note).
# One broken twin stays (the mTLS one: it reads the PeerAuthentications from the API); the resilience twins deviate
# on the local target in make test (tests/experiments) and on this one in the slow suite.  authz-enforced on the
# default mesh stays too: the only verdict that judges the callees' counts per caller identity and response code.
# authz-enforced runs on the local target in make test (tests/experiments); this target's reading of the counted
# requests is tested pure (tests/probes/test_authz.py), its run here in the slow suite
IN_MAKE_TEST = {"pod-kill-failover-on-default-mesh", "mtls-strict-on-default-mesh", "tracing-complete-on-default-mesh",
                "mtls-strict-on-permissive-workload",
                # issue 20's acceptance: the zone outage passes on its mesh and fails on its twin on this target too
                "zone-failover-on-two-zones", "zone-failover-on-two-zones-no-outlier-detection"}


def _cases(chosen: list[tuple[str, str | None, str]]) -> list[Any]:
    ids = [f"{c[0]}-on-{c[1] or 'default-mesh'}" for c in chosen]
    return [pytest.param(*c, id=i, marks=() if i in IN_MAKE_TEST else pytest.mark.slow)
            for c, i in zip(chosen, ids, strict=True)]


DEFAULT = _cases([c for c in CASES if c[1] is None])
RESILIENCE_TWINS = _cases([c for c in CASES if c[1] and c[0] in (*RESILIENCE, *ON_THEIR_OWN_MESH)])
# Each mesh QA twin proves a kubernetes code path of its own: the serving pod's destination_version (routing),
# the PeerAuthentications read from the API (mTLS), the spans read from the configured Zipkin API (tracing), the
# AuthorizationPolicies read from the API against the experiment's intent (authorization: no request from the
# widened-in frontend is ever counted, the declaration alone is the violation).
# Each is a sandbox start (~8 s) and a run that stops at its baseline (~10 s).
MESH_QA_TWINS = _cases([c for c in CASES if c[1] and c[0] in MESH_QA])
# issue 21: the external dependency's faults toward a ServiceEntry host, on its own mesh and on its twin
EXTERNAL = [pytest.param(*c, id=f"{c[0]}-on-{c[1]}") for c in CASES if c[0] == "external-dependency"]
assert len(DEFAULT) == 7 and len(MESH_QA_TWINS) == 5


@pytest.mark.parametrize(("name", "mesh", "expected"), DEFAULT)
def test_point16_shipped_experiment_passes_on_the_default_mesh(kube: KubeSandbox, name: str, mesh: None,
                                                               expected: str, tmp_path: Path) -> None:
    """Issue 18 point 16: all seven shipped experiments, the mesh QA ones too, pass with only the target switched.

    They share the session's sandbox: pods an earlier run (or test) killed were replaced, so the routing and
    mTLS verdicts read Istio series born during the run, as on a cluster whose pods come and go."""
    run_and_judge(kube, ROOT / "experiments" / f"{name}.json", expected, tmp_path)


@pytest.mark.parametrize(("name", "mesh", "expected"), MESH_QA_TWINS)
def test_point16_mesh_qa_twin_misses_its_baseline(name: str, mesh: str, expected: str, tmp_path: Path) -> None:
    """Issue 18 point 16: each mesh QA experiment's broken twin is off its steady state on this target too."""
    _on_own_mesh(mesh, ROOT / "experiments" / f"{name}.json", expected, tmp_path)


@pytest.mark.parametrize(("name", "mesh", "expected"), RESILIENCE_TWINS)
def test_experiment_on_its_own_mesh(name: str, mesh: str, expected: str, tmp_path: Path) -> None:
    _on_own_mesh(mesh, ROOT / "experiments" / f"{name}.json", expected, tmp_path)


@pytest.mark.parametrize(("name", "mesh", "expected"), EXTERNAL)
def test_issue21_external_dependency_passes_on_its_mesh_and_deviates_on_its_twin(name: str, mesh: str, expected: str,
                                                                               tmp_path: Path) -> None:
    """The payment provider (a ServiceEntry host) slow then down: its faults go through the API as EnvoyFilters on
    the callers' SIDECAR_OUTBOUND (there is no callee sidecar), which the emulation applies to checkout's outbound
    listener as istiod would; checkout's callers' timeout keeps the frontend's p99 on the mesh, not on its twin."""
    result = _on_own_mesh(mesh, ROOT / "experiments" / f"{name}.json", expected, tmp_path)
    faults = [r["output"] for r in result.journal["run"]
              if isinstance(r.get("output"), dict) and "fault_id" in r["output"]]
    assert [f["kind"] for f in faults] == ["latency", "abort"]
    for fault in faults:
        changes = fault["changes"]
        assert changes["applied_at"] == "caller outbound" and changes["service_entry"] == "default/payments"
        assert changes["confirmed"] and "caller-side" in changes["placement"], changes


@pytest.fixture(scope="module")
def scraped_every_15_s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    """A default-mesh sandbox of its own whose Prometheus scrapes every 15 s, as Istio's sample Prometheus does."""
    with running(tmp_path_factory.mktemp("scrape-15s") / "state", "--scrape-interval", "15") as box:
        assert PrometheusQuery(box.status()["prometheus_url"]).scrape_interval_s() == 15
        yield box


@pytest.mark.slow  # one experiment each on a sandbox scraped every 15 s: 60-120 s each
@pytest.mark.parametrize("name", [*RESILIENCE, *MESH_QA])
def test_point15_the_shipped_experiments_pass_where_prometheus_scrapes_every_15_s_as_a_clusters(
        scraped_every_15_s: KubeSandbox, name: str, tmp_path: Path) -> None:
    """Issue 18 point 15 and its acceptance: the probes read the scrape interval from Prometheus, read windows of
    at least two scrapes, and wait a recording lag for a policy's count; all seven shipped experiments pass,
    unchanged, with the emulation's Prometheus scraping every 15 s."""
    run_and_judge(scraped_every_15_s, ROOT / "experiments" / f"{name}.json", "passed", tmp_path)


@pytest.mark.slow  # a twin's sandbox, a 6 s fault and a 13 s pause: 35-65 s
def test_point17_the_p99_under_the_delay_reads_the_faults_window(tmp_path: Path) -> None:
    """Issue 18 point 17: on the twin without route timeouts the frontend's p99 under the delay is above 3 s,
    however long after the heal the probe runs.

    latency-circuit-breaker as shipped but for two changes: the method waits 13 s after the heal (as a slow
    recovery probe on a cluster would make it), and the steady state keeps only the probes this is about (the
    twin's circuit-breaker probe, checked first, would stop Chaos Toolkit before the p99 one; the recovery
    probe is timing of its own).  13 s is the 8 s window_s, plus the 4 s delay a held request takes to
    complete, plus a second: "the last 8 s" then holds no request the delay held, and the twin would pass.
    The fault's own window (phase "during", from the run's fault record) holds them all, and with no timeout
    each took at least the 4 s delay, well inside the (3000, 5000] bucket: the p99 is above the 3000 ms bound.
    """
    experiment = json.loads((ROOT / "experiments" / "latency-circuit-breaker.json").read_text())
    kept = ("client-error-ratio-before-the-fault", "frontend-p99-during-the-fault-prometheus")
    hypothesis = experiment["steady-state-hypothesis"]
    hypothesis["probes"] = [p for p in hypothesis["probes"] if p["name"] in kept]
    assert [p["name"] for p in hypothesis["probes"]] == list(kept)
    assert experiment["method"][-1]["name"] == "heal-the-delay"
    experiment["method"][-1]["pauses"] = {"after": 13}
    path = tmp_path / "latency-circuit-breaker-p99-only.json"
    path.write_text(json.dumps(experiment))
    result = _on_own_mesh("no-timeout-no-connection-pool", path, "deviated", tmp_path)
    after = {p["activity"]["name"]: p for p in result.journal["steady_states"]["after"]["probes"]}
    p99 = after["frontend-p99-during-the-fault-prometheus"]
    assert p99["tolerance_met"] is False and p99["output"] > 3000, p99["output"]


def _on_own_mesh(mesh: str, experiment: Path, expected: str, work: Path) -> Verdict:
    kube = start(work / "state", "--mesh", str(ROOT / "experiments" / "meshes" / mesh))
    try:
        return run_and_judge(kube, experiment, expected, work)
    finally:
        stop_local_reapers()
        kube.down()
