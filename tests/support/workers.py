"""``make test TEST_WORKERS=2`` (pytest-xdist): tests judged by the sandbox's latency or recovery budgets run one at a
time, everything else alongside them.

A shipped experiment's verdict rests on budgets (a p99 under 300 ms, clients recovered within 5 s) that hold on a
machine with CPU to spare, which is what a team's cluster gives its mesh.  Two such runs at once on CI's two cores
starve each other's sidecars and Locust, and a healthy mesh misses its baseline: measured on this suite, a p99 of
322 ms on a baseline that meets 300 ms alone, a recovery of 5.28 s against 5 s.  So the modules of ``BUDGETS`` (they
run experiments, or assert latency, rates or recovery times measured through a sandbox) are one unit of work that
one worker runs in order, and their tests are marked ``budgets`` (``pytest -m budgets``).  A test elsewhere that
uses the session's real runs (``BUDGET_FIXTURES``) is refused at collection: its module belongs in ``BUDGETS``.

One at a time is not enough: the other worker's tests (a sandbox of their own, the emulation, mkdocs, hypothesis)
keep both cores busy too, and every hop of a request through the budgets worker's sandbox then waits behind them for
a core (measured: a default mesh's baseline p99 of 356 ms at 73 of 100 req/s while the other worker ran at full
priority).  So a worker lowers its own priority (``NICENESS``) at its first test outside the group: the sandbox under
a budget wins every core it wakes for, as it would alone, and the other worker's tests, which assert no budget, take
the rest.  Its sandboxes, Locusts and reapers run in sessions of their own, which the kernel's autogroup scheduling
weighs as whole groups whatever their processes' niceness: ``chaosmesh_qa.sessions.spawn`` gives each such session
its starter's niceness (before it did, the lowered worker's sandboxes ran at full weight, which is what the 2026-12-06
measurements below saw).  ``ModulesAndBudgets`` hands the group out first, so the
worker that runs it has not lowered its priority yet; after the group it goes on, lowered, with the other modules.

``ModulesAndBudgets`` keeps a module's tests on one worker (its module-scoped sandbox starts once), as
``--dist loadscope`` does, with ``BUDGETS`` as one unit (by module path: pytest 9 ignores the node-id suffix that
xdist's own ``loadgroup`` relies on).  Registered by tests/conftest.py; the Makefile's ``test`` target runs
``pytest -n $(TEST_WORKERS) --dist loadscope``.  Without workers (``-n 0``) none of this happens.

Measured on CI's two cores (2026-12-06; serially the suite takes 28:47): two plain workers 16:57 with 3 budget
failures; the budgets group one at a time 16:04 with 6; with the other worker's priority lowered too 19:38 with 3
(recoveries of 14.2 s against 8 s, 11.0 s against 5 s: a replacement pod's sidecar starting behind the other
worker's processes, whose sessions the niceness did not reach).  With the sessions lowered too (2026-12-07, clean
clones): the budgets group took 797 s against 744 s alone, and what failed was tests judged by timing outside it
(now in ``BUDGETS``) and a Locust left waiting by an earlier test in the same worker (fixed); the next run 18:36,
with three: the generated tracing experiment's window (fixed in the generator), and two tests whose requests cross
the mesh's timeouts, starved by the budgets worker at the lowered priority (``test_sandbox``'s weighted split, a
700 ms delay behind a 1 s client timeout; now in ``BUDGETS``).  The fourth, 15:57, with 13: nearly all on the lowered
worker's session sandbox, which at a real niceness 10 (weight 110 against 1,024) starved while the budgets worker ran
experiments (spans and scrapes behind: 120 of 480 spans, no request counted in 3 s).  So the niceness is 4 (weight
423: when both workers want the cores, the lowered one gets about 30 % of them, not 10 %; most of an experiment is
designed waiting, when it gets everything): the first clean-clone run at 4 (2026-12-07, after the locality tests'
Envoy timing was fixed) passed whole in 15:56 (.ci/run 17:24), and ``make test`` uses two workers since.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

MARKER = "budgets"
GROUP = "budgets"
BUDGETS = frozenset({  # modules judged by budgets: experiments, traffic measured through a sandbox, recovery times
    "tests/experiments/test_experiments.py", "tests/targets/kubernetes/test_experiments.py",
    "tests/targets/kubernetes/test_profiles.py", "tests/traffic/test_traffic_sandbox.py",
    "tests/targets/local/test_locality_traffic.py", "tests/report/test_gameday.py", "tests/report/test_baseline.py",
    "tests/cli/test_new_runs.py", "tests/examples/test_own_service.py", "tests/examples/test_bookinfo.py",
    "tests/examples/test_chaostoolkit_kubernetes.py", "tests/probes/test_recovery_agreement.py",
    "tests/controls/test_run_state.py", "tests/scaffold/test_suite_runs.py",
    "tests/targets/kubernetes/test_reap_and_plan.py",  # when a lease ends, measured against its expiry
    # requests that must beat the mesh's timeouts (a 700 ms delay under a 1 s client timeout; 1,000 through the
    # default mesh's route timeouts at concurrency 8)
    "tests/targets/kubernetes/test_external_hosts.py", "tests/targets/local/test_sandbox.py",
    # the session's real runs (BUDGET_FIXTURES) and the tests that judge them
    "tests/mesh/test_explain.py", "tests/report/test_html.py", "tests/report/test_markdown.py",
    "tests/report/test_run.py", "tests/report/test_junit.py",
})
NICENESS = 4  # CFS weight 423 against 1024: the budgets worker's processes preempt this worker's when they wake
BUDGET_FIXTURES = frozenset({"passing_run", "broken_run"})  # conftest's real `chaosmesh-qa run`s, judged by budgets


class WorkersPlugin:
    def __init__(self) -> None:
        self.lowered = False

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if (not self.lowered and os.environ.get("PYTEST_XDIST_WORKER")
                and item.get_closest_marker(MARKER) is None):
            os.nice(NICENESS)
            self.lowered = True

    @pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            module = _module(item.nodeid)
            if module in BUDGETS:
                item.add_marker(MARKER)
            elif BUDGET_FIXTURES.intersection(getattr(item, "fixturenames", ())):
                runs = ", ".join(sorted(BUDGET_FIXTURES))
                raise pytest.UsageError(f"{module} uses a real run judged by budgets ({runs}): add it to BUDGETS in "
                                        "tests/support/workers.py")

    @pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent without it
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling

        class ModulesAndBudgets(LoadScopeScheduling):  # type: ignore[misc]
            """One unit of work per test module, and one for the modules of ``BUDGETS``."""

            def _assign_work_unit(self, node: Any) -> None:
                if GROUP in self.workqueue:  # the group first: its worker has not lowered its priority yet
                    self.workqueue.move_to_end(GROUP, last=False)
                super()._assign_work_unit(node)

            def _split_scope(self, nodeid: str) -> str:
                module = _module(nodeid)
                return GROUP if module in BUDGETS else module

        return ModulesAndBudgets(config, log)


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]
