"""The Locust side of chaosmesh-qa traffic: the user, the pacer, each process's role, the parent watchdog.

Only ever imported by Locust processes (``locust -f .../locustfile.py``) started by
``chaosmesh_qa.traffic.runner``, or by remote workers attached to such a master.  Never import
it anywhere else: importing Locust monkey-patches the process with gevent, and inside ``chaos``
that breaks ssl and threads.

* ``MeshUser`` (FastHttpUser) picks a weighted route of the profile for each request.  With a
  target rate, a per-process ``Pacer`` hands out evenly spaced send slots: the process's share is
  ``rate_rps / users`` per running user, so the total holds whatever the users' distribution over
  workers; slots nobody could take (all users busy) are dropped and counted as ``missed``.
* Every process aggregates its requests per *send* second with the raw response times
  (``chaosmesh_qa.traffic.aggregate``).  Workers send their completed seconds to the master every
  0.5 s (custom message ``chaosmesh_qa_seconds``); the master (or the single local process) merges
  them and writes one timeline line per second in order, once every live source has completed it.
* A watchdog checks every 0.5 s that the process that started Locust (env
  ``CHAOSMESH_QA_TRAFFIC_PARENT``) is still our parent, and shuts down otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.timeout import Timeout as GeventTimeout
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from chaosmesh_qa.traffic.aggregate import Aggregator, TimelineWriter, wake_delay
from chaosmesh_qa.traffic.profile import Profile, Route

PARENT_ENV = "CHAOSMESH_QA_TRAFFIC_PARENT"
PDEATHSIG_ENV = "CHAOSMESH_QA_TRAFFIC_PDEATHSIG"
MESSAGE = "chaosmesh_qa_seconds"
KEEPALIVE_S = 0.5  # a worker reports at least this often (the master forgets one silent for 5 s)
MAX_PACING_LAG_S = 0.25
PACING_TICK_S = 0.005  # sends bunch within 5 ms: a 1-s count is unaffected, CPU per request drops

log = logging.getLogger("chaosmesh_qa.traffic")


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--chaosmesh-qa-profile", type=str, default="", include_in_web_ui=False,
                        help="chaosmesh-qa traffic profile (JSON, validated by chaosmesh_qa.traffic.profile)")
    parser.add_argument("--chaosmesh-qa-timeline", type=str, default="", include_in_web_ui=False,
                        help="where the master writes the per-second timeline (JSON lines)")


# --------------------------------------------------------------------------- the user


class Pacer:
    """Evenly spaced send slots for this process: ``per_user_rps`` times the running users."""

    def __init__(self, per_user_rps: float, aggregator: Aggregator) -> None:
        self.per_user_rps, self.aggregator = per_user_rps, aggregator
        self.next_at: float | None = None

    def wait_turn(self, users: int) -> None:
        interval = 1.0 / (self.per_user_rps * max(users, 1))
        now = time.monotonic()
        if self.next_at is None:
            self.next_at = now
        elif self.next_at < now - MAX_PACING_LAG_S:  # every user was busy: drop the slots nobody took
            missed = int((now - self.next_at) / interval)
            if missed:
                self.aggregator.add_missed(missed)
            self.next_at = now
        slot = self.next_at
        self.next_at = slot + interval
        if slot > now:  # wake on a tick grid: the users due in one tick share one event-loop wake-up
            gevent.sleep(math.ceil(slot / PACING_TICK_S) * PACING_TICK_S - now)


class State:
    """This process's traffic state, set up by the ``init`` and ``test_start`` events."""

    profile: Profile | None = None
    routes: tuple[Route, ...] = ()
    cum_weights: tuple[float, ...] = ()
    aggregator = Aggregator()
    pacer: Pacer | None = None
    writer: TimelineWriter | None = None


def failure_kind(status: int, error: BaseException | None) -> str | None:
    """None for a success, else ``http``, ``timeout``, ``connection`` or ``other``."""
    if error is None:
        return "http" if status >= 400 or status == 0 else None
    if status >= 400:
        return "http"
    original = getattr(error, "original", None)  # geventhttpclient wraps the cause in RetriesExceeded
    if isinstance(original, BaseException):
        error = original
    if isinstance(error, TimeoutError | GeventTimeout):
        return "timeout"
    if isinstance(error, OSError | ConnectionError) or "Connection" in type(error).__name__:
        return "connection"
    return "other"


class MeshUser(FastHttpUser):
    """Sends the profile's weighted requests, paced to the target rate when there is one."""

    wait_time = constant(0)
    network_timeout = 5.0
    connection_timeout = 2.0
    max_retries = 0

    @task
    def send(self) -> None:
        runner = self.environment.runner
        if State.pacer is not None and runner is not None:
            State.pacer.wait_turn(runner.user_count)
        route = random.choices(State.routes, cum_weights=State.cum_weights)[0] if len(State.routes) > 1 \
            else State.routes[0]
        aggregator = State.aggregator
        second = aggregator.begin()
        started = time.perf_counter()
        try:
            response = self.client.request(route.method, route.path, name=route.name,
                                           headers=route.headers or None)
        except BaseException:
            aggregator.cancel(second)
            raise
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        status = int(getattr(response, "status_code", 0) or 0)
        aggregator.end(second, elapsed_ms, status, failure_kind(status, getattr(response, "error", None)))


