"""Traffic control: Locust traffic through the whole experiment, and its per-phase summary in the journal.

Declare it at the top level of an experiment, next to the safety control::

    "configuration": {"chaosmesh_qa_traffic": "experiments/traffic/default.yaml"},
    "controls": [{"name": "chaosmesh-qa-traffic",
                  "provider": {"type": "python", "module": "chaosmesh_qa.controls.traffic"}}]

Before the experiment (so before the steady-state hypothesis) it validates the profile, starts
Locust and waits until the timeline shows the traffic settled (``warmup_s``); a bad profile or an
unreachable host interrupts the run with one line before anything else happens.  After the
experiment, whatever happened (failure, SIGINT, SIGTERM), it stops Locust and adds
``chaosmesh_qa.traffic`` to the journal: the timeline path and a summary per phase (before the
first fault of this run, during faults, after the last heal).  ``cleanup_control`` stops again
(idempotent); a SIGKILLed ``chaos`` is covered by the Locust processes' own parent watchdog.
Before the experiment it also starts the run's per-run state (``chaosmesh_qa.controls.start_of_run``).
When the controls are configured it starts a Locust process that imports Locust while the mesh comes up
(``traffic.locust_standby``): the run's Locust is that process, about half a second sooner.
Optional control arguments: ``profile`` (mapping or file, overrides the configuration) and ``host``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from chaoslib.exceptions import InterruptExecution

from chaosmesh_qa.controls import end_of_run, start_of_run
from chaosmesh_qa.errors import ChaosMeshQAError
from chaosmesh_qa.targets.factory import get_target
from chaosmesh_qa.targets.run import run_owner
from chaosmesh_qa.traffic import locust_standby, runner, timeline
from chaosmesh_qa.traffic.actions import prepare, timeline_path

__all__ = ["after_experiment_control", "before_experiment_control", "cleanup_control", "configure_control"]

log = logging.getLogger("chaostoolkit")
_configuration: dict[str, Any] = {}
_started: dict[str, Any] = {}


def configure_control(configuration: dict[str, Any] | None = None, **_: Any) -> None:
    _configuration.clear()
    _configuration.update(configuration or {})
    _started.clear()
    runner.prestart()  # Locust's import overlaps the mesh coming up (traffic.locust_standby)


def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              profile: dict[str, Any] | str | None = None, host: str | None = None,
                              **_: Any) -> None:
    start_of_run()
    configuration = configuration if configuration is not None else _configuration
    try:
        prepared = prepare(profile, host, configuration)
        run = runner.start(prepared.profile, prepared.host, prepared.timeline)
        _started.update(timeline=run.timeline, host=run.host, started_at=run.started_at)
        log.info("chaosmesh-qa traffic: %d users%s against %s, timeline %s", prepared.profile.users,
                 f" at {prepared.profile.rate_rps:g} rps" if prepared.profile.rate_rps else "", run.host, run.timeline)
        _started["ready_at"] = runner.wait_ready(run, prepared.profile)
    except ChaosMeshQAError as exc:
        _started["error"] = str(exc)
        if "timeline" in _started:
            runner.stop(timeline_path(configuration))
        raise InterruptExecution(f"chaosmesh-qa traffic: {exc}") from None


def after_experiment_control(context: dict[str, Any], state: dict[str, Any],
                             configuration: dict[str, Any] | None = None, **_: Any) -> None:
    configuration = configuration if configuration is not None else _configuration
    state.setdefault("chaosmesh_qa", {})["traffic"] = stop_and_summarise(configuration)


def cleanup_control() -> None:
    try:
        locust_standby.discard()  # a run that never started traffic
        if _started.get("timeline"):
            runner.stop(timeline_path(_configuration))
    finally:
        end_of_run()


def stop_and_summarise(configuration: dict[str, Any]) -> dict[str, Any]:
    """Stop this run's traffic and summarise the timeline per phase, from this run's fault records."""
    path = timeline_path(configuration)
    result: dict[str, Any] = {"timeline": str(path), **{k: v for k, v in _started.items() if k != "timeline"}}
    if "error" in _started and "started_at" not in _started:
        return result
    stopped = runner.stop(path)
    result["stopped_at"] = time.time()
    result["killed"] = stopped.get("killed", [])
    try:
        lines = timeline.measured(timeline.read_timeline(path), runner.ready_at(path))
    except ChaosMeshQAError as exc:
        result["summary_error"] = str(exc)
        return result
    try:
        faults = get_target(configuration).fault_history(run_owner())
    except ChaosMeshQAError as exc:
        log.warning("chaosmesh-qa traffic: no fault history, phases unavailable: %s", exc)
        faults, result["phases_error"] = [], str(exc)
    result["faults"] = [{"fault_id": f.get("fault_id"), "kind": f.get("kind"), "started_at": f.get("started_at"),
                         "ended_at": f.get("ended_at"), "expires_at": f.get("expires_at")} for f in faults]
    result["overall"] = timeline.summarize(lines)
    result["phases"] = timeline.phase_summary(lines, faults)
    return result
