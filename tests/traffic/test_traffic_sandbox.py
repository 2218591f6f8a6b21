"""Acceptance of traffic against a real sandbox: held rate, faults seen in their window only, journal phases,
and no Locust process left behind when ``chaos run`` is killed or interrupted.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa import actions as faults
from chaosmesh_qa.probes import client
from chaosmesh_qa.targets import OWNER_ENV
from chaosmesh_qa.traffic import actions, runner
from chaosmesh_qa.traffic import timeline as tl
from tests.support.cli import CHAOS
from tests.support.sandbox import Sandbox
from tests.support.traffic import (
    MARKER_ENV,
    client_probe,
    closed_port,
    experiment,
    kill_process,
    marked_processes,
    start_chaos,
    traffic_marker,
    wait_for_lines,
    wait_for_log,
    wait_no_marked_processes,
)

pytestmark = pytest.mark.processes

# at 200 rps Locust, the demo apps and the traced Envoys need more than 2 cores: timings would measure saturation
RATE = 120
SATURATED_P50_MS = 50.0
FAULT_S = 8
DELAY_MS = 200


@pytest.fixture(scope="module")
def box(sandbox: Sandbox) -> Sandbox:
    """The session's sandbox: each test heals its own faults (its own owner), so sharing it is safe."""
    return sandbox


