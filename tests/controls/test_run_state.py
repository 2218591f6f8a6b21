"""Two experiments in one Python process: the second journal holds nothing of the first run.

Runs real experiments through Chaos Toolkit's own API (``chaoslib.experiment.run_experiment``) with the
sandbox and safety controls against the session sandbox: the first injects an abort and measures a
recovery, the second injects nothing.  The per-run reset (``chaosmesh_qa.controls.start_of_run``) must
give the second run its own fault owner and an empty recovery list.
"""

from __future__ import annotations

from typing import Any

import pytest
from chaoslib.experiment import run_experiment

from chaosmesh_qa import targets
from chaosmesh_qa.probes import recovery
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes

CONTROLS = [{"name": name, "provider": {"type": "python", "module": f"chaosmesh_qa.controls.{name}"}}
            for name in ("sandbox", "safety")]


def probe(name: str, module: str, func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "probe", "name": name,
            "provider": {"type": "python", "module": module, "func": func, "arguments": arguments}}


def experiment(state_dir: str, method: list[dict[str, Any]]) -> dict[str, Any]:
    return {"title": "run state", "description": "per-run state reset", "controls": CONTROLS,
            "configuration": {"chaosmesh_qa_state_dir": state_dir}, "method": method,
            "rollbacks": [{"type": "action", "name": "heal",
                           "provider": {"type": "python", "module": "chaosmesh_qa.actions", "func": "heal"}}]}


@pytest.mark.timeout(180)
def test_second_run_in_the_same_process_starts_clean(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(targets.OWNER_ENV, raising=False)
    for key in ("number", "open"):  # leave this process's owner as it was for the tests that follow
        monkeypatch.setitem(targets.run._run, key, targets.run._run[key])
    monkeypatch.setattr(recovery, "RECOVERIES", recovery.RECOVERIES)
    state_dir = str(sandbox.state_dir)
    first = run_experiment(experiment(state_dir, [
        {"type": "action", "name": "abort-catalog", "provider": {
            "type": "python", "module": "chaosmesh_qa.actions", "func": "inject_abort",
            "arguments": {"service": "catalog", "http_status": 503, "percent": 100, "duration_s": 2}}},
        probe("recovery", "chaosmesh_qa.probes.recovery", "recovered_within", budget_s=1,
              slo={"max_error_ratio": 0.5}, stable_s=1),
    ]))
    second = run_experiment(experiment(state_dir, [
        probe("recovery", "chaosmesh_qa.probes.recovery", "recovered_within", budget_s=1,
              slo={"max_error_ratio": 0.5}, stable_s=1),
        probe("ejections", "chaosmesh_qa.probes.prometheus", "policy_engaged", policy="outlier_ejection",
              service="catalog"),
    ]))

    assert first["status"] == "completed", first["run"]
    fault = first["run"][0]["output"]
    assert fault["kind"] == "abort"
    assert len(first["chaosmesh_qa"]["recovery"]) == 1, "the first run's own recovery is in its journal"
    assert first["chaosmesh_qa"]["recovery"][0]["timeline"]["fault_start"] == fault["started_at"]

    assert second["status"] == "completed", second["run"]
    assert second["chaosmesh_qa"]["recovery"] == [], "nothing of the first run is copied into the second journal"
    outputs = {run["activity"]["name"]: run["output"] for run in second["run"]}
    # the second run injected nothing: its probes must not see the first run's fault
    assert outputs == {"recovery": 0.0, "ejections": True}
    assert second["chaosmesh_qa"]["healed_at_end"] == []
    assert fault["owner"] != targets.run_owner(), "each run has its own fault owner"
