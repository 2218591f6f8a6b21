"""Start and stop Locust (one local process, or a master with N local workers) as children of the caller.

Called by ``chaosmesh_qa.traffic.actions`` and ``chaosmesh_qa.controls.traffic`` inside ``chaos``,
by the bench and by the tests.  Locust is never imported here: it runs in child processes
(``python -m locust -f chaosmesh_qa/traffic/locustfile.py``), each started in its own session
(a Ctrl-C on the terminal reaches ``chaos``, which stops traffic itself) with
``CHAOSMESH_QA_TRAFFIC_PARENT`` = our pid, so that each quits within ~0.5 s when we die, even by
SIGKILL (see the locustfile's watchdog).  ``PR_SET_PDEATHSIG`` is added only when we spawn from
the main thread, since the kernel ties it to the forking thread.

A run keeps its pids in ``<timeline>.locust/state.json`` (with the Locust logs) so that
``stop`` finds them from any call site; ``stop`` sends SIGTERM (Locust flushes the timeline's
last seconds), then SIGKILL after a grace period, and only to processes whose environment
carries the run's id.  An ``atexit`` hook stops whatever this process started and did not stop.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chaosmesh_qa import sessions
from chaosmesh_qa.errors import InvalidArgument, TargetUnavailable, TrafficError
from chaosmesh_qa.files import atomic_write_json
from chaosmesh_qa.traffic import locust_standby as standby
from chaosmesh_qa.traffic import timeline as tl
from chaosmesh_qa.traffic.profile import Profile

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RUN_ENV = "CHAOSMESH_QA_TRAFFIC_RUN"
PARENT_ENV = "CHAOSMESH_QA_TRAFFIC_PARENT"
PDEATHSIG_ENV = "CHAOSMESH_QA_TRAFFIC_PDEATHSIG"
TERM_GRACE_S = 6.0
WORKER_GRACE_S = 1.5  # workers quit on the master's message; signalled after this
KILL_GRACE_S = 3.0
POLL_S = 0.05
READY_POLL_S = 0.05  # the timeline is read this often during the warm-up (its lines land just after each second)


@dataclass
class TrafficRun:
    """One running traffic generator, as recorded in its state file."""

    run_id: str
    timeline: str
    run_dir: str
    host: str
    profile: dict[str, Any]
    parent_pid: int
    master_pid: int
    worker_pids: list[int] = field(default_factory=list)
    master_port: int | None = None
    started_at: float = 0.0
    ready_at: float | None = None

    @property
    def pids(self) -> list[int]:
        return [self.master_pid, *self.worker_pids]

    def save(self) -> None:
        atomic_write_json(state_file(Path(self.timeline)), asdict(self))


_children: dict[int, subprocess.Popen[bytes]] = {}  # pid -> process, to reap what we started
_lock = threading.Lock()


def run_dir_for(timeline: Path) -> Path:
    return timeline.with_name(timeline.name + ".locust")


def state_file(timeline: Path) -> Path:
    return run_dir_for(timeline) / "state.json"


def load_run(timeline: Path) -> TrafficRun | None:
    try:
        return TrafficRun(**json.loads(state_file(timeline).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def check_reachable(host: str, timeout_s: float = 2.0) -> None:
    """One TCP connection to ``host`` (a base URL), or a one-line ``TargetUnavailable``."""
    parts = urlsplit(host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TargetUnavailable(f"traffic.host: cannot connect to {host} ({reason})") from None


def start(profile: Profile, host: str, timeline: Path) -> TrafficRun:
    """Spawn Locust for ``profile`` against ``host``, writing ``timeline``; returns once the processes exist."""
    timeline = timeline.absolute()
    with _lock:
        current = load_run(timeline)
        if current is not None and alive_pids(current):
            raise InvalidArgument(f"traffic is already running for timeline {timeline}; stop it first")
        check_reachable(host, min(profile.connect_timeout_s, 5.0))
        run_dir = run_dir_for(timeline)
        run_dir.mkdir(parents=True, exist_ok=True)
        timeline.unlink(missing_ok=True)
        port = profile.master_port or (_free_port(profile.master_bind_host) if profile.workers or
                                       profile.effective_expect_workers else None)
        waiting = standby.take()  # a Locust process already imported (the traffic control's prestart)
        run_id = waiting.run_id if waiting else uuid.uuid4().hex
        env = locust_env(run_id)
        _register_atexit()
        spawned: list[subprocess.Popen[bytes]] = []
        try:
            master, log = _master_command(profile, host, timeline, port), run_dir / "master.log"
            launched = waiting.launch(master, log) if waiting else None
            if launched is None:
                launched = _spawn(master, env, log)
            _children[launched.pid] = launched
            spawned.append(launched)
            for index in range(profile.workers):
                spawned.append(_spawn(_worker_command(port or 0), env, run_dir / f"worker-{index + 1}.log"))
            run = TrafficRun(run_id=run_id, timeline=str(timeline), run_dir=str(run_dir), host=host,
                             profile=json.loads(profile.to_json()), parent_pid=os.getpid(),
                             master_pid=spawned[0].pid, worker_pids=[p.pid for p in spawned[1:]],
                             master_port=port, started_at=time.time())
            run.save()
        except BaseException:
            for process in spawned:
                process.kill()
                process.wait()
            raise
        return run


def prestart() -> None:
    """Start a Locust process that imports Locust now and waits for ``start`` to hand it its command line
    (``traffic.locust_standby``): the traffic control calls it before the mesh comes up."""
    run_id = uuid.uuid4().hex
    standby.prestart(locust_env(run_id), run_id)


def locust_env(run_id: str) -> dict[str, str]:
    """The environment of a Locust process of run ``run_id`` started by this process."""
    env = {**os.environ, RUN_ENV: run_id, PARENT_ENV: str(os.getpid()),
           PDEATHSIG_ENV: "1" if threading.current_thread() is threading.main_thread() else "0",
           "PYTHONUNBUFFERED": "1"}
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)
    return env


def wait_ready(run: TrafficRun, profile: Profile) -> float:
    """Block until the timeline shows the traffic settled; returns (and records) the ready time.

    Settled means: every user spawned, then ``warmup_s`` more seconds (at least one) of complete
    timeline lines that began with every user running (no ``ramp``), each at >= 90 % of ``rate_rps``
    when the profile has one.  Raises
    ``TrafficError`` if Locust dies or ``ready_timeout_s`` (plus the spawn time) passes first.
    """
    timeline = Path(run.timeline)
    spawn_s = profile.users / profile.effective_spawn_rate
    deadline = time.monotonic() + profile.ready_timeout_s + spawn_s + profile.warmup_s
    needed = max(1, math.ceil(profile.warmup_s))
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        if run.master_pid not in alive_pids(run):
            raise TrafficError(f"Locust exited before traffic was ready: {_log_tail(Path(run.run_dir))}")
        lines = _quiet_read(timeline)
        full = [line for line in lines if not line.get("partial") and not line.get("ramp")
                and line.get("users", 0) >= profile.users]
        last = lines[-1] if lines else last
        if len(full) >= needed:
            recent = full[-needed:]
            if profile.rate_rps is None or all(line["requests"] >= 0.9 * profile.rate_rps for line in recent):
                run.ready_at = float(recent[0]["t"])
                run.save()
                return run.ready_at
        time.sleep(READY_POLL_S)
    seen = f"last second: {last['requests']} requests, {last['users']} users" if last else "no timeline line yet"
    target = f"{profile.rate_rps:g} rps with " if profile.rate_rps else ""
    raise TrafficError(f"traffic did not settle at {target}{profile.users} users within "
                       f"{profile.ready_timeout_s:g} s ({seen}); see {run.run_dir}")


def stop(timeline: Path) -> dict[str, Any]:
    """Stop the run writing ``timeline`` (idempotent): SIGTERM, then SIGKILL after a grace period."""
    timeline = timeline.absolute()
    with _lock:
        run = load_run(timeline)
        if run is None:
            return {"stopped": False, "reason": "no traffic run recorded for this timeline"}
        alive = alive_pids(run)
        killed: list[int] = []
        if alive:
            if run.master_pid in alive:  # the master flushes the timeline and takes its workers down with it
                _signal([run.master_pid], signal.SIGTERM)
                _wait_gone(run, TERM_GRACE_S, [run.master_pid])
                _wait_gone(run, WORKER_GRACE_S)
            _signal(alive_pids(run), signal.SIGTERM)
            if not _wait_gone(run, KILL_GRACE_S):
                killed = alive_pids(run)
                _signal(killed, signal.SIGKILL)
                _wait_gone(run, KILL_GRACE_S)
        for pid in run.pids:
            _reap(pid)
        return {"stopped": bool(alive), "pids": run.pids, "killed": killed, "timeline": run.timeline,
                "left_running": alive_pids(run)}


def stop_all_started_here() -> None:
    """Stop every run this process started and still has children for (``atexit``, clean-ups)."""
    running = [process for process in list(_children.values()) if process.poll() is None]
    for process in running:
        with contextlib.suppress(OSError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline and any(process.poll() is None for process in running):
        time.sleep(POLL_S)
    for process in running:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()
            process.wait()
        _children.pop(process.pid, None)


def alive_pids(run: TrafficRun) -> list[int]:
    """The run's processes still alive (not zombies) and really this run's (env marker)."""
    return [pid for pid in run.pids if _is_run_process(pid, run.run_id)]


def ready_at(timeline: Path) -> float | None:
    run = load_run(timeline.absolute())
    return run.ready_at if run else None


# --------------------------------------------------------------------------- internals


def _master_command(profile: Profile, host: str, timeline: Path, port: int | None) -> list[str]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
               "--loglevel", "WARNING", "-u", str(profile.users), "-r", f"{profile.effective_spawn_rate:g}",
               "-t", f"{math.ceil(profile.max_duration_s)}s", "--stop-timeout", "0", "--host", host,
               "--exit-code-on-error", "0", "--chaosmesh-qa-profile", profile.to_json(),
               "--chaosmesh-qa-timeline", str(timeline)]
    expect = profile.effective_expect_workers
    if expect:
        command += ["--master", "--master-bind-host", profile.master_bind_host, "--master-bind-port", str(port),
                    "--expect-workers", str(expect),
                    "--expect-workers-max-wait", str(math.ceil(profile.ready_timeout_s))]
    return command


def _worker_command(port: int) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", "127.0.0.1",
            "--master-port", str(port), "--loglevel", "WARNING"]


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        # cwd: the run directory, so that no locust.conf / pyproject.toml of the caller's directory applies
        process = sessions.spawn(command, env=env, cwd=log_path.parent, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, close_fds=True)
    with contextlib.suppress(RuntimeError):
        _children[process.pid] = process
    return process


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host not in ("*", "0.0.0.0") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_run_process(pid: int, run_id: str) -> bool:
    """A child we started and have not reaped is ours for sure; any other pid must carry the run's id."""
    process = _children.get(pid)
    if process is not None:
        if process.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        return f"{RUN_ENV}={run_id}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _wait_gone(run: TrafficRun, timeout_s: float, pids: list[int] | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while [pid for pid in alive_pids(run) if pids is None or pid in pids]:
        if time.monotonic() > deadline:
            return False
        for pid in run.pids:
            _reap(pid)
        time.sleep(POLL_S)
    return True


def _reap(pid: int) -> None:
    process = _children.get(pid)
    if process is not None and process.poll() is not None:
        _children.pop(pid, None)


def _quiet_read(timeline: Path) -> list[dict[str, Any]]:
    try:
        return tl.read_timeline(timeline)
    except tl.TimelineError:
        return []


def _log_tail(run_dir: Path) -> str:
    try:
        lines = [line for line in (run_dir / "master.log").read_text().splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else f"no output (see {run_dir})"


_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(stop_all_started_here)
        _atexit_registered = True
