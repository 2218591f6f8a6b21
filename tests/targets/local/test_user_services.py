"""A team's own services (``command``) inside the mesh: served through their sidecar, and calling others.

One sandbox for the module: examples/own-service (storefront.py at the edge, calling catalog and
reviews by their Kubernetes names through ``HTTP_PROXY``), plus its trace-dropping variant as a
second service scoped down by an Istio ``Sidecar``, and inventory's VirtualService sending half
of its traffic to reviews.  Every check is measured with requests through the mesh.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil
import pytest

from chaosmesh_qa.targets.local.sandbox import is_running
from chaosmesh_qa.targets.local.state import SandboxPaths
from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.cli import run_cli
from tests.support.client import get
from tests.support.editing import append, replace
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "own-service"
STOREFRONT = "spiffe://cluster.local/ns/default/sa/storefront"
OWNER = f"test-user-services-{os.getpid()}"
NOTRACE = '''  - name: storefront-notrace
    versions:
    - {name: v1, replicas: 1}
    command: [python3, "{mesh}/../storefront.py", "{port}", --drop-trace-headers]
    readyTimeout: 10s
'''
SIDECAR = '''---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: storefront-notrace}
spec:
  workloadSelector:
    labels: {app: storefront-notrace}
  egress:
  - hosts: [./catalog.default.svc.cluster.local]
'''
INVENTORY_SPLIT = ("    - destination: {host: inventory}\n    timeout: 1s",
                   "    - destination: {host: inventory}\n      weight: 50\n"
                   "    - destination: {host: reviews}\n      weight: 50\n    timeout: 1s")


class OwnServices(Sandbox):
    url = ""  # the ingress URL


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnServices]:
    work = tmp_path_factory.mktemp("own-service")
    mesh = work / "mesh"  # {mesh}/../storefront.py is the example's program, as in examples/own-service
    mesh.mkdir()
    for yaml in (EXAMPLE / "mesh").glob("*.yaml"):
        (mesh / yaml.name).write_text(yaml.read_text())
    (work / "storefront.py").write_text((EXAMPLE / "storefront.py").read_text())
    for edit in (replace("mesh.yaml", "  services:\n", "  services:\n" + NOTRACE),
                 replace("traffic.yaml", *INVENTORY_SPLIT), append("sidecar.yaml", SIDECAR)):
        edit(mesh)
    sandbox = OwnServices(work / "state")
    sandbox.up("--mesh", str(mesh))
    try:
        sandbox.url = sandbox.ingress_url  # one status call, not one per request
        yield sandbox
    finally:
        LocalTarget(sandbox.state_dir).heal(None, None)
        sandbox.down()


def calls(box: OwnServices, *urls: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Have storefront (the team's program) make these calls; its answer."""
    return get(box.url + "/?" + urlencode([("call", u) for u in urls]), headers)


def test_calls_two_services_by_their_kubernetes_names_with_its_own_identity(box: OwnServices) -> None:
    code, tree = get(box.url + "/")
    assert code == 200, tree
    assert tree["service"] == "storefront" and tree["caller"].endswith("/sa/istio-ingressgateway-service-account")
    catalog, reviews = tree["upstreams"]
    assert catalog["url"] == "http://catalog/items" and catalog["service"] == "catalog"
    assert reviews["url"] == "http://reviews.default.svc.cluster.local:8080/reviews" and reviews["service"] == "reviews"
    # mTLS: each callee's sidecar verified the program's SPIFFE identity, as for a demo app
    assert catalog["caller"] == reviews["caller"] == STOREFRONT
    assert catalog["status"] == reviews["status"] == 200 and catalog["attempts"] == reviews["attempts"] == 1


def test_envoy_routes_absolute_form_requests_by_their_authority(box: OwnServices) -> None:
    pod = next(p for p in box.status()["pods"] if p["service"] == "storefront")
    port = pod["ports"]["outbound"]
    for target, host, service in [("http://catalog/items", "catalog", "catalog"),
                                  ("http://catalog.default.svc.cluster.local:8080/items", "x", "catalog"),
                                  ("http://reviews.default:8080/reviews", "catalog", "reviews")]:
        status, body = _raw_get(port, target, host)
        assert status == 200 and f'"service": "{service}"' in body, (target, status, body[:200])
    # not a service of the mesh nor a ServiceEntry's host: ALLOW_ANY (Istio's default) sends it to PassthroughCluster,
    # which reaches nothing outside the sandbox: 503, connection refused
    assert _raw_get(port, "http://payments/", "payments")[0] == 503


def test_faults_on_its_edges_and_its_own_timeouts_and_retries(box: OwnServices) -> None:
    target = LocalTarget(box.state_dir)
    target.inject_latency("catalog", 1500, 100, "storefront", 30, OWNER)
    try:
        code, tree = calls(box, "http://catalog/items", "http://frontend/")
    finally:
        target.heal(None, OWNER)
    slowed, frontend = tree["upstreams"]
    # its own policy: a 1 s timeout per attempt, 2 retries -> 3 attempts, about 3 s, then it gives up
    assert code == 502 and slowed["status"] == 599 and slowed["attempts"] == 3, slowed
    assert 2900 <= slowed["elapsed_ms"] <= 4500, slowed
    # the edge fault is the storefront's alone: the demo frontend's own catalog call is untouched
    assert frontend["status"] == 200 and frontend["attempts"] == 1 and frontend["elapsed_ms"] < 1000, frontend

    target.inject_abort("reviews", 503, 100, "storefront", 30, OWNER)
    try:
        code, tree = calls(box, "http://reviews/reviews", "http://frontend/")
    finally:
        target.heal(None, OWNER)
    aborted, frontend = tree["upstreams"]
    assert aborted["status"] == 503 and aborted["attempts"] == 3, aborted  # its retries saw every abort
    assert frontend["status"] == 200 and all(u["status"] == 200 for u in frontend["upstreams"]), frontend
    assert calls(box, "http://reviews/reviews")[0] == 200  # healed


