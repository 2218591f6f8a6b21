"""`chaosmesh-qa gameday`: a stop condition trips mid-suite, heals everything within 2 s, skips the rest,
and every report says so; the shipped suite is valid; bad suite input is one line naming file and field.

The real game day shares one sandbox started for this module (stopped at the end).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmlschema
from junitparser import Failure, JUnitXml, Skipped

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.report.gameday import FORMULA, load_suite
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir, down, is_running, up
from chaosmesh_qa.targets.local.state import SandboxPaths
from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.cli import ROOT, run_cli

SUITES = Path(__file__).parent / "suites"
SCHEMA = xmlschema.XMLSchema(Path(__file__).with_name("junit.xsd"))


@dataclass
class Day:
    out: Path
    process: subprocess.CompletedProcess[str]
    faults: list[dict[str, Any]]
    active: list[dict[str, Any]]
    answer: int


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    state = tmp_path_factory.mktemp("gameday-sandbox")
    out = tmp_path_factory.mktemp("gameday")
    try:
        status, _ = up(default_mesh_dir(), state)
        process = run_cli("gameday", str(SUITES / "stops-mid-day.yaml"), "--out", str(out),
                          env={"CHAOSMESH_QA_STATE_DIR": str(state)}, timeout=240)
        faults = LocalTarget(state).fault_history(None)
        active = LocalTarget(state).active_faults()
        answer = httpx.get(status["ingress_url"], timeout=5).status_code  # no fault left behind
        yield Day(out, process, faults, active, answer)
    finally:
        down(state)


@pytest.mark.processes
def test_stop_condition_heals_everything_within_2s_and_skips_the_rest(day: Day) -> None:
    out, process, faults, active, answer = day.out, day.process, day.faults, day.active, day.answer
    assert process.returncode == 3, process.stdout[-3000:] + process.stderr[-2000:]
    assert "game day stops-mid-day: STOPPED — stopped during abort-catalog: client error ratio above 0.5 for 2 s" \
        in process.stdout
    heal_s = float(re.search(r"every fault healed in (\d+\.\d+) s", process.stdout).group(1))  # type: ignore[union-attr]
    assert heal_s <= 2.0
    junit = out / "junit.xml"
    SCHEMA.validate(junit)
    suites = {s.name: s for s in JUnitXml.fromfile(str(junit))}
    stop_case = next(c for c in suites["game day: stops-mid-day"] if c.name == "stop conditions")
    stop_text = next(r for r in stop_case.result if isinstance(r, Failure)).text
    tripped = float(re.search(r"tripped_at_unix: ([\d.]+)", stop_text).group(1))  # type: ignore[union-attr]
    aborts = [f for f in faults if f["kind"] == "abort"]
    assert len(aborts) == 1 and aborts[0]["ended_at"] is not None
    assert aborts[0]["ended_at"] - tripped <= 2.0, (aborts[0], tripped)  # healed through the target, not at expiry
    assert aborts[0]["ended_at"] < aborts[0]["expires_at"] - 10
    assert active == [] and answer == 200
    assert not (out / "steady-again").exists(), "the entry after the stop never ran"
    skipped = next(c for c in suites["steady-again"] if c.name == "verdict")
    assert any(isinstance(r, Skipped) and r.message.startswith("not run: the game day stopped: client error ratio")
               for r in skipped.result)
    markdown = (out / "summary.md").read_text()
    assert markdown.startswith("## 🛑 game day stops-mid-day: STOPPED — resilience score")
    assert "not run: steady-again" in markdown and FORMULA in markdown
    html = (out / "report.html").read_text()
    assert "Game day stops-mid-day" in html and "STOPPED" in html and FORMULA.replace("'", "&#39;") in html
    assert "not run: the game day stopped" in html


@pytest.mark.processes
def test_score_follows_the_formula(day: Day) -> None:
    out = day.out
    markdown = (out / "summary.md").read_text()
    rows = dict(re.findall(r"^\| (\S+) \| \d \| [\d.]+ \| [\d.]+ \| ([\d.]+) \(", markdown, re.M))
    assert rows["steady-again"] == "0.00"  # did not run
    assert rows["steady-first"] == "1.00"  # every hypothesis held, nothing to recover
    score = float(re.search(r"resilience score ([\d.]+) / 100", markdown).group(1))  # type: ignore[union-attr]
    expected = 100 * (1 * 1.0 + 3 * float(rows["abort-catalog"]) + 2 * 0.0) / 6
    assert score == pytest.approx(expected, abs=0.1)


SHIPPED_DAY = ("pod-kill-failover", "latency-circuit-breaker", "partition-failover", "routing-canary", "mtls-strict")


@pytest.mark.processes
@pytest.mark.slow  # five real experiments, each bringing its own sandbox up and down (~3 min on 2 cores)
def test_shipped_default_day_passes_on_the_default_mesh(tmp_path: Path) -> None:
    """`chaosmesh-qa gameday experiments/gamedays/default.yaml`, as docs/tutorials/game-day.md and the scheduling
    examples run it (the installed console script, from the repository root), ends PASSED with exit 0 on the default
    mesh: every entry passes, none is stopped by the day's stop conditions, and the reports say so per entry."""
    state, out = tmp_path / "state", tmp_path / "out"
    state.mkdir(mode=0o700)
    command = [str(Path(sys.executable).with_name("chaosmesh-qa")), "gameday", "experiments/gamedays/default.yaml",
               "--out", str(out)]
    try:
        process = subprocess.run(command, cwd=ROOT, env={**os.environ, "CHAOSMESH_QA_STATE_DIR": str(state)},
                                 capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    finally:
        running = is_running(SandboxPaths(state))
        down(state)  # whatever happened, leave no sandbox behind
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-6000:]
    assert not running, "every entry stops the sandbox it started"
    assert "game day default-mesh: PASSED — 5 of 5 experiment(s) passed" in process.stdout, output[-3000:]
    for index, name in enumerate(SHIPPED_DAY, 1):
        assert f"[{index}/5] {name}: PASSED" in process.stdout, output[-3000:]
    # latency-circuit-breaker ran under its own, declared allowance; the others under the suite's safety net
    assert ("[2/5] latency-circuit-breaker: stop conditions (this entry's own): client error ratio above 0.5 "
            "for 12 s; a probe that cannot measure") in process.stdout
    assert "[1/5] pod-kill-failover: stop conditions: client error ratio above 0.5 for 5 s" in process.stdout
    assert "stopping chaos" not in process.stdout and "STOPPED" not in process.stdout
    # Why the allowance is needed, read off the run: the fault fails clients for more seconds in a row than
    # the suite's 5, and for fewer than the entry's 12 (6 s held + the seconds its in-flight requests end in)
    breach = _longest_breach(out / "latency-circuit-breaker" / "timeline.jsonl", 0.5)
    assert 5 <= breach < 12, breach

    junit = out / "junit.xml"
    SCHEMA.validate(junit)
    suites = {s.name: s for s in JUnitXml.fromfile(str(junit))}
    stop_case = next(c for c in suites["game day: default-mesh"] if c.name == "stop conditions")
    assert not any(isinstance(r, Failure) for r in stop_case.result)
    for name in SHIPPED_DAY:
        assert (out / name / "journal.json").exists()
        cases = list(suites[name])
        assert cases and not any(isinstance(r, (Failure, Skipped)) for c in cases for r in c.result), name
    markdown = (out / "summary.md").read_text()
    assert markdown.startswith("## ✅ game day default-mesh: PASSED — resilience score 100.0 / 100"), markdown[:300]
    rows = dict(re.findall(r"^\| (\S+) \| \d \| [\d.]+ \| [\d.]+ \| ([\d.]+ \(\w+\)) \|", markdown, re.M))
    # every entry passed: each hypothesis check held and each time to recover was within its budget, so each
    # entry scores 1 and the day 100 (the formula of FORMULA)
    assert rows == {name: "1.00 (passed)" for name in SHIPPED_DAY}, markdown
    html = (out / "report.html").read_text()
    assert "Game day default-mesh" in html and "PASSED" in html


