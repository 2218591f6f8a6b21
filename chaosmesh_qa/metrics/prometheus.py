"""PromQL over HTTP for probes: bounded timeouts, retries on transient errors only.

``probes.prometheus`` and ``probes.recovery`` build a ``PrometheusQuery`` from the
target's Prometheus URL and ask it for instant values or 1-second series.  Anything
that stops the measurement (Prometheus unreachable, a query Prometheus rejects) raises
``MeasurementFailed`` with one line; a query with no data returns ``None``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

import requests
import yaml
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed
from urllib3.util.retry import Retry

from chaosmesh_qa.errors import MeasurementFailed

TIMEOUT_S = 5
T = TypeVar("T")
PROMETHEUS_DEFAULT_SCRAPE_INTERVAL = "1m"  # Prometheus' own default (``global.scrape_interval``)
_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_s(text: str) -> float:
    """A Prometheus duration (``15s``, ``1m30s``, ``500ms``) in seconds; ``ValueError`` if it is not one."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def scrape_interval_of(config_yaml: str) -> float:
    """The longest scrape interval of a Prometheus configuration (each job's, else the global one)."""
    config = yaml.safe_load(config_yaml) or {}
    default = duration_s(str((config.get("global") or {}).get("scrape_interval") or
                             PROMETHEUS_DEFAULT_SCRAPE_INTERVAL))
    jobs = [duration_s(str(job["scrape_interval"])) for job in config.get("scrape_configs") or []
            if isinstance(job, dict) and job.get("scrape_interval")]
    has_default_jobs = any(isinstance(job, dict) and not job.get("scrape_interval")
                           for job in config.get("scrape_configs") or [])
    return max([*jobs, *([default] if has_default_jobs or not jobs else [])])


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    return isinstance(exc, PrometheusApiClientException) and " 5" in str(exc)[:40]


_retrying = retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(3), wait=wait_fixed(0.2),
                  reraise=True)


class PrometheusQuery:
    def __init__(self, url: str) -> None:
        self.url = url
        # tenacity (below) is the one retry layer: the client's own urllib3 retries (5, with back-off) would
        # stack on it and turn "Prometheus unreachable" into an 18 s wait.
        self._client = PrometheusConnect(url=url, disable_ssl=True, timeout=TIMEOUT_S, retry=Retry(total=0))

    def value(self, promql: str, at: float | None = None) -> float | None:
        """The query's single value now, or at epoch seconds ``at`` (summed if it returns several series);
        ``None``: no data or NaN."""
        params = None if at is None else {"time": f"{at:.3f}"}
        result = self._call(lambda: self._client.custom_query(promql, params=params))
        values = [float(item["value"][1]) for item in result]
        values = [v for v in values if not math.isnan(v)]
        return sum(values) if values else None

    def by_label(self, promql: str, label: str) -> dict[str, float]:
        """The query's value now per value of ``label`` (series summed per value, NaN dropped)."""
        values: dict[str, float] = {}
        for item in self._call(lambda: self._client.custom_query(promql)):
            value = float(item["value"][1])
            if not math.isnan(value):
                key = str(item["metric"].get(label, ""))
                values[key] = values.get(key, 0.0) + value
        return values

    def series(self, promql: str, start: float, end: float, step_s: float = 1.0) -> list[tuple[float, float]]:
        """``(time, value)`` points of the query between ``start`` and ``end`` (epoch seconds), NaN dropped."""
        def query() -> list[dict[str, Any]]:
            return list(self._client.custom_query_range(
                promql, start_time=dt.datetime.fromtimestamp(start, dt.UTC),
                end_time=dt.datetime.fromtimestamp(end, dt.UTC), step=f"{step_s:g}s"))

        points: dict[float, float] = {}
        for item in self._call(query):
            for at, raw in item["values"]:
                value = float(raw)
                if not math.isnan(value):
                    points[float(at)] = points.get(float(at), 0.0) + value
        return sorted(points.items())

    def scrape_interval_s(self) -> float | None:
        """How often this Prometheus scrapes (its configuration's longest interval, from ``/api/v1/status/config``);
        ``None`` when the configuration cannot be read (a Prometheus-compatible store without that API)."""
        if not hasattr(self, "_interval"):
            try:
                response = requests.get(f"{self.url.rstrip('/')}/api/v1/status/config", timeout=TIMEOUT_S)
                response.raise_for_status()
                self._interval: float | None = scrape_interval_of(response.json()["data"]["yaml"])
            except (requests.RequestException, ValueError, KeyError, TypeError, yaml.YAMLError):
                self._interval = None
        return self._interval

    def raw(self, selector: str, start: float, end: float) -> list[dict[str, Any]]:
        """Every scraped sample of ``selector`` in ``[start, end]``, per series (a range-vector query)."""
        span = max(1, math.ceil(end - start))
        return list(self._call(lambda: self._client.custom_query(f"{selector}[{span}s]", params={"time": end})))

    def _call(self, fetch: Callable[[], T]) -> T:
        try:
            return _retrying(fetch)()
        except (requests.RequestException, PrometheusApiClientException, ValueError, KeyError) as exc:
            raise MeasurementFailed(f"prometheus at {self.url}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
