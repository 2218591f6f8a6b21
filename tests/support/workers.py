"""``make test``'s two workers (pytest-xdist): tests judged by the sandbox's latency or recovery budgets run one at a
time, everything else alongside them.

A shipped experiment's verdict rests on budgets (a p99 under 300 ms, clients recovered within 5 s) that hold on a
machine with CPU to spare, which is what a team's cluster gives its mesh.  Two such runs at once on CI's two cores
starve each other's sidecars and Locust, and a healthy mesh misses its baseline: measured on this suite, a p99 of
322 ms on a baseline that meets 300 ms alone, a recovery of 5.28 s against 5 s.  So every test marked ``budgets``
(modules that run experiments or assert latency bounds from Locust, and any test using the session's real runs,
``BUDGET_FIXTURES``) goes to one xdist group, which one worker runs in order; the other worker runs the rest
(validation, the API emulation, kubectl, the docs build, fault mechanics), which asserts no latency budget.

``ModulesAndBudgets`` keeps a module's tests on one worker (its module-scoped sandbox starts once), as
``--dist loadscope`` does, with the ``budgets`` group as one more unit of work.  Registered by tests/conftest.py;
the Makefile's ``test`` target runs ``pytest -n 2 --dist loadgroup``.  Without ``-n`` the suite runs serially and
none of this matters.
"""

from __future__ import annotations

from typing import Any

import pytest

MARKER = "budgets"
GROUP = "budgets"
BUDGET_FIXTURES = frozenset({"passing_run", "broken_run"})  # conftest's real `chaosmesh-qa run`s, judged by budgets


class WorkersPlugin:
    @pytest.hookimpl(tryfirst=True)  # before xdist names the group in the test's node id
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if BUDGET_FIXTURES.intersection(getattr(item, "fixturenames", ())):
                item.add_marker(MARKER)
            if item.get_closest_marker(MARKER) is not None:
                item.add_marker(pytest.mark.xdist_group(GROUP))

    @pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent without it
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling

        class ModulesAndBudgets(LoadScopeScheduling):  # type: ignore[misc]
            """One unit of work per test module, and one for the ``budgets`` group (``--dist loadgroup``'s
            ``name@group`` node ids)."""

            def _split_scope(self, nodeid: str) -> str:
                if nodeid.rfind("@") > nodeid.rfind("]"):  # a parameter id may hold an @
                    return nodeid.rsplit("@", 1)[1]
                return nodeid.split("::", 1)[0]

        return ModulesAndBudgets(config, log)
