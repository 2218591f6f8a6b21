"""Bad fault arguments: a one-line reason naming the argument, and nothing injected."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chaosmesh_qa import actions
from chaosmesh_qa.errors import ChaosMeshQAError, FaultRejected, InvalidArgument
from tests.support.sandbox import Sandbox


@pytest.fixture
def cfg(sandbox: Sandbox) -> Iterator[dict[str, Any]]:
    configuration = {"chaosmesh_qa_state_dir": str(sandbox.state_dir)}
    yield configuration
    actions.get_target(configuration).heal(None, None)


BAD: list[tuple[str, Callable[..., Any], dict[str, Any], type[ChaosMeshQAError], str]] = [
    ("unknown service", actions.inject_latency, {"service": "nope", "delay_ms": 10, "duration_s": 5},
     FaultRejected, "service: unknown service 'nope'"),
    ("unknown version", actions.kill_pods, {"service": "reviews", "version": "v9"}, FaultRejected, "version:"),
    ("unknown source", actions.inject_abort,
     {"service": "reviews", "http_status": 503, "percent": 10, "duration_s": 5, "source": "ghost"},
     FaultRejected, "source: 'ghost' does not call 'reviews'"),
    ("percent over 100", actions.inject_abort, {"service": "reviews", "http_status": 503, "percent": 150,
                                                "duration_s": 5}, InvalidArgument, "percent:"),
    ("percent negative", actions.kill_pods, {"service": "reviews", "percent": -5}, InvalidArgument, "percent:"),
    ("zero duration", actions.inject_latency, {"service": "reviews", "delay_ms": 10, "duration_s": 0},
     InvalidArgument, "duration_s: expected a number in (0, 604800], got 0"),
    ("negative duration", actions.fail_pods, {"service": "reviews", "duration_s": -1}, InvalidArgument,
     "duration_s:"),
    ("over-maximum duration", actions.inject_latency, {"service": "reviews", "delay_ms": 10, "duration_s": 10**5},
     FaultRejected, "duration_s:"),
    ("duration beyond a week", actions.inject_latency, {"service": "reviews", "delay_ms": 10, "duration_s": 10**7},
     InvalidArgument, "duration_s: expected a number in (0, 604800], got 10000000"),
    ("duration not a number", actions.partition, {"a": "frontend", "b": "reviews", "duration_s": "5s"},
     InvalidArgument, "duration_s: expected a number in (0, 604800], got '5s'"),
    ("partial partition both ways", actions.partition, {"a": "frontend", "b": "catalog", "duration_s": 5,
                                                       "count": 1}, InvalidArgument, "direction: expected 'to'"),
    ("kill count above replicas", actions.kill_pods, {"service": "catalog", "count": 3}, FaultRejected,
     "count: 3 exceeds the 2 running pod(s)"),
    ("count and percent", actions.kill_app, {"service": "catalog", "count": 1, "percent": 50}, InvalidArgument,
     "count/percent"),
    ("partition with itself", actions.partition, {"a": "reviews", "b": "reviews", "duration_s": 5},
     InvalidArgument, "b: cannot partition 'reviews' from itself"),
    ("partition without traffic", actions.partition, {"a": "reviews", "b": "inventory", "duration_s": 5},
     FaultRejected, "no traffic flows"),
    ("every caller toward a service", actions.partition, {"a": "*", "b": "reviews", "duration_s": 5},
     InvalidArgument, "a: '*' (every caller) is for a ServiceEntry's host, and 'reviews' is a service of the mesh"),
    ("bad partition mode", actions.partition, {"a": "frontend", "b": "reviews", "duration_s": 5, "mode": "cut"},
     InvalidArgument, "mode:"),
    ("bad kill mode", actions.kill_pods, {"service": "catalog", "mode": "gentle"}, InvalidArgument,
     "mode: expected one of crash, evict, got 'gentle'"),
    # issue 18 point 10: the sandbox models no graceful termination and no PodDisruptionBudget
    ("eviction on the embedded mesh", actions.kill_pods, {"service": "catalog", "mode": "evict"}, FaultRejected,
     "kill_pods: mode='evict' is not available on the local target"),
    ("bad http status", actions.inject_abort, {"service": "reviews", "http_status": 99, "percent": 5,
                                               "duration_s": 5}, InvalidArgument, "http_status:"),
    # issue 20: a zone no pod of the (zone-less) default mesh is in
    ("unknown zone", actions.fail_pods, {"service": "catalog", "duration_s": 5, "zone": "a"}, FaultRejected,
     "zone: unknown zone 'a': no pod of the mesh is in it (zones: none, the mesh declares no locality)"),
    ("unknown zone for a latency", actions.inject_latency, {"service": "catalog", "delay_ms": 10, "duration_s": 5,
                                                            "zone": "a"}, FaultRejected, "zone: unknown zone 'a'"),
    ("fractional delay", actions.inject_latency, {"service": "reviews", "delay_ms": 1.5, "duration_s": 5},
     InvalidArgument, "delay_ms:"),
]


@pytest.mark.parametrize(("action", "arguments", "error", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_argument_is_one_line_and_injects_nothing(
    cfg: dict[str, Any], action: Callable[..., Any], arguments: dict[str, Any], error: type[Exception], fragment: str,
) -> None:
    with pytest.raises(error) as raised:
        action(**arguments, configuration=cfg)
    message = str(raised.value)
    assert fragment in message
    assert "\n" not in message
    assert actions.get_target(cfg).active_faults() == []


NO_SANDBOX_BAD: list[tuple[str, Callable[..., Any], dict[str, Any], str]] = [
    ("nan count", actions.kill_pods, {"service": "catalog", "count": float("nan")}, "count:"),
    ("huge count", actions.kill_app, {"service": "catalog", "count": 10**400}, "count:"),
    ("infinite percent", actions.fail_pods, {"service": "catalog", "duration_s": 5, "percent": float("inf")},
     "percent:"),
    ("nan duration", actions.inject_latency, {"service": "catalog", "delay_ms": 5, "duration_s": float("nan")},
     "duration_s:"),
    ("infinite duration", actions.inject_abort, {"service": "catalog", "http_status": 503, "percent": 5,
                                                 "duration_s": float("inf")}, "duration_s:"),
    ("huge delay", actions.inject_latency, {"service": "catalog", "delay_ms": 10**30, "duration_s": 5}, "delay_ms:"),
    ("nan status", actions.inject_abort, {"service": "catalog", "http_status": float("nan"), "percent": 5,
                                          "duration_s": 5}, "http_status:"),
    ("malformed service", actions.kill_pods, {"service": "Catalog Service"}, "service: expected a name"),
    ("malformed source", actions.inject_abort, {"service": "catalog", "http_status": 503, "percent": 5,
                                                "duration_s": 5, "source": "front end"}, "source: expected a name"),
    ("malformed version", actions.kill_pods, {"service": "catalog", "version": "v1\n"}, "version: expected a name"),
    ("malformed fault id", actions.heal, {"fault_id": "../x"}, "fault_id: expected a fault id"),
    ("malformed zone", actions.kill_pods, {"service": "catalog", "zone": "a/b/c"}, "zone: expected a zone"),
    ("zone partition both ways", actions.partition, {"a": "frontend", "b": "catalog", "duration_s": 5, "zone": "a"},
     "direction: expected 'to' when count/percent/version/zone"),
    ("malformed latency zone", actions.inject_abort, {"service": "catalog", "http_status": 503, "percent": 5,
                                                      "duration_s": 5, "zone": ""}, "zone: expected a zone"),
    ("zone of a ServiceEntry's host", actions.inject_latency, {"service": "api.example.com", "delay_ms": 10,
                                                               "duration_s": 5, "zone": "a"},
     "zone: 'api.example.com' is a ServiceEntry's host"),
]


@pytest.mark.parametrize(("action", "arguments", "fragment"), [b[1:] for b in NO_SANDBOX_BAD],
                         ids=[b[0] for b in NO_SANDBOX_BAD])
def test_bad_argument_fails_before_contacting_the_target(tmp_path: Any, action: Callable[..., Any],
                                                         arguments: dict[str, Any], fragment: str) -> None:
    """Without any sandbox, the user sees their mistake, not "no sandbox answering"."""
    with pytest.raises(InvalidArgument) as raised:
        action(**arguments, configuration={"chaosmesh_qa_state_dir": str(tmp_path / "none")})
    assert str(raised.value).startswith(fragment) and "\n" not in str(raised.value)


@pytest.mark.parametrize("state_dir", [5, ["dir"], "a\0b", "x" * 300], ids=["int", "list", "nul", "long-component"])
def test_malformed_state_dir_is_an_invalid_argument(state_dir: Any) -> None:
    with pytest.raises(InvalidArgument, match=r"^configuration\.chaosmesh_qa_state_dir: expected a file system path"):
        actions.heal(configuration={"chaosmesh_qa_state_dir": state_dir})
