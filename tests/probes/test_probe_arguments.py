"""Bad probe arguments fail with one line naming the argument before any target is contacted.

No sandbox runs here (the state directory is empty): a check that ran only after contacting the
target would surface as ``TargetUnavailable`` instead, and an unbounded wait would hit the timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidArgument, MeasurementFailed, TargetUnavailable
from chaosmesh_qa.probes import client, prometheus, recovery

NAN, INF = float("nan"), float("inf")
SLO = {"max_error_ratio": 0.01}

BAD: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("budget nan", lambda c: recovery.recovered_within(NAN, SLO, configuration=c), "budget_s:"),
    ("budget inf", lambda c: recovery.recovered_within(INF, SLO, configuration=c), "budget_s:"),
    ("stable nan", lambda c: recovery.recovered_within(5, SLO, stable_s=NAN, configuration=c), "stable_s:"),
    ("slo nan", lambda c: recovery.recovered_within(5, {"max_p99_ms": NAN}, configuration=c), "slo.max_p99_ms:"),
    ("slo ratio above 1", lambda c: recovery.recovered_within(5, {"max_error_ratio": 2}, configuration=c),
     "slo.max_error_ratio:"),
    ("since bogus", lambda c: recovery.recovered_within(5, SLO, since="bogus", configuration=c), "since:"),
    ("since nan", lambda c: prometheus.retries("catalog", since=NAN, configuration=c), "since:"),
    ("since huge", lambda c: prometheus.outlier_ejections("catalog", since=10**400, configuration=c), "since:"),
    ("window nan", lambda c: prometheus.error_ratio("catalog", window_s=NAN, configuration=c), "window_s:"),
    ("window inf", lambda c: prometheus.request_rate("catalog", window_s=INF, configuration=c), "window_s:"),
    ("client window inf", lambda c: client.client_throughput(window_s=INF, configuration=c), "window_s:"),
    ("client phase", lambda c: client.client_error_ratio(phase="later", configuration=c), "phase:"),
    ("client quantile nan", lambda c: client.client_latency(NAN, configuration=c), "quantile:"),
    ("minimum -1", lambda c: prometheus.policy_engaged("retries", "catalog", minimum=-1, configuration=c),
     "minimum:"),
    ("minimum nan", lambda c: prometheus.policy_engaged("retries", "catalog", minimum=NAN, configuration=c),
     "minimum:"),
    ("minimum True", lambda c: prometheus.policy_engaged("retries", "catalog", minimum=True, configuration=c),
     "minimum:"),
    ("minimum '1'", lambda c: prometheus.policy_engaged("retries", "catalog", minimum="1", configuration=c),
     "minimum:"),
    ("malformed service", lambda c: prometheus.healthy_endpoints("Catalog", configuration=c), "service:"),
    ("malformed version", lambda c: prometheus.healthy_endpoints("catalog", version="v 1", configuration=c),
     "version:"),
    ("malformed source", lambda c: prometheus.latency_quantile("catalog", source="a/b", configuration=c),
     "source:"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("call", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_argument_is_refused_before_contacting_the_target(tmp_path: Path, call: Callable[[dict[str, Any]], Any],
                                                              fragment: str) -> None:
    configuration = {"chaosmesh_qa_state_dir": str(tmp_path / "none"),
                     "chaosmesh_qa_timeline": str(tmp_path / "timeline.jsonl")}
    with pytest.raises(InvalidArgument) as raised:
        call(configuration)
    assert str(raised.value).startswith(fragment) and "\n" not in str(raised.value)


@pytest.mark.timeout(30)
def test_good_arguments_reach_the_target(tmp_path: Path) -> None:
    configuration = {"chaosmesh_qa_state_dir": str(tmp_path / "none"),
                     "chaosmesh_qa_timeline": str(tmp_path / "timeline.jsonl")}
    with pytest.raises(TargetUnavailable, match="no sandbox answering"):
        prometheus.policy_engaged("retries", "catalog", minimum=3, configuration=configuration)
    with pytest.raises(TargetUnavailable, match="no sandbox answering"):
        recovery.recovered_within(5, SLO, since=30, configuration=configuration)
    with pytest.raises(MeasurementFailed, match="no traffic timeline"):  # a missing timeline: a failed measurement
        client.client_error_ratio(window_s=5, configuration=configuration)
