"""Chaos Toolkit actions to start and stop traffic from an experiment's method (or rollbacks).

Referenced as ``{"type": "python", "module": "chaosmesh_qa.traffic.actions", "func": "start_traffic"}``;
the traffic control (``chaosmesh_qa.controls.traffic``) uses the same helpers.  The profile comes
from the ``profile`` argument or ``configuration["chaosmesh_qa_traffic"]`` (a mapping or a file
path), the timeline path from ``configuration["chaosmesh_qa_timeline"]`` (default
``./chaosmesh-qa-timeline.jsonl``), the host from the profile or, by default, the target's ingress.
Everything is validated (``chaosmesh_qa.checks``) before a process starts or the target is asked;
errors are one line naming the field.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaosmesh_qa import checks
from chaosmesh_qa.errors import ChaosMeshQAError, TargetUnavailable
from chaosmesh_qa.targets.factory import get_target
from chaosmesh_qa.traffic import runner, timeline
from chaosmesh_qa.traffic.profile import PROFILE_KEY, TIMELINE_KEY, Profile, check_url, load_profile

__all__ = ["start_traffic", "stop_traffic"]

Configuration = dict[str, Any]


def start_traffic(profile: dict[str, Any] | str | None = None, host: str | None = None, wait_ready: bool = True,
                  configuration: Configuration | None = None) -> dict[str, Any]:
    """Start Locust traffic (FastHttpUser) and, with ``wait_ready``, wait until it has settled.

    ``profile`` (a mapping or a YAML/JSON file) overrides ``configuration.chaosmesh_qa_traffic``;
    ``host`` overrides the profile's host and the target's ingress URL.  Returns the run's pids,
    host, timeline path and ready time.
    """
    wait = checks.flag("wait_ready", wait_ready)
    prepared = prepare(profile, host, configuration)
    run = runner.start(prepared.profile, prepared.host, prepared.timeline)
    try:
        ready = runner.wait_ready(run, prepared.profile) if wait else None
    except BaseException:
        runner.stop(prepared.timeline)
        raise
    return {"timeline": run.timeline, "host": run.host, "master_pid": run.master_pid, "worker_pids": run.worker_pids,
            "master_port": run.master_port, "ready_at": ready, "rate_rps": prepared.profile.rate_rps,
            "users": prepared.profile.users}


def stop_traffic(configuration: Configuration | None = None) -> dict[str, Any]:
    """Stop the traffic writing this experiment's timeline (idempotent) and summarise the whole run."""
    path = timeline_path(configuration)
    stopped = runner.stop(path)
    try:
        lines = timeline.measured(timeline.read_timeline(path), runner.ready_at(path))
        stopped["summary"] = timeline.summarize(lines)
    except ChaosMeshQAError as exc:
        stopped["summary"] = None
        stopped["summary_error"] = str(exc)
    return stopped


# --------------------------------------------------------------------------- shared with the control


class Prepared:
    """A validated profile, the host it targets and the timeline path: everything needed to start."""

    def __init__(self, profile: Profile, host: str, timeline_file: Path) -> None:
        self.profile, self.host, self.timeline = profile, host, timeline_file


def timeline_path(configuration: Mapping[str, Any] | None) -> Path:
    """This experiment's timeline file (``configuration.chaosmesh_qa_timeline``), its value checked first."""
    configuration = checks.mapping("configuration", {} if configuration is None else configuration)
    value = configuration.get(TIMELINE_KEY)
    if value is not None and value != "":
        checks.file_path(f"configuration.{TIMELINE_KEY}", value)
    return timeline.timeline_path(configuration)


def prepare(profile: dict[str, Any] | str | None, host: str | None,
            configuration: Configuration | None) -> Prepared:
    """Everything checked, in order: the profile, the host, the timeline path; then the target's ingress if needed."""
    configuration = dict(checks.mapping("configuration", {} if configuration is None else configuration))
    source = profile if profile is not None else configuration.get(PROFILE_KEY)
    loaded = load_profile(source)
    given = check_url("host", host) if host is not None else loaded.host
    path = timeline_path(configuration)
    return Prepared(loaded, given or ingress_url(configuration), path)


def ingress_url(configuration: Configuration) -> str:
    target = get_target(configuration)  # a malformed target configuration is the user's InvalidArgument
    try:
        url = target.describe().get("ingress_url")
    except ChaosMeshQAError as exc:
        raise TargetUnavailable(f"traffic.host: not given and the target's ingress is unknown ({exc})") from None
    if not url:
        raise TargetUnavailable("traffic.host: not given and the target has no ingress URL")
    return str(url)
