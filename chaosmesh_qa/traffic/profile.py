"""Traffic profiles: load and validate what Locust should send, before anything starts.

Called by ``chaosmesh_qa.traffic.actions.start_traffic`` and the traffic control with the
experiment's ``configuration["chaosmesh_qa_traffic"]`` (a mapping, or the path of a YAML or
JSON file such as ``experiments/traffic/default.yaml``).  ``load_profile`` returns a
``Profile`` whose fields are all checked; any problem is one ``InvalidArgument`` line naming
the field (``traffic.rate_rps: expected a positive number, got 'fast'``).  The validated
profile travels to the Locust processes as JSON (``Profile.to_json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from chaosmesh_qa.errors import InvalidArgument

PROFILE_KEY = "chaosmesh_qa_traffic"
TIMELINE_KEY = "chaosmesh_qa_timeline"
DEFAULT_TIMELINE = "chaosmesh-qa-timeline.jsonl"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_USERS = 10_000
MAX_WORKERS = 64


@dataclass(frozen=True)
class Route:
    """One weighted request of the profile: ``method path`` with extra headers and a stats name."""

    path: str
    weight: float = 1.0
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True)
class Profile:
    """A validated traffic profile (see the README's traffic section for every key)."""

    users: int = 20
    spawn_rate: float | None = None  # users started per second; None: all users within one second
    rate_rps: float | None = None  # requests per second held constant; None: as fast as the users can
    paths: tuple[Route, ...] = (Route("/"),)
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    workers: int = 0
    expect_workers: int | None = None  # workers the master waits for (local + remote); default: workers
    master_bind_host: str = "127.0.0.1"
    master_port: int | None = None  # None: a free port
    warmup_s: float = 2.0
    ready_timeout_s: float = 30.0
    max_duration_s: float = 3600.0
    host: str | None = None  # None: the target's ingress URL

    @property
    def effective_spawn_rate(self) -> float:
        return self.spawn_rate if self.spawn_rate is not None else float(self.users)

    @property
    def effective_expect_workers(self) -> int:
        return self.expect_workers if self.expect_workers is not None else self.workers

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> Profile:
        """Rebuild a profile already validated by ``parse_profile`` (used inside Locust processes)."""
        raw = json.loads(text)
        raw["paths"] = tuple(Route(**route) for route in raw["paths"])
        return Profile(**raw)


KEYS = ("users", "spawn_rate", "rate_rps", "paths", "headers", "timeout_s", "connect_timeout_s", "workers",
        "expect_workers", "master_bind_host", "master_port", "warmup_s", "ready_timeout_s", "max_duration_s", "host")
ROUTE_KEYS = ("path", "weight", "method", "headers", "name")


def load_profile(source: Any, base_dir: Path | None = None) -> Profile:
    """A ``Profile`` from a mapping, a file path (YAML or JSON), or ``None`` (the defaults)."""
    if source is None:
        return Profile()
    if isinstance(source, str | Path):
        return parse_profile(read_profile_file(Path(source), base_dir))
    return parse_profile(source)


def read_profile_file(path: Path, base_dir: Path | None = None) -> Any:
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidArgument(f"{PROFILE_KEY}: cannot read traffic profile {str(path)!r} ({exc.strerror})") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgument(f"{PROFILE_KEY}: {path}: not valid YAML/JSON ({first})") from None


def parse_profile(raw: Any) -> Profile:
    """Validate every key of a profile mapping; the first problem is raised as one line."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"traffic: expected a mapping of profile keys, got {_show(raw)}")
    for key in raw:
        if key not in KEYS:
            raise InvalidArgument(f"traffic.{key}: unknown key (expected one of {', '.join(KEYS)})")
    users = _whole("traffic.users", raw.get("users", Profile.users), 1, MAX_USERS)
    workers = _whole("traffic.workers", raw.get("workers", 0), 0, MAX_WORKERS)
    expect = raw.get("expect_workers")
    if expect is not None:
        expect = _whole("traffic.expect_workers", expect, 1, MAX_WORKERS)
        if expect < workers:
            raise InvalidArgument(f"traffic.expect_workers: must be >= workers ({workers}), got {expect}")
    if workers and users < max(workers, expect or 0):
        raise InvalidArgument(f"traffic.users: must be at least the number of workers ({max(workers, expect or 0)}), "
                              f"got {users}")
    timeout_s = _positive("traffic.timeout_s", raw.get("timeout_s", Profile.timeout_s), 600)
    connect_s = _positive("traffic.connect_timeout_s", raw.get("connect_timeout_s", Profile.connect_timeout_s), 600)
    master_port = raw.get("master_port")
    if master_port is not None:
        master_port = _whole("traffic.master_port", master_port, 1, 65535)
    return Profile(
        users=users,
        spawn_rate=_optional(raw, "spawn_rate", lambda v: _positive("traffic.spawn_rate", v, MAX_USERS)),
        rate_rps=_optional(raw, "rate_rps", lambda v: _positive("traffic.rate_rps", v, 1_000_000)),
        paths=_routes(raw.get("paths", ["/"])),
        headers=_headers("traffic.headers", raw.get("headers", {})),
        timeout_s=timeout_s,
        connect_timeout_s=connect_s,
        workers=workers,
        expect_workers=expect,
        master_bind_host=_text("traffic.master_bind_host", raw.get("master_bind_host", Profile.master_bind_host)),
        master_port=master_port,
        warmup_s=_non_negative("traffic.warmup_s", raw.get("warmup_s", Profile.warmup_s), 3600),
        ready_timeout_s=_positive("traffic.ready_timeout_s", raw.get("ready_timeout_s", Profile.ready_timeout_s),
                                  3600),
        max_duration_s=_positive("traffic.max_duration_s", raw.get("max_duration_s", Profile.max_duration_s), 86_400),
        host=_optional(raw, "host", lambda v: check_url("traffic.host", v)),
    )


def check_url(field_name: str, value: Any) -> str:
    """An ``http(s)://host[:port]`` URL without path, query or fragment, returned without a trailing slash."""
    text = _text(field_name, value)
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise InvalidArgument(f"{field_name}: invalid port in {text!r}") from None
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"{field_name}: expected an http:// or https:// URL, got {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidArgument(f"{field_name}: expected a base URL without path or query, got {text!r} "
                              "(put paths under traffic.paths)")
    return text.rstrip("/")


