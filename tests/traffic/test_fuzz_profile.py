"""Fuzzing traffic profiles (mappings, files with any bytes) and ``start_traffic``: see tests/fuzz_inputs.py.

An accepted profile must survive the trip to Locust (``to_json``/``from_json``) unchanged and hold no host,
path or number the checks should have refused; ``start_traffic`` must refuse everything (no target here)
before a Locust process starts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from chaosmesh_qa.errors import ChaosMeshQAError, InvalidArgument, TargetUnavailable
from chaosmesh_qa.traffic import actions as traffic_actions
from chaosmesh_qa.traffic.profile import KEYS, Profile, load_profile, parse_profile
from tests.support.fuzz import fuzz, is_number, no_sandbox, number_in, scalars, texts, value, wild


@pytest.fixture(scope="module")
def nowhere(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return no_sandbox(tmp_path_factory.mktemp("fuzz"))

PROFILE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "users": st.integers(1, 10_000), "spawn_rate": number_in(0.1, 10_000), "rate_rps": number_in(0.1, 1_000_000),
    "paths": st.lists(st.one_of(st.sampled_from(["/", "/items?id=1", "/a/b"]),
                                st.fixed_dictionaries({"path": st.sampled_from(["/", "/x"])},
                                                      optional={"weight": number_in(0.1, 10),
                                                                "method": st.sampled_from(["get", "POST"]),
                                                                "headers": st.just({"x-canary": "true"}),
                                                                "name": st.sampled_from(["canary", "all"])})),
                      min_size=1, max_size=3),
    "headers": st.dictionaries(st.sampled_from(["x-team", "x-canary", "Accept"]),
                               st.sampled_from(["qa", "true", "*/*"]), max_size=2),
    "timeout_s": number_in(0.1, 600), "connect_timeout_s": number_in(0.1, 600), "workers": st.just(0),
    "expect_workers": st.none(), "master_bind_host": st.sampled_from(["127.0.0.1", "::1", "localhost"]),
    "master_port": st.integers(1, 65535), "warmup_s": number_in(0, 3600), "ready_timeout_s": number_in(0.1, 3600),
    "max_duration_s": number_in(0.1, 86_400),
    "host": st.sampled_from(["http://127.0.0.1:9", "https://[::1]:8443/", "http://localhost"]),
}
NUMERIC_KEYS = {"users", "spawn_rate", "rate_rps", "timeout_s", "connect_timeout_s", "workers", "master_port",
                "warmup_s", "ready_timeout_s", "max_duration_s"}
good_profiles = st.dictionaries(st.sampled_from(KEYS), st.none(), max_size=6).flatmap(
    lambda keys: st.fixed_dictionaries({k: PROFILE_VALUES[k] for k in keys}))
any_profiles = st.dictionaries(st.one_of(st.sampled_from(KEYS), texts), st.none(), max_size=6).flatmap(
    lambda keys: st.fixed_dictionaries({k: value(PROFILE_VALUES.get(k, wild)) for k in keys}))
one_bad_profiles = st.tuples(good_profiles, st.sampled_from(KEYS), wild).map(lambda t: {**t[0], t[1]: t[2]})
profiles = st.one_of(good_profiles, one_bad_profiles, any_profiles)


def assert_profile_outcome(raw: Any, outcome: Profile | Exception, prefixes: tuple[str, ...]) -> None:
    if isinstance(outcome, Exception):
        message = str(outcome)
        assert isinstance(outcome, InvalidArgument) and len(message.splitlines()) == 1, message
        assert message.startswith(prefixes), message
        return
    assert Profile.from_json(outcome.to_json()) == outcome  # what travels to Locust is what was checked
    for host in filter(None, (outcome.host, outcome.master_bind_host)):
        assert host.isprintable() and not any(c.isspace() for c in host), host
    for route in outcome.paths:
        assert route.path.startswith("/") and all("!" <= c <= "~" for c in route.path), route.path
    if isinstance(raw, dict):
        bad_number = [k for k in NUMERIC_KEYS & set(raw) if raw[k] is not None and not is_number(raw[k])]
        assert not bad_number, f"accepted non-numbers for {bad_number}: {raw}"


def parse_or_error(raw: Any) -> Profile | Exception:
    try:
        return parse_profile(raw)
    except ChaosMeshQAError as exc:
        return exc


@pytest.mark.timeout(60)
@fuzz(350)
@given(raw=st.one_of(profiles, profiles, wild))
def test_fuzz_profile_mappings(raw: Any) -> None:
    outcome = parse_or_error(raw)
    event("accepted" if isinstance(outcome, Profile) else "refused")
    assert_profile_outcome(raw, outcome, ("traffic",))


def profile_bytes() -> st.SearchStrategy[tuple[str, bytes]]:
    text_docs = profiles.map(lambda p: yaml.safe_dump(_plain(p), allow_unicode=True))
    return st.tuples(st.sampled_from([".yaml", ".json", ".yml"]), st.one_of(
        st.binary(max_size=200),
        text_docs.map(lambda t: t.encode("utf-8")),
        text_docs.map(lambda t: t.encode("latin-1", "replace") + b"\xe9\xff"),
        st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(1, 3000).map(lambda depth: b"a: " + b"{b: " * depth + b"1" + b"}" * depth),
        profiles.map(lambda p: json.dumps(_plain(p), default=str).encode()),
    ))


def _plain(raw: Any) -> Any:
    """Make a generated profile dumpable (NaN and huge numbers become text, keys strings)."""
    if isinstance(raw, dict):
        return {str(k): _plain(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_plain(v) for v in raw]
    if (isinstance(raw, float) and not math.isfinite(raw)) or (isinstance(raw, int) and abs(raw) > 2**60):
        return str(raw)[:50]
    return raw


@pytest.mark.timeout(60)
@fuzz(120)
@given(document=profile_bytes())
def test_fuzz_profile_files(tmp_path_factory: pytest.TempPathFactory, document: tuple[str, bytes]) -> None:
    suffix, content = document
    path = tmp_path_factory.getbasetemp() / f"profile{suffix}"
    path.write_bytes(content)
    try:
        outcome: Profile | Exception = load_profile(str(path))
    except ChaosMeshQAError as exc:
        outcome = exc
    assert_profile_outcome(None, outcome, ("traffic", "chaosmesh_qa_traffic"))


@pytest.mark.timeout(60)
@fuzz(80)
@given(profile=st.one_of(profiles, st.none()), host=st.one_of(st.none(), texts.filter(lambda t: "http" not in t)),
       wait=st.one_of(st.just(True), scalars))
def test_fuzz_start_traffic_starts_nothing(nowhere: dict[str, Any], profile: Any, host: Any, wait: Any) -> None:
    """Bad input or no target: refused before any Locust process starts (no run directory appears)."""
    if isinstance(profile, dict):
        profile = {**profile, "host": "http://127.0.0.1:9"} if "host" in profile else profile  # loopback only
    try:
        traffic_actions.start_traffic(profile=profile, host=host, wait_ready=wait, configuration=nowhere)
    except ChaosMeshQAError as exc:
        assert isinstance(exc, InvalidArgument | TargetUnavailable), exc
        assert len(str(exc).splitlines()) == 1, exc
    else:
        traffic_actions.stop_traffic(nowhere)
        pytest.fail("traffic started without a target")
    assert not Path(nowhere["chaosmesh_qa_timeline"] + ".locust").exists()


