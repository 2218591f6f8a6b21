"""The built-in demo workload: one process per pod, started by the local sandbox's supervisor.

It serves its configured behaviour (added latency, error rate, response size), calls
its upstreams through its sidecar's outbound listener (sequentially or in parallel),
propagates trace headers, and answers JSON naming its service, version and pod, the
caller identity its sidecar saw (from ``x-forwarded-client-cert``), and the nested
responses of its upstreams: the call tree.  Configuration comes from the
``CHAOSMESH_APP`` environment variable (JSON), written by the supervisor.  Its log (stdout) is one
line once it listens (``started_line``): no access log, which would cost CPU under load.

Run as ``python -m chaosmesh_qa.apps.demo``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import ssl
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

TRACE_HEADERS = ("x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled",
                 "x-b3-flags", "b3", "traceparent", "tracestate", "baggage")
_XFCC_URI = re.compile(r"URI=([^;,]+)")
HEALTH_PATH = "/healthz"


def caller_identity(xfcc: str | None) -> str | None:
    """The client's SPIFFE id from the sidecar's x-forwarded-client-cert (SANITIZE_SET, uri)."""
    if not xfcc:
        return None
    match = _XFCC_URI.search(xfcc.split(",")[-1])
    return match.group(1).strip('"') if match else None


class DemoApp:
    def __init__(self, config: dict[str, Any]) -> None:
        self.service: str = config["service"]
        self.version: str = config["version"]
        self.pod: str = config["pod"]
        self.outbound_port: int = config["outbound_port"]
        behaviour = config.get("behaviour", {})
        self.calls: list[tuple[str, str]] = [(c[0], c[1]) for c in behaviour.get("calls", [])]
        self.parallel: bool = behaviour.get("parallel", False)
        self.latency_s: float = behaviour.get("latency_ms", 0.0) / 1000
        self.error_rate: float = behaviour.get("error_rate", 0.0)
        self.error_status: int = behaviour.get("error_status", 500)
        self.padding = "x" * int(behaviour.get("response_bytes", 0))
        self.propagate = (*TRACE_HEADERS, *behaviour.get("propagate_headers", []))
        self.upstream_timeout = ClientTimeout(total=config.get("upstream_timeout_s", 30.0))
        self.session: ClientSession | None = None

    async def start(self, app: web.Application) -> None:
        self.session = ClientSession(
            connector=TCPConnector(limit=0, force_close=False, keepalive_timeout=30),
            timeout=self.upstream_timeout, auto_decompress=False,
        )

    async def stop(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "pod": self.pod})

    async def handle(self, request: web.Request) -> web.Response:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        body: dict[str, Any] = {
            "service": self.service, "version": self.version, "pod": self.pod,
            "caller": caller_identity(request.headers.get("x-forwarded-client-cert")),
            "path": request.path_qs, "request_id": request.headers.get("x-request-id"),
        }
        if self.error_rate and random.random() < self.error_rate:
            body["status"] = self.error_status
            body["error"] = "injected by demo app behaviour"
            return web.json_response(body, status=self.error_status)
        headers = {k: v for k in self.propagate if (v := request.headers.get(k)) is not None}
        if self.parallel:
            upstreams = list(await asyncio.gather(*(self.call(s, p, headers) for s, p in self.calls)))
        else:
            upstreams = [await self.call(s, p, headers) for s, p in self.calls]
        failed = any(u["status"] >= 500 for u in upstreams)
        body["status"] = 502 if failed else 200
        body["upstreams"] = upstreams
        if self.padding:
            body["padding"] = self.padding
        return web.json_response(body, status=body["status"])

    async def call(self, service: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
        assert self.session is not None
        url = f"http://127.0.0.1:{self.outbound_port}{path}"
        try:
            async with self.session.get(url, headers={**headers, "Host": service}) as response:
                text = await response.text()
                try:
                    payload: dict[str, Any] = json.loads(text)
                except ValueError:
                    payload = {"service": service, "body": text[:200]}
                payload["status"] = response.status
                payload.pop("padding", None)
                return payload
        except (TimeoutError, OSError) as exc:  # aiohttp's client errors derive from OSError
            return {"service": service, "status": 599, "error": f"{type(exc).__name__}: {exc}"}


def build_app(config: dict[str, Any]) -> web.Application:
    demo = DemoApp(config)
    app = web.Application()
    app.on_startup.append(demo.start)
    app.on_cleanup.append(demo.stop)
    app.router.add_get(HEALTH_PATH, demo.health)
    app.router.add_route("*", "/{tail:.*}", demo.handle)
    return app


def started_line(config: dict[str, Any]) -> str:
    """The one line the app logs (stdout, the pod's app log) once it listens, as most servers do."""
    return (f"{config['service']} {config['version']} (pod {config['pod']}) serving on "
            f"http://127.0.0.1:{config['port']}")


def main() -> None:
    config = json.loads(os.environ["CHAOSMESH_APP"])
    tls = None
    if config.get("tls"):  # a ServiceEntry host's stand-in toward which the sidecars originate TLS (HTTPS)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(config["tls"]["cert"], config["tls"]["key"])
    web.run_app(build_app(config), host="127.0.0.1", port=int(config["port"]), ssl_context=tls,
                print=lambda _: print(started_line(config), flush=True),  # called once the site listens
                access_log=None, handle_signals=True, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
