"""Envoy resources as protobuf: the control plane's JSON documents turned into ``Any`` messages.

The builders under ``envoy/`` write Envoy's v3 API as JSON (``@type`` names the message of
every typed field).  ``pack`` parses such a document with Envoy's own protobuf definitions
(the ``xds-protos`` package) into the ``google.protobuf.Any`` an xDS response carries.  An
unknown field or type is an error here, as ``--reject-unknown-dynamic-fields`` makes it in
Envoy.  Parsing is cached by content: replicas and callers share most documents.  Called by
``xds.server``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
from typing import Any

from google.protobuf import any_pb2, json_format, symbol_database
from google.protobuf.message import Message

TYPE_PREFIX = "type.googleapis.com/"
LISTENER = f"{TYPE_PREFIX}envoy.config.listener.v3.Listener"
CLUSTER = f"{TYPE_PREFIX}envoy.config.cluster.v3.Cluster"
ROUTE = f"{TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration"
ENDPOINT = f"{TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment"
# The order Envoy wants them in a fresh subscription: clusters (and their endpoints) before listeners.
TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
WILDCARD = frozenset({LISTENER, CLUSTER})  # state of the world: every response holds them all

_CACHE_LIMIT = 20_000
_loaded_packages: set[str] = set()
_cache: dict[str, tuple[str, any_pb2.Any]] = {}


class ResourceError(ValueError):
    """A document that Envoy's protobuf definitions do not accept (names the resource and why)."""


def _load_message(full_name: str) -> type[Message]:
    """The generated class of ``full_name``, importing its package's ``*_pb2`` modules on first use."""
    database = symbol_database.Default()
    try:
        return database.GetSymbol(full_name)
    except KeyError:
        pass
    package = full_name.rsplit(".", 1)[0]
    if package not in _loaded_packages:
        _loaded_packages.add(package)
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise ResourceError(f"unknown type {full_name}") from None
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if info.name.endswith("_pb2"):
                importlib.import_module(f"{package}.{info.name}")
    try:
        return database.GetSymbol(full_name)
    except KeyError:
        raise ResourceError(f"unknown type {full_name}") from None


def _load_types(document: Any) -> None:
    """Make every ``@type`` named inside ``document`` known to the default descriptor pool."""
    if isinstance(document, dict):
        type_url = document.get("@type")
        if isinstance(type_url, str) and type_url.startswith(TYPE_PREFIX):
            _load_message(type_url[len(TYPE_PREFIX):])
        for value in document.values():
            _load_types(value)
    elif isinstance(document, list):
        for value in document:
            _load_types(value)


def pack(type_url: str, document: dict[str, Any], digest: str | None = None) -> tuple[str, any_pb2.Any]:
    """``(digest, Any)`` for one resource document (JSON without its own ``@type``).

    ``digest``, when the caller has one (``xds.store.Resource.digest``), names the content and
    saves serialising the document again to look it up.
    """
    if digest is None:
        blob = json.dumps(document, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(blob.encode()).hexdigest()[:20]
    key = f"{type_url} {digest}"
    cached = _cache.get(key)
    if cached is not None:
        return cached
    message_class = _load_message(type_url[len(TYPE_PREFIX):])
    _load_types(document)
    message = message_class()
    try:
        json_format.ParseDict(document, message)
    except json_format.ParseError as exc:
        name = document.get("name") or document.get("cluster_name") or "?"
        raise ResourceError(f"{type_url.rsplit('.', 1)[-1]} {name}: {exc}") from None
    packed = any_pb2.Any()
    packed.Pack(message)
    result = (digest, packed)
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[key] = result
    return result


def name_of(type_url: str, document: dict[str, Any]) -> str:
    return str(document["cluster_name"] if type_url == ENDPOINT else document["name"])
