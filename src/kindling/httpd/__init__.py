"""A small HTTP/1.1 server on httptools and uvloop, shared by the front end and the Runtime API.

It does wire work only: parse requests, hand a ``Request`` to one async handler, write
the ``Response`` back, keep connections alive. What a request means is the handler's
business. See docs/adr/0002-http-stack.md for why this is not an ASGI server.
"""

from kindling.httpd.message import Request, Response
from kindling.httpd.server import Handler, HttpServer, ServerLimits

__all__ = ["Handler", "HttpServer", "Request", "Response", "ServerLimits"]
