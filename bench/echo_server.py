"""The bare baseline: kindling's own HTTP stack (httpd on uvloop) answering with the body.

Run as ``python -m bench.echo_server [--port N]``; prints the bound port on its first
line of stdout and serves until SIGTERM/SIGINT. Whatever kindling adds on top of this
(SigV4, routing, the model, the sandbox round trip) is the overhead the bench reports.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from kindling.httpd import HttpServer, Request, Response

_HEADERS = [("Content-Type", "application/json")]


async def echo(request: Request) -> Response:
    return Response(200, _HEADERS, request.body)


async def serve(host: str, port: int) -> None:
    server = HttpServer(echo)
    bound = await server.listen(host, port)
    sys.stdout.write(f"{bound}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
