"""Fuzzing the ``chaosmesh-qa`` command line in-process (volume), and a handful through the real console script.

Every command line ends with one line on stderr (``chaosmesh-qa: ...``) and the documented exit code (2 for
any error; ``status`` without a sandbox: 1; ``down`` with nothing running: 0), never a traceback, and never
starts anything: ``up`` always names a mesh directory that does not exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.support.fuzz import fuzz, numbers, texts
from tests.support.inprocess import run_main

COMPONENT = st.one_of(st.sampled_from(["state", "x" * 255, "x" * 256, "a\0b", "é", "-", "--all", " "]),
                      st.text(st.characters(exclude_characters="/", exclude_categories=["Cs"]), min_size=1,
                              max_size=40).filter(lambda t: t not in (".", "..")))
NUMBER_TEXT = st.one_of(numbers.map(str), texts)


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    state = ["--state-dir", "fuzz-" + draw(COMPONENT)] if draw(st.booleans()) else []
    command = draw(st.sampled_from(["up", "status", "down", "heal", "verdict", "validate", "nope", "--bogus"]))
    if command == "up":  # the mesh never exists here: a run that gets past option checks stops at validation
        options = [item for option in ("--timeout", "--max-fault-ttl", "--endpoint-delay") if draw(st.booleans())
                   for item in (option, draw(NUMBER_TEXT))]
        return ["up", "--mesh", "no-such-mesh-" + draw(COMPONENT), *state, *options]
    if command == "heal":
        target = draw(st.one_of(st.just(["--all"]), texts.map(lambda t: [t]), st.just([])))
        return ["heal", *state, *target]
    if command == "verdict":
        return ["verdict", "journal-" + draw(COMPONENT)]
    if command == "validate":
        return ["validate", "--mesh", "no-such-mesh-" + draw(COMPONENT)]
    if command == "status":
        return ["status", *state, *draw(st.sampled_from([[], ["--json"]]))]
    return [command, *state]


@pytest.mark.timeout(120)
@fuzz(220)
@given(args=command_lines())
def test_fuzz_cli_arguments(tmp_path_factory: pytest.TempPathFactory, args: list[str]) -> None:
    """Every command line: one line on stderr, exit 2 (status without a sandbox: 1; down: 0), no traceback."""
    cwd = tmp_path_factory.getbasetemp() / "cli"
    cwd.mkdir(exist_ok=True)
    result = run_main(*args, cwd=cwd)
    code, stderr = result.code, result.stderr
    event(f"{args[0]} -> exit {code}")
    if code == 0:
        assert args[0] == "down" and stderr == "", (args, stderr)
        return
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chaosmesh-qa: "), (args, stderr)
    assert code == (1 if args[0] == "status" and "no sandbox running" in stderr else 2), (args, code, stderr)
    assert not list(cwd.glob("**/control.sock")), "nothing was started"


SUBPROCESS_CASES = [
    (["up", "--mesh", "missing", "--timeout", "nan"], "'--timeout'"),
    (["up", "--mesh", "missing", "--max-fault-ttl", "1e400"], "'--max-fault-ttl'"),
    (["heal", "bad id!"], "FAULT_ID: expected a fault id"),
    (["verdict", "x" * 300], "'[JOURNAL]'"),
    (["status", "--state-dir", "s" * 256], "'--state-dir'"),
    (["heal", "--all", "--state-dir", "empty"], "no sandbox answering"),
]


@pytest.mark.processes
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("args", "fragment"), SUBPROCESS_CASES, ids=[" ".join(a)[:40] for a, _ in SUBPROCESS_CASES])
def test_cli_through_the_real_console_script(tmp_path: Path, args: list[str], fragment: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSMESH_QA_")}
    result = subprocess.run([str(Path(sys.executable).with_name("chaosmesh-qa")), *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chaosmesh-qa: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
