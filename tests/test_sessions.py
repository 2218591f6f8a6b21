"""``sessions.spawn``: a child in a session of its own runs at its starter's niceness, in the kernel's autogroup
scheduling where a session's niceness is what weighs against other sessions (a process's own only counts within its
session).  Each case in a Python process of its own, since a process cannot lower its niceness back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaosmesh_qa import sessions

AUTOGROUP = pytest.mark.skipif(not Path("/proc/self/autogroup").exists(),
                               reason="this kernel schedules without autogroup")


def _child_group(own_niceness: int, at_least: int = 0) -> str:
    code = ("import os, subprocess, sys\n"
            f"os.nice({own_niceness})\n"
            "from chaosmesh_qa import sessions\n"
            "child = sessions.spawn([sys.executable, '-c', 'import time; time.sleep(30)'],\n"
            f"                       niceness_at_least={at_least})\n"
            "try:\n"
            "    print(open(f'/proc/{child.pid}/autogroup').read().strip(), os.getsid(child.pid) == child.pid)\n"
            "finally:\n"
            "    child.kill(); child.wait()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip()


@pytest.mark.processes
@AUTOGROUP
@pytest.mark.parametrize(("own", "at_least", "group"), [(0, 0, 0), (10, 0, 10), (3, 7, 7), (12, 7, 12)])
def test_a_new_session_runs_at_its_starters_niceness_or_the_one_asked(own: int, at_least: int, group: int) -> None:
    """``own``: the niceness the starter adds to this test's own (a pytest worker may run lowered already)."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    said = _child_group(own, at_least)
    expected = min(max(base + own, at_least), 19) if base else group
    assert said.endswith(f" nice {expected} True"), said  # its own session, in a group at that niceness


def test_an_unprivileged_write_inside_the_kernels_rate_limit_is_tried_once_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel lets an unprivileged process change one autogroup's niceness per 0.1 s in the whole system
    (EAGAIN otherwise): a sandbox and its Locust started together would leave the second at full weight."""
    written: list[tuple[str, str]] = []
    answers = iter([BlockingIOError(11, "try again"), None])

    def write_text(path: Path, text: str) -> int:
        answer = next(answers)
        if answer is not None:
            raise answer
        written.append((str(path), text))
        return len(text)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(sessions.time, "sleep", lambda s: None)
    sessions._set_group_niceness(4242, 10)
    assert written == [("/proc/4242/autogroup", "10")]
