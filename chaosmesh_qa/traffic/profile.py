"""Traffic profiles: load and validate what Locust should send, before anything starts.

Called by ``chaosmesh_qa.traffic.actions.start_traffic`` and the traffic control with the
experiment's ``configuration["chaosmesh_qa_traffic"]`` (a mapping, or the path of a YAML or
JSON file such as ``experiments/traffic/default.yaml``: UTF-8, at most 1 MiB).  ``load_profile``
returns a ``Profile`` whose fields are all checked with ``chaosmesh_qa.checks``; any problem is one
``InvalidArgument`` line naming the field (``traffic.rate_rps: expected a number in (0, 1000000],
got 'fast'``).  Hosts are IP addresses or RFC 1123 host names, paths printable ASCII, header names
HTTP tokens and header values printable.  The validated profile travels to the Locust processes
as JSON (``Profile.to_json``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chaosmesh_qa import checks
from chaosmesh_qa.errors import InvalidArgument

PROFILE_KEY = "chaosmesh_qa_traffic"
TIMELINE_KEY = "chaosmesh_qa_timeline"
DEFAULT_TIMELINE = "chaosmesh-qa-timeline.jsonl"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_USERS = 10_000
MAX_WORKERS = 64
MAX_FILE_BYTES = 1 << 20
MAX_PATHS = 1000
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")  # an HTTP header name (RFC 9110 token)


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
    """A validated traffic profile (see docs/how-to/traffic.md (profile keys) for every key)."""

    users: int = 20
    spawn_rate: float | None = None  # users started per second; None: 100 a second, or all in 1 s past 100
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
        # by default 100 users a second (Locust warns beyond), all within 1 s past 100 users: 20 users used to take
        # 1 s, a ramp every experiment waited out before its warm-up (issue 23)
        return self.spawn_rate if self.spawn_rate is not None else float(max(self.users, 100))

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
        return parse_profile(read_profile_file(Path(checks.file_path(PROFILE_KEY, source)), base_dir))
    return parse_profile(source)


def read_profile_file(path: Path, base_dir: Path | None = None) -> Any:
    """The parsed YAML (or JSON, for ``*.json``) of a profile file; every reading problem is one line."""
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    shown = str(path)  # in full: a user needs the whole path (line breaks are escaped by the error)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidArgument(f"{PROFILE_KEY}: cannot read traffic profile {shown} "
                              f"({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidArgument(f"{PROFILE_KEY}: {shown}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{PROFILE_KEY}: {shown}: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except RecursionError:
        raise InvalidArgument(f"{PROFILE_KEY}: {shown}: nested too deeply") from None
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgument(f"{PROFILE_KEY}: {shown}: not valid YAML/JSON ({first})") from None


def parse_profile(raw: Any) -> Profile:
    """Validate every key of a profile mapping; the first problem is raised as one line."""
    if raw is None:
        raw = {}
    raw = checks.mapping("traffic", raw, "a mapping of profile keys")
    for key in raw:
        if key not in KEYS:
            checks.fail(checks.field("traffic", key), f"a profile key (one of {', '.join(KEYS)})", key)
    users = checks.whole("traffic.users", raw.get("users", Profile.users), 1, MAX_USERS)
    workers = checks.whole("traffic.workers", raw.get("workers", 0), 0, MAX_WORKERS)
    expect = raw.get("expect_workers")
    if expect is not None:
        expect = checks.whole("traffic.expect_workers", expect, 1, MAX_WORKERS)
        if expect < workers:
            checks.fail("traffic.expect_workers", f"a number >= workers ({workers})", expect)
    if workers and users < max(workers, expect or 0):
        checks.fail("traffic.users", f"at least the number of workers ({max(workers, expect or 0)})", users)
    master_port = raw.get("master_port")
    if master_port is not None:
        master_port = checks.whole("traffic.master_port", master_port, 1, 65535)
    return Profile(
        users=users,
        spawn_rate=_optional(raw, "spawn_rate", lambda v: checks.positive("traffic.spawn_rate", v, MAX_USERS)),
        rate_rps=_optional(raw, "rate_rps", lambda v: checks.positive("traffic.rate_rps", v, 1_000_000)),
        paths=_routes(raw.get("paths", ["/"])),
        headers=_headers("traffic.headers", raw.get("headers", {})),
        timeout_s=checks.positive("traffic.timeout_s", raw.get("timeout_s", Profile.timeout_s), 600),
        connect_timeout_s=checks.positive("traffic.connect_timeout_s",
                                          raw.get("connect_timeout_s", Profile.connect_timeout_s), 600),
        workers=workers,
        expect_workers=expect,
        master_bind_host=checks.host("traffic.master_bind_host",
                                     raw.get("master_bind_host", Profile.master_bind_host)),
        master_port=master_port,
        warmup_s=checks.non_negative("traffic.warmup_s", raw.get("warmup_s", Profile.warmup_s), 3600),
        ready_timeout_s=checks.positive("traffic.ready_timeout_s",
                                        raw.get("ready_timeout_s", Profile.ready_timeout_s), 3600),
        max_duration_s=checks.positive("traffic.max_duration_s",
                                       raw.get("max_duration_s", Profile.max_duration_s), 86_400),
        host=_optional(raw, "host", lambda v: check_url("traffic.host", v)),
    )


def check_url(field_name: str, value: Any) -> str:
    """An ``http(s)://host[:port]`` URL without user, path, query or fragment, returned without a trailing slash."""
    return checks.base_url(field_name, value)