def test_authorization_and_routing_apply_to_its_calls_as_to_the_demo_apps(box: OwnServices) -> None:
    # inventory's VirtualService sends half its traffic to reviews, for every caller: catalog (demo
    # app, which never calls reviews itself) and storefront; inventory admits only catalog
    code, tree = calls(box, *["http://catalog/items"] * 40)
    assert code == 200, tree
    from_catalog = Counter(c["upstreams"][0]["service"] for c in tree["upstreams"])
    assert set(from_catalog) == {"inventory", "reviews"} and 8 <= from_catalog["reviews"] <= 32, from_catalog
    assert all(c["upstreams"][0]["caller"].endswith("/sa/catalog") for c in tree["upstreams"])

    _, tree = calls(box, *["http://inventory/stock"] * 40)
    answers = Counter((u["status"], u.get("service")) for u in tree["upstreams"])
    # inventory's answer to storefront is RBAC's 403 (not retried); reviews' share is served
    assert set(answers) == {(403, None), (200, "reviews")} and 8 <= answers[200, "reviews"] <= 32, answers

    # reviews' 80/20 canary applies to storefront's calls as to the frontend's
    _, tree = calls(box, *["http://reviews/reviews"] * 60)
    mine = Counter(u["version"] for u in tree["upstreams"])
    _, tree = calls(box, *["http://frontend/"] * 30)
    theirs = Counter(u["upstreams"][1]["version"] for u in tree["upstreams"])
    assert 2 <= mine["v2"] <= 26 and mine["v1"] + mine["v2"] == 60, mine
    assert 0 <= theirs["v2"] <= 15 and theirs["v1"] + theirs["v2"] == 30, theirs


def test_trace_headers_copied_or_dropped_and_a_sidecar_scopes_egress(box: OwnServices) -> None:
    request_id = f"trace-{os.getpid()}-{time.monotonic_ns()}"
    _, tree = calls(box, "http://catalog/items", "http://storefront-notrace/", headers={"x-request-id": request_id})
    kept, variant = tree["upstreams"]
    assert kept["request_id"] == tree["request_id"]  # storefront copied its x-request-id onto the call
    assert variant["request_id"] == tree["request_id"]  # and onto the call to its variant, which ...
    catalog, reviews = variant["upstreams"]
    assert catalog["status"] == 200 and catalog["request_id"] != variant["request_id"]  # ... dropped it
    # the variant's Sidecar resource lets it see catalog only: reviews is unknown to its sidecar, and goes to the
    # ALLOW_ANY catch-all, PassthroughCluster, which reaches nothing in the sandbox (503; the program retries it)
    assert reviews["status"] == 503 and "remote connection failure" in reviews["body"], reviews


def _raw_get(port: int, target: str, host: str) -> tuple[int, str]:
    """An absolute-form request, as an HTTP client sends it to a proxy (with an unrelated Host)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode(errors="replace")


BROKEN = {  # command, readyTimeout, what the line says (an exit is seen at once, whatever the timeout)
    "exits-at-once": ('[python3, -c, "import sys; sys.exit(3)"]', "20s",
                      "app exited with status 3 before it was ready"),
    "never-healthy": ('[python3, -m, http.server, "{port}", --bind, 127.0.0.1]', "3s",
                      "app not healthy after 3 s: GET /healthz on its port"),
    "wrong-port": ('[python3, -m, http.server, "WRONG", --bind, 127.0.0.1]', "3s", "instead: use {port} or $PORT)"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_command_fails_up_in_one_line_naming_the_pod_and_its_log(case: str, tmp_path: Path) -> None:
    command, timeout, reason = BROKEN[case]
    with socket.socket() as spare:  # a free port that is not the one the pod is given
        spare.bind(("127.0.0.1", 0))
        wrong = spare.getsockname()[1]
    (tmp_path / "mesh").mkdir()
    (tmp_path / "mesh" / "mesh.yaml").write_text(f'''apiVersion: chaosmesh-qa.io/v1alpha1
kind: Mesh
metadata: {{name: broken}}
spec:
  ingress: {{service: solo}}
  services:
  - name: solo
    versions: [{{name: v1}}]
    command: {command.replace("WRONG", str(wrong))}
    readyTimeout: {timeout}
''')
    state = tmp_path / "state"
    result = run_cli("up", "--mesh", str(tmp_path / "mesh"), "--state-dir", str(state))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    match = re.search(r"pod (solo-v1-[0-9a-f]+): (.*) \(log: (\S+/app\.log)\)", lines[0])
    assert match and reason in match.group(2), lines[0]
    assert Path(match.group(3)) == state / "logs" / match.group(1) / "app.log" and Path(match.group(3)).exists()
    assert not is_running(SandboxPaths(state))
    left = [p.pid for p in psutil.process_iter() if _of_sandbox(p, state, match.group(1))]
    assert not left, f"processes of the failed sandbox still running: {left}"


def _of_sandbox(process: psutil.Process, state: Path, pod: str) -> bool:
    """Supervisor, Envoys and Prometheus name the state directory; the app carries its pod's name."""
    try:
        return str(state) in " ".join(process.cmdline()) or process.environ().get("CHAOSMESH_POD") == pod
    except psutil.Error:  # gone meanwhile, or another user's
        return False
