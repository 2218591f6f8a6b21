"""Shared pieces of the input fuzz tests: reproducible settings, value strategies and an independent oracle.

Used by tests/actions/test_fuzz_actions.py, tests/probes/test_fuzz_probes.py, tests/traffic/test_fuzz_profile.py
and tests/test_fuzz_cli.py.  Every generated input must either be accepted or fail with one of the project's
errors in one line naming the argument.  Actions and probes run against a state directory with no sandbox, so
"accepted" shows up as ``TargetUnavailable`` (or, for probes, ``MeasurementFailed``: no timeline) — the target
was contacted only after every check passed — while a bad input must be an ``InvalidArgument`` naming an
argument the oracle here (written independently of ``chaosmesh_qa.checks``) finds wrong.  Generation is
derandomized (the same inputs every run); each test has a timeout, so a NaN that makes a loop spin fails
instead of hanging.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from chaosmesh_qa.errors import ChaosMeshQAError, InvalidArgument

BASE = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


def fuzz(examples: int) -> settings:
    """Reproducible (derandomized, no example database), no per-example deadline on a shared machine."""
    return settings(BASE, max_examples=examples)
OMIT = object()  # the argument is left out (its default applies)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
WEEK = 7 * 86_400

# --------------------------------------------------------------------------- values

SPECIAL_NUMBERS = [0, -1, 1, 2, 100, 101, 599, 600, 10**9, 2**63, 10**400, -(10**400), 0.5, -0.0, 1e-300, 1e308,
                   float("nan"), float("inf"), float("-inf"), True, False]
SPECIAL_TEXTS = ["", " ", "catalog", "Catalog", "cat alog", "a\nb", "a\0b", "-a", "a-", "a" * 63, "a" * 64, "ingress",
                 "v1", "1", "nan", "inf", "5s", "fault_start", "last_heal", "both", "to", "drop", "retries",
                 "prometheus", "client", "before", "é", "\u0661", "../x", "x/y", "pod-kill-0a1b2c3d"]
numbers = st.one_of(st.integers(), st.floats(), st.sampled_from(SPECIAL_NUMBERS))
texts = st.one_of(st.text(max_size=70), st.sampled_from(SPECIAL_TEXTS))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
wild = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                    max_leaves=8)
# a value meant for one argument: mostly of the right shape, often wrong, sometimes anything at all
NAMES = st.sampled_from(["catalog", "reviews", "frontend", "inventory", "a", "a" * 63, "a-b", "0", "v1"])


def number_in(low: float, high: float) -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(math.ceil(low), math.floor(high)), st.floats(low, high))


def value(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(good, good, numbers, texts, wild)


# --------------------------------------------------------------------------- the oracle (independent of checks.py)


def is_number(v: Any) -> bool:
    return not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and math.isfinite(v)))


def in_range(v: Any, low: float, high: float, low_open: bool = False, high_open: bool = False) -> bool:
    return is_number(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)


def whole(v: Any, low: int, high: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, int) and low <= v <= high


def name(v: Any) -> bool:
    return isinstance(v, str) and DNS_LABEL.fullmatch(v) is not None


def opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is OMIT or v is None or check(v)


def choice(*options: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in options


def seconds(high: float = WEEK) -> Callable[[Any], bool]:
    return lambda v: in_range(v, 0, high, low_open=True)


def since(v: Any) -> bool:
    return v is OMIT or choice("fault_start", "last_heal")(v) or seconds()(v)


def given_(v: Any) -> bool:
    return v is not OMIT and v is not None


# --------------------------------------------------------------------------- checking an outcome


def call(function: Callable[..., Any], arguments: dict[str, Any], configuration: dict[str, Any]) -> Exception | None:
    try:
        function(**{k: v for k, v in arguments.items() if v is not OMIT}, configuration=configuration)
    except ChaosMeshQAError as exc:
        return exc
    return None


def assert_outcome(error: Exception | None, wrong: set[str], accepted: tuple[type[Exception], ...]) -> None:
    """``wrong``: the arguments the oracle finds bad (empty: the input is good)."""
    assert error is not None, "nothing answers in the fuzz state directory: a call cannot succeed"
    event(f"{'bad' if wrong else 'good'} input -> {type(error).__name__}")  # --hypothesis-show-statistics
    message = str(error)
    assert len(message.splitlines()) == 1, message
    if not wrong:
        assert isinstance(error, accepted), f"a good input was refused: {type(error).__name__}: {message}"
        return
    assert isinstance(error, InvalidArgument), f"a bad input ({sorted(wrong)}) reached the target: {message}"
    named = re.split(r"[:.\[]", message, maxsplit=1)[0]
    assert any(named == w or w.startswith(named) or named.startswith(w) for w in wrong), (sorted(wrong), message)




def no_sandbox(root: Path) -> dict[str, Any]:
    """A configuration whose state directory holds no sandbox (and whose timeline does not exist)."""
    return {"chaosmesh_qa_state_dir": str(root / "no-sandbox"), "chaosmesh_qa_timeline": str(root / "none.jsonl")}


def draw_arguments(data: st.DataObject, function: Callable[..., Any],
                   spec: dict[str, tuple[st.SearchStrategy[Any], Any]]) -> dict[str, Any]:
    """One value per argument; an argument with a default is often left out (or given as None)."""
    parameters = inspect.signature(function).parameters
    mode = data.draw(st.sampled_from(["good", "one bad", "any"]), label="mode")
    odd = data.draw(st.sampled_from(sorted(spec)), label="odd one") if mode == "one bad" else None
    arguments = {}
    for argument, (good, _) in spec.items():
        strategy = good if mode == "good" or (mode == "one bad" and argument != odd) else value(good)
        if parameters[argument].default is not inspect.Parameter.empty:
            strategy = st.one_of(st.just(OMIT), st.just(OMIT), st.none(), strategy)
        arguments[argument] = data.draw(strategy, label=argument)
    return arguments


def wrong_arguments(function: Callable[..., Any], spec: dict[str, tuple[Any, Callable[[Any], bool]]],
                    arguments: dict[str, Any]) -> set[str]:
    """The arguments the oracle finds bad on their own (None is good only where it is the default)."""
    parameters = inspect.signature(function).parameters
    wrong = set()
    for argument, (_, ok) in spec.items():
        given = arguments[argument]
        if (given is None and parameters[argument].default is not None) or not ok(given):
            wrong.add(argument)
    return wrong