@pytest.fixture
def owner(monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's own fault owner, so that phases only see the faults it injected."""
    name = f"traffic-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(OWNER_ENV, name)
    return name


def skip_if_saturated(before_rps: float | None, before_p50_ms: float | None) -> None:
    """A fault's effect on rate or latency cannot be read off a machine that could not carry the traffic
    before the fault (the default mesh serves in ~8 ms at p50 here when the 2 cores are not saturated)."""
    if before_rps is not None and before_rps < 0.9 * RATE:
        pytest.skip(f"machine saturated: {before_rps:.0f} of {RATE} rps before the fault; effect not measurable")
    if before_p50_ms is not None and before_p50_ms > SATURATED_P50_MS:
        pytest.skip(f"machine saturated: p50 {before_p50_ms:.0f} ms before the fault; effect not measurable")


def configuration(box: Sandbox, tmp_path: Path, **profile: Any) -> dict[str, Any]:
    return {"chaosmesh_qa_state_dir": str(box.state_dir), "chaosmesh_qa_timeline": str(tmp_path / "timeline.jsonl"),
            "chaosmesh_qa_traffic": {"users": 100, "rate_rps": RATE, "warmup_s": 2, **profile}}


def test_fixed_rate_holds_within_ten_percent(box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = traffic_marker(monkeypatch)
    cfg = configuration(box, tmp_path, workers=2)
    started = actions.start_traffic(configuration=cfg)
    try:
        assert started["host"] == box.ingress_url  # the ingress is the default host
        wait_for_lines(Path(started["timeline"]), 0)
        deadline = started["ready_at"] + 8
        while tl.read_timeline(Path(started["timeline"]))[-1]["t"] < deadline:
            time.sleep(0.2)
    finally:
        stopped = actions.stop_traffic(configuration=cfg)
    assert not marked_processes(marker) and not stopped["killed"]
    lines = tl.between(tl.measured(tl.read_timeline(Path(cfg["chaosmesh_qa_timeline"]))), started["ready_at"],
                       started["ready_at"] + 8)
    rates = [x["requests"] for x in lines]
    assert len(rates) == 8
    # Every second within 10 %, except that one second may dip when the shared 2-core host stalls a worker: the
    # timeline shows it faithfully, and the pacing makes it up in the next second (a CI run saw 129 then 217).
    off = [r for r in rates if not 0.9 * RATE <= r <= 1.1 * RATE]
    assert len(off) <= 1 and all(r >= 0.5 * RATE for r in rates), rates
    assert sum(rates) == pytest.approx(8 * RATE, rel=0.05), rates
    assert all(x["sources"] == 2 and x["failures"] == 0 for x in lines)  # merged from both workers
    assert stopped["summary"]["throughput_rps"] == pytest.approx(RATE, rel=0.02)


def test_abort_on_one_backend_shows_in_its_window_only(box: Sandbox, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """20 % aborts on reviews (no retries there): ~20 % client errors during the fault, ~0 before and after."""
    marker = traffic_marker(monkeypatch)
    cfg = configuration(box, tmp_path)
    del cfg["chaosmesh_qa_timeline"]  # the default: ./chaosmesh-qa-timeline.jsonl next to the journal
    calm = {"type": "range", "range": [0, 0.01]}
    body = experiment(cfg, hypothesis={"title": "clients are served", "probes": [
        client_probe("client-errors", "client_error_ratio", calm, window_s=2),
        client_probe("client-rate", "client_throughput", {"type": "range", "range": [0.9 * RATE, 1.1 * RATE]},
                     window_s=2),
    ]}, method=[
        {"type": "action", "name": "abort-reviews", "pauses": {"before": 3, "after": FAULT_S + 3.5},
         "provider": {"type": "python", "module": "chaosmesh_qa.actions", "func": "inject_abort",
                      "arguments": {"service": "reviews", "http_status": 503, "percent": 20,
                                    "duration_s": FAULT_S}}},
        client_probe("errors-during", "client_error_ratio", None, phase="during"),
    ])
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(body))
    process = start_chaos(path, tmp_path, marker)
    try:
        assert process.wait(60) == 0, (tmp_path / "chaos.log").read_text()[-2000:]
    finally:
        kill_process(process)
    assert not marked_processes(marker)
    journal = json.loads((tmp_path / "journal.json").read_text())
    skip_if_saturated(journal["chaosmesh_qa"]["traffic"]["phases"]["before"]["throughput_rps"], None)
    assert journal["status"] == "completed" and not journal["deviated"]
    traffic = journal["chaosmesh_qa"]["traffic"]
    assert traffic["timeline"] == str(tmp_path / "chaosmesh-qa-timeline.jsonl")
    phases = traffic["phases"]
    assert phases["during"]["seconds"] >= FAULT_S - 2 and phases["before"]["seconds"] >= 2
    assert phases["after"]["seconds"] >= 2
    assert abs(phases["during"]["error_ratio"] - 0.20) <= 0.05, phases["during"]
    assert phases["during"]["failures_by_kind"] == {"http": phases["during"]["failures"]}
    assert set(phases["during"]["statuses"]) == {"200", "502"}  # the frontend answers 502 when reviews fails
    assert phases["before"]["error_ratio"] <= 0.005 and phases["after"]["error_ratio"] <= 0.005
    for phase in ("before", "during", "after"):
        assert phases[phase]["throughput_rps"] == pytest.approx(RATE, rel=0.1)
    probe = journal["run"][-1]
    assert probe["activity"]["name"] == "errors-during" and probe["output"] == phases["during"]["error_ratio"]


def _bucket(lines: list[dict[str, Any]], quantile: float | None = None) -> tuple[float, float]:
    """The timeline histogram bucket ``[low, high)`` ms that holds ``quantile`` of ``lines`` (None: the fastest
    request).  Buckets are 1 % wide (2 ms at 200 ms): a bound is only failed when the whole bucket is past it."""
    hist = tl.merged_hist(lines)
    keys = sorted(hist)
    key = keys[0]
    if quantile is not None:
        rank, seen = max(1, math.ceil(quantile * sum(hist.values()))), 0
        for key in keys:
            seen += hist[key]
            if seen >= rank:
                break
    return tl.HIST_BASE ** key, tl.HIST_BASE ** (key + 1)


def test_frontend_delay_raises_p99_by_its_value_during_the_window_only(
        box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str) -> None:
    """A 200 ms delay on every frontend request, read off the client timeline against the baseline measured
    just before it in the same run.  Bounds come from what the fault filter does, never from this machine's
    speed: each is stated next to its assertion."""
    traffic_marker(monkeypatch)
    cfg = configuration(box, tmp_path)
    path = Path(cfg["chaosmesh_qa_timeline"])
    actions.start_traffic(configuration=cfg)
    try:
        time.sleep(4)  # a baseline of ~4 whole seconds (~500 requests) before the fault
        record = faults.inject_latency("frontend", DELAY_MS, FAULT_S, configuration=cfg)
        confirmed = time.time()  # every frontend sidecar holds the fault's runtime keys (read back)
        time.sleep(FAULT_S + 0.5)
        while tl.read_timeline(path)[-1]["t"] < record["expires_at"] + 6:
            time.sleep(0.2)
        p50_probe = client.client_latency(0.5, phase="before", configuration=cfg)
        p99_probe = client.client_latency(0.99, phase="during", configuration=cfg)
        lines = tl.measured(tl.read_timeline(path), runner.ready_at(path))
        history = faults.get_target(cfg).fault_history(owner)
    finally:
        actions.stop_traffic(configuration=cfg)
    assert [f["fault_id"] for f in history] == [record["fault_id"]]
    before = tl.phase_lines(lines, history, "before")
    # After the heal, from when the last request the fault held has been released (at most the delay after the end,
    # ended_at: the sidecars' keys are removed by then): until then a request sent after the heal can still wait
    # behind one released late (the client's users and the ingress's connections are busy with them).
    after = tl.between(lines, tl.fault_end(history[0]) + DELAY_MS / 1000, None)
    # The seconds whose every request met the fault: sent from 1 s after the keys were confirmed (the sidecar's
    # workers pick the runtime change up within milliseconds) to 1 s before the expiry (a request sent just
    # before it still has to cross the ingress to reach the frontend's sidecar).
    held = tl.between(lines, confirmed + 1, record["expires_at"] - 1)
    # three seconds or more after, so that a median over them is one second's, not the mean of two
    assert len(held) >= FAULT_S - 4 and len(before) >= 2 and len(after) >= 3, (len(before), len(held), len(after))
    p50_before = tl.latency(before, 0.5)
    skip_if_saturated(tl.throughput(before), p50_before)
    for window, seconds in (("during the fault", held), ("after the heal", after)):
        if tl.throughput(seconds) < 0.9 * RATE:  # the rate says nothing about the delay: skipping masks no bug
            pytest.skip(f"machine saturated: {tl.throughput(seconds):.0f} of {RATE} rps {window}; not measurable")
    assert p50_probe == p50_before  # the client probe reads the same phase off the same timeline
    # No test of the machine below: every bound is the fault's own (the delay, held or not held) or the baseline
    # measured in this run; the numbers quoted were measured on this 2-core host to show the room they leave.

    fastest_before = _bucket(before)[0]
    # The spread of the baseline, measured in this run: the p99 of a typical second before the fault (the median
    # over its seconds, so that one stalled second -- a loaded rehearsal saw one at 408 ms -- does not count).
    typical_p99_before = statistics.median(x["p99"] for x in before)
    # A request held by the fault takes the delay plus its path (no less than the fastest request before); one the
    # fault missed takes its path (about p50_before).  Half-way between the two tells held from not held, with
    # ~100 ms of room either side whatever the machine's load.
    held_threshold = (p50_before + DELAY_MS + fastest_before) / 2

    # 1. Every request is held: Envoy's fault filter delays each one (percentage 100).  Half-way, not the delay
    # itself: measured by the client, a held request can come back a little short of the delay -- the sidecar arms
    # its timer from the event loop's cached clock (libevent), which lags by as long as the loop iteration has
    # run, and a busy core stretches iterations over scheduler slices.  Measured here: the fastest of ~600 held
    # requests in [197, 199) ms in 6 of 26 runs (all with a core kept busy), once 1 % of them, never below.
    assert _bucket(held)[1] > held_threshold, (_bucket(held), held_threshold)
    # 2. The median rises by at least the delay less the baseline median (~196 ms here; at least 150 ms at the
    # saturation limit): the median held request waits the whole delay (the early ones above are a few, never half).
    p50_during = _bucket(held, 0.5)
    rise = p50_during[1] - p50_before
    assert rise >= DELAY_MS - p50_before, (p50_during, p50_before)
    # 3. The p99 of a typical second rises by the delay at least: its request is held the whole delay, and its path
    # is no faster than the fastest request before.  No upper bound on the p99: the held requests' tail is not the
    # baseline's tail moved by 200 ms -- each is released by a timer, with ~24 requests in flight instead of under
    # one (120 rps x 0.2 s) -- and measured here it grew beyond the delay by up to 3.5 times the baseline's
    # typical p99 (69 vs 20 ms): a bound on it would assert how this machine schedules timers, not what the
    # fault does.
    typical_p99_during = statistics.median(x["p99"] for x in held)
    assert typical_p99_during >= DELAY_MS + fastest_before, (typical_p99_during, fastest_before)
    assert p99_probe >= DELAY_MS  # the probe's "during" phase (from the fault's records) sees it too

    # 4. After the heal no request is held any more (the fastest is back below half-way).
    assert _bucket(after)[0] < held_threshold, (_bucket(after), held_threshold)

    # 5. The median rises by no more than the delay plus the baseline's spread: the typical held request, less
    # the delay, is no slower than a typical second's p99 before plus one more baseline spread (that p99 less the
    # baseline median) for the one scheduling wait a held request has that a baseline request had not: the
    # timer that releases it.  A delay applied twice (two filters, or a retry of a delayed request) would put the
    # median at two delays or more -- which this bound tells apart only while it stays below that; on a machine
    # noisier than that, neither 5 nor 6 can be read.
    spread_before = typical_p99_before - p50_before
    median_bound = DELAY_MS + typical_p99_before + spread_before
    if median_bound >= 2 * DELAY_MS + fastest_before:
        pytest.skip(f"machine too noisy: a typical second's p99 was {typical_p99_before:.0f} ms before the fault "
                    f"(median {p50_before:.0f} ms): the delay applied once or twice cannot be told apart")
    assert p50_during[0] <= median_bound, (p50_during, typical_p99_before, p50_before)
    # 6. After the heal latency is back in the baseline's distribution: the median request is no slower than a
    # typical second's p99 before (a delay left on over half of the requests would put it ~200 ms above), and a
    # typical second's p99 is nearer the baseline's than the delay's (a delay left on over 1 % of the requests
    # would put it at delay + path).
    assert _bucket(after, 0.5)[0] <= typical_p99_before, (_bucket(after, 0.5), typical_p99_before)
    typical_p99_after = statistics.median(x["p99"] for x in after)
    assert typical_p99_after < (typical_p99_before + DELAY_MS + fastest_before) / 2, (
        typical_p99_after, typical_p99_before)


def sleeping_experiment(box: Sandbox, workers: int) -> dict[str, Any]:
    cfg = {"chaosmesh_qa_state_dir": str(box.state_dir),
           "chaosmesh_qa_traffic": {"users": 10, "rate_rps": 50, "warmup_s": 1, "workers": workers}}
    return experiment(cfg, method=[{"type": "action", "name": "heal-nothing", "pauses": {"after": 30},
                                    "provider": {"type": "python", "module": "chaosmesh_qa.actions",
                                                 "func": "heal"}}])


def test_sigkill_of_chaos_run_leaves_no_locust_process(box: Sandbox, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(sleeping_experiment(box, workers=2)))
    process = start_chaos(path, tmp_path, marker)
    try:
        wait_for_lines(tmp_path / "chaosmesh-qa-timeline.jsonl", 2, process)
        assert len(marked_processes(marker)) == 3  # master + 2 workers
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        gone_after = wait_no_marked_processes(marker, 3.0)
    finally:
        kill_process(process)
    assert gone_after < 3.0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_chaos_run_stops_traffic_and_records_it(box: Sandbox, tmp_path: Path,
                                                             sig: signal.Signals) -> None:
    marker = uuid.uuid4().hex
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(sleeping_experiment(box, workers=0)))
    process = start_chaos(path, tmp_path, marker)
    try:
        wait_for_log(tmp_path / "chaos.log", "Pausing after activity", process)
        wait_for_lines(tmp_path / "chaosmesh-qa-timeline.jsonl", 3, process)
        os.kill(process.pid, sig)
        assert process.wait(20) != 0
    finally:
        kill_process(process)
    assert wait_no_marked_processes(marker, 1.0) < 1.0
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    traffic = journal["chaosmesh_qa"]["traffic"]
    assert traffic["killed"] == [] and traffic["overall"]["requests"] > 0  # stopped cleanly by the control
    assert traffic["phases"]["during"] is None  # no fault in this run


@pytest.mark.parametrize("bad", ["rate", "host"])
def test_bad_profile_interrupts_chaos_run_before_anything_starts(box: Sandbox, tmp_path: Path, bad: str) -> None:
    marker = uuid.uuid4().hex
    profile: dict[str, Any] = {"rate_rps": "fast"} if bad == "rate" else {
        "host": f"http://127.0.0.1:{closed_port()}"}
    expected = ("traffic.rate_rps: expected a number in (0, 1000000], got 'fast'" if bad == "rate"
                else "traffic.host: cannot connect to http://127.0.0.1:")
    body = experiment({"chaosmesh_qa_state_dir": str(box.state_dir), "chaosmesh_qa_traffic": profile},
                      method=[{"type": "action", "name": "abort-reviews",
                               "provider": {"type": "python", "module": "chaosmesh_qa.actions", "func": "inject_abort",
                                            "arguments": {"service": "reviews", "http_status": 503, "percent": 100,
                                                          "duration_s": 5}}}])
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(body))
    result = subprocess.run([CHAOS, "--no-version-check", "--no-log-file", "run", str(path)], cwd=tmp_path,
                            env={**os.environ, MARKER_ENV: marker}, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert not marked_processes(marker)
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "interrupted" and journal["run"] == []  # the method never ran
    assert journal["chaosmesh_qa"]["traffic"]["error"].startswith(expected)
    console = [line for line in (result.stdout + result.stderr).splitlines() if "chaosmesh-qa traffic:" in line]
    assert len(console) == 1 and expected in console[0], result.stdout + result.stderr  # one line, no traceback
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "chaosmesh-qa-timeline.jsonl").exists()
