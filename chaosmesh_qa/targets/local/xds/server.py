"""The ADS server: every Envoy of the sandbox gets its configuration over one gRPC stream.

Aggregated Discovery Service, state-of-the-world variant, on an owner-only Unix socket in
the state directory (``<state>/xds/ads.sock``), served inside the supervisor's event loop
with ``grpc.aio``.  Each Envoy opens one stream, names itself (``node.id`` = pod name) and
subscribes to clusters and listeners (wildcard) and to the routes and endpoints those name.

Pushes are incremental:

* clusters and listeners are answered whole (the protocol wants every one of them in each
  response), but only to nodes whose set changed, by version per node and type;
* routes and endpoints are answered per resource: a response carries only the resources
  whose content differs from what that stream was last sent (Envoy keeps the others), so
  a partition or a pod kill sends one small ``ClusterLoadAssignment`` to the callers
  concerned and nothing to anybody else.

A rejected response (NACK) is logged and kept in ``rejections``; Envoy keeps serving its
previous configuration.  Started and stopped by the supervisor; resources come from
``xds.store.ConfigStore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The supervisor forks its children with a pre-exec hook (processes.spawn); gRPC's fork handlers
# would run in each child between fork and exec, and aborted some of them (SIGABRT).  Off, before
# grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from chaosmesh_qa.targets.local.xds.resources import TYPES, WILDCARD, ResourceError, pack
from chaosmesh_qa.targets.local.xds.store import ConfigStore

log = logging.getLogger("chaosmesh_qa.xds")
SOCKET_MODE = 0o600


@dataclass(eq=False)  # hashed by identity: one per gRPC stream
class _Stream:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    node: str = ""
    subscribed: dict[str, frozenset[str]] = field(default_factory=dict)  # type -> requested names
    sent_versions: dict[str, int] = field(default_factory=dict)  # wildcard types: node version last sent
    sent_digests: dict[str, dict[str, str]] = field(default_factory=dict)  # named types: name -> digest
    closed: bool = False


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, store: ConfigStore, socket: Path) -> None:
        self.store = store
        self.socket = socket
        self.pushes: dict[str, int] = {}  # responses sent, per node (tests check incrementality)
        self.rejections: dict[str, str] = {}  # node -> Envoy's last NACK message
        self._streams: dict[str, set[_Stream]] = {}
        self._nonces = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        store.on_change(self._changed)

    async def start(self) -> None:
        self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{self.socket}")
        await server.start()
        os.chmod(self.socket, SOCKET_MODE)
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0)
            self._server = None
        self.socket.unlink(missing_ok=True)

    def connected(self) -> set[str]:
        return {node for node, streams in self._streams.items() if streams}

    def describe(self) -> dict[str, Any]:
        """For the supervisor's status: who is connected, how many pushes, what Envoy refused."""
        return {"socket": str(self.socket), "connected": len(self.connected()),
                "pushes": sum(self.pushes.values()), "rejections": dict(self.rejections)}

    # ------------------------------------------------------------------ the stream

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: Any,
    ) -> None:
        stream = _Stream()
        reader = asyncio.create_task(self._read(stream, context))
        try:
            while True:
                await stream.wake.wait()
                stream.wake.clear()
                if stream.closed:
                    break
                for response in self._responses(stream):
                    await context.write(response)
                    self.pushes[stream.node] = self.pushes.get(stream.node, 0) + 1
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if stream.node:
                self._streams.get(stream.node, set()).discard(stream)

    async def _read(self, stream: _Stream, context: Any) -> None:
        try:
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    break
                self._on_request(stream, request)
        except (grpc.aio.AioRpcError, grpc.RpcError, ConnectionError) as exc:
            log.debug("xds stream of %s ended: %s", stream.node or "?", exc)
        finally:
            stream.closed = True
            stream.wake.set()

    def _on_request(self, stream: _Stream, request: discovery_pb2.DiscoveryRequest) -> None:
        if not stream.node and request.node.id:
            stream.node = request.node.id
            self._streams.setdefault(stream.node, set()).add(stream)
        if request.error_detail.message:  # a NACK: Envoy keeps its previous configuration
            message = f"{request.type_url.rsplit('.', 1)[-1]}: {request.error_detail.message}"
            self.rejections[stream.node] = message
            log.error("envoy %s rejected configuration: %s", stream.node, message)
        names = frozenset(request.resource_names)
        if stream.subscribed.get(request.type_url) != names:
            stream.subscribed[request.type_url] = names
            sent = stream.sent_digests.setdefault(request.type_url, {})
            for name in set(sent) - names:  # unsubscribed: send again if asked again
                del sent[name]
            stream.wake.set()

    def _responses(self, stream: _Stream) -> list[discovery_pb2.DiscoveryResponse]:
        responses = []
        for type_url in TYPES:
            if type_url not in stream.subscribed or not self.store.has_node(stream.node):
                continue
            version, resources = self.store.view(stream.node, type_url)
            if type_url in WILDCARD:
                if stream.sent_versions.get(type_url) == version:
                    continue
                chosen = list(resources.values())
                stream.sent_versions[type_url] = version
            else:
                sent = stream.sent_digests.setdefault(type_url, {})
                chosen = [resources[n] for n in sorted(stream.subscribed[type_url])
                          if n in resources and sent.get(n) != resources[n].digest]
                if not chosen:
                    continue
                for resource in chosen:
                    sent[resource.name] = resource.digest
            try:
                packed = [pack(type_url, r.document, r.digest)[1] for r in chosen]
            except ResourceError as exc:
                log.error("cannot serve %s to %s: %s", type_url, stream.node, exc)
                self.rejections[stream.node] = str(exc)
                continue
            responses.append(discovery_pb2.DiscoveryResponse(
                version_info=str(version), type_url=type_url, nonce=str(next(self._nonces)), resources=packed))
        return responses

    def _changed(self, nodes: set[str], type_url: str) -> None:
        for node in nodes:
            for stream in self._streams.get(node, ()):
                stream.wake.set()
