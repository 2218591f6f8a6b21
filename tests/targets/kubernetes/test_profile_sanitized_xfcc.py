"""The Kubernetes target on the "sanitized-xfcc" cluster profile (tests/profiles/sanitized-xfcc): the default mesh
on an Istio whose mesh config sets ``defaultConfig.proxyHeaders.forwardedClientCert: SANITIZE``.

Issue 18 point 3: a per-caller fault matches the caller's SPIFFE id in the ``x-forwarded-client-cert`` header the
callee's sidecar builds, and that header depends on ``proxyHeaders``.  The sandbox's sidecars now build it as the
mesh config says (istiod puts ``proxyHeaders.forwardedClientCert`` into every sidecar's inbound connection manager),
so a per-caller EnvoyFilter matches nothing there, as on such a cluster; the target reads the setting (and a pod's
``proxy.istio.io/config``) and refuses the fault in one line instead of recording a fault that faults nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaosmesh_qa.errors import FaultRejected
from chaosmesh_qa.targets.factory import get_target
from chaosmesh_qa.targets.kubernetes import objects
from chaosmesh_qa.targets.kubernetes.objects import MANAGED_SELECTOR
from tests.support.client import get_many, hops
from tests.support.kube import KubeSandbox, envoy_filter, listener_watch, running, until_sidecars_settle

# the slow suite: a sandbox of its own for one profile; make test keeps the pure tests of what the sandbox's
# sidecars and the target make of proxyHeaders (tests/targets/local/envoy/test_listeners_xfcc.py,
# tests/targets/kubernetes/test_workloads.py)
pytestmark = [pytest.mark.processes, pytest.mark.slow]

PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "sanitized-xfcc"


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    with running(tmp_path_factory.mktemp("sanitized-xfcc") / "state", "--mesh", str(PROFILE)) as box:
        yield box


def _reviews_statuses(box: KubeSandbox, count: int) -> set[int]:
    return {h["status"] for _, tree in get_many(box.ingress_url + "/", count) for h in hops(tree)
            if h["service"] == "reviews"}


def test_point3_a_per_caller_fault_matches_nothing_where_sidecars_sanitize_xfcc_and_the_target_refuses_it(
        sanitized: KubeSandbox) -> None:
    # the sandbox follows the mesh config: an abort of every frontend request into reviews, matched in XFCC as the
    # target writes it, aborts none of them (the callee's sidecar forwards no XFCC at all)
    target = get_target(sanitized.configuration())
    watch = listener_watch(sanitized, "reviews")
    body = envoy_filter("per-caller-abort", "reviews", {"abort": {"http_status": 503, "percentage": {
        "numerator": 100}}}, caller_sa="frontend")
    target.cluster.create({**body, "apiVersion": objects.ENVOYFILTER.api_version,
                           "metadata": {**body["metadata"], "namespace": "default"}})
    try:
        until_sidecars_settle(watch)
        assert _reviews_statuses(sanitized, 40) == {200}
    finally:
        target.cluster.delete(objects.ENVOYFILTER, "default", "per-caller-abort")
    with pytest.raises(FaultRejected, match=r"^source: a per-caller fault tells callers apart by the client "
                                            r"certificate .* the sidecars of 'reviews' do not \(proxyHeaders\."
                                            r"forwardedClientCert SANITIZE, from the mesh config \(istio "
                                            r"ConfigMap\)\): it would fault no request; use a fault on every "
                                            r"caller \(no source\), or give those pods APPEND_FORWARD$"):
        target.inject_abort("reviews", 503, 100, "frontend", 30.0, "test-sanitized")
    shown = sanitized.kubectl("get", "envoyfilters,configmaps", "-l", MANAGED_SELECTOR, "-o", "name")
    assert shown.stdout.split() == [], "nothing created"
