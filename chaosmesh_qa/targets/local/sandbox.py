"""Start, inspect and stop an embedded sandbox from outside it (the CLI, the target, the tests).

``up`` validates the mesh in the calling process (so bad input exits 2 with nothing
started), then launches the supervisor as a detached background process and returns
once the supervisor reports the whole mesh ready.  ``SandboxClient`` speaks the
supervisor's control API over its Unix socket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

import chaosmesh_qa
from chaosmesh_qa import sessions
from chaosmesh_qa.errors import FaultRejected, InvalidArgument, SandboxStartError, TargetUnavailable
from chaosmesh_qa.pids import alive
from chaosmesh_qa.targets.local import preflight
from chaosmesh_qa.targets.local.prometheus import find_prometheus
from chaosmesh_qa.targets.local.state import SandboxPaths

if TYPE_CHECKING:
    from chaosmesh_qa.mesh import LoadedMesh

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.02
SUPERVISOR_ENTRY = ("-m", "chaosmesh_qa.targets.local.supervisor")  # how `up` starts the supervisor by default


def default_mesh_dir() -> Path:
    return Path(chaosmesh_qa.__file__).parent / "default_mesh"


class SandboxClient:
    """The supervisor's control API, synchronous (activities and the CLI are synchronous)."""

    def __init__(self, state_dir: Path, timeout_s: float = 30.0) -> None:
        self.paths = SandboxPaths(state_dir)
        # a Unix socket: no TLS, so no SSL context (building one costs ~80 ms per client)
        self._client = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.paths.socket), verify=False),
                                    base_url="http://sandbox", timeout=timeout_s, verify=False)

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One control request; the status is checked before the body is read as JSON.

        400 is ``FaultRejected``; any other error status, a transport failure or a body that
        is not JSON is ``TargetUnavailable``; arguments JSON cannot carry (NaN, infinity) are
        ``InvalidArgument``; each with one line.
        """
        try:
            response = self._client.request(method, path, **kwargs)
        except (ValueError, TypeError) as exc:  # raised while encoding the JSON body: nothing was sent
            raise InvalidArgument(f"arguments cannot be sent to the sandbox: {exc}") from None
        except httpx.TimeoutException:
            raise TargetUnavailable(f"sandbox at {self.paths.socket} did not answer {method} {path} in time") from None
        except httpx.TransportError as exc:
            raise TargetUnavailable(f"no sandbox answering at {self.paths.socket} ({exc})") from None
        if response.status_code == 400:
            raise FaultRejected(_error_of(response) or "fault rejected by the sandbox")
        if response.status_code >= 400:
            raise TargetUnavailable(f"sandbox answered {response.status_code} to {method} {path}: "
                                    f"{_error_of(response) or response.reason_phrase}")
        try:
            return response.json()
        except ValueError:
            raise TargetUnavailable(f"sandbox answered {method} {path} with a body that is not JSON") from None

    def status(self) -> dict[str, Any]:
        return dict(self._request("GET", "/status"))

    def shutdown(self) -> None:
        self._request("POST", "/shutdown")

    def inject(self, kind: str, parameters: dict[str, Any], owner: str, ttl_s: float) -> dict[str, Any]:
        return dict(self._request("POST", "/faults", json={"kind": kind, "parameters": parameters,
                                                           "owner": owner, "ttl_s": ttl_s}))

    def faults(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/faults"))

    def fault_history(self, owner: str | None = None) -> list[dict[str, Any]]:
        return list(self._request("GET", "/faults/history", params={"owner": owner} if owner else {}))

    def heal(self, fault_id: str | None = None, owner: str | None = None) -> list[dict[str, Any]]:
        return list(self._request("POST", "/faults/heal", json={"fault_id": fault_id, "owner": owner}))


def _error_of(response: httpx.Response) -> str:
    """The one-line error of a failed control request: its JSON ``error``, else its first line of text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = str(body.get("error") or "") if isinstance(body, dict) else response.text.strip().split("\n", 1)[0]
    return " ".join(text.split())[:500]


