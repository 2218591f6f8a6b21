"""What an experiment can measure at a Prometheus scrape interval (issue 18 point 15), before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

from chaosmesh_qa.controls.resolution import findings, measures_on_prometheus

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def probe(name: str, module: str, func: str, **arguments: object) -> dict[str, object]:
    return {"type": "probe", "name": name, "provider": {"type": "python", "module": module, "func": func,
                                                        "arguments": arguments}}


def test_a_recovery_budget_shorter_than_two_scrapes_is_refused_and_short_windows_are_said_widened() -> None:
    experiment = {"steady-state-hypothesis": {"probes": [
        probe("p99", "chaosmesh_qa.probes.prometheus", "latency_quantile", service="frontend", window_s=5),
        probe("during", "chaosmesh_qa.probes.prometheus", "latency_quantile", service="frontend", phase="during")]},
        "method": [probe("back", "chaosmesh_qa.probes.recovery", "recovered_within", budget_s=8, slo={}),
                   probe("client", "chaosmesh_qa.probes.recovery", "recovered_within", budget_s=1, slo={},
                         measure="client")]}
    refused, widened = findings(experiment, 15)
    assert refused == ["probe 'back': budget_s=8 cannot be judged from a Prometheus that scrapes every 15 s "
                       "(recovery shows in steps of one scrape); use measure: client (the client timeline, second "
                       "by second) or a budget of at least 15 s"]
    assert widened == ["probe 'p99': window_s=5 is read over 30 s, two scrapes of a Prometheus that scrapes every "
                       "15 s"]
    assert findings(experiment, 1) == ([], [])  # the sandbox's 1 s: a 1 s budget is one step


def test_the_shipped_experiments_can_all_be_judged_at_a_clusters_15_s() -> None:
    """Each shipped experiment measures recovery on the client timeline or with a budget of two scrapes."""
    for path in sorted(EXPERIMENTS.glob("*.json")):
        experiment = json.loads(path.read_text())
        if measures_on_prometheus(experiment):
            assert findings(experiment, 15)[0] == [], path.name


def test_a_routing_window_shorter_than_two_scrapes_is_said_widened_and_read_after_the_faults_end() -> None:
    """routing_matches after a fault cannot read a widened window that reaches back into it (the shares it judges
    would be those during the fault): the run says, before anything is injected, that it waits for a window
    after the fault's end (issue 18 point 15: routing-canary read v2 at 21.6 % of a 36 % share at a 15 s
    scrape, its 5 s window an extrapolation of the scrape that held the canary's outage)."""
    experiment = {"steady-state-hypothesis": {"probes": [
        probe("shares", "chaosmesh_qa.probes.routing", "routing_matches", service="reviews", window_s=5),
        probe("wide", "chaosmesh_qa.probes.routing", "routing_matches", service="reviews", window_s=60)]}}
    assert measures_on_prometheus(experiment)
    refused, widened = findings(experiment, 15)
    assert refused == []
    assert widened == ["probe 'shares': window_s=5 is read over 30 s, two scrapes of a Prometheus that scrapes every "
                       "15 s, starting a scrape interval after the traffic's start or a fault's end (the probe "
                       "waits for it)"]
