"""``GET pods/{name}/log``: a container's log, read from the files the sandbox keeps, as a kubelet serves it.

The sandbox appends each container's stdout and stderr to one file per container (``Sandbox.container_log``),
across restarts in place, and notes the byte offset where each instance of the container began: the current
instance is the last stretch of the file, the previous one the stretch before it.  Kubernetes' containers are
``app`` and ``istio-proxy`` (the sandbox's ``envoy``).

The files carry no time per line, so ``LogClock`` plays the container runtime's part: ``observe`` (called every
100 ms by ``server``) stamps each stretch of a file that grew with the time it was first seen; what a file held
when first observed gets its modification time.  A line's time is therefore when it was written, up to 100 ms
late; it drives ``timestamps``, ``sinceSeconds`` and ``sinceTime``.

The options, their checks and their wording follow the API server (``pkg/registry/core/pod``: the container
must be named when a pod has several; ``ValidatePodLogOptions``) and the kubelet (``validateContainerLogStatus``:
no previous instance, a container still waiting to start), in that order; ``tailLines`` applies before the
``since`` filter and ``limitBytes`` to the output, as the kubelet's reader does.  ``follow`` streams the current
instance until it is replaced or its pod goes, for at most ``MAX_FOLLOW_S``.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaosmesh_qa.emulation.kubeapi.status import ApiError

if TYPE_CHECKING:
    from chaosmesh_qa.emulation.kubeapi.sandbox import Sandbox

SANDBOX_CONTAINERS = {"app": "app", "istio-proxy": "envoy"}  # Kubernetes container name -> the sandbox's
FOLLOW_POLL_S = 0.2
MAX_FOLLOW_S = 1800.0
MAX_MARKS = 100_000  # per file: the oldest stamps go first (their lines then read as older than they are)


@dataclass(frozen=True)
class LogOptions:
    """``PodLogOptions`` from the query string."""

    container: str | None = None
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    since: float | None = None  # epoch seconds (sinceSeconds or sinceTime): lines at or after it
    tail_lines: int | None = None
    limit_bytes: int | None = None


def _flag(query: Mapping[str, str], key: str) -> bool:
    """Kubernetes' query booleans: absent, ``0`` and ``false`` are false; anything else (even empty) is true."""
    return key in query and query[key].lower() not in ("0", "false")


def _integer(query: Mapping[str, str], key: str) -> int | None:
    if key not in query:
        return None
    try:
        return int(query[key], 10)
    except ValueError:
        raise ApiError(400, "BadRequest", f'strconv.ParseInt: parsing "{query[key]}": invalid syntax') from None


def _rfc3339(text: str) -> float:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiError(400, "BadRequest", f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse '
                                          f'"{text}" as a time') from None


def parse_options(query: Mapping[str, str], pod: str, now: float) -> LogOptions:
    """The options of a log request, checked as the API server checks them (400 unparsable, 422 invalid)."""
    tail, limit, since_seconds = (_integer(query, k) for k in ("tailLines", "limitBytes", "sinceSeconds"))
    since_time = _rfc3339(query["sinceTime"]) if "sinceTime" in query else None
    causes: list[dict[str, str]] = []  # as field.ErrorList: reason, field, message

    def invalid(field: str, value: int, detail: str) -> None:
        causes.append({"reason": "FieldValueInvalid", "message": f"Invalid value: {value}: {detail}", "field": field})

    if tail is not None and tail < 0:
        invalid("tailLines", tail, "must be greater than or equal to 0")
    if limit is not None and limit < 1:
        invalid("limitBytes", limit, "must be greater than 0")
    if since_seconds is not None and since_time is not None:
        causes.append({"reason": "FieldValueForbidden", "field": "",
                       "message": "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"})
    elif since_seconds is not None and since_seconds < 1:
        invalid("sinceSeconds", since_seconds, "must be greater than 0")
    if causes:
        errors = [f"{c['field']}: {c['message']}" if c["field"] else c["message"] for c in causes]
        what = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
        raise ApiError(422, "Invalid", f'PodLogOptions "{pod}" is invalid: {what}',
                       {"name": pod, "kind": "PodLogOptions", "causes": causes})
    since = now - since_seconds if since_seconds is not None else since_time
    return LogOptions(container=query.get("container") or None, follow=_flag(query, "follow"),
                      previous=_flag(query, "previous"), timestamps=_flag(query, "timestamps"), since=since,
                      tail_lines=tail, limit_bytes=limit)


def choose_container(pod: dict[str, Any], requested: str | None) -> str:
    """The container a log request means (the API server's check: no default among several containers)."""
    spec, name = pod.get("spec", {}), pod["metadata"]["name"]
    containers = [c["name"] for c in spec.get("containers", [])]
    every = [c["name"] for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key, [])]
    if requested is None:
        if len(containers) == 1:
            return containers[0]
        if not containers:
            raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}")
        raise ApiError(400, "BadRequest",
                       f"a container name must be specified for pod {name}, choose one of: [{' '.join(every)}]")
    if requested not in every:
        raise ApiError(400, "BadRequest", f"container {requested} is not valid for pod {name}")
    return requested


