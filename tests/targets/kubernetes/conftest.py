"""Fixtures for the Kubernetes target: the embedded mesh serving the Kubernetes API emulation (`up --kube-api`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaosmesh_qa.targets.kubernetes.reaper import stop_local_reapers
from tests.support.kube import KubeSandbox, start


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    box = start(tmp_path_factory.mktemp("kube") / "state")
    try:
        yield box
    finally:
        stop_local_reapers()
        box.down()
