"""A real sandbox driven through the CLI: ``Sandbox`` (``up``/``down``/``status``) and ``serve`` (one on a given mesh).

Used by tests/conftest.py (the session's ``sandbox``), ``tests.support.kube`` and the modules that start a
sandbox of their own (test_bookinfo, test_gateway_traffic, the lifecycle and user-service tests, ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chaosmesh_qa.targets.local import sandbox as local_sandbox
from tests.support.cli import run_cli


class Sandbox:
    """A running sandbox started with `chaosmesh-qa up`, stopped with `down`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def up(self, *extra: str) -> None:
        result = run_cli("up", "--state-dir", str(self.state_dir), *extra)
        assert result.returncode == 0, result.stderr

    def down(self) -> None:
        result = run_cli("down", "--state-dir", str(self.state_dir))
        assert result.returncode == 0, result.stderr

    def status(self) -> dict[str, Any]:
        """What ``chaosmesh-qa status --json`` prints, read in this process: the command costs ~0.9 s of Python
        start-up, and the tests ask hundreds of times (the command itself: tests/metrics/test_catalog_live.py)."""
        return dict(json.loads(json.dumps(local_sandbox.status(self.state_dir))))

    @property
    def ingress_url(self) -> str:
        return str(self.status()["ingress_url"])


class Served(Sandbox):
    url = ""  # the ingress URL, read once at start


def serve(mesh: Path, state: Path) -> Iterator[Served]:
    """A sandbox up on ``mesh`` for as long as the generator runs (a module fixture's body)."""
    sandbox = Served(state)
    sandbox.up("--mesh", str(mesh))
    try:
        sandbox.url = sandbox.ingress_url
        yield sandbox
    finally:
        sandbox.down()
