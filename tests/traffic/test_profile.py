"""Traffic profile validation: each bad input is one line naming the field, and nothing starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.errors import ChaosMeshQAError, InvalidArgument, TargetUnavailable
from chaosmesh_qa.traffic import actions
from chaosmesh_qa.traffic.profile import Profile, Route, load_profile, parse_profile
from tests.support.traffic import closed_port, marked_processes, traffic_marker

ROOT = Path(__file__).parents[2]

BAD: list[tuple[dict[str, Any], str]] = [
    ({"userz": 5}, "traffic.userz: expected a profile key (one of users, "),
    ({"users": -1}, "traffic.users: expected a whole number in [1, 10000], got -1"),
    ({"users": 2.5}, "traffic.users: expected a whole number"),
    ({"users": 2.0}, "traffic.users: expected a whole number in [1, 10000], got 2.0"),
    ({"users": "ten"}, "traffic.users: expected a whole number in [1, 10000], got 'ten'"),
    ({"users": 10**400}, "traffic.users: expected a whole number in [1, 10000], got an integer of about 401 digits"),
    ({"rate_rps": "fast"}, "traffic.rate_rps: expected a number in (0, 1000000], got 'fast'"),
    ({"rate_rps": -5}, "traffic.rate_rps: expected a number in (0, 1000000], got -5"),
    ({"rate_rps": 0}, "traffic.rate_rps: expected a number in (0, 1000000]"),
    ({"rate_rps": True}, "traffic.rate_rps: expected a number in (0, 1000000], got True"),
    ({"rate_rps": float("nan")}, "traffic.rate_rps: expected a number in (0, 1000000], got nan"),
    ({"rate_rps": 10**400}, "traffic.rate_rps: expected a number in (0, 1000000], got an integer of"),
    ({"spawn_rate": -1}, "traffic.spawn_rate: expected a number in (0, 10000]"),
    ({"paths": ["items"]}, "traffic.paths[0].path: expected a path starting with '/'"),
    ({"paths": [{"path": "/", "weight": 1}, {"path": "reviews"}]}, "traffic.paths[1].path: expected a path"),
    ({"paths": ["/a\0b"]}, "traffic.paths[0].path: expected a path starting with '/'"),
    ({"paths": ["/a b"]}, "traffic.paths[0].path: expected a path starting with '/'"),
    ({"paths": [{"path": "/", "weight": 0}]}, "traffic.paths[0].weight: expected a number in (0, 1000000]"),
    ({"paths": [{"path": "/", "weight": -2}]}, "traffic.paths[0].weight: expected a number in (0, 1000000]"),
    ({"paths": [{"path": "/", "weight": "heavy"}]}, "traffic.paths[0].weight: expected a number in (0, 1000000], got"),
    ({"paths": [{"path": "/", "wieght": 2}]}, "traffic.paths[0].wieght: expected a route key"),
    ({"paths": [{"weight": 2}]}, "traffic.paths[0].path: required"),
    ({"paths": []}, "traffic.paths: expected a non-empty list"),
    ({"paths": [{"path": "/", "method": "FETCH"}]}, "traffic.paths[0].method: expected one of"),
    ({"headers": {"x-canary": True}}, "traffic.headers.x-canary: expected a string of printable ASCII"),
    ({"headers": {"x-canary": "a\0b"}}, "traffic.headers.x-canary: expected a string of printable ASCII"),
    ({"headers": {"x canary": "true"}}, "traffic.headers: expected header names that are HTTP tokens"),
    ({"headers": {"x\0": "true"}}, "traffic.headers: expected header names that are HTTP tokens"),
    ({"headers": ["x-canary"]}, "traffic.headers: expected a mapping"),
    ({"timeout_s": 0}, "traffic.timeout_s: expected a number in (0, 600]"),
    ({"timeout_s": float("inf")}, "traffic.timeout_s: expected a number in (0, 600], got inf"),
    ({"connect_timeout_s": "1s"}, "traffic.connect_timeout_s: expected a number in (0, 600], got '1s'"),
    ({"workers": -1}, "traffic.workers: expected a whole number in [0, 64]"),
    ({"workers": 4, "users": 2}, "traffic.users: expected at least the number of workers (4), got 2"),
    ({"workers": 2, "expect_workers": 1}, "traffic.expect_workers: expected a number >= workers (2), got 1"),
    ({"warmup_s": -1}, "traffic.warmup_s: expected a number in [0, 3600]"),
    ({"host": "127.0.0.1:8080"}, "traffic.host: expected an http:// or https:// base URL"),
    ({"host": "http://127.0.0.1:8080/api"}, "traffic.host: expected an http:// or https:// base URL such as "
                                           "'http://127.0.0.1:8080', without path or query"),
    ({"host": "http://[::1"}, "traffic.host: expected an http:// or https:// base URL"),
    ({"host": "http://127.0.0.1\n:8080"}, "traffic.host: expected an http:// or https:// base URL"),
    ({"host": "http://local host:8080"}, "traffic.host: expected an http:// or https:// base URL"),
    ({"host": "http://127.0.0.1:0"}, "traffic.host: expected an http:// or https:// base URL such as "
                                    "'http://127.0.0.1:8080', with a port in [1, 65535]"),
    ({"host": "http://user@127.0.0.1:80"}, "traffic.host: expected an http:// or https:// base URL"),
    ({"master_bind_host": "not a host"}, "traffic.master_bind_host: expected an IP address or a host name"),
    ({"master_bind_host": "*"}, "traffic.master_bind_host: expected an IP address or a host name"),
    ({"master_port": 0}, "traffic.master_port: expected a whole number in [1, 65535]"),
    ({"max_duration_s": 10**9}, "traffic.max_duration_s: expected a number in (0, 86400]"),
    ({"\n": 1}, "traffic['\\n']: expected a profile key"),
]


@pytest.mark.parametrize(("raw", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_profile_is_one_line_naming_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_profile(raw)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_profile_not_a_mapping() -> None:
    with pytest.raises(InvalidArgument, match=r"^traffic: expected a mapping of profile keys, got \['users', 5\]$"):
        parse_profile(["users", 5])


def test_defaults_and_full_profile() -> None:
    assert parse_profile({}) == Profile()
    profile = parse_profile({"users": 50, "spawn_rate": 25, "rate_rps": 200.5, "workers": 2,
                             "paths": ["/", {"path": "/", "weight": 0.5, "headers": {"x-canary": "true"},
                                             "name": "canary", "method": "get"}],
                             "headers": {"x-team": "qa"}, "timeout_s": 1, "host": "http://127.0.0.1:8080/"})
    assert profile.paths == (Route("/"), Route("/", 0.5, "GET", {"x-canary": "true"}, "canary"))
    assert profile.host == "http://127.0.0.1:8080"
    assert Profile.from_json(profile.to_json()) == profile


def test_shipped_profile_file_is_valid() -> None:
    profile = load_profile(str(ROOT / "experiments" / "traffic" / "default.yaml"))
    assert profile.rate_rps == 200 and profile.users == 50
    assert any(route.headers == {"x-canary": "true"} for route in profile.paths)


def test_profile_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"^chaosmesh_qa_traffic: cannot read traffic profile"):
        load_profile(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("users: [1\n")
    with pytest.raises(InvalidArgument, match=r"^chaosmesh_qa_traffic: .*broken.yaml: not valid YAML"):
        load_profile(str(broken))
    bad = tmp_path / "bad.json"
    bad.write_text('{"rate_rps": "fast"}')
    with pytest.raises(InvalidArgument, match=r"^traffic.rate_rps: expected a number in \(0, 1000000\], got 'fast'$"):
        load_profile(str(bad))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"headers: {x-team: caf\xe9}\n")
    with pytest.raises(InvalidArgument, match=r"^chaosmesh_qa_traffic: .*latin1.yaml: not UTF-8 text \(byte 21\)$"):
        load_profile(str(latin1))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidArgument, match=r"^chaosmesh_qa_traffic: .*deep.json: nested too deeply$"):
        load_profile(str(deep))
    with pytest.raises(InvalidArgument, match=r"^chaosmesh_qa_traffic: expected a file system path"):
        load_profile("a\0b.yaml")


@pytest.mark.parametrize(("profile", "host", "error", "message"), [
    ({"rate_rps": "fast"}, None, InvalidArgument, "traffic.rate_rps: expected a number in (0, 1000000], got 'fast'"),
    ({"paths": ["nope"]}, None, InvalidArgument, "traffic.paths[0].path: expected a path starting with '/'"),
    ({}, "unreachable", TargetUnavailable, "traffic.host: cannot connect to http://127.0.0.1:"),
], ids=["rate", "path", "unreachable-host"])
def test_start_traffic_refuses_bad_input_before_starting_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: dict[str, Any], host: str | None,
        error: type[ChaosMeshQAError], message: str) -> None:
    marker = traffic_marker(monkeypatch)
    url = f"http://127.0.0.1:{closed_port()}" if host == "unreachable" else "http://127.0.0.1:9"
    configuration = {"chaosmesh_qa_timeline": str(tmp_path / "timeline.jsonl")}
    with pytest.raises(error) as caught:
        actions.start_traffic(profile={**profile, "host": url}, configuration=configuration)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert not marked_processes(marker)
    assert not (tmp_path / "timeline.jsonl").exists()
    assert not (tmp_path / "timeline.jsonl.locust").exists()
