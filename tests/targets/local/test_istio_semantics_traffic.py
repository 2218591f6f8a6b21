"""The silent-difference cases of issue 10, measured with traffic through a real sandbox.

One sandbox for the module, on ``tests.mesh.test_istio_semantics.SEMANTICS``: ingress -> frontend,
which calls reviews, details, mobile (-> reviews) and ratings in parallel.  Each test sends real
requests and checks that the sandbox does what Istio documents: relative weights and
``sourceLabels`` per caller, plaintext toward a ``DISABLE`` workload (auto mTLS), the deprecated
``fault.delay.percent``, ``*`` as "any" in AuthorizationPolicies and ``when`` conditions, the
last of two same-named policies, a policy selecting the ingress gateway, and request mirroring.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.client import admin_json, get, get_many, plaintext_get
from tests.support.sandbox import Sandbox
from tests.support.semantics import SEMANTICS, write_mesh

pytestmark = pytest.mark.processes


class Box(Sandbox):
    url = ""
    pods: list[dict[str, Any]] = []  # noqa: RUF012 - set once by the fixture


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    work = tmp_path_factory.mktemp("istio-semantics")
    mesh = write_mesh(work / "mesh", SEMANTICS)
    sandbox = Box(work / "state")
    sandbox.up("--mesh", str(mesh))
    try:
        status = sandbox.status()
        sandbox.url = str(status["ingress_url"])
        sandbox.pods = list(status["pods"])
        yield sandbox
    finally:
        sandbox.down()


def _hop(body: dict[str, Any], service: str) -> dict[str, Any]:
    return next(u for u in body["upstreams"] if u["service"] == service)


def test_weights_are_relative_and_source_labels_pick_the_caller(box: Box) -> None:
    """reviews: frontend's calls split 1:3 (weights summing to 4, normalised as Istio documents);
    mobile's calls, which the sourceLabels match does not select, all go to v1."""
    results = get_many(box.url + "/", 240)
    assert all(status == 200 for status, _ in results), Counter(s for s, _ in results)
    from_frontend = Counter(_hop(body, "reviews")["version"] for _, body in results)
    from_mobile = Counter(_hop(_hop(body, "mobile"), "reviews")["version"] for _, body in results)
    assert from_mobile == {"v1": 240}
    share = from_frontend["v2"] / 240
    assert 0.65 <= share <= 0.85, from_frontend  # 0.75 expected; ~4 standard deviations each side


def test_callers_reach_a_disable_workload_in_plaintext(box: Box) -> None:
    """details' PeerAuthentication is DISABLE under a mesh-wide STRICT: callers switch to plaintext."""
    status, body = get(box.url + "/")
    assert status == 200 and _hop(body, "details")["status"] == 200
    assert _hop(body, "details")["caller"] is None  # plaintext: no client certificate reached the app
    assert _hop(body, "reviews")["caller"] == "spiffe://cluster.local/ns/default/sa/frontend"  # still mTLS
    details = next(p for p in box.pods if p["service"] == "details")
    assert plaintext_get(details["ports"]["inbound"]).startswith(b"HTTP/1.1 200")


def test_the_deprecated_delay_percent_delays_that_share_only(box: Box) -> None:
    """``delay: {fixedDelay: 500ms, percent: 50}`` on ratings for ``x-slow: 1``: about half are slow."""
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=12)) as http:

        def timed(_: int) -> float:
            start = time.perf_counter()
            response = http.get(box.url + "/", headers={"x-slow": "1"})
            assert response.status_code == 200
            return time.perf_counter() - start

        with ThreadPoolExecutor(max_workers=12) as pool:  # 60 requests, 12 at a time
            elapsed = list(pool.map(timed, range(60)))
    slow = sum(1 for e in elapsed if e >= 0.5) / len(elapsed)
    assert 0.25 <= slow <= 0.75, sorted(elapsed)  # 0.5 expected (about 3.9 standard deviations each side)


def test_star_allows_any_method_and_the_last_same_named_policy_stands(box: Box) -> None:
    """ratings: the first 'ratings' policy allows nothing, the second (kept, as kubectl apply would)
    allows ``methods: ["*"]`` on ``/x*``: GET passes.  The DENY policy's ``when`` on the presence of
    ``x-deny`` refuses exactly the requests that carry it."""
    status, body = get(box.url + "/")
    assert status == 200 and _hop(body, "ratings")["status"] == 200
    status, body = get(box.url + "/", headers={"x-deny": "yes"})
    assert _hop(body, "ratings")["status"] == 403 and _hop(body, "reviews")["status"] == 200


def test_a_policy_selecting_the_ingress_gateway_applies_there(box: Box) -> None:
    with httpx.Client(timeout=10) as http:
        assert http.get(box.url + "/blocked/page").status_code == 403
        assert http.get(box.url + "/open").status_code == 200


def test_mirroring_copies_every_request_to_the_mirror_and_drops_its_answer(box: Box) -> None:
    v2 = next(p for p in box.pods if p["service"] == "details" and p["version"] == "v2")

    def served() -> int:
        stats = admin_json(v2["admin_socket"], "/stats?format=json&filter=^http\\.inbound\\.downstream_rq_completed$")
        return int(next(s["value"] for s in stats["stats"] if s["name"] == "http.inbound.downstream_rq_completed"))

    before = served()
    results = get_many(box.url + "/", 40)
    assert {_hop(body, "details")["version"] for _, body in results} == {"v1"}  # the answer is v1's
    deadline = time.monotonic() + 5
    while served() - before < 40 and time.monotonic() < deadline:  # mirrored copies are sent asynchronously
        time.sleep(0.05)
    assert served() - before == 40
