"""Fuzzing every action (``chaosmesh_qa.actions``) and the target configuration: see tests/fuzz_inputs.py."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaosmesh_qa import actions
from chaosmesh_qa.errors import TargetUnavailable
from tests.support.fuzz import (
    NAMES,
    WEEK,
    assert_outcome,
    call,
    choice,
    draw_arguments,
    fuzz,
    given_,
    in_range,
    name,
    no_sandbox,
    number_in,
    opt,
    seconds,
    value,
    whole,
    wrong_arguments,
)


@pytest.fixture(scope="module")
def nowhere(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return no_sandbox(tmp_path_factory.mktemp("fuzz"))

PERCENT_POD = number_in(0.001, 100)
SELECTION = {"count": (st.integers(1, 1000), opt(lambda v: whole(v, 1, 1000))),
             "percent": (PERCENT_POD, opt(lambda v: in_range(v, 0, 100, low_open=True)))}
ACTIONS: dict[str, tuple[Callable[..., Any], dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], bool]]]]] = {
    "kill_pods": (actions.kill_pods, {"service": (NAMES, name), **SELECTION, "version": (NAMES, opt(name)),
                                      "restart_after_s": (number_in(0.001, WEEK), opt(seconds()))}),
    "fail_pods": (actions.fail_pods, {"service": (NAMES, name), "duration_s": (number_in(0.001, WEEK), seconds()),
                                      **SELECTION, "version": (NAMES, opt(name))}),
    "kill_app": (actions.kill_app, {"service": (NAMES, name), **SELECTION, "version": (NAMES, opt(name)),
                                    "restart_after_s": (number_in(0.001, WEEK), opt(seconds()))}),
    "inject_latency": (actions.inject_latency, {
        "service": (NAMES, name), "delay_ms": (st.integers(1, 600_000), lambda v: whole(v, 1, 600_000)),
        "duration_s": (number_in(0.001, WEEK), seconds()),
        "percent": (st.integers(1, 100), opt(lambda v: whole(v, 1, 100))),
        "source": (NAMES, opt(name))}),
    "inject_abort": (actions.inject_abort, {
        "service": (NAMES, name), "http_status": (st.integers(200, 599), lambda v: whole(v, 200, 599)),
        "percent": (st.integers(1, 100), lambda v: whole(v, 1, 100)), "duration_s": (number_in(0.001, WEEK), seconds()),
        "source": (NAMES, opt(name))}),
    "partition": (actions.partition, {
        "a": (NAMES, name), "b": (NAMES, name), "duration_s": (number_in(0.001, WEEK), seconds()),
        "direction": (st.sampled_from(["both", "to", "from"]), opt(choice("both", "to", "from"))),
        "mode": (st.sampled_from(["drop", "reject"]), opt(choice("drop", "reject"))), **SELECTION,
        "version": (NAMES, opt(name))}),
    "heal": (actions.heal, {"fault_id": (st.sampled_from(["latency-0a1b2c3d", "pod-kill-00ff00ff"]),
                                         opt(lambda v: isinstance(v, str)
                                             and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", v) is not None))}),
}


def action_wrong(kind: str, arguments: dict[str, Any], spec: dict[str, Any]) -> set[str]:
    wrong = wrong_arguments(ACTIONS[kind][0], spec, arguments)
    if given_(arguments.get("count")) and given_(arguments.get("percent")):
        wrong.add("count/percent")
    if kind == "partition":
        if arguments["a"] == arguments["b"] and name(arguments["a"]):
            wrong.add("b")
        partial = any(given_(arguments[k]) for k in ("count", "percent", "version"))
        if partial and arguments["direction"] not in ("to",):
            wrong.add("direction")
    return wrong


@pytest.mark.timeout(120)
@fuzz(400)
@given(data=st.data())
def test_fuzz_actions(nowhere: dict[str, Any], data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(ACTIONS)), label="action")
    function, spec = ACTIONS[kind]
    arguments = draw_arguments(data, function, spec)
    error = call(function, arguments, nowhere)
    assert_outcome(error, action_wrong(kind, arguments, spec), (TargetUnavailable,))


@pytest.mark.timeout(60)
@fuzz(60)
@given(state_dir=value(st.sampled_from(["fuzz-state", "a/b", "x" * 255])))
def test_fuzz_target_configuration(nowhere: dict[str, Any], state_dir: Any) -> None:
    root = Path(nowhere["chaosmesh_qa_state_dir"]).parent
    if isinstance(state_dir, str):
        state_dir = f"{root}/{state_dir}"  # never outside the test's directory
    ok = isinstance(state_dir, str) and "\0" not in state_dir and _fs_encodable(state_dir) and all(
        len(part.encode()) <= 255 for part in state_dir.split("/"))
    error = call(actions.heal, {}, {"chaosmesh_qa_state_dir": state_dir})
    assert_outcome(error, set() if ok else {"configuration.chaosmesh_qa_state_dir"}, (TargetUnavailable,))


def _fs_encodable(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


