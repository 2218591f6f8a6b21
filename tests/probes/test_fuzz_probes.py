"""Fuzzing every probe (``chaosmesh_qa.probes.prometheus`` / ``recovery`` / ``client``): see tests/fuzz_inputs.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaosmesh_qa.errors import MeasurementFailed, TargetUnavailable
from chaosmesh_qa.probes import client, prometheus, recovery
from tests.support.fuzz import (
    NAMES,
    WEEK,
    assert_outcome,
    call,
    choice,
    draw_arguments,
    fuzz,
    given_,
    in_range,
    name,
    no_sandbox,
    number_in,
    opt,
    seconds,
    since,
    whole,
    wrong_arguments,
)


@pytest.fixture(scope="module")
def nowhere(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return no_sandbox(tmp_path_factory.mktemp("fuzz"))

SLO_KEYS = ("max_error_ratio", "max_p50_ms", "max_p95_ms", "max_p99_ms")


def slo_ok(v: Any) -> bool:
    if not isinstance(v, dict) or not v:
        return False
    for key, limit in v.items():
        if key not in SLO_KEYS or not in_range(limit, 0, 1 if key == "max_error_ratio" else 3_600_000):
            return False
    return True


GOOD_SLO = st.dictionaries(st.sampled_from(SLO_KEYS), number_in(0, 1), min_size=1, max_size=4)
WINDOW = (number_in(0.001, WEEK), opt(seconds()))
SINCE = (st.one_of(st.sampled_from(["fault_start", "last_heal"]), number_in(0.001, WEEK)), since)
PROBES: dict[str, tuple[Callable[..., Any], dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], bool]]]]] = {
    "error_ratio": (prometheus.error_ratio, {"service": (NAMES, name), "window_s": WINDOW,
                                             "source": (NAMES, opt(name))}),
    "latency_quantile": (prometheus.latency_quantile, {
        "service": (NAMES, name), "quantile": (st.floats(0.001, 0.999), opt(lambda v: in_range(v, 0, 1, True, True))),
        "window_s": WINDOW, "source": (NAMES, opt(name))}),
    "request_rate": (prometheus.request_rate, {"service": (NAMES, name), "window_s": WINDOW,
                                               "source": (NAMES, opt(name))}),
    "healthy_endpoints": (prometheus.healthy_endpoints, {"service": (NAMES, name), "version": (NAMES, opt(name))}),
    "outlier_ejections": (prometheus.outlier_ejections, {"service": (NAMES, name), "since": SINCE}),
    "circuit_breaker_overflows": (prometheus.circuit_breaker_overflows, {"service": (NAMES, name), "since": SINCE}),
    "retries": (prometheus.retries, {"service": (NAMES, name), "since": SINCE}),
    "policy_engaged": (prometheus.policy_engaged, {
        "policy": (st.sampled_from(["outlier_ejection", "circuit_breaker", "retries"]),
                   choice("outlier_ejection", "circuit_breaker", "retries")),
        "service": (NAMES, name), "minimum": (st.integers(1, 10**9), opt(lambda v: whole(v, 1, 10**9)))}),
    "recovered_within": (recovery.recovered_within, {
        "budget_s": (number_in(0.001, 3600), seconds(3600)), "slo": (GOOD_SLO, slo_ok), "since": SINCE,
        "measure": (st.sampled_from(["prometheus", "client"]), opt(choice("prometheus", "client"))),
        "service": (NAMES, opt(name)), "source": (NAMES, opt(name)),
        "stable_s": (number_in(0.001, 3600), opt(seconds(3600)))}),
    "client_error_ratio": (client.client_error_ratio, {
        "window_s": WINDOW, "phase": (st.sampled_from(["before", "during", "after"]),
                                      opt(choice("before", "during", "after")))}),
    "client_latency": (client.client_latency, {
        "quantile": (st.floats(0.001, 1), lambda v: in_range(v, 0, 1, low_open=True)), "window_s": WINDOW,
        "phase": (st.sampled_from(["before", "during", "after"]), opt(choice("before", "during", "after")))}),
    "client_throughput": (client.client_throughput, {
        "window_s": WINDOW, "phase": (st.sampled_from(["before", "during", "after"]),
                                      opt(choice("before", "during", "after")))}),
}


@pytest.mark.timeout(120)
@fuzz(400)
@given(data=st.data())
def test_fuzz_probes(nowhere: dict[str, Any], data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(PROBES)), label="probe")
    function, spec = PROBES[kind]
    arguments = draw_arguments(data, function, spec)
    wrong = wrong_arguments(function, spec, arguments)
    if kind.startswith("client_") and given_(arguments.get("window_s")) and given_(arguments.get("phase")):
        wrong.add("window_s/phase")
    error = call(function, arguments, nowhere)
    assert_outcome(error, wrong, (TargetUnavailable, MeasurementFailed))


