"""Probe windows a cluster's Prometheus can answer (issue 18 point 15): at least two scrapes long."""

from __future__ import annotations

import logging

import pytest

from chaosmesh_qa.probes.context import MeasureContext


class Scraping:
    """A Prometheus known only by its scrape interval (``None``: its configuration cannot be read)."""

    def __init__(self, interval: float | None) -> None:
        self.url, self.interval = "http://127.0.0.1:9", interval

    def scrape_interval_s(self) -> float | None:
        return self.interval


def context(interval: float | None) -> MeasureContext:
    return MeasureContext(target=None, description={}, catalog=None, prometheus=Scraping(interval))  # type: ignore[arg-type]


@pytest.mark.parametrize(("interval", "window", "read"), [
    (1, "5s", "5s"), (1, "2s", "2s"), (15, "5s", "30s"), (15, "30s", "30s"), (15, "45s", "45s"), (60, "10s", "120s"),
    (None, "5s", "5s"),
])
def test_a_window_shorter_than_two_scrapes_is_widened_to_two(interval: float | None, window: str, read: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="chaosmesh_qa.probes"):
        assert context(interval).readable(window, f"window_s-{interval}-{window}") == read
    said = [r.getMessage() for r in caplog.records]
    assert bool(said) == (read != window), said
    if said:
        assert said == [f"chaosmesh-qa: window_s-{interval}-{window}={window} is shorter than two scrapes of "
                        f"http://127.0.0.1:9 (every {interval:g} s): read over {read} instead"]


def test_the_recording_lag_grows_with_the_scrape_interval() -> None:
    assert context(1).record_lag_s() == 3.0
    assert context(15).record_lag_s() == 17.0


