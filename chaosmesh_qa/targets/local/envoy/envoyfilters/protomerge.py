"""Protobuf merge on JSON documents, driven by Envoy's own descriptors (``xds-protos``), as istiod's
``MergeAnyWithAny`` and pkg/proto/merge do; a patch value read as ``BuildXDSObjectFromStruct`` reads it.
Part of ``envoyfilters``, whose docstring says what istiod does and where.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from functools import cache
from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from chaosmesh_qa.targets.local.envoy.envoyfilters.model import JSON, MESSAGE_OF, IstiodPanic, Patch, Unresolvable


def clone(value: Any) -> Any:
    """A deep copy of a JSON document that shares nothing, even where the original shares a sub-document
    (``inbound_listener``'s filter chains share one HTTP connection manager: each is patched on its own)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clone(v) for v in value]
    return value



@cache
def descriptor(full_name: str) -> Descriptor:
    """Envoy's descriptor of ``full_name``, importing the ``xds-protos`` modules of its package on first use."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        pass
    parts = full_name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        package = ".".join(parts[:end])
        try:
            module = importlib.import_module(package)
        except ImportError:
            continue
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if info.name.endswith("_pb2"):
                importlib.import_module(f"{package}.{info.name}")
        break
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        raise Unresolvable(f"unknown type {full_name}") from None


def type_name(type_url: Any) -> str:
    return type_url.rsplit("/", 1)[-1] if isinstance(type_url, str) else ""


def _load_types(value: Any) -> None:
    if isinstance(value, dict):
        if isinstance(value.get("@type"), str):
            with contextlib.suppress(Unresolvable):  # the parser names it
                descriptor(type_name(value["@type"]))
        for item in value.values():
            _load_types(item)
    elif isinstance(value, list):
        for item in value:
            _load_types(item)


def read_patch_value(apply_to: str, value: Any) -> JSON:
    """The patch value as istiod reads it: its ``applyTo`` message, unknown fields ignored, snake_case, set
    fields only.  ValueError: it does not parse (what validation reports)."""
    if not isinstance(value, dict):
        raise ValueError(f"value must be an object, not {type(value).__name__}")
    _load_types(value)
    message = message_factory.GetMessageClass(descriptor(MESSAGE_OF[apply_to]))()
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        text = " ".join(str(exc).split())
        if "Can not find message descriptor by type_url" in text or "Invalid type url" in text:
            text = f"referenced type unknown: {text}"
        raise ValueError(text) from None
    return json_format.MessageToDict(message, preserving_proto_field_name=True, unquote_int64_if_possible=True)


_DURATIONS = ("google.protobuf.Duration", "google.protobuf.Timestamp")
_WRAPPERS = frozenset(f"google.protobuf.{n}Value" for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32",
                                                              "Bool", "String", "Bytes"))
_SPECIAL_JSON = frozenset({*_DURATIONS, *_WRAPPERS, "google.protobuf.Struct", "google.protobuf.Value",
                           "google.protobuf.ListValue", "google.protobuf.FieldMask", "google.protobuf.Empty",
                           "google.protobuf.Any"})


def _is_map(fd: FieldDescriptor) -> bool:
    return bool(fd.message_type is not None and fd.message_type.GetOptions().map_entry)


def _real_oneof_siblings(fd: FieldDescriptor) -> list[FieldDescriptor]:
    oneof = fd.containing_oneof
    if oneof is None or (len(oneof.fields) == 1 and oneof.name == f"_{fd.name}"):  # proto3 optional
        return []
    return [f for f in oneof.fields if f is not fd]


def snake(document: JSON, full_name: str) -> JSON:
    """``document`` with the lowerCamelCase field names Envoy's JSON allows renamed to their proto names."""
    with contextlib.suppress(Unresolvable):
        _snake_message(document, descriptor(full_name))
    return document


def _snake_message(document: JSON, desc: Descriptor) -> None:
    if desc.full_name in _SPECIAL_JSON:
        if desc.full_name == "google.protobuf.Any":
            _snake_any(document)
        return
    by_json = {f.json_name: f for f in desc.fields}
    for key in list(document):
        fd = desc.fields_by_name.get(key) or by_json.get(key)
        if fd is None:
            continue
        if fd.name != key and fd.name not in document:
            document[fd.name] = document.pop(key)
        value = document.get(fd.name)
        if fd.message_type is None:
            continue
        if _is_map(fd):
            inner = fd.message_type.fields_by_name["value"].message_type
            if inner is not None and isinstance(value, dict):
                for item in value.values():
                    _snake_value(item, inner)
        elif fd.is_repeated and isinstance(value, list):
            for item in value:
                _snake_value(item, fd.message_type)
        else:
            _snake_value(value, fd.message_type)


def _snake_value(value: Any, desc: Descriptor) -> None:
    if isinstance(value, dict):
        _snake_message(value, desc)


def _snake_any(document: JSON) -> None:
    try:
        inner = descriptor(type_name(document.get("@type")))
    except Unresolvable:
        return
    if inner.full_name not in _SPECIAL_JSON:
        _snake_message(document, inner)


def merge_message(dst: JSON, src: JSON, desc: Descriptor, replace_lists: bool) -> None:
    """Merge canonical ``src`` into ``dst`` (in place) as Istio's ``merge.Merge`` merges protobuf messages."""
    for key, value in src.items():
        fd = desc.fields_by_name.get(key)
        if fd is None:
            continue
        for sibling in _real_oneof_siblings(fd):  # setting a oneof member clears the others
            dst.pop(sibling.name, None)
            dst.pop(sibling.json_name, None)
        if fd.json_name in dst and fd.name not in dst:
            dst[fd.name] = dst.pop(fd.json_name)
        current = dst.get(fd.name)
        if _is_map(fd):
            entries = current if isinstance(current, dict) else {}
            entries.update(clone(value))  # a map entry is replaced, not merged
            dst[fd.name] = entries
        elif fd.is_repeated:
            items = current if isinstance(current, list) and not replace_lists else []
            dst[fd.name] = items + clone(value)
        elif fd.message_type is not None:
            dst[fd.name] = _merge_value(current, value, fd.message_type, replace_lists)
        else:
            dst[fd.name] = clone(value)


def _merge_value(current: Any, value: Any, desc: Descriptor, replace_lists: bool) -> Any:
    """One message-typed field: ``current`` (``dst``'s, or None) merged with the set ``value``."""
    name = desc.full_name
    if name in _DURATIONS:
        return value  # Istio replaces a Duration (and a Timestamp merges to the same)
    if name in _WRAPPERS:
        # a wrapper holding its default has no field set: merging it keeps what is there
        return current if current is not None and value in (0, "", "0", False) else value
    if name == "google.protobuf.Struct":
        return {**current, **clone(value)} if isinstance(current, dict) else clone(value)
    if name == "google.protobuf.ListValue":
        return (current if isinstance(current, list) and not replace_lists else []) + clone(value)
    if name == "google.protobuf.Value":
        if isinstance(value, dict):
            return {**current, **clone(value)} if isinstance(current, dict) else clone(value)
        if isinstance(value, list):
            return (current if isinstance(current, list) and not replace_lists else []) + clone(value)
        return value
    if name == "google.protobuf.FieldMask":
        return f"{current},{value}" if isinstance(current, str) and current and value else value
    if name == "google.protobuf.Empty":
        return current if isinstance(current, dict) else {}
    if name == "google.protobuf.Any":
        if any(k != "@type" for k in value):  # type_url and value bytes both replaced
            return clone(value)
        kept = {k: v for k, v in current.items() if k != "@type"} if isinstance(current, dict) else {}
        return {"@type": value.get("@type"), **kept}  # empty bytes are not set: only the type_url changes
    target = current if isinstance(current, dict) else {}
    merge_message(target, value, desc, replace_lists)
    return target


def merge_any_with_any(current: JSON, value: JSON, p: Patch) -> JSON:
    """Istio's ``MergeAnyWithAny``: two typed configs of one type merged; another type makes istiod panic."""
    ours, theirs = descriptor(type_name(current.get("@type"))), descriptor(type_name(value.get("@type")))
    if ours.full_name != theirs.full_name:
        raise IstiodPanic(f"{p.source}: MERGE of a {theirs.full_name} typed_config into a {ours.full_name} one")
    merged = clone(current)
    inner = {k: v for k, v in value.items() if k != "@type"}
    if ours.full_name in _SPECIAL_JSON:
        if "value" in inner:
            merged["value"] = _merge_value(merged.get("value"), inner["value"], ours, False)
        return merged
    merge_message(merged, inner, ours, False)
    return merged
