"""recovered_within's arithmetic: per-second recovery, and warnings for SLOs the buckets cannot resolve."""

from __future__ import annotations

from types import SimpleNamespace

from chaosmesh_qa.metrics import per_second
from chaosmesh_qa.metrics.catalog import load_catalog
from chaosmesh_qa.probes.recovery import _held_for, _recovery, _resolution_warnings


def test_recovery_is_the_end_of_the_last_breached_second() -> None:
    samples = [(101.0, True), (102.0, False), (103.0, False), (104.0, True), (105.0, True)]
    assert _recovery(samples, reference=100.5, granularity=1.0) == (103.0, 102.0)
    assert _recovery([(101.0, True)], 100.5, 1.0) == (100.5, None), "never breached: recovered at once"
    assert _recovery([(101.0, False)], 100.5, 1.0) == (None, 101.0), "still breached"


def test_a_stable_window_counts_whole_samples() -> None:
    # never breached, the fault at 100.5: the samples of seconds 100, 101 and 102 (stamped 101..103) make 3 s,
    # without waiting for second 103 to pass as counting only what came after 100.5 did
    samples = [(101.0, True), (102.0, True), (103.0, True)]
    assert _held_for(samples, recovered_at=100.5, granularity=1.0) == 3.0
    assert _held_for(samples[:2], recovered_at=100.5, granularity=1.0) == 2.0
    # after a breach the window starts at the end of the breached second: unchanged, only whole clean seconds
    assert _held_for([(103.0, False), (104.0, True), (105.0, True)], recovered_at=103.0, granularity=1.0) == 2.0
    assert _held_for([], recovered_at=100.5, granularity=1.0) == 0.0


def test_latency_slo_between_coarse_buckets_warns() -> None:
    istio = SimpleNamespace(catalog=load_catalog("istio"))  # ..., 250, 500, ...
    warnings = _resolution_warnings(istio, {"max_p99_ms": 300.0, "max_error_ratio": 0.01})  # type: ignore[arg-type]
    assert len(warnings) == 1 and "between histogram buckets 250 and 500 ms" in warnings[0]
    envoy = SimpleNamespace(catalog=load_catalog("envoy"))  # ..., 250, 300, 400, ...
    assert _resolution_warnings(envoy, {"max_p99_ms": 300.0}) == []  # type: ignore[arg-type]


def test_increases_are_spread_over_the_scrape_interval() -> None:
    series = [{"metric": {"le": "10"}, "values": [[100.0, "0"], [101.0, "10"], [102.5, "40"]]},
              {"metric": {"le": "10"}, "values": [[101.7, "4"]]}]  # appeared inside the range: counted from 0
    bins = per_second.spread_increases(series, start=100.0, end=103.0, key="le")
    totals = per_second.totals(bins)
    # first series: 10 over (100, 101], 30 over (101, 102.5]; second: 4 over (100.7, 101.7]
    assert round(totals[100], 6) == round(10.0 + 4 * 0.3, 6)
    assert round(totals[101], 6) == round(30 / 1.5 + 4 * 0.7, 6)
    assert round(totals[102], 6) == round(30 * 0.5 / 1.5, 6)
    assert per_second.quantile({"10": 50.0, "20": 100.0, "+Inf": 100.0}, 0.75) == 15.0
