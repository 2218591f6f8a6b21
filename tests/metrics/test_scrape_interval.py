"""How often a Prometheus scrapes, read from its configuration (issue 18 point 15)."""

from __future__ import annotations

import pytest

from chaosmesh_qa.metrics.prometheus import duration_s, scrape_interval_of


@pytest.mark.parametrize(("text", "seconds"), [("15s", 15), ("1m", 60), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200)])
def test_prometheus_durations(text: str, seconds: float) -> None:
    assert duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "15 s", "1.5s", "s15", "15sx"])
def test_what_is_not_a_prometheus_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        duration_s(text)


def test_the_longest_interval_counts_and_a_job_without_one_takes_the_global_one() -> None:
    istio_sample = "global:\n  scrape_interval: 15s\nscrape_configs:\n- job_name: kubernetes-pods\n"
    assert scrape_interval_of(istio_sample) == 15
    mixed = ("global:\n  scrape_interval: 15s\nscrape_configs:\n- job_name: fast\n  scrape_interval: 5s\n"
             "- job_name: slow\n  scrape_interval: 1m\n")
    assert scrape_interval_of(mixed) == 60
    every_job_own = "global:\n  scrape_interval: 1m\nscrape_configs:\n- job_name: a\n  scrape_interval: 1s\n"
    assert scrape_interval_of(every_job_own) == 1
    assert scrape_interval_of("scrape_configs: []\n") == 60  # Prometheus' default
