"""Zipkin's protobuf span list read into the JSON v2 shape, from bytes written by hand with the field numbers of
Zipkin's published zipkin.proto (so the declaration in zipkin_proto cannot agree with itself by construction), and
the collector taking it over HTTP with the Content-Type Envoy's HTTP_PROTO reporter sends."""

from __future__ import annotations

import asyncio
import socket
import struct

import aiohttp
import pytest

from chaosmesh_qa.targets.local.tracing.collector import PROTOBUF, TraceCollector
from chaosmesh_qa.targets.local.tracing.zipkin_proto import spans_from_protobuf


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _len(number: int, payload: bytes) -> bytes:  # wire type 2: length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _span_bytes(parent: bytes = b"") -> bytes:
    return b"".join([
        _len(1, bytes.fromhex("0af7651916cd43dd8448eb211c80319c")),  # trace_id, 16 bytes
        _len(2, parent) if parent else b"",
        _len(3, bytes.fromhex("b7ad6b7169203331")),  # id
        _varint(4 << 3) + _varint(2),  # kind SERVER
        _len(5, b"catalog.default.svc.cluster.local:9080/*"),
        _varint(6 << 3 | 1) + struct.pack("<Q", 1_765_000_000_123_456),  # timestamp, fixed64
        _varint(7 << 3) + _varint(1500),  # duration
        _len(8, _len(1, b"catalog")),  # local_endpoint.service_name
        _len(9, _len(1, b"frontend")),  # remote_endpoint: not kept
        _len(11, _len(1, b"http.status_code") + _len(2, b"503")),
        _len(11, _len(1, b"node_id") + _len(2, b"catalog-v1-abc")),
    ])


def test_a_hand_encoded_list_of_spans_reads_as_zipkin_json() -> None:
    body = _len(1, _span_bytes()) + _len(1, _span_bytes(parent=bytes.fromhex("00000000000000ff")))
    root, child = spans_from_protobuf(body)
    assert root == {"traceId": "0af7651916cd43dd8448eb211c80319c", "id": "b7ad6b7169203331", "kind": "SERVER",
                    "name": "catalog.default.svc.cluster.local:9080/*", "timestamp": 1_765_000_000_123_456,
                    "duration": 1500, "localEndpoint": {"serviceName": "catalog"},
                    "tags": {"http.status_code": "503", "node_id": "catalog-v1-abc"}}
    assert child["parentId"] == "00000000000000ff"
    assert spans_from_protobuf(b"") == []


def test_bytes_that_are_not_a_list_of_spans_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="ListOfSpans"):
        spans_from_protobuf(b"\x0a\xff")  # a length past the end


def test_the_collector_keeps_protobuf_reports_and_refuses_broken_ones() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])

    async def scenario() -> tuple[int, int, dict[str, object]]:
        collector = TraceCollector()
        await collector.start(port)
        try:
            async with aiohttp.ClientSession() as http:
                url = f"{collector.url}/api/v2/spans"
                async with http.post(url, data=_len(1, _span_bytes()), headers={"content-type": PROTOBUF}) as good:
                    pass
                async with http.post(url, data=b"\x0a\xff", headers={"content-type": PROTOBUF}) as bad:
                    pass
                return good.status, bad.status, collector.describe()
        finally:
            await collector.close()

    good, bad, described = asyncio.run(scenario())
    assert (good, bad) == (202, 400)
    assert described["spans"] == 1 and described["received"] == 1
