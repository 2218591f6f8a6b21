"""The shipped experiments on the cluster profiles (tests/profiles/) with the local target: the embedded mesh built
from a Helm chart's labels, and under a custom trust domain, keeps every promise the default mesh keeps.

The same profiles run on the Kubernetes target in tests/targets/kubernetes/test_profiles.py (which also covers the
embedded mesh they run on); here the local target alone: the slow suite (`make slow`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.report.verdict import load_journal, verdict
from chaosmesh_qa.targets.local.sandbox import down
from tests.support.runs import run_experiment

pytestmark = [pytest.mark.processes, pytest.mark.slow]

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
CASES = [(experiment, profile) for profile in ("helm-labels", "custom-trust-domain")
         for experiment in ("pod-kill-failover", "latency-circuit-breaker", "mtls-strict", "authz-enforced")]


@pytest.mark.parametrize(("name", "profile"), CASES, ids=[f"{n}-on-{p}" for n, p in CASES])
def test_shipped_experiment_passes_on_the_profile_with_the_local_target(name: str, profile: str,
                                                                       tmp_path: Path) -> None:
    try:
        run_experiment(name, PROFILES / profile, tmp_path)
    finally:
        down(tmp_path / "state")
    result = verdict(load_journal(tmp_path / "journal.json"), tmp_path / "journal.json")
    assert result.outcome == "passed", (result.reasons, (tmp_path / "chaos.log").read_text()[-3000:])
