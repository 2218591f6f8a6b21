"""Configuration over ADS on the default mesh: no file watching, owner-only socket, incremental pushes,
and partitions pushed only to their callers (their latency goal, docs/explanation/envoy-notes.md §3, is `make
bench`'s)."""

from __future__ import annotations

import os
import stat
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaosmesh_qa.targets.local.envoy import admin
from chaosmesh_qa.targets.local.sandbox import SandboxClient
from tests.support.client import first_showing
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes

ROUNDS = 7


def _envoys(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [*status["pods"], {"name": status["ingress"]["name"], "admin_socket": status["ingress_admin_socket"],
                              "pids": status["ingress"]["pids"], "service": "ingress"}]


def _update_successes(envoys: list[dict[str, Any]], cluster: str) -> dict[str, int]:
    counts = {}
    for envoy in envoys:
        path = f"/stats?format=json&filter=^cluster\\.{cluster}\\.update_success$"
        stats = admin.get_json(envoy["admin_socket"], path)
        counts[envoy["name"]] = sum(int(s["value"]) for s in stats["stats"])
    return counts


def test_every_envoy_is_served_over_an_owner_only_socket_and_watches_no_file(sandbox: Sandbox) -> None:
    status = sandbox.status()
    socket = sandbox.state_dir / "xds" / "ads.sock"
    assert status["xds"]["connected"] == len(_envoys(status)) and status["xds"]["rejections"] == {}
    assert stat.S_ISSOCK(socket.stat().st_mode) and stat.S_IMODE(socket.stat().st_mode) == 0o600
    for envoy in _envoys(status):
        pid = envoy["pids"]["sidecar"]
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        assert "anon_inode:inotify" not in links, envoy["name"]
        stats = admin.get_json(envoy["admin_socket"], "/stats?format=json&filter=^control_plane\\.connected_state$")
        assert [s["value"] for s in stats["stats"]] == [1], envoy["name"]  # its ADS stream is up


def test_a_partition_reaches_the_data_plane_of_its_callers_only(sandbox: Sandbox) -> None:
    status = sandbox.status()
    envoys = _envoys(status)
    before = _update_successes(envoys, "catalog")
    url = status["ingress_url"] + "/"
    apply_ms, heal_ms = [], []
    with SandboxClient(sandbox.state_dir) as client, httpx.Client(timeout=10) as http:
        for _ in range(ROUNDS):
            started = time.perf_counter()
            client.inject("partition", {"a": "frontend", "b": "catalog", "direction": "to", "mode": "reject"},
                          "test_xds", 60)
            apply_ms.append(first_showing(http, url, "catalog", True, started))
            hops = {u["service"]: u["status"] for u in http.get(url).json()["upstreams"]}
            assert hops["catalog"] >= 500 and hops["reviews"] == 200, hops  # only that edge is cut
            started = time.perf_counter()
            client.heal(owner="test_xds")
            heal_ms.append(first_showing(http, url, "catalog", False, started))
    after = _update_successes(envoys, "catalog")
    pushed = {name for name in before if after[name] != before[name]}
    print(f"\npartition apply {statistics.median(apply_ms):.1f} ms, heal {statistics.median(heal_ms):.1f} ms "
          f"(median of {ROUNDS}); pushed to {sorted(pushed)}")
    assert pushed == {p["name"] for p in status["pods"] if p["service"] == "frontend"}
    # the latency goal (50 ms) is measured by `make bench` (bench/faults_bench.py), not asserted here
