"""Helpers for the report tests: the `chaosmesh-qa run` command line and what one run leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chaosmesh_qa.targets.local.sandbox import down, is_running
from chaosmesh_qa.targets.local.state import SandboxPaths

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = ROOT / "experiments" / "pod-kill-failover.json"
BROKEN_MESH = ROOT / "experiments" / "meshes" / "no-retries-no-outlier-detection"


@dataclass
class Run:
    out: Path
    process: subprocess.CompletedProcess[str]
    sandbox_left_running: bool  # the run's sandbox control should have stopped what it started

    @property
    def journal(self) -> Path:
        return self.directory / "journal.json"

    @property
    def timeline(self) -> Path:
        return self.directory / "timeline.jsonl"

    @property
    def junit(self) -> Path:
        return self.out / "report.xml"

    @property
    def html(self) -> Path:
        return self.out / "report.html"

    @property
    def markdown(self) -> Path:
        return self.out / "summary.md"

    @property
    def directory(self) -> Path:
        return self.out / "runs" / "pod-kill-failover"


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 180,
            cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaosmesh_qa", *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def real_run(out: Path, mesh: Path | None) -> Iterator[Run]:
    state = out / "state"
    env = {"CHAOSMESH_QA_STATE_DIR": str(state), "CHAOSMESH_QA_MESH": str(mesh) if mesh else ""}
    try:
        process = run_cli(["run", str(EXPERIMENT), "--out", str(out / "runs"), "--junit", str(out / "report.xml"),
                           "--html", str(out / "report.html"), "--markdown", str(out / "summary.md")], env)
        left_running = is_running(SandboxPaths(state))
    finally:
        down(state)  # whatever happened to the run, leave no sandbox behind
    yield Run(out, process, left_running)

