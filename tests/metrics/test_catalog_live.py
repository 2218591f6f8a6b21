"""The Envoy SLI catalog against a real sandbox: every SLI answers, for every service and edge.

Starts the default mesh with the CLI in a temporary state dir (always stopped again), sends
~200 requests through the ingress, then checks that within 10 s of ``up`` returning Prometheus
answers every SLI of ``probes/envoy.yaml`` with a number, and that the numbers are sane.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_api_client import PrometheusConnect

from chaosmesh_qa.metrics import Catalog, load_catalog

# The default mesh's call graph (chaosmesh_qa/default_mesh/mesh.yaml).
EDGES = [("ingress", "frontend"), ("frontend", "catalog"), ("frontend", "reviews"), ("catalog", "inventory")]
ANSWER_BUDGET_S = 10.0
REQUESTS = 200

HAVE_PROMETHEUS = bool(os.environ.get("CHAOSMESH_QA_PROMETHEUS") or shutil.which("prometheus")
                       or Path("/usr/bin/prometheus").exists())
pytestmark = [pytest.mark.processes,
              pytest.mark.skipif(not HAVE_PROMETHEUS, reason="needs Debian's prometheus (or CHAOSMESH_QA_PROMETHEUS)")]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("chaosmesh-qa")
    command = [str(script)] if script.exists() else [shutil.which("chaosmesh-qa") or "chaosmesh-qa"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=180, check=False)


@dataclass
class Sandbox:
    status: dict[str, Any]
    up_returned: float  # time.monotonic() when `chaosmesh-qa up` returned


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    state_dir = tempfile.mkdtemp(prefix="chaosmesh-sli-live-")
    try:
        started = cli("up", "--state-dir", state_dir)
        up_returned = time.monotonic()
        assert started.returncode == 0, f"up failed: {started.stderr.strip()}"
        shown = cli("status", "--state-dir", state_dir, "--json")
        assert shown.returncode == 0, shown.stderr
        yield Sandbox(json.loads(shown.stdout), up_returned)
    finally:
        stopped = cli("down", "--state-dir", state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
        assert stopped.returncode == 0, f"down failed: {stopped.stderr.strip()}"


# SLIs answering one series per version (routing shares): summed here, so "answers" means one number
PER_VERSION = {"version_requests"}


def queries(catalog: Catalog, status: dict[str, Any]) -> dict[str, str]:
    """Every SLI, rendered for every service (and version / subset / fault kind) or every edge."""
    versions: dict[str, set[str]] = {}
    for pod in status["pods"]:
        versions.setdefault(pod["service"], set()).add(pod["version"])
    rendered: dict[str, str] = {}
    slis = {name: sli for name, sli in catalog.slis.items() if sli.unit != "series"}  # raw inputs, not SLIs
    for name, sli in sorted(slis.items()):
        if "source" in sli.params:
            for source, service in EDGES:
                rendered[f"{name}({source}->{service})"] = catalog.render(name, source=source, service=service)
            continue
        for service in sorted(versions):
            if "version" in sli.params:
                for version in sorted(versions[service]):
                    rendered[f"{name}({service},{version})"] = catalog.render(name, service=service, version=version)
            elif "fault" in sli.params:
                for fault in dict(catalog.params["fault"].choices):
                    rendered[f"{name}({service},{fault})"] = catalog.render(name, service=service, fault=fault)
            elif name in PER_VERSION:
                rendered[f"{name}({service})"] = f"sum({catalog.render(name, service=service)})"
            else:
                rendered[f"{name}({service})"] = catalog.render(name, service=service)
        if "subset" in sli.params:
            for version in sorted(versions["reviews"]):
                rendered[f"{name}(reviews,{version})"] = catalog.render(name, service="reviews", subset=version)
    return rendered


def number(result: list[dict[str, Any]]) -> float | None:
    """The single sample's value, or None when there is none or it is not a finite number."""
    if len(result) != 1:
        return None
    value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None


def test_every_envoy_sli_answers_within_10_s_of_up(sandbox: Sandbox) -> None:
    status, catalog = sandbox.status, load_catalog("envoy")
    assert urlsplit(status["ingress_url"]).hostname == "127.0.0.1"
    assert {p["service"] for p in status["pods"]} == {"frontend", "catalog", "inventory", "reviews"}

    codes: dict[int, int] = {}
    with httpx.Client(base_url=status["ingress_url"], timeout=5.0) as client:
        for i in range(REQUESTS):
            headers = {"x-canary": "true"} if i % 4 == 0 else {}
            code = client.get("/", headers=headers).status_code
            codes[code] = codes.get(code, 0) + 1
    traffic_s = time.monotonic() - sandbox.up_returned
    assert codes.get(200, 0) >= REQUESTS * 0.99, codes

    prometheus = PrometheusConnect(url=status["prometheus_url"], disable_ssl=True)
    rendered = queries(catalog, status)
    values: dict[str, float | None] = dict.fromkeys(rendered)
    first_answer_s: dict[str, float] = {}
    answered_s = None
    while True:
        for key, query in rendered.items():
            if values[key] is None:
                values[key] = number(prometheus.custom_query(query=query))
                if values[key] is not None:
                    first_answer_s[key] = time.monotonic() - sandbox.up_returned
        elapsed = time.monotonic() - sandbox.up_returned
        if all(v is not None for v in values.values()):
            answered_s = elapsed
            break
        if elapsed > ANSWER_BUDGET_S:
            break
        time.sleep(0.2)
    missing = sorted(k for k, v in values.items() if v is None)
    last = max(first_answer_s, key=first_answer_s.__getitem__) if first_answer_s else None
    print(f"\n{len(rendered)} SLI queries ({len(catalog.slis)} SLIs); traffic done {traffic_s:.2f} s after up; "
          f"all answered {answered_s if answered_s is None else round(answered_s, 2)} s after up "
          f"(last: {last}); codes {codes}")
    assert not missing, f"no numeric answer within {ANSWER_BUDGET_S} s of up: {missing}"
    assert {n for n, s in catalog.slis.items() if s.unit != "series"} == {key.split("(")[0] for key in rendered}

    def now(name: str, **params: str) -> float:
        value = number(prometheus.custom_query(query=catalog.render(name, **params)))
        assert value is not None, (name, params)
        return value

    assert now("request_rate", service="frontend") > 0
    assert now("version_request_rate", service="reviews", version="v2") > 0  # x-canary: true goes to v2
    for service in ("frontend", "catalog", "inventory", "reviews"):
        assert now("error_ratio", service=service) <= 0.01, service
        assert now("caller_error_ratio", service=service) <= 0.01, service
    for source, service in EDGES:
        assert now("edge_error_ratio", source=source, service=service) <= 0.01, (source, service)
        assert now("edge_request_rate", source=source, service=service) > 0, (source, service)
    p99_ms = now("latency_quantile", service="frontend", quantile="0.99")
    assert 0 < p99_ms < 1000, p99_ms
    assert 0 < now("edge_latency_quantile", source="ingress", service="frontend") < 1000
    assert now("healthy_endpoints", service="catalog") == 2
    assert now("healthy_endpoints", service="reviews") == 3
    assert now("healthy_endpoints", service="reviews", subset="v1") == 2
    assert now("healthy_endpoints", service="reviews", subset="v2") == 1
    assert now("outlier_ejections_active", service="catalog") == 0
    assert now("injected_faults", service="catalog") == 0
