"""Issue 21 item 3 on the kubernetes target: a GAMMA HTTPRoute read from the API as declared routing.

Against the emulation (`up --kube-api`) on tests/profiles/gamma: the declared mesh rebuilt from the API (Services,
the per-version Services reviews-v1/v2, pods, the HTTPRoute attached to the reviews Service) resolves to the mesh
directory's routes and subsets, and routing_matches passes on the 90/10 split through the Istio metric names, as on
the local target; a wrong intent deviates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from chaosmesh_qa.mesh import load_mesh
from chaosmesh_qa.probes.routing import routing_matches
from chaosmesh_qa.targets import get_target
from tests.support.cli import ROOT
from tests.support.client import get_many
from tests.support.kube import KubeSandbox, running

pytestmark = pytest.mark.processes

PROFILE = ROOT / "tests" / "profiles" / "gamma"
SENT = 1000


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    with running(tmp_path_factory.mktemp("gamma-kube") / "state", "--mesh", str(PROFILE)) as box:
        yield box


def _destination_requests(prometheus: str) -> float:
    query = 'sum(istio_requests_total{reporter="destination",destination_service_name="reviews"})'
    result = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_the_gamma_route_is_read_from_the_api_and_judged_as_declared(kube: KubeSandbox) -> None:
    cfg = kube.configuration()
    declared = get_target(cfg).declared_mesh()
    expected = load_mesh(PROFILE).model
    assert declared.routes["reviews"][0].destinations == expected.routes["reviews"][0].destinations
    assert declared.subsets["reviews"] == expected.subsets["reviews"]  # reviews-v1/v2 as reviews' subsets
    assert set(declared.service_views) == {"reviews-v1", "reviews-v2"}
    # what kubectl sees: the HTTPRoute, and reviews-v2's endpoints are the one reviews pod of version v2
    routes = json.loads(kube.kubectl("get", "httproutes.gateway.networking.k8s.io", "-o", "json").stdout)["items"]
    assert [r["metadata"]["name"] for r in routes] == ["reviews"]
    endpoints = json.loads(kube.kubectl("get", "endpoints", "reviews-v2", "-o", "json").stdout)
    assert [a["targetRef"]["name"].startswith("reviews-v2") for s in endpoints["subsets"]
            for a in s["addresses"]] == [True]

    prometheus = cfg["chaosmesh_qa_prometheus_url"]
    before = _destination_requests(prometheus)  # a fresh sandbox: nothing but the readiness checks' traffic
    start = time.time()
    statuses = [status for status, _ in get_many(kube.status()["ingress_url"] + "/", SENT)]
    assert statuses.count(200) == SENT
    deadline = time.monotonic() + 20
    while _destination_requests(prometheus) - before < SENT:  # scraped and recorded (bounded)
        assert time.monotonic() < deadline, "the Istio metrics did not count the requests"
        time.sleep(0.2)
    window_s = int(time.time() - start) + 1
    routed = routing_matches("reviews", window_s=window_s, path="/reviews", configuration=cfg)
    assert routed["status"] == "pass", routed["summary"]
    assert routed["requests"] >= SENT and routed["shares"]["v2"]["expected"] == 0.1
    wrong = routing_matches("reviews", expected={"v1": 0.5, "v2": 0.5}, window_s=window_s, path="/reviews",
                            configuration=cfg)
    assert wrong["status"] == "deviates", wrong["summary"]
