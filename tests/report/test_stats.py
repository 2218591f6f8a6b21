"""The gate's statistics on synthetic runs (fast, no sandbox): bounds, direction, false alarms, thresholds files."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.report.baseline import Rule, Thresholds, load_thresholds
from chaosmesh_qa.report.stats import Seconds, compare_phase, compare_runs, phase_figure
from chaosmesh_qa.traffic import timeline


def synthetic_run(rng: random.Random, seconds: int = 12, rps: int = 100, median_ms: float = 8.0,
                  extra_ms: float = 0.0, error_rate: float = 0.0) -> Seconds:
    """A run like the timeline records it: per second, requests, failures and a 1 % log histogram of latencies."""
    run_factor = rng.lognormvariate(0, 0.15)  # run-to-run noise (a busier machine for the whole run)
    requests, failures, hists = [], [], []
    for _ in range(seconds):
        latencies = [median_ms * run_factor * rng.lognormvariate(0, 0.4) + extra_ms for _ in range(rps)]
        requests.append(rps)
        failures.append(sum(rng.random() < error_rate for _ in range(rps)))
        hists.append(Counter(timeline.hist_key(ms) for ms in latencies))
    return Seconds(requests, failures, hists)


def test_pooled_figures_match_the_timeline_helpers() -> None:
    rng = random.Random(1)
    runs = [synthetic_run(rng), synthetic_run(rng)]
    merged: Counter[int] = Counter()
    for run in runs:
        for hist in run.hists:
            merged.update(hist)
    assert phase_figure("p99_ms", runs) == pytest.approx(timeline.hist_quantile(merged, 0.99))
    assert phase_figure("p50_ms", runs) == pytest.approx(timeline.hist_quantile(merged, 0.5))
    assert phase_figure("throughput_rps", runs) == pytest.approx(100)
    assert phase_figure("error_ratio", runs) == 0


def test_added_100ms_is_a_regression_and_the_bound_is_near_it() -> None:
    rng = random.Random(2)
    baseline = [synthetic_run(rng) for _ in range(3)]
    slow = [synthetic_run(rng, extra_ms=100)]
    bounds = compare_phase("p99_ms", baseline, slow, True, 0.95, 2000)
    assert bounds is not None
    assert 80 < bounds.lower <= bounds.worse <= bounds.upper < 140, bounds
    allowance = max(30, 0.5 * bounds.baseline)
    assert bounds.lower > allowance


def test_unchanged_runs_raise_no_false_alarm() -> None:
    """100 baseline/current pairs drawn from the same distribution: none beyond the default p99/p50 allowances."""
    rng = random.Random(3)
    thresholds = Thresholds()
    alarms = 0
    for _ in range(100):
        baseline = [synthetic_run(rng, seconds=8, rps=50) for _ in range(2)]
        current = [synthetic_run(rng, seconds=8, rps=50) for _ in range(2)]
        for figure in ("p99_ms", "p50_ms"):
            rule = thresholds.rule(f"overall.{figure}")
            bounds = compare_phase(figure, baseline, current, True, 0.95, 400)
            assert bounds is not None
            alarms += bounds.lower > max(rule.absolute, rule.relative * bounds.baseline)
    assert alarms == 0


def test_run_to_run_noise_widens_the_bounds() -> None:
    """The same seconds, grouped as 5 runs per side instead of one long run: resampling runs widens the bounds."""
    rng = random.Random(4)
    base = [synthetic_run(rng) for _ in range(5)]
    current = [synthetic_run(rng) for _ in range(5)]

    def flat(runs: list[Seconds]) -> list[Seconds]:
        return [Seconds([r for s in runs for r in s.requests], [f for s in runs for f in s.failures],
                        [h for s in runs for h in s.hists])]

    grouped = compare_phase("p50_ms", base, current, True, 0.95, 2000)
    pooled = compare_phase("p50_ms", flat(base), flat(current), True, 0.95, 2000)
    assert grouped is not None and pooled is not None
    assert grouped.worse == pytest.approx(pooled.worse)
    assert grouped.upper - grouped.lower > 2 * (pooled.upper - pooled.lower), (grouped, pooled)


def test_throughput_lower_is_worse_and_error_ratio() -> None:
    rng = random.Random(5)
    baseline = [synthetic_run(rng, rps=100) for _ in range(2)]
    degraded = [synthetic_run(rng, rps=60, error_rate=0.2) for _ in range(2)]
    throughput = compare_phase("throughput_rps", baseline, degraded, False, 0.95, 1000)
    errors = compare_phase("error_ratio", baseline, degraded, True, 0.95, 1000)
    assert throughput is not None and throughput.worse == pytest.approx(40) and throughput.lower > 30
    assert errors is not None and 0.15 < errors.lower < errors.upper < 0.25
    assert compare_phase("p99_ms", baseline, [], True, 0.95, 1000) is None


def test_run_level_figures() -> None:
    slower = compare_runs([0.4, 0.5, 0.45], [2.9, 3.1], True, 0.95, 2000)
    assert slower is not None and slower.lower > 2.0 and slower.worse == pytest.approx(3.0 - 0.45)
    same = compare_runs([0.4, 0.9, 0.6], [0.5, 0.8, 0.7], True, 0.95, 2000)
    assert same is not None and same.lower < 1.0  # within the default 1 s allowance
    single = compare_runs([1.0], [1.5], True, 0.95, 200)
    # threshold only, as docs/how-to/regression-gates.md says
    assert single is not None and single.lower == single.upper == pytest.approx(0.5)


def test_thresholds_rules_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("confidence: 0.9\nfigures:\n  p99_ms: {relative: 0.2}\n  during.p99_ms: {absolute: 50}\n"
                    "  outlier_ejections: {worse: lower, absolute: 1}\n")
    thresholds = load_thresholds(path)
    assert thresholds.confidence == 0.9
    assert thresholds.rule("overall.p99_ms") == Rule(worse="higher", relative=0.2, absolute=30)
    assert thresholds.rule("during.p99_ms") == Rule(worse="higher", relative=0.5, absolute=50)
    assert thresholds.rule("outlier_ejections:catalog").worse == "lower"
    assert thresholds.rule("overall.throughput_rps").worse == "lower"
    assert thresholds.rule("something_else").worse == "none"


@pytest.mark.parametrize(("text", "message"), [
    ("confidence: 2\n", "gate.yaml: confidence: Input should be less than 1"),
    ("figures:\n  p99_ms: {relativ: 0.2}\n", "gate.yaml: figures.p99_ms.relativ: Extra inputs are not permitted"),
    ("figures:\n  p99_ms: {worse: up}\n", "gate.yaml: figures.p99_ms.worse: Input should be 'higher', 'lower'"),
    ("figures:\n  p99_ms: {absolute: -1}\n", "gate.yaml: figures.p99_ms.absolute: Input should be greater than"),
    ("resamples: 10\n", "gate.yaml: resamples: Input should be greater than or equal to 200"),
    ("confidence: [\n", "gate.yaml: not a readable YAML/JSON thresholds file"),
    ("- 1\n", "gate.yaml: (top level): Input should be a valid dictionary"),
])
def test_bad_thresholds_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    with pytest.raises(InvalidArgument) as raised:
        load_thresholds(path)
    assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