# --------------------------------------------------------------------------- field checks


def _routes(value: Any) -> tuple[Route, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_PATHS:
        checks.fail("traffic.paths", f"a non-empty list of at most {MAX_PATHS} paths", value)
    routes = []
    for index, item in enumerate(value):
        where = f"traffic.paths[{index}]"
        if isinstance(item, str):
            item = {"path": item}
        item = checks.mapping(where, item, "a path string or a mapping with 'path'")
        for key in item:
            if key not in ROUTE_KEYS:
                checks.fail(checks.field(where, key), f"a route key (one of {', '.join(ROUTE_KEYS)})", key)
        if "path" not in item:
            raise InvalidArgument(f"{where}.path: required")
        path = item["path"]
        if (not isinstance(path, str) or not path.startswith("/") or len(path) > 2048
                or not all("!" <= c <= "~" for c in path)):
            checks.fail(f"{where}.path", "a path starting with '/' of at most 2048 printable ASCII characters, "
                        "no spaces (percent-encode others)", path)
        weight = checks.positive(f"{where}.weight", item.get("weight", 1), 1_000_000)
        method = item.get("method", "GET")
        if not isinstance(method, str) or method.upper() not in METHODS:
            checks.fail(f"{where}.method", f"one of {', '.join(METHODS)}", method)
        name = item.get("name")
        if name is not None:
            name = checks.text(f"{where}.name", name)
        routes.append(Route(path=path, weight=weight, method=method.upper(),
                            headers=_headers(f"{where}.headers", item.get("headers", {})), name=name))
    return tuple(routes)


def _headers(field_name: str, value: Any) -> dict[str, str]:
    value = checks.mapping(field_name, value, "a mapping of header names to strings")
    headers = {}
    for name, header_value in value.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            checks.fail(field_name, "header names that are HTTP tokens (letters, digits, '-', no spaces or ':')",
                        name)
        where = f"{field_name}.{name}"
        if isinstance(header_value, int | float) and checks.is_number(header_value) and abs(header_value) < 1e15:
            header_value = str(header_value)  # a YAML number: sent as its text
        if not isinstance(header_value, str) or len(header_value) > 8192 or not all(
                " " <= c <= "~" or c == "\t" for c in header_value):
            checks.fail(where, "a string of printable ASCII (quote YAML booleans: \"true\")", header_value)
        headers[name] = header_value
    return headers


def _optional(raw: Mapping[str, Any], key: str, check: Any) -> Any:
    value = raw.get(key)
    return None if value is None else check(value)
