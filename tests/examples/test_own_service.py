"""examples/own-service/experiment.json, run as its README says, with the real `chaos` CLI.

The shipped example passes because storefront's own client retries absorb a 20 % abort on its
edge to reviews; the same example with storefront's retries turned off (``STOREFRONT_RETRIES=0``
through ``env`` in the workload's ``command``) must deviate: an example that passes without the
policy it claims to show would teach the wrong lesson.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chaosmesh_qa.report.verdict import load_journal, verdict
from chaosmesh_qa.targets.local.sandbox import down, is_running
from chaosmesh_qa.targets.local.state import SandboxPaths
from tests.support.cli import CHAOS

pytestmark = pytest.mark.processes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own-service"
COMMAND = 'command: [python3, "{mesh}/../storefront.py", "{port}"]'


def _example_copy(work: Path, retries: int | None) -> Path:
    copy = work / "own-service"
    shutil.copytree(EXAMPLE, copy)
    if retries is not None:
        mesh = copy / "mesh" / "mesh.yaml"
        text = mesh.read_text()
        assert text.count(COMMAND) == 1
        without = COMMAND.replace("[python3,", f"[env, STOREFRONT_RETRIES={retries}, python3,")
        mesh.write_text(text.replace(COMMAND, without))
    return copy


@pytest.mark.parametrize(("retries", "expected"), [(None, "passed"),
                                                    pytest.param(0, "deviated", marks=pytest.mark.slow)],
                         ids=["as-shipped", "storefront-without-retries"])  # the twin: the slow suite
def test_the_example_passes_only_with_storefronts_retries(retries: int | None, expected: str, tmp_path: Path) -> None:
    copy = _example_copy(tmp_path, retries)
    state = tmp_path / "state"
    env = {**os.environ, "CHAOSMESH_QA_STATE_DIR": str(state), "CHAOSMESH_QA_MESH": str(copy / "mesh"),
           "CHAOSMESH_QA_TIMELINE": str(tmp_path / "timeline.jsonl")}
    journal = tmp_path / "journal.json"
    try:
        subprocess.run([CHAOS, "--no-version-check", "--log-file", str(tmp_path / "chaos.log"), "run",
                        "--journal-path", str(journal), str(copy / "experiment.json")],
                       cwd=copy, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    finally:
        running = is_running(SandboxPaths(state))
        down(state)  # whatever happened to the run, leave no sandbox behind
    assert not running, "the sandbox the run started is gone"
    result = verdict(load_journal(journal), journal)
    assert result.outcome == expected, (result.reasons, (tmp_path / "chaos.log").read_text()[-3000:])
    during = result.journal["chaosmesh_qa"]["traffic"]["phases"]["during"]
    assert during["requests"] >= 100, during
    if expected == "passed":
        assert during["error_ratio"] <= 0.05, during  # storefront's retries hide most of the 20 %
    else:
        assert 0.10 <= during["error_ratio"] <= 0.30, during  # the 20 % abort, nothing retried
