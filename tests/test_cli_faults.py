"""`chaosmesh-qa status` lists active faults with their remaining TTL; `heal` removes them."""

from __future__ import annotations

import pytest

from chaosmesh_qa import actions
from tests.support.cli import run_cli
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes


def test_status_lists_faults_and_heal_removes_them(sandbox: Sandbox) -> None:
    cfg = {"chaosmesh_qa_state_dir": str(sandbox.state_dir)}
    first = actions.inject_latency("reviews", delay_ms=10, duration_s=60, configuration=cfg)
    second = actions.inject_abort("catalog", http_status=500, percent=1, duration_s=60, configuration=cfg)
    try:
        shown = run_cli("status", "--state-dir", str(sandbox.state_dir)).stdout
        assert "active faults: 2" in shown
        assert first["fault_id"] in shown and second["fault_id"] in shown
        remaining = [f["remaining_s"] for f in sandbox.status()["faults"]]
        assert all(50 < r <= 60 for r in remaining)

        one = run_cli("heal", "--state-dir", str(sandbox.state_dir), first["fault_id"])
        assert one.returncode == 0 and f"healed {first['fault_id']}" in one.stdout
        again = run_cli("heal", "--state-dir", str(sandbox.state_dir), first["fault_id"])
        assert again.returncode == 0 and "no matching active fault" in again.stdout

        usage = run_cli("heal", "--state-dir", str(sandbox.state_dir))
        assert usage.returncode == 2 and usage.stderr.count("\n") == 1 and "FAULT_ID or --all" in usage.stderr

        everything = run_cli("heal", "--all", "--state-dir", str(sandbox.state_dir))
        assert everything.returncode == 0 and second["fault_id"] in everything.stdout
        assert sandbox.status()["faults"] == []
    finally:
        actions.get_target(cfg).heal(None, None)