def rfc3339_nano(epoch: float) -> str:
    """The kubelet's timestamp prefix: UTC, nine fractional digits (``RFC3339NanoFixed``)."""
    seconds = int(epoch)
    nanos = round((epoch - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    whole = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


class FileStamps:
    """When each stretch of one log file was first seen: marks (size, epoch) with increasing sizes."""

    def __init__(self) -> None:
        self.marks: list[tuple[int, float]] = []

    def observe(self, path: Path, now: float) -> None:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return
        if self.marks and stat.st_size < self.marks[-1][0]:  # truncated or replaced: start over
            self.marks.clear()
        if not self.marks:
            if stat.st_size:
                self.marks.append((stat.st_size, min(stat.st_mtime, now)))
        elif stat.st_size > self.marks[-1][0]:
            self.marks.append((stat.st_size, now))
            if len(self.marks) > MAX_MARKS:
                del self.marks[:len(self.marks) - MAX_MARKS]

    def time_of(self, end: int, now: float) -> float:
        """When the byte before offset ``end`` was first seen (``now`` if not yet)."""
        i = bisect.bisect_left(self.marks, end, key=lambda mark: mark[0])
        return self.marks[i][1] if i < len(self.marks) else now


@dataclass(frozen=True)
class Segment:
    """The stretch of a log file one instance of a container wrote: [start, end), ``end`` None for open."""

    path: Path
    start: int
    end: int | None
    begun: tuple[int, float]  # the instance's start mark (identifies it while following)


class LogClock:
    """The emulation's container runtime for logs: time stamps for every running pod's log files."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.files: dict[Path, FileStamps] = {}

    def observe(self) -> None:
        """Stamp what every running container's log file gained since the last call; forget gone pods."""
        now, seen = time.time(), set()
        for pod in list(self.sandbox.pods):
            for container in SANDBOX_CONTAINERS.values():
                log = self.sandbox.container_log(pod, container)
                if log is None or not log.starts:
                    continue
                seen.add(log.path)
                self.files.setdefault(log.path, FileStamps()).observe(log.path, now)
        for path in [p for p in self.files if p not in seen]:
            del self.files[path]

    def segment(self, pod: dict[str, Any], container: str, previous: bool) -> Segment:
        """The stretch of the log a request reads: the current instance, or with ``previous`` the one before
        (the last one, if the container is not running now); the kubelet's refusals otherwise."""
        name = pod["metadata"]["name"]
        log = self.sandbox.container_log(name, SANDBOX_CONTAINERS.get(container, container))
        starts = log.starts if log is not None else ()
        statuses: list[dict[str, Any]] = pod.get("status", {}).get("containerStatuses", [])
        status = next((s for s in statuses if s["name"] == container), {})
        running = "running" in status.get("state", {})
        if log is None or not starts:
            if previous:
                raise ApiError(400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" '
                                                  f"not found")
            reason = status.get("state", {}).get("waiting", {}).get("reason", "ContainerCreating")
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: '
                                              f"{reason}")
        if not previous or not running:
            return Segment(log.path, starts[-1][0], None, starts[-1])
        if len(starts) < 2:
            raise ApiError(400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" '
                                              f"not found")
        return Segment(log.path, starts[-2][0], starts[-1][0], starts[-2])

    def _stamps(self, path: Path, now: float) -> FileStamps:
        stamps = self.files.setdefault(path, FileStamps())
        stamps.observe(path, now)
        return stamps

    def read(self, segment: Segment, options: LogOptions) -> tuple[bytes, int]:
        """The rendered log of ``segment`` (tail, since, timestamps, limit) and the offset read up to."""
        now = time.time()
        stamps = self._stamps(segment.path, now)
        data = _read(segment.path, segment.start, segment.end)
        lines = _lines(data, segment.start)
        if options.tail_lines is not None:
            lines = lines[max(len(lines) - options.tail_lines, 0):] if options.tail_lines else []
        out = _render(lines, stamps, options, now)
        if options.limit_bytes is not None:
            out = out[:options.limit_bytes]
        return out, segment.start + len(data)

    async def follow(self, pod: str, container: str, segment: Segment, offset: int, options: LogOptions,
                     budget: int | None, closing: Callable[[], bool]) -> AsyncIterator[bytes]:
        """What the instance of ``segment`` writes after ``offset``, complete lines as they come, until it is
        replaced or its pod goes (then the rest), ``budget`` bytes are sent, ``closing()`` or ``MAX_FOLLOW_S``."""
        deadline = time.monotonic() + MAX_FOLLOW_S
        pending = b""
        while budget is None or budget > 0:
            await asyncio.sleep(FOLLOW_POLL_S)
            log = self.sandbox.container_log(pod, SANDBOX_CONTAINERS.get(container, container))
            over = log is None or segment.begun not in log.starts or log.starts[-1] != segment.begun \
                or closing() or time.monotonic() > deadline
            end = None
            if log is not None and segment.begun in log.starts and log.starts[-1] != segment.begun:
                end = log.starts[log.starts.index(segment.begun) + 1][0]  # up to where the next instance began
            data = pending + _read(segment.path, offset, end)
            offset += len(data) - len(pending)
            cut = len(data) if over else data.rfind(b"\n") + 1
            pending, data = data[cut:], data[:cut]
            if data:
                now = time.time()
                out = _render(_lines(data, offset - len(data) - len(pending)), self._stamps(segment.path, now),
                              options, now)
                if budget is not None:
                    out, budget = out[:budget], budget - len(out[:budget])
                yield out
            if over:
                return


def _read(path: Path, start: int, end: int | None) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            return handle.read() if end is None else handle.read(max(end - start, 0))
    except FileNotFoundError:
        return b""


def _lines(data: bytes, start: int) -> list[tuple[bytes, int]]:
    """``data`` (read from offset ``start``) as lines with their end offsets; a last partial line included."""
    parts = data.split(b"\n")
    pieces = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    lines, offset = [], start
    for line in pieces:
        offset += len(line)
        lines.append((line, offset))
    return lines


def _render(lines: list[tuple[bytes, int]], stamps: FileStamps, options: LogOptions, now: float) -> bytes:
    out = []
    for line, end in lines:
        at = stamps.time_of(end, now)
        if options.since is not None and at < options.since:
            continue
        out.append(f"{rfc3339_nano(at)} ".encode() + line if options.timestamps else line)
    return b"".join(out)
