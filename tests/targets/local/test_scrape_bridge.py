"""The scrape bridge (targets/local/scrape_bridge.py): Envoys' first scrapes pushed into Prometheus until its own
scrape loops have them, with the series Prometheus's own scrapes write, and a clean handover."""

from __future__ import annotations

import re
import struct
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from chaosmesh_qa.targets.local.prometheus import JOBS, ScrapeTarget
from chaosmesh_qa.targets.local.scrape_bridge import STALE_NAN, parse_exposition, series, snappy_literal, write_request
from tests.support.sandbox import Sandbox

ENVOY_PAGE = """# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="outbound|9080||reviews"} 12
envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="inbound"} 7
envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="outbound"} 5
envoy_server_uptime 3
weird{a="q\\"uote",b="back\\\\slash",job="x"} +Inf
"""


def _snappy_decode(data: bytes) -> bytes:  # literals only: what snappy_literal writes
    length, shift, i = 0, 0, 0
    while True:
        length |= (data[i] & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if not data[i - 1] & 0x80:
            break
    out = bytearray()
    while i < len(data):
        tag = data[i] >> 2
        assert data[i] & 3 == 0, "a literal"
        extra = tag - 59 if tag >= 60 else 0
        n = (int.from_bytes(data[i + 1:i + 1 + extra], "little") if extra else tag) + 1
        i += 1 + extra
        out += data[i:i + n]
        i += n
    assert len(out) == length
    return bytes(out)


def test_the_exposition_is_read_with_escapes_and_infinities() -> None:
    samples = parse_exposition(ENVOY_PAGE)
    assert ("envoy_server_uptime", {}, 3.0) in samples
    assert samples[-1] == ("weird", {"a": 'q"uote', "b": "back\\slash", "job": "x"}, float("inf"))
    assert len(samples) == 5  # the comment is not a sample


def test_a_job_writes_the_series_prometheus_would() -> None:
    envoy = next(j for j in JOBS if j.name == "envoy")
    found = series(envoy, ScrapeTarget(4711, {"pod": "frontend-v1-1", "service": "frontend"}), ENVOY_PAGE)
    by_name = {dict(labels)["__name__"]: dict(labels) for labels in found}
    assert by_name["envoy_server_uptime"] == {"__name__": "envoy_server_uptime", "job": "envoy",
                                              "instance": "127.0.0.1:4711", "pod": "frontend-v1-1",
                                              "service": "frontend"}
    assert by_name["weird"]["exported_job"] == "x" and by_name["weird"]["job"] == "envoy"  # honor_labels: false
    inbound = [dict(labels) for labels in found if dict(labels)["__name__"] == "envoy_http_downstream_rq_xx"]
    assert [s["envoy_http_conn_manager_prefix"] for s in inbound] == ["outbound"]  # the job's drop rule
    assert all(list(labels) == sorted(labels) for labels in found)  # sorted by name, as remote write wants


@pytest.mark.parametrize("size", [0, 1, 60, 61, 256, 257, 65536, 70000])
def test_snappy_literals_decode_to_the_input(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    assert _snappy_decode(snappy_literal(data[:size])) == data[:size]


def test_a_write_request_carries_labels_value_and_timestamp() -> None:
    body = write_request({(("__name__", "up"), ("job", "envoy")): STALE_NAN}, 1_700_000_000_123)
    assert b"\x0a\x08__name__\x12\x02up" in body and b"\x0a\x03job\x12\x05envoy" in body
    sample = body[body.index(b"\x09"):]
    assert struct.unpack("<Q", sample[1:9])[0] == 0x7FF0000000000002  # the staleness marker's exact bits
    assert sample[9] == 0x10


def _rfc3339_s(text: str) -> float:  # Prometheus's lastScrape, nanoseconds and zone included
    whole, _, rest = text.partition(".")
    fraction = re.match(r"\d*", rest)
    assert fraction is not None
    zone = rest[fraction.end():] if rest else whole[19:]
    base = datetime.fromisoformat(whole[:19] + (zone.replace("Z", "+00:00") or "+00:00"))
    return base.timestamp() + float(f"0.{fraction.group() or 0}")


def _prometheus_self_metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


@pytest.mark.processes
def test_bridged_series_reach_prometheus_and_its_own_scrapes_take_over(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "state")
    box.up()
    try:
        deadline = time.monotonic() + 20  # the supervisor's own bound for metrics_ready
        while not (status := box.status())["metrics_ready"] and time.monotonic() < deadline:
            time.sleep(0.05)
        url = status["prometheus_url"]
        query = f"{url}/api/v1/query"
        expected = 2 * (len(status["pods"]) + 1)  # both jobs, every pod and the gateway
        assert status["metrics_ready"], status.get("metrics_error")
        up = httpx.get(query, params={"query": "up == 1"}, timeout=5).json()["data"]["result"]
        assert len(up) == expected

        # the wire format, against the real receiver: a pushed sample reads back with its labels and value
        now_ms = int(time.time() * 1000)
        pushed = write_request({(("__name__", "bridge_test_total"), ("job", "test")): 42.5}, now_ms)
        reply = httpx.post(f"{url}/api/v1/write", content=snappy_literal(pushed), timeout=5,
                           headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"})
        assert reply.status_code == 204, reply.text
        back = httpx.get(query, params={"query": "bridge_test_total"}, timeout=5).json()["data"]["result"]
        assert [(r["metric"], r["value"][1]) for r in back] == [({"__name__": "bridge_test_total", "job": "test"},
                                                                  "42.5")]

        # Prometheus's own loops get every target on its discovery tick (5 s after it started); bounded like above
        targets = f"{url}/api/v1/targets"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            active = httpx.get(targets, timeout=5).json()["data"]["activeTargets"]
            if len(active) == expected and all(t["health"] == "up" for t in active):
                break
            time.sleep(0.2)
        assert all(t["health"] == "up" for t in active) and len(active) == expected, active
        taken_over = time.time()
        deadline = time.monotonic() + 10  # ten of its 1 s scrape intervals
        while time.monotonic() < deadline:  # then one more of Prometheus's own scrapes of each, after that moment
            active = httpx.get(targets, timeout=5).json()["data"]["activeTargets"]
            if all(_rfc3339_s(t["lastScrape"]) > taken_over for t in active):
                break
            time.sleep(0.2)
        late = [t["scrapeUrl"] for t in active if _rfc3339_s(t["lastScrape"]) <= taken_over]
        assert not late, f"not scraped by Prometheus itself since {taken_over}: {late}"
        # every series in the store (the bridge's included) is one Prometheus's own scrapes write too: the window
        # is evaluated at the moment it is measured to (not when the query arrives, which may be later)
        at = time.time()
        ever = httpx.get(f"{url}/api/v1/series", params={"match[]": '{job=~"envoy.*"}', "start": status["started_at"],
                                                         "end": at}, timeout=5).json()["data"]
        window = f"{int((at - taken_over) * 1000)}ms"
        fresh = httpx.get(query, params={"query": f'{{job=~"envoy.*"}}[{window}]', "time": at},
                          timeout=5).json()["data"]["result"]
        never = {tuple(sorted(s.items())) for s in ever} - {tuple(sorted(r["metric"].items())) for r in fresh}
        assert not never, f"{len(never)} series only the bridge wrote, for example {sorted(never)[:3]}"
        # and the bridge never made one of Prometheus's own samples out of order (its own pushes yield instead)
        assert _prometheus_self_metric(url, "prometheus_target_scrapes_sample_out_of_order_total") == 0
        assert _prometheus_self_metric(url, "prometheus_target_scrapes_sample_duplicate_timestamp_total") == 0
    finally:
        box.down()
