"""Shared fixtures: the real CLI, one embedded sandbox (and one with the Kubernetes API emulation) for the whole
session, and two real pod-kill runs.

The runs are `chaosmesh-qa run experiments/pod-kill-failover.json` on the default mesh (passes) and on its
broken twin (no retries, no outlier detection: deviates), each with its own sandbox started and stopped by the
experiment's sandbox control.  The experiment, report and explain tests all judge these same two runs, so
the suite runs the experiment twice, not six times (``tests.support.runs.real_run``).

The helpers live in ``tests.support``; the lanes (``make unit``: no process may start) in ``tests.support.lanes``;
``make test``'s two workers (tests judged by budgets one at a time) in ``tests.support.workers``.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from chaosmesh_qa.traffic import locust_standby
from tests.support.kube import KubeSandbox, running
from tests.support.lanes import LanePlugin
from tests.support.runs import BROKEN_MESH, Run, real_run
from tests.support.sandbox import Sandbox
from tests.support.workers import WorkersPlugin


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LanePlugin(config), "chaosmesh-qa-lanes")
    config.pluginmanager.register(WorkersPlugin(), "chaosmesh-qa-workers")
    # A suite started in the background of a script (`make test &`, where the shell has no job control) runs with
    # SIGINT ignored, and every `chaos` it starts would inherit that and sleep through a Ctrl-C; a person's
    # terminal sends them SIGINT as usual.  Handled here, children get SIGINT's default again (exec resets it).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def no_locust_left_waiting() -> Iterator[None]:
    """A test that loads the traffic control in process (its configure hook starts a Locust that waits for its run)
    and never runs its clean-up leaves that process behind; it goes with the test, as at the end of a real run."""
    yield
    locust_standby.discard()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("sandbox") / "state")
    box.up()
    try:
        yield box
    finally:
        box.down()


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    """A sandbox serving the Kubernetes API emulation (``up --kube-api``): the Kubernetes target's cluster, and
    a local target's sandbox too (tests/targets/test_fault_contract.py holds both to one contract on it)."""
    with running(tmp_path_factory.mktemp("kube") / "state") as box:
        yield box


@pytest.fixture(scope="session")
def passing_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield from real_run(tmp_path_factory.mktemp("passing-run"), None)


@pytest.fixture(scope="session")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield from real_run(tmp_path_factory.mktemp("broken-run"), BROKEN_MESH)
