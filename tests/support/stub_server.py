"""A stub HTTP server for the traffic tests (``python stub_server.py PORT``), on 127.0.0.1 only.

Started by ``tests.support.traffic.stub_server`` (a script, never imported).

``/`` answers 200 at once; ``/hang`` answers after 10 s (so clients time out first); ``/canary`` answers
200 only with the headers ``x-canary: true`` and ``x-team: qa``, else 400.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    if request.path == "/hang":
        await asyncio.sleep(10)
    if request.path == "/canary" and (request.headers.get("x-canary"), request.headers.get("x-team")) != ("true", "qa"):
        return web.Response(text="missing headers", status=400)
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
