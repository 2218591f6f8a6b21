"""``pods/log`` of the Kubernetes API emulation (chaosmesh_qa/emulation/kubeapi/logs.py), without processes.

The options and refusals are checked against the API server's and the kubelet's wording; the log
itself against files laid out as the sandbox keeps them (one file per container, each restart appended,
``starts`` marking where each instance began).  Against a real sandbox, kubectl and the python client:
tests/emulation/kubeapi/test_kubectl.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chaosmesh_qa.emulation.kubeapi import parse_forbid
from chaosmesh_qa.emulation.kubeapi.logs import (
    FileStamps,
    LogClock,
    LogOptions,
    choose_container,
    parse_options,
    rfc3339_nano,
)
from chaosmesh_qa.emulation.kubeapi.resources import resource_list
from chaosmesh_qa.emulation.kubeapi.status import ApiError

POD = "catalog-v1-abc123"


@dataclass
class Log:
    path: Path
    starts: tuple[tuple[int, float], ...]


@dataclass
class FakeSandbox:
    """What ``LogClock`` reads of a sandbox: its running pods and their containers' logs."""

    root: Path
    logs: dict[tuple[str, str], Log] = field(default_factory=dict)

    @property
    def pods(self) -> dict[str, Any]:
        return {pod: None for pod, _ in self.logs}

    def container_log(self, pod: str, container: str) -> Log | None:
        return self.logs.get((pod, container))

    def start(self, pod: str, container: str, at: float) -> Path:
        """A new instance of the container: it writes from the file's current end."""
        path = self.root / pod / f"{container}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        old = self.logs.get((pod, container))
        self.logs[(pod, container)] = Log(path, (*(old.starts if old else ()), (path.stat().st_size, at)))
        return path


def pod_object(name: str = POD, app_running: bool = True) -> dict[str, Any]:
    state = {"running": {}} if app_running else {"waiting": {"reason": "CrashLoopBackOff"}}
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
            "status": {"containerStatuses": [{"name": "app", "state": state},
                                             {"name": "istio-proxy", "state": {"running": {}}}]}}


