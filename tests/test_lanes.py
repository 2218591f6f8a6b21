"""The unit lane starts no process: in it, every way Python starts one fails the test (tests.support.lanes).

Only meaningful in the unit lane (``make unit``); elsewhere the guard is off and these tests skip.  Every
call here would start a harmless process if the guard let it through, and one that makes the lane fail
loudly where the process would replace or copy pytest itself (``exec*`` of ``false``, a forked child that
exits at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import subprocess

import pytest

from tests.support.lanes import LANE_ENV, MARKER, expect_refusal, unit_lane

pytestmark = pytest.mark.skipif(not unit_lane(), reason=f"the process guard is on only in the unit lane "
                                                        f"({LANE_ENV}=unit, set by `make unit`)")
FALSE = "/bin/false"


def test_subprocess_is_refused() -> None:
    with expect_refusal("Popen.__init__"):
        subprocess.run(["true"], check=False)
    with expect_refusal("Popen.__init__"):
        subprocess.Popen(["true"])
    with expect_refusal("Popen.__init__"):
        os.popen("true")


def test_a_refusal_is_not_an_ordinary_exception() -> None:
    """Code under test that catches ``Exception`` around a process start does not hide the refusal."""
    with expect_refusal("Popen.__init__"), contextlib.suppress(Exception):  # as careless code would
        subprocess.run(["true"], check=False)


def test_fork_spawn_exec_and_system_are_refused() -> None:
    with expect_refusal("os.fork"):
        if os.fork() == 0:  # only reached without the guard: the child leaves at once
            os._exit(0)
    with expect_refusal("os.posix_spawn"):
        os.posix_spawn(FALSE, [FALSE], os.environ)
    with expect_refusal("os.posix_spawnp"):
        os.posix_spawnp("false", ["false"], os.environ)
    with expect_refusal("os.execv"):
        os.execv(FALSE, [FALSE])  # without the guard, pytest would become `false` and the lane fail
    with expect_refusal("os.execvp"):
        os.execvp("false", ["false"])
    with expect_refusal("os.fork"):
        os.spawnv(os.P_WAIT, FALSE, [FALSE])
    with expect_refusal("os.system"):
        os.system("true")


def test_asyncio_subprocesses_are_refused() -> None:
    async def start() -> None:
        process = await asyncio.create_subprocess_exec("true")
        await process.wait()

    with expect_refusal("asyncio.create_subprocess_exec"):
        asyncio.run(start())
    with expect_refusal("asyncio.create_subprocess_shell"):
        asyncio.run(asyncio.create_subprocess_shell("true"))


def test_multiprocessing_is_refused() -> None:
    with expect_refusal("BaseProcess.start"):
        multiprocessing.get_context("spawn").Process(target=print).start()


def test_the_lane_runs_no_test_marked_processes(request: pytest.FixtureRequest) -> None:
    assert any(line.startswith(f"{MARKER}:") for line in request.config.getini("markers")), "registered"
    assert not any(item.get_closest_marker(MARKER) for item in request.session.items)
