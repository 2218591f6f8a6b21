"""The test lanes: the ``processes`` marker and the unit lane's guard that no process starts.

``make unit`` runs ``pytest -m "not processes and not slow"`` with ``CHAOSMESH_QA_TEST_LANE=unit``.  In that
lane ``LanePlugin`` (registered by tests/conftest.py) replaces every way Python starts a process
(``subprocess.Popen``, ``_posixsubprocess.fork_exec``, ``os.fork``/``forkpty``/``posix_spawn*``/``exec*``/
``system``, asyncio's subprocess functions, ``multiprocessing`` process start) with a refusal that fails
the test, even where the code under test catches the error; so the lane proves it starts none.
In every lane the plugin marks ``processes`` each test that uses a fixture listed in
``PROCESS_FIXTURES`` (sandboxes and real runs started by conftest fixtures); test modules mark the rest.
Used by tests/conftest.py and tests/test_lanes.py (which checks the guard).
"""

from __future__ import annotations

import _posixsubprocess
import asyncio
import asyncio.base_events
import asyncio.subprocess
import contextlib
import multiprocessing.process
import os
import subprocess
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

LANE_ENV = "CHAOSMESH_QA_TEST_LANE"
MARKER = "processes"
MESSAGE = f"the unit lane starts no process: mark this test `{MARKER}`"
# conftest fixtures that start processes (a sandbox, a real `chaosmesh-qa run`): a test using one, directly or
# through another fixture, is marked `processes` at collection
PROCESS_FIXTURES = frozenset({"sandbox", "passing_run", "broken_run", "kube", "kube_sandbox"})
REFUSED = pytest.fail.Exception  # a BaseException: an `except Exception` in the code under test does not hide it


def unit_lane() -> bool:
    """Whether this session is the unit lane (``make unit`` sets ``CHAOSMESH_QA_TEST_LANE=unit``)."""
    return os.environ.get(LANE_ENV, "") == "unit"


def _targets() -> list[tuple[Any, str]]:
    """Every (owner, attribute) through which Python code starts a process."""
    found: list[tuple[Any, str]] = [(subprocess.Popen, "__init__"), (_posixsubprocess, "fork_exec"),
                                    (multiprocessing.process.BaseProcess, "start"),
                                    (asyncio, "create_subprocess_exec"), (asyncio, "create_subprocess_shell"),
                                    (asyncio.subprocess, "create_subprocess_exec"),
                                    (asyncio.subprocess, "create_subprocess_shell"),
                                    (asyncio.base_events.BaseEventLoop, "subprocess_exec"),
                                    (asyncio.base_events.BaseEventLoop, "subprocess_shell")]
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv", "execve", "execl", "execle",
                 "execlp", "execlpe", "execvp", "execvpe"):
        if hasattr(os, name):  # os.spawn*, os.popen and pty.fork go through these
            found.append((os, name))
    return found


class Guard:
    """While installed, every process start raises ``REFUSED`` and is remembered in ``refusals``."""

    def __init__(self) -> None:
        self.saved: list[tuple[Any, str, Any]] = []
        self.refusals: list[str] = []

    def install(self) -> None:
        for owner, name in _targets():
            self.saved.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
            where = f"{owner.__module__}.{owner.__qualname__}" if isinstance(owner, type) else owner.__name__
            setattr(owner, name, self._refusal(f"{where}.{name}"))

    def uninstall(self) -> None:
        while self.saved:
            owner, name, original = self.saved.pop()
            setattr(owner, name, original)

    def _refusal(self, what: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            self.refusals.append(what)
            pytest.fail(f"{MESSAGE} (it called {what})")

        return refuse

    def take(self) -> list[str]:
        taken, self.refusals = self.refusals, []
        return taken


GUARD = Guard()


def _warm_up_libraries() -> None:
    """One-time set-up of third-party libraries that start a process, done before the guard is installed.

    matplotlib (the HTML report's figures) builds its font cache at first import on a machine that has none
    (a fresh clone's first ``make unit``), and that build runs ``fc-list``: the library's one-time cost, not the
    code under test starting a process.
    """
    import matplotlib.font_manager  # noqa: F401


@contextlib.contextmanager
def expect_refusal(what: str) -> Iterator[None]:
    """For tests/test_lanes.py: the block must be refused by the guard, first for calling ``what``."""
    with pytest.raises(REFUSED, match=MESSAGE):
        yield
    refusals = GUARD.take()
    assert refusals and refusals[0].endswith(what), f"expected a refused {what}, got {refusals}"


class LanePlugin:
    """Marks process tests; in the unit lane, installs ``GUARD`` for the whole session."""

    def __init__(self, config: pytest.Config) -> None:
        self.active = unit_lane()
        if self.active:
            _warm_up_libraries()
            GUARD.install()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        GUARD.uninstall()

    @pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
                item.add_marker(MARKER)

    def pytest_report_header(self) -> list[str]:
        return [f"lane: unit ({LANE_ENV}=unit): any process start fails the test"] if self.active else []

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        GUARD.take()  # nothing left over from collection or an earlier test
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        refused = GUARD.take()
        if refused and report.outcome != "failed":  # the refusal was caught and hidden by the code under test
            report.outcome = "failed"
            report.longrepr = f"{MESSAGE} (it called {', '.join(refused)}; the code under test caught the refusal)"
        return report
