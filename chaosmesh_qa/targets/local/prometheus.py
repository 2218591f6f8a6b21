"""Run Debian's Prometheus as a plain child process scraping every Envoy at 1 s.

Each target is an Envoy's read-only stats listener (``ScrapeTarget.port``, serving only
``/stats/prometheus``), never its admin API, which is an owner-only Unix socket
(docs/explanation/envoy-notes.md §2).  The supervisor calls ``write_config`` whenever the set of
Envoys changes and then sends Prometheus SIGHUP (no lifecycle API: no other local user can make it
reload or quit).  Prometheus hands a new target to its scrapers on its discovery manager's 5 s tick
(static targets as well as file_sd); until then ``scrape_bridge`` pushes that target's scrapes through the
remote-write receiver (docs/explanation/envoy-notes.md §7).  Two jobs scrape each Envoy (``JOBS``):
``envoy`` (only the stats that have counted, ``usedonly``) and ``envoy-inbound-requests`` (the inbound
request counters, from 0).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from chaosmesh_qa.errors import SandboxStartError
from chaosmesh_qa.files import atomic_write_text

PROMETHEUS_ENV = "CHAOSMESH_QA_PROMETHEUS"


@dataclass(frozen=True)
class ScrapeTarget:
    port: int  # the Envoy's stats listener on 127.0.0.1
    labels: dict[str, str]


def find_prometheus() -> str:
    """The Prometheus binary: ``$CHAOSMESH_QA_PROMETHEUS``, else ``prometheus`` on PATH."""
    explicit = os.environ.get(PROMETHEUS_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise SandboxStartError(f"{PROMETHEUS_ENV}={explicit}: not an executable file")
        return explicit
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK)
                                           else None)
    if not found:
        raise SandboxStartError(
            "Prometheus not found: install Debian's 'prometheus' package (make setup does it as root) "
            f"or set {PROMETHEUS_ENV} to a prometheus binary"
        )
    return found


# The inbound request counters, by response class: every request SLI and routing verdict counts
# them.  Scraped apart, without ``usedonly``, so that each pod's series exists at 0 from its first
# scrape: under ``usedonly`` a counter is born at its first request, and a window that opens
# between that request and the counter's first scrape counted the requests before it (a routing
# verdict read 42 % on a 36 % canary when traffic had started 1.2 s before its 5 s window).
INBOUND_REQUESTS_JOB = "envoy-inbound-requests"
INBOUND_REQUESTS_FILTER = r"^http\.inbound\.downstream_rq_[1-5]xx$"
INBOUND_REQUESTS_METRIC = "envoy_http_downstream_rq_xx"


DEFAULT_SCRAPE_INTERVAL_S = 1


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job over every Envoy: its query parameters and the series it drops (metric name, label, value)."""

    name: str
    params: dict[str, str]
    drop: tuple[tuple[str, str, str], ...] = ()


# ``envoy``: only the stats that have counted (``usedonly``: thousands of never-used stats per Envoy stay out),
# without the inbound request counters, which ``envoy-inbound-requests`` has from 0.  The scrape bridge
# (``scrape_bridge``) reads the same jobs, so that its samples are the series Prometheus's own scrapes write.
JOBS = (
    ScrapeJob("envoy", {"usedonly": ""}, ((INBOUND_REQUESTS_METRIC, "envoy_http_conn_manager_prefix", "inbound"),)),
    ScrapeJob(INBOUND_REQUESTS_JOB, {"filter": INBOUND_REQUESTS_FILTER}),
)
METRICS_PATH = "/stats/prometheus"


def write_config(path: Path, targets: list[ScrapeTarget], scrape_interval_s: int = DEFAULT_SCRAPE_INTERVAL_S) -> None:
    """Every Envoy scraped every ``scrape_interval_s`` (1 s by default; ``up --scrape-interval 15`` rehearses a
    cluster's Prometheus); rules are evaluated every second whatever the scrape interval."""
    static = [{"targets": [f"127.0.0.1:{t.port}"], "labels": t.labels} for t in targets]
    config = {
        "global": {"scrape_interval": f"{scrape_interval_s}s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path.parent / "rules" / "*.yml")],  # e.g. the Istio metric names (up --kube-api)
        "scrape_configs": [{
            "job_name": job.name,
            "metrics_path": METRICS_PATH,
            "params": {key: [value] for key, value in job.params.items()},
            "static_configs": static,
            **({"metric_relabel_configs": [{
                "source_labels": ["__name__", label], "regex": f"{metric};{value}", "action": "drop",
            } for metric, label, value in job.drop]} if job.drop else {}),
        } for job in JOBS],
    }
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def command(binary: str, config: Path, data_dir: Path, port: int) -> list[str]:
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=2h",
        "--log.level=warn",
        # hidden flag (Prometheus >= 2.41): the scrape manager applies target changes at once, not after its own 5 s
        # throttle (the discovery manager's 5 s tick before it stays: the scrape bridge covers it)
        "--scrape.discovery-reload-interval=100ms",
        "--web.enable-remote-write-receiver",  # the scrape bridge's pushes (scrape_bridge.py)
    ]
