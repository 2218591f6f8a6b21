"""Issue 21 item 3, against real Envoys: a GAMMA HTTPRoute (parentRef: the reviews Service) splits 90/10.

One sandbox for the module on tests/profiles/gamma (copied, so that its declaration can be changed): per-version
Services reviews-v1 and reviews-v2 as the HTTPRoute's backends, weights 90 and 10; frontend calls reviews.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaosmesh_qa.metrics.prometheus import PrometheusQuery
from chaosmesh_qa.probes.routing import routing_matches
from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.cli import ROOT
from tests.support.client import get_many
from tests.support.sandbox import Served, serve

pytestmark = pytest.mark.processes

SENT = 1000


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("gamma")
    mesh = root / "mesh"
    shutil.copytree(ROOT / "tests" / "profiles" / "gamma", mesh)
    yield from serve(mesh, root / "state")


def _settled(state: Path, after: float) -> None:
    """Prometheus has scraped every reviews sidecar at least 2 s after ``after`` (bounded wait)."""
    prometheus = PrometheusQuery(LocalTarget(state).prometheus_url())
    deadline = time.monotonic() + 15
    while (prometheus.value('min(timestamp(up{service="reviews"}))') or 0) < after + 2:
        assert time.monotonic() < deadline, "Prometheus stopped scraping"
        time.sleep(0.1)


def test_gamma_split_is_served_and_judged_as_declared(box: Served) -> None:
    """The split measured from the answers (which version of reviews served each request) is 90/10 within
    ±5 points over 1,000 requests: the binomial standard deviation of a 10 % share over 1,000 requests is
    sqrt(0.9 * 0.1 / 1000) = 0.95 point, so 5 points is over 5 sd (a correct split fails it about once in
    ten million runs) while a routing that ignored the HTTPRoute (reviews' three pods by round robin: 33 % v2)
    or inverted it is far outside.  routing_matches reads the HTTPRoute as the declaration and passes; once the
    declaration says 50/50 while the running Envoys still split 90/10 (the split and the declaration no longer
    agree), it deviates."""
    cfg: dict[str, Any] = {"chaosmesh_qa_state_dir": str(box.state_dir)}
    start = time.time()
    results = get_many(box.url + "/", SENT)
    assert [status for status, _ in results].count(200) == SENT
    served = Counter(body["upstreams"][0]["version"] for _, body in results)
    assert set(served) <= {"v1", "v2"} and sum(served.values()) == SENT
    assert abs(served["v2"] / SENT - 0.10) <= 0.05, served
    _settled(box.state_dir, time.time() - 2)
    window_s = math.ceil(time.time() - start) + 1

    declared = routing_matches("reviews", window_s=window_s, path="/reviews", configuration=cfg)
    assert declared["status"] == "pass", declared["summary"]
    assert declared["shares"]["v2"]["expected"] == 0.1 and declared["requests"] >= SENT
    assert declared["shares"]["v2"]["count"] == served["v2"]  # Envoy's counters agree with the answers

    routes = box.state_dir.parent / "mesh" / "routes.yaml"
    routes.write_text(routes.read_text().replace("weight: 90", "weight: 50").replace("weight: 10", "weight: 50"))
    changed = routing_matches("reviews", window_s=window_s, path="/reviews", configuration=cfg)
    assert changed["status"] == "deviates" and changed["p_value"] < 0.01, changed["summary"]
    assert changed["shares"]["v2"]["expected"] == 0.5 and changed["shares"]["v2"]["high"] < 0.5


def test_a_query_parameter_match_outranks_the_split(box: Served) -> None:
    """Sent through frontend's sidecar (its outbound listener, Host reviews), every request with ?version=v2 is
    served by reviews v2: the queryParams rule is listed second but Gateway API precedence puts it first.  (After
    the split's test, whose routing window must not see these requests.)"""
    pod = next(p for p in box.status()["pods"] if p["service"] == "frontend")
    with httpx.Client(timeout=10) as client:
        served = Counter(client.get(f"http://127.0.0.1:{pod['ports']['outbound']}/reviews?version=v2",
                                    headers={"host": "reviews"}).json()["version"] for _ in range(20))
    assert served == Counter({"v2": 20})
