"""Whether an experiment's Prometheus measurements can be judged at the target's scrape interval.

The safety control (``controls.safety``) calls ``check`` before the experiment, so a run against a Prometheus
that scrapes every 15 s (a cluster's usual interval; the sandbox's is 1 s, ``up --scrape-interval`` changes it)
learns what it cannot measure before anything is injected:

* a ``recovered_within`` on Prometheus whose budget is shorter than one scrape interval cannot be judged
  (recovery shows in steps of one scrape): the run stops here, in one line naming the probe and what to use
  instead (``measure: client``, the client timeline, second by second; or a longer budget);
* windows of the other Prometheus probes shorter than two scrapes are widened to two (``MeasureContext.readable``)
  and said here, once per probe; ``routing_matches`` also waits until its widened window lies after
  the traffic's start and a fault's end (``probes.routing``), said here too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

PROMETHEUS_PROBES = "chaosmesh_qa.probes.prometheus"
RECOVERY_PROBES = "chaosmesh_qa.probes.recovery"
ROUTING_PROBES = "chaosmesh_qa.probes.routing"
DEFAULT_WINDOW_S = 10.0  # the probes' own default window_s
ROUTING_WINDOW_S = 30.0  # routing_matches' default window_s


def activities(experiment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every activity the experiment declares inline (hypothesis probes, method, rollbacks)."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    for activity in [*(hypothesis.get("probes") or []), *(experiment.get("method") or []),
                     *(experiment.get("rollbacks") or [])]:
        if isinstance(activity, dict) and isinstance(activity.get("provider"), dict):
            yield activity


def measures_on_prometheus(experiment: dict[str, Any]) -> bool:
    """Whether any activity of ``experiment`` reads Prometheus (so the scrape interval matters)."""
    return any(a["provider"].get("module") in (PROMETHEUS_PROBES, RECOVERY_PROBES, ROUTING_PROBES)
               for a in activities(experiment))


def findings(experiment: dict[str, Any], interval_s: float) -> tuple[list[str], list[str]]:
    """(what cannot be judged at ``interval_s``, what is read over a wider window) for ``experiment``."""
    refused, widened = [], []
    readable = 2 * interval_s
    for activity in activities(experiment):
        provider, name = activity["provider"], activity.get("name", "?")
        arguments = provider.get("arguments") if isinstance(provider.get("arguments"), dict) else {}
        if provider.get("module") == RECOVERY_PROBES and arguments.get("measure", "prometheus") == "prometheus":
            budget = arguments.get("budget_s")
            if isinstance(budget, int | float) and budget < interval_s:
                refused.append(f"probe {name!r}: budget_s={budget:g} cannot be judged from a Prometheus that scrapes "
                               f"every {interval_s:g} s (recovery shows in steps of one scrape); use measure: client "
                               f"(the client timeline, second by second) or a budget of at least {interval_s:g} s")
        elif provider.get("module") == PROMETHEUS_PROBES and "phase" not in arguments:
            window = arguments.get("window_s", DEFAULT_WINDOW_S)
            if isinstance(window, int | float) and window < readable and provider.get("func") in (
                    "error_ratio", "latency_quantile", "request_rate"):
                widened.append(f"probe {name!r}: window_s={window:g} is read over {math.ceil(readable)} s, two "
                               f"scrapes of a Prometheus that scrapes every {interval_s:g} s")
        elif provider.get("module") == ROUTING_PROBES:
            window = arguments.get("window_s", ROUTING_WINDOW_S)
            if isinstance(window, int | float) and window < readable:
                widened.append(f"probe {name!r}: window_s={window:g} is read over {math.ceil(readable)} s, two "
                               f"scrapes of a Prometheus that scrapes every {interval_s:g} s, starting a scrape "
                               "interval after the traffic's start or a fault's end (the probe waits for it)")
    return refused, widened
