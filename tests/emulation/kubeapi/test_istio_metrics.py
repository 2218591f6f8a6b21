"""Istio's standard metric names in the sandbox Prometheus (recording rules over the Envoy stats)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from chaosmesh_qa.metrics.catalog import load_catalog
from tests.support.client import get_many, hops
from tests.support.kube import KubeSandbox, envoy_filter

pytestmark = pytest.mark.processes

PARAMS = {"service": "reviews", "source": "frontend", "version": "v1", "subset": "v1", "window": "30s",
          "quantile": "0.99", "fault": "aborts"}


def _query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def _total(prometheus: str, selector: str) -> float:
    found = _query(prometheus, f"sum(istio_requests_total{{{selector}}})")
    return float(found[0]["value"][1]) if found else 0.0


def test_every_istio_sli_answers_and_no_request_is_counted_twice(kube_sandbox: KubeSandbox) -> None:
    status = kube_sandbox.status()
    prometheus = status["prometheus_url"]
    selectors = {
        "frontend@destination": 'reporter="destination",destination_service_name="frontend"',
        "frontend@source": 'reporter="source",destination_service_name="frontend",source_app="istio-ingressgateway"',
        "reviews@destination": 'reporter="destination",destination_service_name="reviews"',
        "reviews@source": 'reporter="source",destination_service_name="reviews",source_canonical_service="frontend"',
        "frontend@both": 'destination_service_name="frontend"',
    }
    deadline = time.monotonic() + 20
    while not status["metrics_ready"]:  # Prometheus has scraped every Envoy once (bounded)
        assert time.monotonic() < deadline
        time.sleep(0.2)
        status = kube_sandbox.status()
    before = {k: _total(prometheus, s) for k, s in selectors.items()}
    sent = 120
    assert all(code == 200 for code, _ in get_many(status["ingress_url"] + "/", sent, concurrency=4))
    expected = {"frontend@destination": sent, "frontend@source": sent, "reviews@destination": sent,
                "reviews@source": sent, "frontend@both": 2 * sent}
    deadline = time.monotonic() + 15
    while True:  # scrapes every 1 s and rules every 1 s: the counters settle within a few seconds
        grown = {k: _total(prometheus, s) - before[k] for k, s in selectors.items()}
        if grown == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert grown == expected, "each reporter counts every request exactly once; both reporters twice"

    # errors too (raw 5xx series exist only once a 5xx happened): a 20 % abort on reviews, through the API
    custom = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kube_sandbox.kubeconfig)))
    errors = 'reporter="destination",destination_service_name="reviews",response_code=~"5.."'
    errors_before = _total(prometheus, errors)
    custom.create_namespaced_custom_object("networking.istio.io", "v1", "default", "envoyfilters", envoy_filter(
        "metrics-abort", "reviews", {"abort": {"http_status": 503, "percentage": {"numerator": 20,
                                                                                   "denominator": "HUNDRED"}}}))
    try:
        results = get_many(status["ingress_url"] + "/", 100, concurrency=4)
    finally:
        custom.delete_namespaced_custom_object("networking.istio.io", "v1", "default", "envoyfilters",
                                               "metrics-abort")
    aborted = sum(1 for _, tree in results for h in hops(tree) if h["service"] == "reviews" and h["status"] == 503)
    assert aborted > 0
    deadline = time.monotonic() + 15
    while _total(prometheus, errors) - errors_before != aborted and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _total(prometheus, errors) - errors_before == aborted, "the callee reports each injected abort once"
    catalog = load_catalog("istio")
    empty = [name for name, sli in catalog.slis.items()
             if not _query(prometheus, catalog.render(name, **{p: PARAMS[p] for p in sli.params}))]
    assert empty == [], f"these Istio SLIs return no data in the sandbox: {empty}"
    # the probes' front door ("ingress", e.g. recovered_within's default edge) is Istio's ingress gateway
    front = {"source": "ingress", "service": "frontend"}
    empty = [name for name in ("edge_responses", "edge_latency_buckets", "edge_request_rate")
             if not _query(prometheus, catalog.render(name, **front))]
    assert empty == [], f"the ingress edge has no data on the Istio dialect: {empty}"