def _longest_breach(timeline: Path, above: float) -> int:
    """The most consecutive complete seconds of the client timeline whose error ratio is above ``above``."""
    longest = run = 0
    for raw in timeline.read_text().splitlines():
        line = json.loads(raw)
        if line.get("partial") or not line.get("requests"):
            continue
        run = run + 1 if line["failures"] / line["requests"] > above else 0
        longest = max(longest, run)
    return longest


def test_shipped_suite_is_valid() -> None:
    suite, plan = load_suite(ROOT / "experiments" / "gamedays" / "default.yaml")
    assert [item.prepared.name for item in plan] == list(SHIPPED_DAY)
    assert suite.stop.client_error_ratio is not None
    assert all(item.prepared.source.exists() for item in plan)
    # only the entry that fails clients by design has an allowance of its own; the safety net stays on for all
    own = {item.prepared.name: item.stop.client_error_ratio for item in plan if item.stop is not suite.stop}
    assert list(own) == ["latency-circuit-breaker"] and own["latency-circuit-breaker"] is not None
    assert own["latency-circuit-breaker"].for_s == 12
    assert all(item.stop.client_error_ratio is not None and item.stop.probe_failure for item in plan)


def test_entry_stop_replaces_the_error_ratio_rule_for_that_entry_only(tmp_path: Path) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    shutil.copytree(Path(__file__).parent / "experiments", tmp_path / "experiments")
    (suites / "day.yaml").write_text(
        "name: x\nstop: {client_error_ratio: {above: 0.5, for_s: 5}, probe_failure: true}\nexperiments:\n"
        "  - {experiment: ../experiments/steady.json, name: a}\n"
        "  - {experiment: ../experiments/steady.json, name: b, stop: {client_error_ratio: {above: 0.9, for_s: 12}}}\n")
    suite, plan = load_suite(suites / "day.yaml")
    assert plan[0].stop is suite.stop
    assert plan[1].stop.describe() == "client error ratio above 0.9 for 12 s; a probe that cannot measure"
    assert suite.stop.describe() == "client error ratio above 0.5 for 5 s; a probe that cannot measure"


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\nexperiments: []\n", "bad.yaml: experiments: List should have at least 1 item"),
    ("name: x\nexperimnts: []\n", "bad.yaml: experimnts: Extra inputs are not permitted"),
    ("name: x\nexperiments:\n  - {experiment: ../experiments/steady.json, budget_s: -1}\n",
     "bad.yaml: experiments[0].budget_s: Input should be greater than 0"),
    ("name: x\nexperiments:\n  - {experiment: ../experiments/steady.json, target: mars}\n",
     "bad.yaml: experiments[0].target: Input should be 'local' or 'kubernetes'"),
    ("name: x\nexperiments:\n  - {experiment: ../experiments/nope.json}\n",
     "bad.yaml: experiments[0].experiment: "),
    ("name: x\nexperiments:\n  - {experiment: ../experiments/steady.json, mesh: ../nowhere}\n",
     "bad.yaml: experiments[0].mesh: "),
    ("name: x\nexperiments:\n  - {experiment: ../experiments/steady.json, traffic: {users: 0}}\n",
     "bad.yaml: experiments[0].traffic: "),
    ("name: x\nexperiments:\n  - {experiment: ../experiments/steady.json}\n"
     "  - {experiment: ../experiments/steady.json}\n", "bad.yaml: experiments[1].name: 'steady' is used"),
    ("name: x\nstop: {client_error_ratio: {above: 2, for_s: 1}}\nexperiments:\n"
     "  - {experiment: ../experiments/steady.json}\n", "bad.yaml: stop.client_error_ratio.above: Input should be"),
    # an entry's own stop only replaces the error-ratio rule: it cannot switch the safety net off
    ("name: x\nexperiments:\n  - {experiment: ../experiments/steady.json, stop: {client_error_ratio: null}}\n",
     "bad.yaml: experiments[0].stop.client_error_ratio: Input should be"),
    ("name: x\nexperiments:\n  - {experiment: ../experiments/steady.json, stop: {probe_failure: false}}\n",
     "bad.yaml: experiments[0].stop.probe_failure: Extra inputs are not permitted"),
    ("name: x\nexperiments: [\n", "bad.yaml: not a readable YAML suite"),
])
def test_bad_suite_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    shutil.copytree(Path(__file__).parent / "experiments", tmp_path / "experiments")
    (suites / "bad.yaml").write_text(text)
    with pytest.raises(InvalidArgument) as raised:
        load_suite(suites / "bad.yaml")
    assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)


@pytest.mark.processes
def test_bad_suite_on_the_command_line_is_exit_2_and_nothing_runs(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: x\nexperiments:\n  - {experiment: steady.json, severity: 9}\n")
    process = run_cli("gameday", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "out"), timeout=60)
    assert process.returncode == 2, (process.stdout, process.stderr)
    assert process.stderr.count("\n") == 1 and "bad.yaml: experiments[0].severity: Input should be less than or " \
        "equal to 5" in process.stderr, process.stderr
    assert "Traceback" not in process.stderr and process.stdout == "" and not (tmp_path / "out").exists()
