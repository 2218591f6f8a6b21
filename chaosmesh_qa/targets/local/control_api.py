"""Plumbing of the supervisor's control API: request bodies and one-line JSON errors.

The supervisor (``supervisor.Supervisor._serve_api``) installs ``one_line_errors`` as the
middleware of its aiohttp application and reads bodies with ``json_body``; ``SandboxClient``
(``sandbox``) turns the answers back into the project's exceptions: 400 is
``FaultRejected``, 503 (the target cannot do it now) and 500 (a bug, logged with its
traceback in the supervisor's log) are ``TargetUnavailable``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from chaosmesh_qa.errors import ChaosMeshQAError, FaultRejected, InvalidArgument, error_line

log = logging.getLogger("chaosmesh_qa.supervisor")


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
