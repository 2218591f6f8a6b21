"""Timeline arithmetic (quantiles, windows, phases, probes) on synthetic timelines, and Locust kept out of chaos."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.probes import client
from chaosmesh_qa.traffic import timeline as tl
from chaosmesh_qa.traffic.timeline import TimelineError

T0 = 1_800_000_000


def line(t: int, times: list[float], failures: int = 0, partial: bool = False) -> dict[str, Any]:
    ordered = sorted(times)
    hist: dict[str, int] = {}
    for ms in ordered:
        hist[str(tl.hist_key(ms))] = hist.get(str(tl.hist_key(ms)), 0) + 1
    quantiles = {name: tl.exact_quantile(ordered, q) if ordered else None
                 for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
    return {"t": t, "requests": len(times), "failures": failures, "failures_by_kind": {"http": failures},
            "statuses": {"200": len(times) - failures, "502": failures}, **quantiles, "hist": hist,
            "users": 10, "sources": 1, "missed": 0, "partial": partial}


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"t": 1, "requ')  # a half-written tail
    return path


def test_exact_quantiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert tl.exact_quantile(values, 0.5) == 50
    assert tl.exact_quantile(values, 0.99) == 99
    assert tl.exact_quantile(values, 1.0) == 100
    assert tl.exact_quantile([7.0], 0.99) == 7


def test_window_quantiles_from_histograms_are_within_half_a_percent() -> None:
    rng = random.Random(4)
    seconds = [[rng.lognormvariate(2.5, 0.6) for _ in range(300)] for _ in range(10)]
    lines = [line(T0 + i, times) for i, times in enumerate(seconds)]
    everything = sorted(ms for times in seconds for ms in times)
    for q in (0.5, 0.95, 0.99):
        exact = tl.exact_quantile(everything, q)
        assert tl.latency(lines, q) == pytest.approx(exact, rel=0.006)
    assert tl.latency(lines[:1], 0.99) == lines[0]["p99"]  # one second: the exact raw value


def test_phases_exclude_straddling_seconds() -> None:
    lines = [line(T0 + i, [5.0] * 100, failures=20 if 3 <= i < 8 else 0) for i in range(12)]
    fault = {"started_at": T0 + 2.5, "ended_at": T0 + 8.4}
    assert [x["t"] - T0 for x in tl.phase_lines(lines, [fault], "before")] == [0, 1]
    assert [x["t"] - T0 for x in tl.phase_lines(lines, [fault], "during")] == [3, 4, 5, 6, 7]
    assert [x["t"] - T0 for x in tl.phase_lines(lines, [fault], "after")] == [9, 10, 11]
    summary = tl.phase_summary(lines, [fault])
    assert summary["during"]["error_ratio"] == pytest.approx(0.2)
    assert summary["before"]["error_ratio"] == summary["after"]["error_ratio"] == 0
    assert summary["during"]["throughput_rps"] == 100


def test_phases_span_every_fault_and_use_expiry_while_active() -> None:
    faults = [{"started_at": T0 + 5, "ended_at": T0 + 7}, {"started_at": T0 + 3, "expires_at": T0 + 9}]
    assert tl.phase_bounds(faults) == {"before": (None, T0 + 3), "during": (T0 + 3, T0 + 9), "after": (T0 + 9, None)}
    no_fault = tl.phase_summary([line(T0, [1.0])], [])
    assert no_fault["before"]["requests"] == 1 and no_fault["during"] is None and no_fault["after"] is None


def test_probes_read_the_configured_timeline(tmp_path: Path) -> None:
    lines = [line(T0 + i, [10.0] * 50 + [200.0] * (50 if i >= 8 else 0), failures=10 if i >= 8 else 0)
             for i in range(10)]
    lines.append(line(T0 + 10, [1000.0] * 5, failures=5, partial=True))  # cut short by a stop: never counted
    configuration = {"chaosmesh_qa_timeline": str(write(tmp_path / "t.jsonl", lines))}
    assert client.client_error_ratio(configuration=configuration) == pytest.approx(20 / 600)
    assert client.client_error_ratio(window_s=2, configuration=configuration) == pytest.approx(0.1)
    assert client.client_throughput(window_s=2, configuration=configuration) == 100
    assert client.client_throughput(window_s=5, configuration=configuration) == 70
    assert client.client_latency(0.5, window_s=1, configuration=configuration) == 10.0
    assert client.client_latency(0.99, window_s=3, configuration=configuration) == pytest.approx(200, rel=0.005)
    assert isinstance(client.client_latency(0.99, configuration=configuration), float)


def test_probes_raise_only_when_they_cannot_measure(tmp_path: Path) -> None:
    configuration = {"chaosmesh_qa_timeline": str(tmp_path / "missing.jsonl")}
    with pytest.raises(TimelineError, match="no traffic timeline at"):
        client.client_error_ratio(configuration=configuration)
    configuration = {"chaosmesh_qa_timeline": str(write(tmp_path / "t.jsonl", [line(T0, [])]))}
    with pytest.raises(TimelineError, match="no requests"):
        client.client_error_ratio(configuration=configuration)
    assert client.client_throughput(configuration=configuration) == 0.0
    with pytest.raises(InvalidArgument, match=r"^window_s/phase: give one of them"):
        client.client_error_ratio(window_s=1, phase="during", configuration=configuration)
    with pytest.raises(InvalidArgument, match=r"^phase: expected one of before, during, after, got 'durring'"):
        client.client_error_ratio(phase="durring", configuration=configuration)
    with pytest.raises(InvalidArgument, match=r"^quantile: expected a number in"):
        client.client_latency(99, configuration=configuration)


def test_slo_samples_for_recovery(tmp_path: Path) -> None:
    lines = [line(T0, [5.0] * 10), line(T0 + 1, [5.0] * 10, failures=5), line(T0 + 2, []), line(T0 + 3, [500.0])]
    configuration = {"chaosmesh_qa_timeline": str(write(tmp_path / "t.jsonl", lines))}
    samples = tl.slo_samples(configuration, {"max_error_ratio": 0.1, "max_p99_ms": 100}, T0, T0 + 10)
    assert samples == [(T0 + 1, True), (T0 + 2, False), (T0 + 3, False), (T0 + 4, False)]


@pytest.mark.processes
def test_chaos_side_modules_never_import_locust_or_gevent() -> None:
    code = ("import sys; import chaosmesh_qa.controls.traffic, chaosmesh_qa.traffic.actions, "
            "chaosmesh_qa.probes.client, chaosmesh_qa.traffic.runner; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent', 'geventhttpclient')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


class FakeTarget:
    def __init__(self, faults: list[dict[str, Any]]) -> None:
        self.faults = faults

    def fault_history(self, owner: str | None) -> list[dict[str, Any]]:
        return self.faults


def test_phase_probes_use_this_runs_fault_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [line(T0 + i, [5.0] * 95 + [300.0] * 5 if 3 <= i < 7 else [5.0] * 100, failures=10 if 3 <= i < 7 else 0)
             for i in range(10)]
    configuration = {"chaosmesh_qa_timeline": str(write(tmp_path / "t.jsonl", lines))}
    target = FakeTarget([])
    monkeypatch.setattr(client, "get_target", lambda _: target)
    assert client.client_error_ratio(phase="before", configuration=configuration) == pytest.approx(40 / 1000)
    assert client.client_error_ratio(phase="during", configuration=configuration) == 0.0  # no fault yet
    assert client.client_latency(0.99, phase="after", configuration=configuration) == 0.0
    target.faults = [{"started_at": T0 + 2.9, "ended_at": T0 + 7.0}]
    assert client.client_error_ratio(phase="during", configuration=configuration) == pytest.approx(0.1)
    assert client.client_error_ratio(phase="before", configuration=configuration) == 0.0
    assert client.client_error_ratio(phase="after", configuration=configuration) == 0.0
    assert client.client_latency(0.99, phase="during", configuration=configuration) == pytest.approx(300, rel=0.005)
    assert client.client_latency(0.99, phase="after", configuration=configuration) == pytest.approx(5, rel=0.005)
    assert client.client_throughput(phase="during", configuration=configuration) == 100
