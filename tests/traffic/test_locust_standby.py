"""Locust imported ahead of its run (traffic.locust_standby): the waiting process becomes the run's Locust, and one
never used goes away, whether the run ends without traffic or its parent dies."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaosmesh_qa.traffic import actions, locust_standby, runner
from chaosmesh_qa.traffic import timeline as tl
from tests.support.traffic import marked_processes, stub_server, traffic_marker, wait_no_marked_processes

pytestmark = pytest.mark.processes


def test_the_waiting_process_becomes_the_runs_locust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = traffic_marker(monkeypatch)
    path = tmp_path / "timeline.jsonl"
    configuration = {"chaosmesh_qa_timeline": str(path)}
    runner.prestart()
    waiting = locust_standby._waiting[-1].process.pid
    with stub_server() as (url, _):
        try:
            started = actions.start_traffic(profile={"users": 2, "rate_rps": 20, "warmup_s": 1, "host": url},
                                            configuration=configuration)
            assert started["master_pid"] == waiting and marked_processes(marker) == [waiting]
            time.sleep(1.5)
        finally:
            summary = actions.stop_traffic(configuration=configuration)
    assert summary["stopped"] and not summary["killed"], "stopped by SIGTERM like a spawned Locust"
    wait_no_marked_processes(marker, 2)
    lines = tl.measured(tl.read_timeline(path), started["ready_at"])
    assert lines and all(x["failures"] == 0 and x["requests"] > 0 for x in lines), lines
    assert "Traceback" not in (tmp_path / "timeline.jsonl.locust" / "master.log").read_text()
    assert locust_standby.take() is None, "taken once"


def test_a_process_nobody_launches_exits_at_the_end_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    marker = traffic_marker(monkeypatch)
    runner.prestart()
    runner.prestart()  # one waits at a time
    assert len(marked_processes(marker)) == 1
    process = locust_standby._waiting[-1].process
    _wait_reading_its_orders(process.pid)  # Locust imported: ending its input is all it needs to exit by itself
    locust_standby.discard()
    assert process.returncode == 0 and not marked_processes(marker)


def _wait_reading_its_orders(pid: int, timeout_s: float = 60.0) -> None:
    """Until the waiting process blocks reading its standard input (a pipe), i.e. it has imported Locust: on a
    loaded machine that import alone outlasted the 2 s ``discard`` gives a process to exit before killing it."""
    deadline = time.monotonic() + timeout_s
    while "pipe_read" not in Path(f"/proc/{pid}/wchan").read_text():
        assert time.monotonic() < deadline, "the waiting process never read its orders"
        time.sleep(0.05)


def test_a_waiting_process_exits_when_its_parent_dies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent is SIGKILLed: nothing stops the waiting process but the end of its standard input."""
    marker = traffic_marker(monkeypatch)
    parent = subprocess.Popen([sys.executable, "-c", "import time\nfrom chaosmesh_qa.traffic import runner\n"
                               "runner.prestart()\nprint('waiting', flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"waiting\n"
        assert len(marked_processes(marker)) == 1
    finally:
        parent.kill()
        parent.wait()
    wait_no_marked_processes(marker, 5)  # it may still be importing Locust when its input ends


def test_a_waiting_process_of_another_environment_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's variables changed since a process started waiting (here a marker; in a long-lived process, the
    caller's environment between two runs): the next run gets a process with its own, not the stale one."""
    first = traffic_marker(monkeypatch)
    runner.prestart()
    stale = locust_standby._waiting[-1].process
    second = traffic_marker(monkeypatch)
    runner.prestart()
    assert stale.poll() is not None and marked_processes(first) == []
    assert marked_processes(second) == [locust_standby._waiting[-1].process.pid]
    runner.prestart()  # the same environment: the same process keeps waiting
    assert marked_processes(second) == [locust_standby._waiting[-1].process.pid]
