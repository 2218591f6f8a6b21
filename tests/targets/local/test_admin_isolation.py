"""Admin isolation: no other local user can change a fault, kill a pod or stop an Envoy of a sandbox.

One sandbox of the default mesh in a state directory under /tmp whose parent another user
may traverse (so only the sandbox's own permissions stand in the way).  Checks: no TCP port
the sandbox owns (from ``status --json`` and from its process tree) accepts an Envoy admin
command, and none took effect; the admin and control sockets are the owner's alone; each
stats listener serves ``/stats/prometheus`` and readiness and refuses everything else; as
root, a process running as ``nobody`` cannot connect to any of the sockets.  Without a
sandbox: ``up`` makes its state directory 0700, and refuses another user's or a shared one.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import SandboxStartError
from chaosmesh_qa.targets.local.envoy import admin
from chaosmesh_qa.targets.local.state import SandboxPaths
from tests.support.cli import run_cli
from tests.support.client import get
from tests.support.sandbox import Sandbox

# what a local attacker would send to an Envoy admin API; "probe" is a runtime key nobody else sets
ATTACKS = [("POST", "/runtime_modify?chaosmesh_qa_isolation_probe=1"), ("POST", "/healthcheck/fail"),
           ("POST", "/drain_listeners"), ("POST", "/quitquitquit")]
PROBE_KEY = "chaosmesh_qa_isolation_probe"
NOBODY = "nobody"


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    # a parent any user may traverse (not pytest's 0700 tmp root): only the sandbox's modes protect it
    parent = Path(tempfile.mkdtemp(prefix="cmq-iso-", dir="/tmp"))
    parent.chmod(0o711)
    sandbox = Sandbox(parent / "state")
    sandbox.up()
    try:
        yield sandbox
    finally:
        sandbox.down()
        shutil.rmtree(parent, ignore_errors=True)


def _envoys(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [status["ingress"], *status["pods"]]


def _request(port: int, method: str, path: str, timeout_s: float = 2.0) -> tuple[int | None, bytes]:
    """One plaintext request with ``path`` sent byte for byte (http.client does not normalise it).

    Returns the status and body, or (None, b"") when the port does not answer HTTP (e.g. mTLS only).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request(method, path, headers={"Content-Length": "0"})
        response = connection.getresponse()
        return response.status, response.read()
    except (http.client.HTTPException, OSError):
        return None, b""
    finally:
        connection.close()


def _process_tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return tree


