"""`recovered_within` on Prometheus agrees with the client-side Locust timeline within 1 s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chaosmesh_qa import actions
from chaosmesh_qa.probes import recovery
from chaosmesh_qa.traffic.actions import start_traffic, stop_traffic
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes

SLO = {"max_error_ratio": 0.01}


def test_prometheus_and_client_agree_on_time_to_recover(sandbox: Sandbox, tmp_path: Path) -> None:
    cfg = {"chaosmesh_qa_state_dir": str(sandbox.state_dir), "chaosmesh_qa_timeline": str(tmp_path / "timeline.jsonl"),
           "chaosmesh_qa_traffic": {"users": 10, "rate_rps": 80, "warmup_s": 1}}
    start_traffic(configuration=cfg)
    try:
        actions.inject_abort("reviews", http_status=503, percent=100, duration_s=3, configuration=cfg)
        on_prometheus = recovery.recovered_within(10, SLO, measure="prometheus", configuration=cfg)
        on_client = recovery.recovered_within(10, SLO, measure="client", configuration=cfg)
    finally:
        stop_traffic(configuration=cfg)
        actions.get_target(cfg).heal(None, None)
    print(f"time to recover: prometheus {on_prometheus:.2f} s, client {on_client:.2f} s")
    assert 2.5 <= on_client <= 4.5, "the 3 s abort, then the SLO holds again"
    # within one scrape interval (1 s); the 1e-9 is float arithmetic (4.714 - 3.714 is 1.0000000000000004)
    assert abs(on_prometheus - on_client) <= 1.0 + 1e-9, (on_prometheus, on_client)
    timeline = recovery.RECOVERIES[-1]["timeline"]
    assert timeline["first_breach"] is not None and timeline["recovered"] is not None
    assert timeline["heal"] is not None and timeline["heal"] <= time.time()
