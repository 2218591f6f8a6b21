"""Helpers for the traffic tests: process markers, a stub HTTP server, chaos runs, timeline windows.

Used by tests/traffic (test_profile, test_traffic_local, test_traffic_sandbox).  The stub server is
``stub_server.py`` next to this module, run as a script.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.traffic import timeline as tl
from tests.support.cli import CHAOS

MARKER_ENV = "CHAOSMESH_QA_TEST_MARKER"
STUB = Path(__file__).with_name("stub_server.py")


def traffic_marker(monkeypatch: pytest.MonkeyPatch) -> str:
    """A marker unique to this test, inherited by every process started from now on."""
    marker = uuid.uuid4().hex
    monkeypatch.setenv(MARKER_ENV, marker)
    return marker


def marked_processes(marker: str, locust_only: bool = True) -> list[int]:
    """Live (non-zombie) processes carrying ``marker`` in their environment (Locust ones by default)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if locust_only and b"locust" not in (proc / "cmdline").read_bytes():
                continue
        except OSError:
            continue
        found.append(int(proc.name))
    return found


def wait_no_marked_processes(marker: str, timeout_s: float) -> float:
    """Seconds until no Locust process with ``marker`` is left; fails after ``timeout_s``."""
    started = time.monotonic()
    while pids := marked_processes(marker):
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"Locust processes still alive after {timeout_s} s: {pids}")
        time.sleep(0.05)
    return time.monotonic() - started


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def stub_server(port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A tiny HTTP server on 127.0.0.1 (``/`` answers 200, ``/hang`` never answers within 10 s)."""
    port = port or closed_port()
    process = subprocess.Popen([sys.executable, str(STUB), str(port)], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert process.poll() is None and time.monotonic() < deadline, "stub server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)


def start_chaos(experiment: Path, workdir: Path, marker: str) -> subprocess.Popen[bytes]:
    log = workdir / "chaos.log"
    return subprocess.Popen([CHAOS, "--no-version-check", "--log-file", str(log), "run",
                             "--journal-path", str(workdir / "journal.json"), str(experiment)],
                            cwd=workdir, env={**os.environ, MARKER_ENV: marker}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[bytes] | None = None,
                   timeout_s: float = 30) -> list[tl.Line]:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(tl.TimelineError):
            lines = tl.read_timeline(path)
            if len(lines) >= count:
                return lines
        assert process is None or process.poll() is None, "the chaos run ended before the timeline filled"
        assert time.monotonic() < deadline, f"fewer than {count} timeline lines after {timeout_s} s"
        time.sleep(0.1)


def wait_for_log(log: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not (log.exists() and text in log.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, f"never logged {text!r}"
        time.sleep(0.05)


def sleep_until_timeline_covers(path: Path, until: float, timeout_s: float = 15) -> list[tl.Line]:
    """Wait until the timeline holds a complete second at or after ``until`` (epoch s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = tl.read_timeline(path)
        if lines and lines[-1]["t"] >= until:
            return lines
        assert time.monotonic() < deadline, "the timeline stopped advancing"
        time.sleep(0.1)


def kill_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(OSError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10)


def experiment(configuration: dict[str, Any], method: list[dict[str, Any]],
               hypothesis: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "traffic test", "description": "Traffic through a chaos run (tests/traffic).",
        "configuration": configuration,
        "controls": [
            {"name": "chaosmesh-qa-traffic", "provider": {"type": "python", "module": "chaosmesh_qa.controls.traffic"}},
            {"name": "chaosmesh-qa-safety", "provider": {"type": "python", "module": "chaosmesh_qa.controls.safety"}},
        ],
        "runtime": {"rollbacks": {"strategy": "always"}},
        "method": method,
        "rollbacks": [{"type": "action", "name": "heal",
                       "provider": {"type": "python", "module": "chaosmesh_qa.actions", "func": "heal"}}],
    }
    if hypothesis:
        body["steady-state-hypothesis"] = hypothesis
    return body


def client_probe(name: str, func: str, tolerance: Any, **arguments: Any) -> dict[str, Any]:
    return {"type": "probe", "name": name, "tolerance": tolerance,
            "provider": {"type": "python", "module": "chaosmesh_qa.probes.client", "func": func,
                         "arguments": arguments}}
