"""The supervisor's control API: its routes on the sandbox's Unix socket, request bodies, one-line JSON errors.

The supervisor (``supervisor.Supervisor.run``) calls ``serve`` first thing; every route answers JSON, every failure
``{"error": one line}`` (``one_line_errors``); ``SandboxClient``
(``sandbox``) turns the answers back into the project's exceptions: 400 is
``FaultRejected``, 503 (the target cannot do it now) and 500 (a bug, logged with its
traceback in the supervisor's log) are ``TargetUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from chaosmesh_qa.errors import ChaosMeshQAError, FaultRejected, InvalidArgument, error_line
from chaosmesh_qa.targets.local.leases import TEST_HOOKS_ENV

if TYPE_CHECKING:
    from chaosmesh_qa.targets.local.faults import FaultManager

log = logging.getLogger("chaosmesh_qa.supervisor")


class Controlled(Protocol):
    """What the control API reads and drives: the supervisor."""

    state: str
    faults: FaultManager
    shutdown_requested: asyncio.Event

    def status(self) -> dict[str, Any]: ...


async def json_body(request: web.Request) -> dict[str, Any]:
    """A control request's JSON object body (none: an empty one); anything else is rejected."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise FaultRejected("request: body is not JSON") from None
    if not isinstance(body, dict):
        raise FaultRejected("request: body is not a JSON object")
    return body


@web.middleware
async def one_line_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every control API failure is a JSON ``{"error": one line}``: 400 rejected, 503 unavailable, 500 a bug."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (FaultRejected, InvalidArgument) as exc:
        return web.json_response({"error": error_line(exc)}, status=400)
    except ChaosMeshQAError as exc:
        return web.json_response({"error": error_line(exc)}, status=503)
    except Exception as exc:
        log.exception("control API %s %s failed", request.method, request.path)
        return web.json_response({"error": f"sandbox error: {error_line(exc)}"}, status=500)


async def serve(sandbox: Controlled, socket: Path) -> web.AppRunner:
    """The control API of ``sandbox`` on the Unix socket ``socket`` (the owner's alone: 0600); its runner."""
    api = _Routes(sandbox)
    app = web.Application(middlewares=[one_line_errors])
    app.router.add_get("/status", api.status)
    app.router.add_post("/shutdown", api.shutdown)
    app.router.add_post("/faults", api.inject)
    app.router.add_get("/faults", api.faults)
    app.router.add_get("/faults/history", api.fault_history)
    app.router.add_post("/faults/heal", api.heal)
    if os.environ.get(TEST_HOOKS_ENV) == "1":  # tests only: see leases' module docstring
        app.router.add_post("/debug/fail-change", api.fail_change)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    socket.unlink(missing_ok=True)
    await web.UnixSite(runner, str(socket)).start()
    os.chmod(socket, 0o600)
    return runner


class _Routes:
    def __init__(self, sandbox: Controlled) -> None:
        self.sandbox = sandbox

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.sandbox.status())

    async def inject(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        if self.sandbox.state != "ready":
            return web.json_response({"error": f"sandbox is {self.sandbox.state}"}, status=409)
        kind, parameters, owner, ttl_s = (body.get("kind"), body.get("parameters") or {}, body.get("owner", "unknown"),
                                          body.get("ttl_s"))
        if not isinstance(kind, str) or not isinstance(parameters, dict) or not isinstance(owner, str):
            raise FaultRejected("request: expected kind (string), parameters (mapping) and owner (string)")
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
            raise FaultRejected(f"duration_s: expected a number of seconds, got {ttl_s!r}")
        return web.json_response(await self.sandbox.faults.inject(kind, parameters, owner, float(ttl_s)))

    async def faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.sandbox.faults.active())

    async def fault_history(self, request: web.Request) -> web.Response:
        return web.json_response(self.sandbox.faults.history(request.query.get("owner")))

    async def heal(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        return web.json_response(await self.sandbox.faults.heal(body.get("fault_id"), body.get("owner")))

    async def fail_change(self, request: web.Request) -> web.Response:
        """Test hook: the next fault's N-th change fails before it is applied (``{"change": N}``)."""
        change = (await json_body(request)).get("change")
        if isinstance(change, bool) or not isinstance(change, int) or change < 1:
            raise FaultRejected(f"change: expected a whole number >= 1, got {change!r}")
        self.sandbox.faults.book.fail_change_at = change
        return web.json_response({"fail_change_at": change})

    async def shutdown(self, request: web.Request) -> web.Response:
        self.sandbox.shutdown_requested.set()
        return web.json_response({"state": "stopping"})
