"""Runs of the shipped experiments: their cases, one ``chaos run`` of them, and the ``chaosmesh-qa run`` of pod-kill.

``CASES`` pairs each experiment with the mesh it passes on and the twins it must fail on; ``run_experiment``
runs one with the real ``chaos`` CLI (tests/experiments, tests/mesh/test_explain.py; the kubernetes target's
tests/targets/kubernetes/test_experiments.py reuses ``CASES``).  ``Run``/``real_run`` are what one
``chaosmesh-qa run experiments/pod-kill-failover.json`` leaves behind: tests/conftest.py's ``passing_run`` and
``broken_run``, judged by the experiment, report and explain tests.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chaosmesh_qa.targets.local.sandbox import down, is_running
from chaosmesh_qa.targets.local.state import SandboxPaths
from tests.support.cli import CHAOS, ROOT, run_cli

EXPERIMENT = ROOT / "experiments" / "pod-kill-failover.json"
BROKEN_MESH = ROOT / "experiments" / "meshes" / "no-retries-no-outlier-detection"
CASES = [
    ("pod-kill-failover", None, "passed"),
    ("pod-kill-failover", "no-retries-no-outlier-detection", "deviated"),
    ("latency-circuit-breaker", None, "passed"),
    ("latency-circuit-breaker", "no-timeout-no-connection-pool", "deviated"),
    ("partition-failover", None, "passed"),
    ("partition-failover", "single-catalog-replica", "deviated"),
    # issue 20: a zone outage on the mesh in two zones (its mesh is not the default one), and its twin
    ("zone-failover", "two-zones", "passed"),
    ("zone-failover", "two-zones-no-outlier-detection", "baseline-not-met"),
    # issue 21: a ServiceEntry host's faults; its mesh is a variant of its own, not the default mesh
    ("external-dependency", "external-payments", "passed"),
    ("external-dependency", "external-payments-unguarded", "deviated"),
    # a twin that breaks the mesh's own promise (routing, mTLS, tracing, authorization) is off its steady state
    # before any fault
    ("routing-canary", None, "passed"),
    ("routing-canary", "canary-subset-wrong-pods", "baseline-not-met"),
    ("mtls-strict", None, "passed"),
    ("mtls-strict", "permissive-workload", "baseline-not-met"),
    ("tracing-complete", None, "passed"),
    ("tracing-complete", "drops-trace-headers", "baseline-not-met"),
    ("authz-enforced", None, "passed"),
    ("authz-enforced", "authz-widened", "baseline-not-met"),
    ("authz-enforced", "authz-removed", "baseline-not-met"),
]


def run_experiment(name: str, mesh: str | Path | None, work: Path) -> subprocess.CompletedProcess[str]:
    """``chaos run experiments/NAME.json`` on ``experiments/meshes/MESH`` (a ``Path``: that mesh directory; None:
    the default mesh), in ``work``."""
    directory = mesh if isinstance(mesh, Path) else ROOT / "experiments" / "meshes" / mesh if mesh else None
    env = {**os.environ, "CHAOSMESH_QA_STATE_DIR": str(work / "state"),
           "CHAOSMESH_QA_TIMELINE": str(work / "timeline.jsonl"),
           "CHAOSMESH_QA_MESH": str(directory) if directory else ""}
    return subprocess.run([CHAOS, "--no-version-check", "--log-file", str(work / "chaos.log"), "run",
                           "--journal-path", str(work / "journal.json"), str(ROOT / "experiments" / f"{name}.json")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)


@dataclass
class Run:
    out: Path
    process: subprocess.CompletedProcess[str]
    sandbox_left_running: bool  # the run's sandbox control should have stopped what it started

    @property
    def journal(self) -> Path:
        return self.directory / "journal.json"

    @property
    def timeline(self) -> Path:
        return self.directory / "timeline.jsonl"

    @property
    def junit(self) -> Path:
        return self.out / "report.xml"

    @property
    def html(self) -> Path:
        return self.out / "report.html"

    @property
    def markdown(self) -> Path:
        return self.out / "summary.md"

    @property
    def directory(self) -> Path:
        return self.out / "runs" / "pod-kill-failover"


def real_run(out: Path, mesh: Path | None) -> Iterator[Run]:
    state = out / "state"
    env = {"CHAOSMESH_QA_STATE_DIR": str(state), "CHAOSMESH_QA_MESH": str(mesh) if mesh else ""}
    try:
        process = run_cli("run", str(EXPERIMENT), "--out", str(out / "runs"), "--junit", str(out / "report.xml"),
                          "--html", str(out / "report.html"), "--markdown", str(out / "summary.md"),
                          env=env, timeout=180)
        left_running = is_running(SandboxPaths(state))
    finally:
        down(state)  # whatever happened to the run, leave no sandbox behind
    yield Run(out, process, left_running)
