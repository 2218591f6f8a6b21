"""Probes on the kubernetes target speak the istio dialect; missing Envoy stats fail with one line, never 0."""

from __future__ import annotations

import time

import pytest

from chaosmesh_qa.errors import MeasurementFailed
from chaosmesh_qa.probes import prometheus
from tests.support.client import get_many
from tests.support.kube import KubeSandbox
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes


def test_istio_dialect_probes_measure_the_emulated_cluster(kube: KubeSandbox) -> None:
    cfg = kube.configuration()
    started = time.monotonic()
    get_many(kube.ingress_url + "/", 200, concurrency=4)
    time.sleep(3)  # the requests reach Prometheus: Envoy's stats flush, one scrape, one rule evaluation (1 s each)
    # a window of this test's own requests: earlier tests injected aborts into catalog (a reject partition is a 503)
    window_s = time.monotonic() - started
    assert prometheus.request_rate("catalog", window_s=window_s, configuration=cfg) > 0
    assert prometheus.error_ratio("catalog", window_s=window_s, configuration=cfg) == 0
    assert prometheus.outlier_ejections("catalog", since=window_s, configuration=cfg) == 0, "stats there, none ejected"


def test_policy_counts_without_proxy_stats_name_the_istio_setting(kube: KubeSandbox, sandbox: Sandbox) -> None:
    # the cluster's API, but a Prometheus whose proxies export no envoy_cluster_* stats in Istio's naming
    cfg = kube.configuration(chaosmesh_qa_prometheus_url=sandbox.status()["prometheus_url"])
    with pytest.raises(MeasurementFailed) as raised:
        prometheus.retries("catalog", since=30, configuration=cfg)
    message = str(raised.value)
    assert "\n" not in message and "proxyStatsMatcher" in message and message.startswith("retries on 'catalog'")