def _configure_users(environment: Environment) -> None:
    options = environment.parsed_options
    text = getattr(options, "chaosmesh_qa_profile", "") if options else ""
    profile = Profile.from_json(text) if text else Profile()
    State.profile = profile
    State.routes = profile.paths
    total, cumulative = 0.0, []
    for route in profile.paths:
        total += route.weight
        cumulative.append(total)
    State.cum_weights = tuple(cumulative)
    MeshUser.network_timeout = profile.timeout_s
    MeshUser.connection_timeout = profile.connect_timeout_s
    MeshUser.default_headers = dict(profile.headers) or None
    State.pacer = Pacer(profile.rate_rps / profile.users, State.aggregator) if profile.rate_rps else None


# --------------------------------------------------------------------------- process roles


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    _arm_parent_watch()
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        gevent.spawn(_report_loop, environment)
        return
    options = environment.parsed_options
    path = getattr(options, "chaosmesh_qa_timeline", "") if options else ""
    profile_text = getattr(options, "chaosmesh_qa_profile", "") if options else ""
    timeout_s = Profile.from_json(profile_text).timeout_s if profile_text else Profile.timeout_s
    if path:
        State.writer = TimelineWriter(Path(path), lambda: runner.user_count if runner else 0, timeout_s)
    if isinstance(runner, MasterRunner):
        runner.register_message(MESSAGE, _on_worker_seconds)
    gevent.spawn(_write_loop, environment)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    _configure_users(environment)


@events.spawning_complete.add_listener
def _on_spawned(**_: Any) -> None:
    if State.writer is not None and State.writer.spawned_at is None:
        State.writer.spawned_at = time.time()


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        _report(environment, done=True)


@events.quit.add_listener
def _on_quit(**_: Any) -> None:
    if State.writer is not None:
        closed = State.aggregator.closed_through(time.time())
        buckets = [b.to_message() for b in State.aggregator.take(None)]
        if buckets or "local" in State.writer.sources:
            State.writer.add("local", buckets, closed, done=True)
        State.writer.close()
        State.writer = None


def _on_worker_seconds(environment: Environment, msg: Any, **_: Any) -> None:
    if State.writer is not None:
        data = msg.data
        State.writer.add(str(msg.node_id), data["buckets"], data["closed"], data["done"])


def _report(environment: Environment, done: bool = False) -> None:
    runner = environment.runner
    if runner is None:
        return
    closed = State.aggregator.closed_through(time.time())
    buckets = State.aggregator.take(None if done else closed)
    with contextlib.suppress(Exception):  # the master may be gone already
        runner.send_message(MESSAGE, {"buckets": [b.to_message() for b in buckets], "closed": closed, "done": done})


def _report_loop(environment: Environment) -> None:
    """A worker's seconds to the master just after each boundary; while one is still in flight, as soon as it
    completes (checked every 50 ms, sent when it has, or every half second to stay known as alive)."""
    reported, last_sent = None, 0.0
    while True:
        now = time.time()
        gevent.sleep(wake_delay(now, State.aggregator.pending(now)))
        closed = State.aggregator.closed_through(time.time())
        if closed != reported or time.monotonic() - last_sent >= KEEPALIVE_S:
            _report(environment)
            reported, last_sent = closed, time.monotonic()


def _write_loop(environment: Environment) -> None:
    is_local = not isinstance(environment.runner, MasterRunner)
    while State.writer is not None:
        now = time.time()
        gevent.sleep(wake_delay(now, State.writer.pending(now) or (is_local and State.aggregator.pending(now))))
        writer = State.writer
        if writer is None:
            break
        if is_local:
            closed = State.aggregator.closed_through(time.time())
            writer.add("local", [b.to_message() for b in State.aggregator.take(closed)], closed, done=False)
        try:
            writer.write()
        except Exception:  # never let a bookkeeping bug stop the traffic
            log.exception("chaosmesh-qa: could not write the timeline")


# --------------------------------------------------------------------------- parent watchdog


def _arm_parent_watch() -> None:
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return  # a remote worker: it quits with its master
    if os.environ.get(PDEATHSIG_ENV) == "1":
        _set_pdeathsig()
    gevent.spawn(_watch_parent, int(parent))


def _set_pdeathsig() -> None:
    """Ask the kernel for SIGTERM when the forking thread dies (set only when that is the main thread)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            log.warning("chaosmesh-qa: the process that started traffic (pid %d) is gone; stopping", parent)
            signal.alarm(5)  # default SIGALRM action ends the process if the clean stop hangs
            os.kill(os.getpid(), signal.SIGTERM)
            return
        gevent.sleep(0.5)
