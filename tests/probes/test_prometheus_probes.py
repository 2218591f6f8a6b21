"""Prometheus probes against the session sandbox: values, bad input, and failing measurements."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidArgument, MeasurementFailed
from chaosmesh_qa.metrics.prometheus import PrometheusQuery
from chaosmesh_qa.probes import prometheus, recovery
from chaosmesh_qa.targets import OWNER_ENV
from tests.support.client import get_many
from tests.support.sandbox import Sandbox


@pytest.fixture
def cfg(sandbox: Sandbox) -> Iterator[dict[str, Any]]:
    configuration = {"chaosmesh_qa_state_dir": str(sandbox.state_dir)}
    get_many(sandbox.ingress_url + "/", 100)
    # readiness: the requests have been scraped (scrapes every 1 s; histograms flush every 1 s)
    deadline = time.monotonic() + 10
    while prometheus.latency_quantile("frontend", 0.99, window_s=30, configuration=configuration) <= 0:
        assert time.monotonic() < deadline, "Prometheus never saw the requests"
        time.sleep(0.1)
    yield configuration


def test_service_slis_answer_numbers(cfg: dict[str, Any]) -> None:
    assert prometheus.request_rate("frontend", window_s=30, configuration=cfg) > 0
    assert prometheus.error_ratio("frontend", window_s=30, configuration=cfg) <= 0.01
    assert 0 < prometheus.latency_quantile("frontend", 0.99, window_s=30, configuration=cfg) < 1000
    assert prometheus.error_ratio("catalog", window_s=30, source="frontend", configuration=cfg) <= 0.01
    assert prometheus.healthy_endpoints("catalog", configuration=cfg) == 2
    assert prometheus.healthy_endpoints("reviews", version="v2", configuration=cfg) == 1


def test_policy_probes_have_nothing_to_prove_before_a_fault(cfg: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OWNER_ENV, "a-run-that-injected-nothing")  # this pytest process has injected faults
    assert prometheus.policy_engaged("outlier_ejection", "catalog", configuration=cfg) is True
    assert recovery.recovered_within(5, {"max_error_ratio": 0.01}, configuration=cfg) == 0.0


@pytest.mark.parametrize(("call", "fragment"), [
    (lambda c: prometheus.error_ratio("nope", configuration=c), "service: unknown service 'nope'"),
    (lambda c: prometheus.error_ratio("catalog", source="ghost", configuration=c), "source: unknown service"),
    (lambda c: prometheus.request_rate("catalog", window_s=0, configuration=c), "window_s:"),
    (lambda c: prometheus.latency_quantile("catalog", quantile=1.5, configuration=c), "quantile:"),
    (lambda c: prometheus.healthy_endpoints("catalog", version="v9", configuration=c), "version:"),
    (lambda c: prometheus.retries("catalog", since="yesterday", configuration=c), "since:"),
    (lambda c: prometheus.policy_engaged("magic", "catalog", configuration=c), "policy:"),
    (lambda c: recovery.recovered_within(0, {"max_error_ratio": 0.01}, configuration=c), "budget_s:"),
    (lambda c: recovery.recovered_within(5, {"max_errors": 0.01}, configuration=c),
     "slo: expected keys among max_error_ratio"),
    (lambda c: recovery.recovered_within(5, {"max_error_ratio": 0.01}, measure="vibes", configuration=c),
     "measure:"),
], ids=["unknown-service", "unknown-source", "zero-window", "bad-quantile", "unknown-subset", "bad-since",
        "unknown-policy", "zero-budget", "unknown-slo-key", "bad-measure"])
def test_bad_probe_arguments_are_one_line(cfg: dict[str, Any], call: Any, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        call(cfg)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_unreachable_prometheus_is_a_failed_measurement_not_a_pass() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(MeasurementFailed, match=f"prometheus at http://127.0.0.1:{port}"):
            PrometheusQuery(f"http://127.0.0.1:{port}").value("up")
