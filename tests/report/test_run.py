"""`chaosmesh-qa run`: exit code = verdict, artefacts per experiment, safe defaults, bad input, stopping.

The two real pod-kill runs come from conftest; the cheap cases run experiments that need no sandbox
(a `process` activity), through the same real `chaos` child process.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import pytest

from chaosmesh_qa.report.run import SAFETY_MODULE, safe_copy
from tests.support.cli import ROOT, run_cli
from tests.support.runs import Run

STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[1/1\] pod-kill-failover: ")


def test_passing_run_exits_0_with_every_artefact(passing_run: Run) -> None:
    out = passing_run.process
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    directory = passing_run.directory
    for name in ("journal.json", "chaostoolkit.log", "timeline.jsonl", "events.ndjson", "chaos-output.txt",
                 "experiment.json"):
        assert (directory / name).stat().st_size > 0, name
    seconds = [json.loads(line) for line in (directory / "timeline.jsonl").read_text().splitlines()]
    full = [s["requests"] for s in seconds if not s.get("partial")]
    copy = json.loads((directory / "experiment.json").read_text())
    # whole seconds the run holds for sure: its warm-up's lines, then as many as its pauses last
    designed = copy["configuration"]["chaosmesh_qa_traffic"]["warmup_s"] + sum(
        sum(activity.get("pauses", {}).values()) for activity in copy["method"])
    assert len(full) >= designed and abs(median(full) - 100) <= 10, full  # the profile's 100 rps, in our timeline
    assert copy["runtime"]["rollbacks"]["strategy"] == "always"
    assert copy["configuration"]["chaosmesh_qa_timeline"] == str(directory / "timeline.jsonl")
    assert "added the chaosmesh-qa-safety control" not in out.stdout  # the experiment declares it
    assert "verdict: PASSED" in out.stdout and "1 of 1 experiment(s) passed" in out.stdout


def test_progress_is_plain_timestamped_lines_when_not_a_terminal(passing_run: Run) -> None:
    lines = passing_run.process.stdout.splitlines()
    progress = [line for line in lines if STAMPED.match(line)]
    texts = [STAMPED.sub("", line) for line in progress]
    expected = ["starting the mesh and the traffic", "steady state before the method", "method",
                "steady state after the method", "rollbacks"]
    assert [t for t in texts if t in expected] == expected  # every phase, in order
    assert any(t.startswith("action kill-one-catalog-pod succeeded — fault pod-kill-") for t in texts)
    assert any(re.match(r"traffic \d+ req/s  error ratio 0\.\d{3}  p99 \d+\.\d ms", t) for t in texts)
    assert not any("\x1b[" in line for line in lines), "no terminal escapes in CI logs"


def test_broken_twin_exits_non_zero(broken_run: Run) -> None:
    out = broken_run.process
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "verdict: DEVIATED" in out.stdout and "0 of 1 experiment(s) passed" in out.stdout


def test_safe_copy_adds_the_safety_control_and_rollbacks_always() -> None:
    experiment = {"title": "t", "description": "d", "method": [], "runtime": {"rollbacks": {"strategy": "never"}},
                  "controls": [{"name": "other", "provider": {"type": "python", "module": "x"}}]}
    copy, notes = safe_copy(experiment, "kubernetes")
    assert copy["runtime"]["rollbacks"]["strategy"] == "always"
    assert [c["provider"]["module"] for c in copy["controls"]] == ["x", SAFETY_MODULE]
    assert copy["configuration"]["chaosmesh_qa_target"] == "kubernetes"
    assert len(notes) == 2 and "'never'" in notes[0] and "safety" in notes[1]
    assert experiment["runtime"]["rollbacks"]["strategy"] == "never" and len(experiment["controls"]) == 1
    again, notes = safe_copy(copy, None)
    assert notes == [] and again == copy


def _process_experiment(path: Path, seconds: float = 0) -> Path:
    path.write_text(json.dumps({
        "title": f"sleep {seconds}", "description": "no sandbox needed",
        "method": [{"type": "action", "name": "sleep", "provider": {"type": "process", "path": "sleep",
                                                                    "arguments": str(seconds)}}]}))
    return path


@pytest.mark.processes
def test_run_says_what_it_added_and_judges_strictly(tmp_path: Path) -> None:
    experiment = _process_experiment(tmp_path / "no-hypothesis.json")
    out = run_cli("run", str(experiment), "--out", str(tmp_path / "out"), "--junit", str(tmp_path / "j.xml"),
                  env={"CHAOSMESH_QA_STATE_DIR": str(tmp_path / "state")}, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr  # chaos exits 0, but no hypothesis is no pass
    assert "no-hypothesis: added the chaosmesh-qa-safety control" in out.stdout
    assert "runtime.rollbacks.strategy set to 'always'" in out.stdout
    assert "verdict: INCONCLUSIVE" in out.stdout
    copy = json.loads((tmp_path / "out" / "no-hypothesis" / "experiment.json").read_text())
    assert copy["controls"][-1]["provider"]["module"] == SAFETY_MODULE
    assert 'name="verdict"' in (tmp_path / "j.xml").read_text()


@pytest.mark.processes
def test_sigterm_stops_the_current_experiment_and_skips_the_rest(tmp_path: Path) -> None:
    first = _process_experiment(tmp_path / "first.json", 30)
    second = _process_experiment(tmp_path / "second.json", 30)
    process = subprocess.Popen([sys.executable, "-m", "chaosmesh_qa", "run", str(first), str(second), "--out",
                                str(tmp_path / "out"), "--junit", str(tmp_path / "j.xml")], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    events = tmp_path / "out" / "first" / "events.ndjson"
    deadline = time.monotonic() + 30
    while '"activity-started"' not in (events.read_text() if events.exists() else ""):  # the sleep runs
        assert time.monotonic() < deadline and process.poll() is None, "the first experiment never started"
        time.sleep(0.1)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 10, "stopped at once, not after the 30 s sleep"
    assert process.returncode == 1, stdout + stderr
    assert "verdict: INTERRUPTED" in stdout and "verdict: NOT-RUN" in stdout
    junit = (tmp_path / "j.xml").read_text()
    assert "not run: chaosmesh-qa run stopped by SIGTERM" in junit
    assert not (tmp_path / "out" / "second").exists()


@pytest.mark.processes
def test_bad_input_is_one_line_exit_2_and_nothing_runs(tmp_path: Path) -> None:
    good = _process_experiment(tmp_path / "good.json")
    (tmp_path / "broken.json").write_text('{"title": ')
    (tmp_path / "no-method.json").write_text(json.dumps({"title": "t", "description": "d"}))
    (tmp_path / "list.yaml").write_text("- 1\n")
    cases = {
        "missing.json": "missing.json: no such experiment file",
        "broken.json": "broken.json: not valid JSON (",
        "no-method.json": "no-method.json: invalid experiment: an experiment requires a method",
        "list.yaml": "list.yaml: not a Chaos Toolkit experiment",
    }
    for name, message in cases.items():
        out = run_cli("run", str(good), str(tmp_path / name), "--out", str(tmp_path / "out"), timeout=60)
        assert out.returncode == 2, (name, out.stdout, out.stderr)
        assert out.stderr.count("\n") == 1 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert out.stdout == "" and not (tmp_path / "out").exists(), "nothing ran, not even the good experiment"
    out = run_cli("run", str(good), "--target", "mars", timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--target" in out.stderr
