"""HTTPRoutes with a Service parent (GAMMA, issue 21 item 3): the model istiod builds for the sidecars.

Each case is the gamma profile (tests/profiles/gamma: per-version Services reviews-v1/v2 and a 90/10 HTTPRoute on
the reviews Service) with one file changed; the expected routes, shares and refusals follow Istio's conversion
(pilot/pkg/config/kube/gateway) and its ordering of routes for sidecars (pilot/pkg/model/virtualservice.go).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaosmesh_qa.mesh.loader import LoadedMesh
from chaosmesh_qa.mesh.model import Mirror, WeightedDestination
from chaosmesh_qa.mesh.routing import expected_shares
from tests.support.cli import ROOT
from tests.support.corpus import Case, judge

PROFILE = ROOT / "tests" / "profiles" / "gamma"
FILES = {name: (PROFILE / name).read_text(encoding="utf-8") for name in ("mesh.yaml", "workloads.yaml", "routes.yaml")}
ROUTE = FILES["routes.yaml"]
VS = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
"""


def gamma(routes: str = ROUTE, **more: str) -> dict[str, str]:
    return {**FILES, "routes.yaml": routes, **more}


def split(v1: float, v2: float) -> object:
    def check(loaded: LoadedMesh) -> None:
        assert expected_shares(loaded.model, "reviews", path="/reviews").shares == {"v1": v1, "v2": v2}
        assert loaded.model.subsets["reviews"]["reviews-v1"].labels == {"app": "reviews", "version": "v1"}
        assert "reviews-v1" not in loaded.model.services  # its pods run under reviews, reached as its subset
    return check


def header_first(loaded: LoadedMesh) -> None:
    """Gateway API precedence over the merged rules: the header match before the catch-all, whatever the order."""
    routes = loaded.model.routes["reviews"]
    assert [m.headers for r in routes for m in r.matches] == [
        (("x-canary", _exact("true")), (":method", _exact("GET"))), (), ()]  # then ?version=v2, then the split
    assert routes[0].destinations == (WeightedDestination("reviews", "reviews-v2", 100),)
    assert routes[0].timeout_s == 0.5 and routes[0].retries.attempts == 3
    assert routes[0].retries.retriable_status_codes == (503,)
    assert routes[0].mirrors == (Mirror("reviews", "reviews-v1", 25.0),)
    assert expected_shares(loaded.model, "reviews", {"x-canary": "true", ":method": "GET"}, "/").shares == {"v2": 1.0}


def no_route(loaded: LoadedMesh) -> None:
    """Nothing routes reviews: Istio's default, its three pods alike."""
    assert "reviews" not in loaded.model.routes
    assert expected_shares(loaded.model, "reviews").shares == {"v1": 2 / 3, "v2": 1 / 3}


def query_first(loaded: LoadedMesh) -> None:
    """A queryParams match outranks the catch-all; the verdict picks it by the path's query string."""
    assert expected_shares(loaded.model, "reviews", path="/reviews?version=v2").shares == {"v2": 1.0}
    assert expected_shares(loaded.model, "reviews", path="/reviews?version=v1").shares == {"v1": 0.9, "v2": 0.1}


def _exact(value: str) -> object:
    from chaosmesh_qa.mesh.model import StringMatch
    return StringMatch("exact", value)


HEADER_RULE = """  - matches:
    - headers: [{name: x-canary, value: "true"}]
      method: GET
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef: {name: reviews-v1, port: 8080}
        fraction: {numerator: 1, denominator: 4}
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    timeouts: {request: 500ms}
    retry: {attempts: 3, codes: [503]}
    backendRefs:
    - {name: reviews-v2, port: 8080}
"""

CASES = [
    Case("gamma-90-10", gamma(), check=split(0.9, 0.1)),
    Case("weights-as-percent-of-their-sum", gamma(ROUTE.replace("weight: 90", "weight: 3").replace(
        "weight: 10", "weight: 1")), check=split(0.75, 0.25)),
    Case("header-route-merged-from-a-second-httproute", gamma(ROUTE + "---\n" + ROUTE.replace(
        "name: reviews}\nspec", "name: reviews-canary}\nspec").split("  rules:\n")[0] + "  rules:\n" + HEADER_RULE),
        warnings=("spec.rules[0].filters[1].type: 'URLRewrite' is not applied by the sandbox",),
        check=header_first),
    Case("httproute-wins-over-a-virtualservice", gamma(ROUTE + VS),
         warnings=("HTTPRoute/reviews: the HTTPRoute and a VirtualService both route 'reviews'",),
         check=split(0.9, 0.1)),
    Case("other-port-routes-nothing", gamma(ROUTE.replace("port: 8080}\n  rules", "port: 9080}\n  rules")),
         warnings=("spec.parentRefs[0].port: 9080 is not the port of service 'reviews' (8080)",),
         check=no_route),
    Case("section-name-not-checked", gamma(ROUTE.replace("name: reviews, port: 8080}\n  rules",
                                                         "name: reviews, sectionName: http}\n  rules")),
         warnings=("spec.parentRefs[0].sectionName: 'http' (a port name) is not checked",), check=split(0.9, 0.1)),
    Case("consumer-route-refused", gamma(ROUTE.replace("name: reviews, port", "name: reviews, namespace: shop, port")),
         error=("HTTPRoute/reviews: spec.parentRefs[0].namespace:", "consumer route")),
    Case("parent-is-a-per-version-service", gamma(ROUTE.replace("kind: Service, name: reviews,",
                                                                "kind: Service, name: reviews-v1,")),
         error=("spec.parentRefs[0].name: no service 'reviews-v1'", "attach the route to that one")),
    Case("backend-port-mismatch", gamma(ROUTE.replace("reviews-v2, port: 8080", "reviews-v2, port: 9080")),
         error=("spec.rules[0].backendRefs[1].port: 9080 is not the port of service 'reviews-v2' (8080)",)),
    Case("query-param-route-first", gamma(), check=query_first),  # the profile's ?version=v2 rule
    Case("overlapping-services-without-an-httproute-still-refused", gamma(VS.removeprefix("---\n")),
         error=("Service/reviews: spec.selector: selects Deployment/reviews-v1, which", "selects too")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gamma_corpus(case: Case, tmp_path: Path) -> None:
    judge(case, tmp_path / "mesh")


def test_explain_points_at_the_httproute_that_routes_the_service() -> None:
    from chaosmesh_qa.mesh.explain import explain

    found = [f for f in explain(PROFILE)["findings"] if f["code"] == "CMQ-R001" and f["message"].startswith("reviews:")]
    # the first route in effect is the queryParams rule (rules[1]: Gateway API precedence), with Istio's retries
    assert [f["location"].endswith("routes.yaml: HTTPRoute/reviews: spec.rules[1].retry") for f in found] == [True]