def _listening_ports(pids: set[int]) -> set[int]:
    """TCP ports in LISTEN state held by any of ``pids`` (socket inodes of /proc/<pid>/fd in /proc/net/tcp*)."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _status_ports(status: dict[str, Any]) -> set[int]:
    ports = {port for envoy in _envoys(status) for port in envoy["ports"].values()}
    return ports | {int(status["prometheus_url"].rsplit(":", 1)[1])}


def _envoy_state(status: dict[str, Any]) -> dict[str, Any]:
    """Per Envoy, over its admin socket: sidecar pid, whether the probe key is set, server.live, draining."""
    state = {}
    for envoy in _envoys(status):
        sock = envoy["admin_socket"]
        runtime = admin.get_json(sock, "/runtime?format=json")["entries"]
        stats = admin.get_json(sock, "/stats?format=json&filter=^(server\\.live|listener_manager\\."
                                     "total_listeners_draining)$")["stats"]
        state[envoy["name"]] = {"pid": envoy["pids"]["sidecar"], "probe_key": PROBE_KEY in runtime,
                                **{s["name"]: s["value"] for s in stats}}
    return state


@pytest.mark.processes
def test_no_loopback_port_of_the_sandbox_obeys_admin_commands(box: Sandbox) -> None:
    status = box.status()
    before = _envoy_state(status)
    assert all(s["server.live"] == 1 and s["listener_manager.total_listeners_draining"] == 0 and not s["probe_key"]
               for s in before.values()), before
    assert "ingress_admin_url" not in status
    from_status, from_processes = _status_ports(status), _listening_ports(_process_tree(status["pid"]))
    assert from_status <= from_processes, "status lists every port; the process tree holds them all"
    for port in sorted(from_processes):
        for method, path in ATTACKS:
            _, body = _request(port, method, path)
            assert body.strip() != b"OK", f"port {port} obeyed {method} {path}"
    time.sleep(0.2)  # an obeyed /quitquitquit or drain would show by now (Envoy acts on it at once)
    after = box.status()
    assert _envoy_state(after) == before, "no Envoy changed runtime, health, listeners or process"
    assert after["state"] == "ready" and all(p["state"] == "ready" for p in after["pods"])
    code, _ = get(after["ingress_url"] + "/")
    assert code == 200, "every listener on the request path still serves"


@pytest.mark.processes
def test_admin_and_control_sockets_are_the_owners_alone(box: Sandbox) -> None:
    status = box.status()
    state_dir = box.state_dir
    info = state_dir.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.getuid(), 0o700)
    sockets = [Path(e["admin_socket"]) for e in _envoys(status)]
    assert len(set(sockets)) == len(sockets) == 9
    for path in [*sockets, state_dir / "control.sock"]:
        info = path.lstat()
        assert stat.S_ISSOCK(info.st_mode), path
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.getuid(), 0o600), path
        assert path.parent in (state_dir, state_dir / "admin")
    admin_dir = (state_dir / "admin").stat()
    assert stat.S_IMODE(admin_dir.st_mode) == 0o700


@pytest.mark.processes
def test_stats_listener_serves_metrics_and_readiness_only(box: Sandbox) -> None:
    for envoy in _envoys(box.status()):
        port = envoy["ports"]["stats"]
        code, metrics = _request(port, "GET", "/stats/prometheus?usedonly")
        assert code == 200 and b"envoy_server_live" in metrics, envoy["name"]
        assert _request(port, "GET", "/healthz/ready") == (200, b"LIVE\n")
        refused = [("GET", "/"), ("GET", "/ready"), ("GET", "/stats"), ("GET", "/runtime?format=json"),
                   ("GET", "/config_dump"), ("GET", "/clusters"), ("POST", "/stats/prometheus"),
                   ("POST", "/healthz/ready"), ("GET", "/stats/prometheus/../../runtime_modify"),
                   ("GET", "/stats/prometheus/%2e%2e/%2e%2e/quitquitquit"), ("GET", "//quitquitquit"),
                   ("GET", "/healthz/ready/../../healthcheck/fail"), ("GET", "/stats/prometheus/extra"),
                   *ATTACKS]
        for method, path in refused:
            code, _ = _request(port, method, path)
            assert code in (400, 404), f"{envoy['name']} stats listener: {method} {path} -> {code}"


NOBODY_CONNECT = """
import json, socket, sys
result = {}
for path in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        result[path] = "connected"
    except OSError as exc:
        result[path] = type(exc).__name__
    finally:
        s.close()
print(json.dumps(result))
"""


def _connect_as(user: str | None, paths: list[str]) -> dict[str, str]:
    python = "/usr/bin/python3"  # the system interpreter: any user may run it (not a venv under /root)
    extra: dict[str, Any] = {}
    if user:
        extra = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
    result = subprocess.run([python, "-I", "-c", NOBODY_CONNECT, *paths], capture_output=True, text=True,
                            timeout=30, check=True, cwd="/", **extra)
    return dict(json.loads(result.stdout))


@pytest.mark.processes
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_another_user_cannot_connect_to_admin_or_control_sockets(box: Sandbox) -> None:
    status = box.status()
    paths = [e["admin_socket"] for e in _envoys(status)] + [str(box.state_dir / "control.sock")]
    assert set(_connect_as(None, paths).values()) == {"connected"}, "the owner can (the check itself works)"
    assert set(_connect_as(NOBODY, paths).values()) == {"PermissionError"}, "state dir 0700 keeps others out"
    # and without the directories' protection, each socket's own mode (0600) still does
    directories = [box.state_dir, box.state_dir / "admin"]
    for directory in directories:
        directory.chmod(0o711)
    try:
        assert set(_connect_as(NOBODY, paths).values()) == {"PermissionError"}
    finally:
        for directory in directories:
            directory.chmod(0o700)


def test_state_directory_is_made_owner_only_or_refused(tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o755)
    ours.chmod(0o755)
    SandboxPaths(ours).make_private()
    assert stat.S_IMODE(ours.stat().st_mode) == 0o700
    fresh = tmp_path / "a" / "b"
    SandboxPaths(fresh).make_private()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    with pytest.raises(SandboxStartError, match=r"^state directory /tmp: a shared directory \(mode 1777\)"):
        SandboxPaths(Path("/tmp")).make_private()
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, pwd.getpwnam(NOBODY).pw_uid, -1)
        with pytest.raises(SandboxStartError, match=r"owned by uid \d+, not by you"):
            SandboxPaths(theirs).make_private()


@pytest.mark.processes
def test_up_in_a_shared_directory_is_one_line_and_starts_nothing() -> None:
    result = run_cli("up", "--state-dir", "/tmp")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "state directory /tmp: a shared directory" in result.stderr
    assert not Path("/tmp/control.sock").exists() and not Path("/tmp/supervisor.pid").exists()