# --------------------------------------------------------------------------- field checks


def _routes(value: Any) -> tuple[Route, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidArgument(f"traffic.paths: expected a non-empty list of paths, got {_show(value)}")
    routes = []
    for index, item in enumerate(value):
        where = f"traffic.paths[{index}]"
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, Mapping):
            raise InvalidArgument(f"{where}: expected a path string or a mapping with 'path', got {_show(item)}")
        for key in item:
            if key not in ROUTE_KEYS:
                raise InvalidArgument(f"{where}.{key}: unknown key (expected one of {', '.join(ROUTE_KEYS)})")
        if "path" not in item:
            raise InvalidArgument(f"{where}.path: required")
        path = item["path"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidArgument(f"{where}.path: must be a string starting with '/', got {_show(path)}")
        if any(c.isspace() for c in path):
            raise InvalidArgument(f"{where}.path: must not contain whitespace, got {_show(path)}")
        weight = _positive(f"{where}.weight", item.get("weight", 1), 1_000_000)
        method = item.get("method", "GET")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise InvalidArgument(f"{where}.method: expected one of {', '.join(METHODS)}, got {_show(method)}")
        name = item.get("name")
        if name is not None:
            name = _text(f"{where}.name", name)
        routes.append(Route(path=path, weight=weight, method=method.upper(),
                            headers=_headers(f"{where}.headers", item.get("headers", {})), name=name))
    return tuple(routes)


def _headers(field_name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{field_name}: expected a mapping of header names to strings, got {_show(value)}")
    headers = {}
    for name, header_value in value.items():
        if not isinstance(name, str) or not name or any(c.isspace() or c == ":" for c in name):
            raise InvalidArgument(f"{field_name}: invalid header name {_show(name)}")
        if isinstance(header_value, bool) or not isinstance(header_value, str | int | float):
            raise InvalidArgument(f"{field_name}.{name}: expected a string, got {_show(header_value)} "
                                  "(quote YAML booleans: \"true\")")
        text = str(header_value)
        if "\r" in text or "\n" in text:
            raise InvalidArgument(f"{field_name}.{name}: must not contain line breaks")
        headers[name] = text
    return headers


def _optional(raw: Mapping[str, Any], key: str, check: Any) -> Any:
    value = raw.get(key)
    return None if value is None else check(value)


def _number(field_name: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{field_name}: expected {what}, got {_show(value)}")
    return float(value)


def _positive(field_name: str, value: Any, high: float) -> float:
    number = _number(field_name, value, "a positive number")
    if not 0 < number <= high:
        raise InvalidArgument(f"{field_name}: expected a positive number (at most {high:g}), got {_show(value)}")
    return number


def _non_negative(field_name: str, value: Any, high: float) -> float:
    number = _number(field_name, value, "a number >= 0")
    if not 0 <= number <= high:
        raise InvalidArgument(f"{field_name}: expected a number in [0, {high:g}], got {_show(value)}")
    return number


def _whole(field_name: str, value: Any, low: int, high: int) -> int:
    number = _number(field_name, value, f"a whole number in [{low}, {high}]")
    if number != int(number) or not low <= number <= high:
        raise InvalidArgument(f"{field_name}: expected a whole number in [{low}, {high}], got {_show(value)}")
    return int(number)


def _text(field_name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{field_name}: expected a non-empty string, got {_show(value)}")
    return value.strip()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
