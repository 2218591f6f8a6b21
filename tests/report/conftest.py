"""Two real `chaosmesh-qa run`s of pod-kill-failover per session, shared by the report tests.

One on the default mesh (passes), one on its broken twin (no retries, no outlier detection:
deviates).  Each brings its own sandbox up through the experiment's sandbox control, in a state
directory of its own, and stops whatever a failed run left behind (``runs.real_run``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.report.runs import BROKEN_MESH, Run, real_run


@pytest.fixture(scope="session")
def passing_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield from real_run(tmp_path_factory.mktemp("passing-run"), None)


@pytest.fixture(scope="session")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield from real_run(tmp_path_factory.mktemp("broken-run"), BROKEN_MESH)
