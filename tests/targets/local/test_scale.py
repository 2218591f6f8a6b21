"""A mesh of real size at default OS limits: 20 services x 3 replicas (60 pods, 61 Envoys).

The mesh starts inside a user namespace whose inotify limit is 128 instances, the default of
common distributions (``/proc/sys/user/max_inotify_instances``: the kernel counts inotify
instances per user namespace and checks every level, so this caps the sandbox alone without
touching the machine-wide ``fs.inotify.max_user_instances`` that other sandboxes on a shared
machine are using), with open files at 1,024 soft.  It must come up, serve a request through
the whole tree, hold no inotify instance at all, push a partition only to the Envoys it
concerns, and apply and heal it (how fast is measured by ``make bench``).  A limit the preflight finds short
is refused with one line before anything starts.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaosmesh_qa.mesh.generate import service_name, write_tree
from chaosmesh_qa.targets.local.envoy import admin
from chaosmesh_qa.targets.local.sandbox import SandboxClient, down
from tests.support.client import first_showing

pytestmark = pytest.mark.processes

DEFAULT_INOTIFY_INSTANCES = 128
SERVICES, REPLICAS = 20, 3
CLI = [sys.executable, "-m", "chaosmesh_qa"]


def _user_namespaces() -> str | None:
    """Why a user namespace with its own inotify limit cannot be made here (None: it can)."""
    if shutil.which("unshare") is None or shutil.which("prlimit") is None:
        return "needs unshare and prlimit (util-linux)"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c",
                            f"echo {DEFAULT_INOTIFY_INSTANCES} > /proc/sys/user/max_inotify_instances"],
                           capture_output=True, text=True, timeout=10, check=False)
    return None if probe.returncode == 0 else f"cannot limit inotify in a user namespace: {probe.stderr.strip()}"


def _tree_status(body: dict[str, Any]) -> tuple[set[str], bool]:
    """The services a demo-app response passed through, and whether every hop answered 200."""
    services, ok = {str(body.get("service"))}, body.get("status") == 200
    for upstream in body.get("upstreams", []):
        more, fine = _tree_status(upstream)
        services |= more
        ok = ok and fine
    return services, ok


def _inotify_instances(pids: list[int]) -> int:
    count = 0
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else []:
            try:
                count += os.readlink(fd) == "anon_inode:inotify"
            except OSError:
                continue
    return count


def _descendants(pid: int) -> list[int]:
    result = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True)
    children: dict[int, list[int]] = {}
    for line in result.stdout.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


@pytest.fixture(scope="module")
def tree_mesh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("tree") / "mesh", SERVICES, REPLICAS)


@pytest.fixture(scope="module")
def big_sandbox(tree_mesh: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    if os.geteuid() != 0:
        pytest.skip("runs the mesh under a user namespace's inotify limit: needs root (unprivileged user "
                    "namespaces cannot be relied on)")
    reason = _user_namespaces()
    if reason is not None:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("big") / "state"
    script = (f"echo {DEFAULT_INOTIFY_INSTANCES} > /proc/sys/user/max_inotify_instances && exec \"$@\"")
    started = time.monotonic()
    result = subprocess.run(
        ["prlimit", "--nofile=1024:", "--", "unshare", "--user", "--map-root-user", "sh", "-c", script, "up",
         *CLI, "up", "--mesh", str(tree_mesh), "--state-dir", str(state), "--timeout", "90"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    cold_start_s = time.monotonic() - started
    try:
        assert result.returncode == 0, result.stderr
        with SandboxClient(state) as client:
            status = client.status()
        status["cold_start_s"] = cold_start_s
        yield state, status
    finally:
        down(state)


def test_the_tree_mesh_comes_up_at_the_default_inotify_limit_and_serves(
        big_sandbox: tuple[Path, dict[str, Any]]) -> None:
    state, status = big_sandbox
    print(f"\n60-pod mesh: cold start {status['cold_start_s']:.1f} s, timings {status['timings']}")
    assert status["state"] == "ready" and len(status["pods"]) == SERVICES * REPLICAS
    response = httpx.get(status["ingress_url"] + "/", timeout=10)
    services, ok = _tree_status(response.json())
    assert response.status_code == 200 and ok, response.text[:500]
    assert services == {service_name(i) for i in range(SERVICES)}  # the request crossed every service
    pids = _descendants(int((state / "supervisor.pid").read_text()))
    assert len(pids) >= 2 * SERVICES * REPLICAS + 2  # supervisor, Prometheus, 61 Envoys, 60 apps
    assert _inotify_instances(pids) == 0  # configuration over ADS: nothing watches files


def _update_successes(pods: list[dict[str, Any]], cluster: str) -> dict[str, int]:
    counts = {}
    for pod in pods:
        path = f"/stats?format=json&filter=^cluster\\.{cluster}\\.update_success$"
        stats = admin.get_json(pod["admin_socket"], path)
        counts[pod["name"]] = sum(int(s["value"]) for s in stats["stats"])
    return counts


def test_a_partition_is_pushed_only_to_its_callers_and_heals(
        big_sandbox: tuple[Path, dict[str, Any]]) -> None:
    state, status = big_sandbox
    caller, callee = service_name(0), service_name(2)
    envoys = [*status["pods"], {"name": status["ingress"]["name"], "admin_socket": status["ingress_admin_socket"]}]
    before = _update_successes(envoys, callee)
    url = status["ingress_url"] + "/"
    apply_ms, heal_ms = [], []
    with SandboxClient(state) as client, httpx.Client(timeout=10) as http:
        for _ in range(5):
            started = time.perf_counter()
            client.inject("partition", {"a": caller, "b": callee, "direction": "to", "mode": "reject"},
                          "test_scale", 60)
            apply_ms.append(first_showing(http, url, callee, True, started))
            hops = {u["service"]: u["status"] for u in http.get(url).json()["upstreams"]}
            assert hops[callee] >= 500 and hops[service_name(1)] == 200, hops  # only that edge is cut
            started = time.perf_counter()
            client.heal(owner="test_scale")
            heal_ms.append(first_showing(http, url, callee, False, started))
    after = _update_successes(envoys, callee)
    pushed = {name for name in before if after[name] != before[name]}
    callers = {p["name"] for p in status["pods"] if p["service"] == caller}
    print(f"\npartition apply {statistics.median(apply_ms):.1f} ms, heal {statistics.median(heal_ms):.1f} ms "
          f"(median of 5, call to the first request showing it); pushed to {len(pushed)} of {len(envoys)} Envoys")
    assert pushed == callers  # only the caller's three Envoys heard of it
    # How fast is a goal (50 ms), measured by `make bench` (bench/scale_bench.py): a test asserts what the
    # mechanism guarantees (each push shows within first_showing's 5 s and reaches the callers only).


def test_a_short_open_files_limit_is_refused_with_one_line_and_nothing_starts(
        tree_mesh: Path, tmp_path: Path) -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit (util-linux)")
    state = tmp_path / "state"
    result = subprocess.run(["prlimit", "--nofile=200:200", "--", *CLI, "up", "--mesh", str(tree_mesh),
                             "--state-dir", str(state)],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "RLIMIT_NOFILE" in lines[0] and "is 200" in lines[0] and "`ulimit -n " in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not state.exists()  # nothing was started, not even the state directory
