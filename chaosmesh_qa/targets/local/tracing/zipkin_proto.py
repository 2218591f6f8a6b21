"""Zipkin's protobuf span list (``zipkin.proto3.ListOfSpans``) read into the JSON v2 shape.

The sandbox's Envoys report their spans as protobuf (``collector_endpoint_version: HTTP_PROTO``,
``targets.local.envoy.tracing``): Envoy's JSON encoder builds each span through protobuf's JSON
printer on the worker thread, and a flush of 50 spans held that worker for 7-8 ms, the sidecar's p99
tail (docs/explanation/envoy-notes.md).  ``tracing.collector.TraceCollector`` calls
``spans_from_protobuf`` for a POST whose body is protobuf; it returns the spans as the JSON v2 API
writes them (hex ids, ``kind`` by name, ``localEndpoint.serviceName``, ``tags``), so the store and
every reader see one shape whichever encoding a reporter chose.

The messages are declared here with protobuf's descriptor API in a private pool, with the field
numbers of Zipkin's published ``zipkin.proto`` (package ``zipkin.proto3``): no generated code is
vendored, and only the fields the collector keeps are read.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

_PACKAGE = "zipkin.proto3"
_Field = descriptor_pb2.FieldDescriptorProto
KINDS = ("SPAN_KIND_UNSPECIFIED", "CLIENT", "SERVER", "PRODUCER", "CONSUMER")


def _add(message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: int, *,
         repeated: bool = False, type_name: str = "") -> None:
    label = _Field.LABEL_REPEATED if repeated else _Field.LABEL_OPTIONAL
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:  # set only for messages and enums: an empty one is "set" too
        field.type_name = type_name


def _file() -> descriptor_pb2.FileDescriptorProto:
    """The subset of zipkin.proto that Envoy writes and the collector reads (unknown fields are skipped)."""
    file = descriptor_pb2.FileDescriptorProto(name="chaosmesh_qa/zipkin.proto", package=_PACKAGE, syntax="proto3")
    endpoint = file.message_type.add(name="Endpoint")
    _add(endpoint, "service_name", 1, _Field.TYPE_STRING)
    span = file.message_type.add(name="Span")
    kind = span.enum_type.add(name="Kind")
    for number, name in enumerate(KINDS):
        kind.value.add(name=name, number=number)
    tags = span.nested_type.add(name="TagsEntry")
    tags.options.map_entry = True
    _add(tags, "key", 1, _Field.TYPE_STRING)
    _add(tags, "value", 2, _Field.TYPE_STRING)
    _add(span, "trace_id", 1, _Field.TYPE_BYTES)
    _add(span, "parent_id", 2, _Field.TYPE_BYTES)
    _add(span, "id", 3, _Field.TYPE_BYTES)
    _add(span, "kind", 4, _Field.TYPE_ENUM, type_name=f".{_PACKAGE}.Span.Kind")
    _add(span, "name", 5, _Field.TYPE_STRING)
    _add(span, "timestamp", 6, _Field.TYPE_FIXED64)
    _add(span, "duration", 7, _Field.TYPE_UINT64)
    _add(span, "local_endpoint", 8, _Field.TYPE_MESSAGE, type_name=f".{_PACKAGE}.Endpoint")
    _add(span, "tags", 11, _Field.TYPE_MESSAGE, repeated=True, type_name=f".{_PACKAGE}.Span.TagsEntry")
    listing = file.message_type.add(name="ListOfSpans")
    _add(listing, "spans", 1, _Field.TYPE_MESSAGE, repeated=True, type_name=f".{_PACKAGE}.Span")
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
ListOfSpans = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.ListOfSpans"))


def spans_from_protobuf(body: bytes) -> list[dict[str, Any]]:
    """Each span of a serialized ``ListOfSpans`` as a Zipkin v2 JSON object; ``ValueError`` if it does not parse."""
    listing = ListOfSpans()
    try:
        listing.ParseFromString(body)
    except DecodeError as error:
        raise ValueError(f"not a zipkin.proto3.ListOfSpans: {error}") from error
    return [_as_json(span) for span in listing.spans]


def _as_json(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": span.trace_id.hex(), "id": span.id.hex()}
    if span.parent_id:
        out["parentId"] = span.parent_id.hex()
    if span.kind:
        out["kind"] = KINDS[span.kind] if span.kind < len(KINDS) else str(span.kind)
    if span.name:
        out["name"] = span.name
    if span.timestamp:
        out["timestamp"] = span.timestamp
    if span.duration:
        out["duration"] = span.duration
    if span.local_endpoint.service_name:
        out["localEndpoint"] = {"serviceName": span.local_endpoint.service_name}
    if span.tags:
        out["tags"] = dict(span.tags)
    return out
