"""`chaosmesh-qa gameday`: a stop condition trips mid-suite, heals everything within 2 s, skips the rest,
and every report says so; the shipped suite is valid; bad suite input is one line naming file and field.

The real game day shares one sandbox started for this module (stopped at the end).
"""

from __future__ import annotations

import re
import shutil
import subprocess
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
from chaosmesh_qa.targets.local.sandbox import default_mesh_dir, down, up
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


def test_shipped_suite_is_valid() -> None:
    suite, plan = load_suite(ROOT / "experiments" / "gamedays" / "default.yaml")
    assert len(plan) >= 3 and suite.stop.client_error_ratio is not None
    assert all(item.source.exists() for item, *_ in plan)


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
