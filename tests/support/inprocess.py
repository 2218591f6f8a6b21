"""``chaosmesh-qa`` run in this process, as its console script runs it (``chaosmesh_qa.cli.main``): for tests that
must start no process (the unit lane) yet check what the command prints, where, and its exit code.

``run_main`` isolates stdin/stdout/stderr and the environment with click's ``CliRunner`` and changes into ``cwd``
for the call.  Used by tests/cli and tests/scaffold.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from chaosmesh_qa.cli import main

# what the user's shell may have set that would change what a command does here
CLEARED = ("CHAOSMESH_QA_STATE_DIR", "CHAOSMESH_QA_MESH", "CHAOSMESH_QA_TARGET", "NO_COLOR")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def run_main(*args: str, cwd: Path, env: Mapping[str, str | None] | None = None, color: bool = False) -> Result:
    """``chaosmesh-qa ARGS`` from ``cwd``; ``env`` adds (a value) or removes (None) variables; ``color``: whether the
    captured output keeps ANSI styles unless the command turns them off (click's ``CliRunner`` default: no)."""
    runner = CliRunner()
    argv, previous = sys.argv, os.getcwd()
    environment: dict[str, str | None] = {**dict.fromkeys(CLEARED), **(env or {})}
    try:
        os.chdir(cwd)
        with runner.isolation(env=environment, color=color) as (out, err, _):
            sys.argv = ["chaosmesh-qa", *args]
            try:
                main()
                code: object = 0
            except SystemExit as exc:
                code = exc.code
            stdout, stderr = out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")
    finally:
        sys.argv = argv
        os.chdir(previous)
    return Result(int(code or 0) if not isinstance(code, str) else 1, stdout, stderr)


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """Exit 2 and exactly one line ``chaosmesh-qa: ...`` on stderr holding every fragment; no traceback."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
    assert lines[0].startswith("chaosmesh-qa: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
