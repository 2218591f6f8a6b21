"""mtls_enforced against the session sandbox: STRICT everywhere, also for a pod that replaced a killed one."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chaosmesh_qa.errors import InvalidArgument
from chaosmesh_qa.probes.mtls import mtls_enforced
from chaosmesh_qa.targets.local.target import LocalTarget
from tests.support.sandbox import Sandbox

pytestmark = pytest.mark.processes


@pytest.fixture
def cfg(sandbox: Sandbox) -> dict[str, Any]:
    return {"chaosmesh_qa_state_dir": str(sandbox.state_dir)}


def test_default_mesh_enforces_mtls_also_after_a_pod_is_replaced(cfg: dict[str, Any], sandbox: Sandbox) -> None:
    before = mtls_enforced(configuration=cfg)
    assert before["status"] == "pass", before["summary"]
    assert {(e["source"], e["destination"]) for e in before["edges"]} == {
        ("ingress", "frontend"), ("frontend", "catalog"), ("frontend", "reviews"), ("catalog", "inventory")}
    target = LocalTarget(sandbox.state_dir)
    old = {p["name"] for p in target.describe()["pods"]}
    target.kill_pods("inventory", 1, None, None, 0.1, "test-mtls")
    try:
        deadline = time.monotonic() + 20
        while len([p for p in target.describe()["pods"]
                   if p["service"] == "inventory" and p["state"] == "ready" and p["name"] not in old]) < 1 \
                or len([p for p in target.describe()["pods"]
                        if p["service"] == "inventory" and p["state"] == "ready"]) < 2:
            assert time.monotonic() < deadline, "no replacement pod became ready"
            time.sleep(0.1)  # polling the readiness of the replacement (bounded)
        after = mtls_enforced(services=["inventory"], configuration=cfg)
    finally:
        target.heal(None, "test-mtls")
    assert after["status"] == "pass", after["summary"]
    tried = {p["pod"] for w in after["workloads"] for p in w["pods"]}
    assert len(tried) == 2 and tried - old, "the replacement pod (new certificate) was tried too"


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"services": ["nope"]}, "service: unknown service 'nope'"),
    ({"services": "reviews"}, "services: expected a non-empty list"),
    ({"samples": 0}, "samples:"),
], ids=["unknown-service", "not-a-list", "samples"])
def test_bad_input_is_one_line(cfg: dict[str, Any], kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        mtls_enforced(configuration=cfg, **kwargs)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
