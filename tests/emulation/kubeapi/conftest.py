"""One sandbox with the Kubernetes API emulation (``up --kube-api``) for the emulation's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kube import KubeSandbox

FORBIDDEN = "update:configmaps"  # the 403 test hook, on a verb no other test of the module needs


@pytest.fixture(scope="session")
def kube_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    box = KubeSandbox(tmp_path_factory.mktemp("kube-sandbox") / "state")
    box.up("--kube-api", "--kube-api-forbid", FORBIDDEN)
    try:
        yield box
    finally:
        box.down()