def up(mesh_dir: Path, state_dir: Path, timeout_s: float = START_TIMEOUT_S, max_fault_ttl_s: float | None = None,
       endpoint_delay_s: float | None = None, wait_metrics: bool = False,
       entry: Sequence[str] = SUPERVISOR_ENTRY,
       scrape_interval_s: int | None = None) -> tuple[dict[str, Any], LoadedMesh]:
    """Start a sandbox for ``mesh_dir`` in ``state_dir``; return its status once the mesh serves.

    Prometheus is up by then; ``wait_metrics`` also waits until it has scraped every Envoy
    (about 5 s after it started: its service discovery ticks every 5 s).  ``entry``: the supervisor
    process's arguments after ``python``, before the supervisor's own options: the plain supervisor, or
    an entry point above the targets that adds extensions to it (``up --kube-api`` passes the Kubernetes
    API emulation's, ``chaosmesh_qa.emulation.kubeapi.supervisor_entry``).  ``scrape_interval_s``: how often
    Prometheus scrapes the Envoys (1 s by default; a cluster's scrapes every 15 s to 60 s).
    """
    from chaosmesh_qa.mesh import load_mesh  # here: `down`, `status` and the actions never need the schema

    loaded = load_mesh(mesh_dir)  # raises InvalidMeshConfig before anything starts
    find_prometheus()  # raises SandboxStartError naming the package / env var
    preflight.raise_open_files_limit()  # inherited by the supervisor, and by every Envoy and app from it
    preflight.check(loaded.model)  # an OS limit too short for this mesh: one line, nothing started
    paths = SandboxPaths(state_dir)
    if is_running(paths):
        raise SandboxStartError(f"a sandbox is already running in {state_dir} (chaosmesh-qa down first)")
    paths.make_private()  # 0700: the control and admin sockets are the owner's alone
    _clear(paths)
    paths.logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(paths.logs / "supervisor.log", "ab") as log:
        process = sessions.spawn(
            [sys.executable, *entry,
             "--state-dir", str(state_dir), "--mesh", str(mesh_dir.absolute()),
             *(["--max-fault-ttl", str(max_fault_ttl_s)] if max_fault_ttl_s else []),
             *(["--endpoint-delay", str(endpoint_delay_s)] if endpoint_delay_s is not None else []),
             *(["--scrape-interval", str(scrape_interval_s)] if scrape_interval_s else [])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
    paths.pid_file.write_text(str(process.pid))
    with SandboxClient(state_dir, timeout_s=2.0) as client:
        while True:
            if process.poll() is not None:
                status = paths.read_status() or {}
                raise SandboxStartError(_failure(status.get("error"), paths))
            try:
                status = client.status()
            except TargetUnavailable:
                status = {"state": "starting"}
            if status["state"] == "ready" and (status["metrics_ready"] or not wait_metrics):
                status["startup_s"] = round(time.monotonic() - started, 3)
                return status, loaded
            if status["state"] == "failed":
                process.wait(STOP_TIMEOUT_S)
                raise SandboxStartError(_failure(status.get("error"), paths))
            if time.monotonic() - started > timeout_s:
                _terminate(process.pid)
                raise SandboxStartError(_failure(f"not ready after {timeout_s:.0f} s", paths))
            time.sleep(POLL_S)


def wait_for_metrics(client: SandboxClient, timeout_s: float = 20.0) -> dict[str, Any]:
    """Block until the sandbox's Prometheus has scraped every Envoy; the status then."""
    deadline = time.monotonic() + timeout_s
    while not (status := client.status())["metrics_ready"]:
        if status.get("metrics_error") or time.monotonic() > deadline:
            raise TargetUnavailable(f"sandbox metrics not ready: {status.get('metrics_error') or 'still waiting'}")
        time.sleep(0.1)
    return status


def status(state_dir: Path) -> dict[str, Any]:
    paths = SandboxPaths(state_dir)
    if not is_running(paths):
        raise TargetUnavailable(f"no sandbox running in {state_dir}")
    with SandboxClient(state_dir) as client:
        return client.status()


def down(state_dir: Path, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the sandbox in ``state_dir``; idempotent.  Returns whether one was running."""
    paths = SandboxPaths(state_dir)
    pid = paths.read_pid()
    if pid is None or not alive(pid):
        paths.remove_runtime_files()
        return False
    try:
        with SandboxClient(state_dir, timeout_s=5.0) as client:
            client.shutdown()
    except TargetUnavailable:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            _signal(pid, signal.SIGKILL)  # children die with it (PR_SET_PDEATHSIG)
            deadline += timeout_s
        time.sleep(POLL_S)
    paths.remove_runtime_files()
    return True


def is_running(paths: SandboxPaths) -> bool:
    pid = paths.read_pid()
    return pid is not None and alive(pid)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _terminate(pid: int) -> None:
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    _signal(pid, signal.SIGKILL)


def _clear(paths: SandboxPaths) -> None:
    paths.remove_runtime_files()
    shutil.rmtree(paths.logs, ignore_errors=True)


def _failure(error: str | None, paths: SandboxPaths) -> str:
    return f"sandbox failed to start: {error or 'supervisor exited'} (logs: {paths.logs})"
