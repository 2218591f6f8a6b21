"""Safety control: whatever happened, heal every fault this experiment run injected.

Declare it at the top level of an experiment::

    "controls": [{"name": "chaosmesh-qa-safety",
                  "provider": {"type": "python", "module": "chaosmesh_qa.controls.safety"}}]

It runs after the experiment (and again at clean-up), including after an interrupted
run; it is a second line of defence behind ``heal`` rollbacks, and the sandbox's lease
expiry is the third (it holds even when the ``chaos`` process is SIGKILLed).  It also
names the run's target in the journal (``chaosmesh_qa.target``: kind, context, API server, whether it is the
Kubernetes API emulation), copies the recovery timelines measured by ``recovered_within`` during this run into the
journal; before the experiment it resets per-run state (``chaosmesh_qa.controls.start_of_run``) and checks that
the experiment's Prometheus measurements can be judged at the target's scrape interval (``controls.resolution``).
"""

from __future__ import annotations

import logging
from typing import Any

from chaosmesh_qa.controls import end_of_run, resolution, start_of_run
from chaosmesh_qa.errors import ChaosMeshQAError
from chaosmesh_qa.targets.factory import get_target
from chaosmesh_qa.targets.policy import FaultRecord
from chaosmesh_qa.targets.run import run_owner

__all__ = ["after_experiment_control", "before_experiment_control", "cleanup_control", "configure_control"]

log = logging.getLogger("chaostoolkit")
_configuration: dict[str, Any] = {}
_healed_after_experiment: list[bool] = []


def configure_control(configuration: dict[str, Any] | None = None, **_: Any) -> None:
    _healed_after_experiment.clear()
    _configuration.clear()
    _configuration.update(configuration or {})


def before_experiment_control(context: dict[str, Any], **_: Any) -> None:
    start_of_run()
    _check_resolution(context, _configuration)


def _check_resolution(experiment: dict[str, Any], configuration: dict[str, Any]) -> None:
    """Stop the run, before anything is injected, when a measurement cannot be judged at the target's
    Prometheus scrape interval (``controls.resolution``); say which windows are read wider."""
    from chaoslib.exceptions import InterruptExecution

    from chaosmesh_qa.metrics.prometheus import PrometheusQuery

    if not resolution.measures_on_prometheus(experiment):
        return
    try:
        interval = PrometheusQuery(get_target(configuration).prometheus_url()).scrape_interval_s()
    except ChaosMeshQAError:
        return  # no Prometheus configured (or not reachable): the probes that need one say so themselves
    if interval is None:
        return
    refused, widened = resolution.findings(experiment, interval)
    for line in widened:
        log.warning("chaosmesh-qa: %s", line)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise InterruptExecution(f"chaosmesh-qa: {refused[0]}{more}")


def after_experiment_control(context: dict[str, Any], state: dict[str, Any],
                             configuration: dict[str, Any] | None = None, **_: Any) -> None:
    from chaosmesh_qa.probes.recovery import RECOVERIES

    healed = _heal_run_faults(configuration or _configuration)
    _healed_after_experiment.append(True)
    extra = state.setdefault("chaosmesh_qa", {})
    extra["target"] = _identity(configuration or _configuration)
    extra["healed_at_end"] = healed
    extra["recovery"] = list(RECOVERIES)


def cleanup_control() -> None:
    try:
        if not _healed_after_experiment:
            _heal_run_faults(_configuration)
    finally:
        end_of_run()


def _identity(configuration: dict[str, Any]) -> dict[str, Any] | None:
    """Which target, context and API server this run used (``MeshTarget.identity``), for the journal."""
    try:
        return get_target(configuration).identity()
    except ChaosMeshQAError as exc:
        log.warning("chaosmesh-qa safety: could not name the run's target: %s", exc)
        return None


def _heal_run_faults(configuration: dict[str, Any]) -> list[FaultRecord]:
    try:
        healed = get_target(configuration).heal(None, run_owner())
    except ChaosMeshQAError as exc:
        log.warning("chaosmesh-qa safety: could not heal this run's faults: %s", exc)
        return []
    if healed:
        log.warning("chaosmesh-qa safety: healed %d fault(s) left by the run: %s", len(healed),
                    ", ".join(f["fault_id"] for f in healed))
    return healed
