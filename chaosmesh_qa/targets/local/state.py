"""Where a sandbox keeps its runtime files, and how to find the default state directory.

Shared by the supervisor (which writes them) and the CLI / target client (which read
them).  Layout: ``control.sock`` (control API), ``admin/<pod>.sock`` (each Envoy's admin
API), ``supervisor.pid``, ``status.json`` (last state: ready or failed), ``logs/``, ``xds/``,
``pki/``, ``prometheus/``.  The directory is the owner's alone (0700): its sockets, keys and
logs are out of other local users' reach (``make_private``).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaosmesh_qa.errors import SandboxStartError
from chaosmesh_qa.files import atomic_write_json

STATE_DIR_ENV = "CHAOSMESH_QA_STATE_DIR"
DEFAULT_STATE_DIR = ".chaosmesh-qa"


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).absolute()


@dataclass(frozen=True)
class SandboxPaths:
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "control.sock"

    @property
    def admin(self) -> Path:
        """Where the Envoys' admin sockets live (``envoy.admin.socket_path``)."""
        return self.root / "admin"

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def prometheus_config(self) -> Path:
        return self.prometheus / "prometheus.yml"

    def make_private(self) -> None:
        """Create the state directory, or take an existing one of ours, as owner-only (0700).

        A directory of another user, or a shared one (sticky or world-writable, like /tmp),
        is refused with one line: the sandbox's sockets must not be reachable by others.
        """
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.root.stat()
        except OSError as exc:
            raise SandboxStartError(f"state directory {self.root}: {exc.strerror or exc}") from None
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid != os.geteuid():
            raise SandboxStartError(f"state directory {self.root}: owned by uid {info.st_uid}, not by you "
                                    f"(uid {os.geteuid()}); choose a directory of your own")
        if mode & (stat.S_ISVTX | stat.S_IWOTH):
            raise SandboxStartError(f"state directory {self.root}: a shared directory (mode {mode:04o}); "
                                    "choose a directory of your own")
        if mode != 0o700:
            os.chmod(self.root, 0o700)

    def write_status(self, status: dict[str, Any]) -> None:
        atomic_write_json(self.status_file, status)

    def read_status(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.status_file.read_text()))
        except (OSError, ValueError):
            return None

    def read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def remove_runtime_files(self) -> None:
        """Everything but the logs, which stay for post-mortems until the next ``up``."""
        for name in ("xds", "pki", "prometheus", "admin"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        for path in (self.socket, self.status_file, self.pid_file):
            path.unlink(missing_ok=True)
