"""Preflight: the OS limits a mesh needs, checked before anything starts.

``sandbox.up`` calls ``raise_open_files_limit`` (the soft limit up to the hard one, as Envoy
does for itself; the supervisor it starts inherits it) and then ``check(model)``, which
refuses with one line naming the limit, its value, what this mesh needs and the command
that raises it; nothing has been started then.

What is checked, for a mesh of P pods (P + 1 Envoys with the ingress gateway):

* open files (``RLIMIT_NOFILE``, soft): the supervisor holds a few descriptors per Envoy
  (its ADS stream, its admin connection, the child process) and every Envoy inherits the
  same limit;
* the system-wide open-file table (``fs.file-max``) against what every process will hold;
* ephemeral ports: every pod takes four listening ports from the local range, and its
  connections take more;
* memory (``MemAvailable``) against a measured cost per pod;
* processes and threads (``RLIMIT_NPROC``) where it applies (not to root).

inotify is not checked: with configuration over ADS (``xds.server``) the sandbox's Envoys,
apps, Prometheus and supervisor hold no inotify instance at all (measured; see
docs/explanation/envoy-notes.md), so ``fs.inotify.max_user_instances`` does not bound the mesh.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chaosmesh_qa.errors import SandboxStartError

if TYPE_CHECKING:
    from chaosmesh_qa.mesh.model import MeshModel

# Measured on the 20 x 3 tree (docs/explanation/envoy-notes.md §1); rounded up with headroom.
SUPERVISOR_FDS_BASE = 96  # its sockets, Prometheus, the control API, Python itself
SUPERVISOR_FDS_PER_ENVOY = 6  # ADS stream, admin connection, process handles
ENVOY_FDS = 256  # one Envoy at rest uses about 30; the rest is room for connections under load
PROCESS_FDS_PER_POD = 96  # an Envoy and an app together, system-wide
PORTS_PER_POD = 16  # four listening ports and room for the connections between pods
MEMORY_BASE_MB = 300  # supervisor and Prometheus
MEMORY_PER_POD_MB = 60  # proportional share of an Envoy and a demo app
THREADS_PER_POD = 16  # Envoy's threads and the app's
PROC = Path("/proc")


@dataclass(frozen=True)
class Needs:
    pods: int
    envoys: int
    supervisor_fds: int
    system_fds: int
    ports: int
    memory_mb: int
    threads: int


def needs(model: MeshModel) -> Needs:
    pods = sum(v.replicas for s in model.services.values() for v in s.versions)
    envoys = pods + 1  # and the ingress gateway
    return Needs(
        pods=pods, envoys=envoys,
        supervisor_fds=max(SUPERVISOR_FDS_BASE + SUPERVISOR_FDS_PER_ENVOY * envoys, ENVOY_FDS),
        system_fds=PROCESS_FDS_PER_POD * envoys + SUPERVISOR_FDS_BASE,
        ports=PORTS_PER_POD * envoys,
        memory_mb=MEMORY_BASE_MB + MEMORY_PER_POD_MB * pods,
        threads=THREADS_PER_POD * envoys,
    )


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit where allowed; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else _read_int(PROC / "sys/fs/nr_open", 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= ceiling:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    except (ValueError, OSError):
        return soft, hard
    return ceiling, hard


def check(model: MeshModel, proc: Path = PROC) -> Needs:
    """Refuse (``SandboxStartError``, one line) when an OS limit is short for ``model``; else its needs."""
    need = needs(model)
    mesh = f"this mesh of {need.pods} pods ({need.envoys} Envoys)"
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need.supervisor_fds:
        _refuse(f"open files (RLIMIT_NOFILE) is {soft}; {mesh} needs at least {need.supervisor_fds}; "
                f"raise it with `ulimit -n {_round_up(need.supervisor_fds)}`")
    file_nr = _read_ints(proc / "sys/fs/file-nr")
    if len(file_nr) == 3 and file_nr[2] - file_nr[0] < need.system_fds:
        _refuse(f"open files system-wide (fs.file-max) is {file_nr[2]} with {file_nr[0]} in use; {mesh} needs "
                f"{need.system_fds} more; raise it with "
                f"`sysctl -w fs.file-max={_round_up(file_nr[0] + need.system_fds * 2)}`")
    low_high = _read_ints(proc / "sys/net/ipv4/ip_local_port_range")
    if len(low_high) == 2:
        low, high = low_high
        free = high - low + 1 - _ports_in_use(proc, low, high)
        if free < need.ports:
            _refuse(f"ephemeral ports (net.ipv4.ip_local_port_range {low}-{high}) has {max(free, 0)} free; "
                    f"{mesh} needs {need.ports}; widen it with "
                    f"`sysctl -w net.ipv4.ip_local_port_range=\"{max(1024, high - need.ports * 4)} {high}\"`")
    available_mb = _meminfo_mb(proc, "MemAvailable")
    if available_mb is not None and available_mb < need.memory_mb:
        _refuse(f"memory (MemAvailable) is {available_mb} MB; {mesh} needs about {need.memory_mb} MB; "
                "free memory (stop other programs) or run fewer replicas")
    threads_soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if os.geteuid() != 0 and threads_soft != resource.RLIM_INFINITY:
        in_use = _threads_of_user(proc, os.geteuid())
        if threads_soft - in_use < need.threads:
            _refuse(f"processes (RLIMIT_NPROC) is {threads_soft} with {in_use} threads of yours running; "
                    f"{mesh} needs {need.threads} more; raise it with "
                    f"`ulimit -u {_round_up(in_use + need.threads)}`")
    return need


def _refuse(message: str) -> None:
    raise SandboxStartError(f"preflight: {message}; nothing was started")


def _round_up(value: int) -> int:
    """A round figure at least ``value`` (the next multiple of 1024)."""
    return -(-value // 1024) * 1024


def _read_int(path: Path, default: int) -> int:
    values = _read_ints(path)
    return values[0] if values else default


def _read_ints(path: Path) -> list[int]:
    try:
        return [int(v) for v in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _meminfo_mb(proc: Path, key: str) -> int | None:
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name == key:
                return int(rest.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _ports_in_use(proc: Path, low: int, high: int) -> int:
    """Local TCP ports in ``[low, high]`` that some socket holds (bound, listening or connected)."""
    ports: set[int] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 1 and ":" in fields[1]:
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if low <= port <= high:
                    ports.add(port)
    return len(ports)


def _threads_of_user(proc: Path, uid: int) -> int:
    count = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip())
    return count