def refusal(call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value


def clock(sandbox: FakeSandbox) -> LogClock:
    return LogClock(sandbox)  # type: ignore[arg-type]  # the fake has all LogClock reads, not all of Sandbox


# ---------------------------------------------------------------------------------------------- options


def test_query_booleans_read_as_kubernetes_reads_them() -> None:
    for value, expected in (("true", True), ("1", True), ("", True), ("yes", True), ("false", False),
                            ("FALSE", False), ("0", False)):
        assert parse_options({"timestamps": value}, POD, 0).timestamps is expected, value
    assert parse_options({}, POD, 0) == LogOptions()


def test_numbers_that_do_not_parse_are_a_bad_request() -> None:
    error = refusal(parse_options, {"tailLines": "ten"}, POD, 0)
    assert (error.code, error.reason, error.message) == (400, "BadRequest",
                                                         'strconv.ParseInt: parsing "ten": invalid syntax')


def test_out_of_range_options_are_invalid_pod_log_options_with_causes() -> None:
    error = refusal(parse_options, {"tailLines": "-1"}, POD, 0)
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == f'PodLogOptions "{POD}" is invalid: tailLines: Invalid value: -1: must be greater than ' \
                            f"or equal to 0"
    both = refusal(parse_options, {"limitBytes": "0", "sinceSeconds": "0"}, POD, 0)
    assert both.message == (f'PodLogOptions "{POD}" is invalid: [limitBytes: Invalid value: 0: must be greater than 0, '
                            f"sinceSeconds: Invalid value: 0: must be greater than 0]")
    assert [c["field"] for c in both.details["causes"]] == ["limitBytes", "sinceSeconds"]
    exclusive = refusal(parse_options, {"sinceSeconds": "5", "sinceTime": "2030-01-01T00:00:00Z"}, POD, 0)
    assert exclusive.message.endswith("Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified")


def test_since_seconds_and_since_time_become_one_instant() -> None:
    assert parse_options({"sinceSeconds": "30"}, POD, 1000.0).since == 970.0
    assert parse_options({"sinceTime": "1970-01-01T00:16:40Z"}, POD, 0).since == 1000.0
    assert parse_options({"container": ""}, POD, 0).container is None  # the python client's "no container"


def test_a_pod_of_several_containers_needs_one_named() -> None:
    error = refusal(choose_container, pod_object(), None)
    assert (error.code, error.reason) == (400, "BadRequest")
    assert error.message == f"a container name must be specified for pod {POD}, choose one of: [app istio-proxy]"
    assert refusal(choose_container, pod_object(), "sidecar").message == f"container sidecar is not valid for pod {POD}"
    assert choose_container(pod_object(), "istio-proxy") == "istio-proxy"
    single = {"metadata": {"name": "one"}, "spec": {"containers": [{"name": "main"}]}}
    assert choose_container(single, None) == "main"


def test_timestamps_are_the_kubelets_fixed_nanosecond_rfc3339() -> None:
    assert rfc3339_nano(0) == "1970-01-01T00:00:00.000000000Z"
    assert rfc3339_nano(1.5) == "1970-01-01T00:00:01.500000000Z"
    assert rfc3339_nano(59.9999999999) == "1970-01-01T00:01:00.000000000Z"


def test_discovery_lists_pods_log_and_the_rbac_hook_accepts_it() -> None:
    core = resource_list("", "v1")
    assert core is not None
    entry = next(r for r in core["resources"] if r["name"] == "pods/log")
    assert entry["verbs"] == ["get"] and entry["kind"] == "Pod" and entry["namespaced"]
    assert parse_forbid("get:pods/log") == "get:pods/log"


# ---------------------------------------------------------------------------------------------- the log


def test_current_and_previous_instances_are_stretches_of_one_file(tmp_path: Path) -> None:
    box = FakeSandbox(tmp_path)
    path = box.start(POD, "app", 100.0)
    path.write_bytes(b"first start\nfirst crash\n")
    box.start(POD, "app", 200.0)
    with open(path, "ab") as log:
        log.write(b"second start\n")
    logs = clock(box)
    current = logs.segment(pod_object(), "app", previous=False)
    assert logs.read(current, LogOptions())[0] == b"second start\n"
    previous = logs.segment(pod_object(), "app", previous=True)
    assert logs.read(previous, LogOptions())[0] == b"first start\nfirst crash\n"
    # a container that is not running now: its previous instance is the last one, as the kubelet says
    assert logs.read(logs.segment(pod_object(app_running=False), "app", previous=True), LogOptions())[0] == \
        b"second start\n"


def test_the_kubelets_refusals(tmp_path: Path) -> None:
    box = FakeSandbox(tmp_path)
    box.start(POD, "envoy", 100.0)
    logs = clock(box)
    no_previous = refusal(logs.segment, pod_object(), "istio-proxy", True)
    assert (no_previous.code, no_previous.message) == (
        400, f'previous terminated container "istio-proxy" in pod "{POD}" not found')
    waiting = refusal(logs.segment, pod_object(app_running=False), "app", False)
    assert waiting.message == f'container "app" in pod "{POD}" is waiting to start: CrashLoopBackOff'


def test_tail_since_timestamps_and_limit_apply_in_the_kubelets_order(tmp_path: Path) -> None:
    box = FakeSandbox(tmp_path)
    path = box.start(POD, "app", 100.0)
    path.write_bytes(b"one\ntwo\n")
    os.utime(path, (1000.0, 1000.0))  # what the file held when first seen is stamped with its mtime
    logs = clock(box)
    logs.observe()
    with open(path, "ab") as log:
        log.write(b"three\nfour")  # a partial last line is served too
    before = time.time()
    logs.observe()
    segment = logs.segment(pod_object(), "app", False)
    text, offset = logs.read(segment, LogOptions(timestamps=True))
    lines = text.decode().split("\n")
    assert lines[:2] == [f"{rfc3339_nano(1000.0)} one", f"{rfc3339_nano(1000.0)} two"]
    assert lines[2].endswith(" three") and lines[3].endswith(" four") and offset == path.stat().st_size
    assert lines[2].split()[0] >= rfc3339_nano(before - 0.001)
    assert logs.read(segment, LogOptions(tail_lines=2))[0] == b"three\nfour"
    assert logs.read(segment, LogOptions(tail_lines=0))[0] == b""
    assert logs.read(segment, LogOptions(since=before - 1))[0] == b"three\nfour"  # one and two are older
    assert logs.read(segment, LogOptions(tail_lines=3, since=before - 1))[0] == b"three\nfour"
    assert logs.read(segment, LogOptions(limit_bytes=5))[0] == b"one\nt"


def test_stamps_are_first_seen_times_and_start_over_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"a\n")
    os.utime(path, (50.0, 50.0))
    stamps = FileStamps()
    stamps.observe(path, 60.0)
    path.write_bytes(b"a\nb\n")
    stamps.observe(path, 70.0)
    assert [stamps.time_of(2, 99.0), stamps.time_of(4, 99.0), stamps.time_of(6, 99.0)] == [50.0, 70.0, 99.0]
    path.write_bytes(b"")  # truncated: start over
    stamps.observe(path, 80.0)
    assert stamps.marks == []


def test_follow_streams_until_the_instance_is_replaced(tmp_path: Path) -> None:
    box = FakeSandbox(tmp_path)
    path = box.start(POD, "app", 100.0)
    path.write_bytes(b"up\n")
    logs = clock(box)
    segment = logs.segment(pod_object(), "app", False)
    first, offset = logs.read(segment, LogOptions())

    async def follow() -> list[bytes]:
        chunks: list[bytes] = []

        async def writer() -> None:
            await asyncio.sleep(0.3)
            with open(path, "ab") as log:
                log.write(b"serving\npartial")
            await asyncio.sleep(0.5)
            with open(path, "ab") as log:
                log.write(b" line\n")
            box.start(POD, "app", 300.0)  # restarted: the follow ends, the new instance is not streamed
            with open(path, "ab") as log:
                log.write(b"next instance\n")

        task = asyncio.get_running_loop().create_task(writer())
        async with asyncio.timeout(10):
            async for chunk in logs.follow(POD, "app", segment, offset, LogOptions(), None, lambda: False):
                chunks.append(chunk)
        await task
        return chunks

    chunks = asyncio.run(follow())
    assert first == b"up\n" and b"".join(chunks) == b"serving\npartial line\n"
    assert b"partial" not in chunks[0]  # only complete lines while the instance runs


def test_follow_stops_at_its_byte_budget_and_when_the_server_closes(tmp_path: Path) -> None:
    box = FakeSandbox(tmp_path)
    path = box.start(POD, "app", 100.0)
    logs = clock(box)
    segment = logs.segment(pod_object(), "app", False)

    async def follow(budget: int | None, closing: bool) -> bytes:
        out = b""
        async with asyncio.timeout(5):
            with open(path, "ab") as log:
                log.write(b"0123456789\n")
            async for chunk in logs.follow(POD, "app", segment, 0, LogOptions(), budget, lambda: closing):
                out += chunk
        return out

    assert asyncio.run(follow(4, False)) == b"0123"
    assert asyncio.run(follow(None, True)) == b"0123456789\n0123456789\n"
