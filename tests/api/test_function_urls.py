"""Which requests the front end hands to a function URL, and with which path."""

from __future__ import annotations

from kindling.api.function_urls import url_target
from kindling.httpd import Request

URL_ID = "0123456789abcdefghijklmnopqrstuv"


def req(path: str, host: str = "127.0.0.1:9000") -> Request:
    return Request("GET", path, "", {"host": host}, b"")


def test_by_host_name_on_any_port_and_region() -> None:
    host = f"{URL_ID}.lambda-url.eu-west-3.localhost:9000"
    assert url_target(req("/a/b", host)) == (URL_ID, "/a/b")
    assert url_target(req("/", f"{URL_ID}.lambda-url.us-east-1.localhost")) == (URL_ID, "/")
    assert url_target(req("/", host.upper())) == (URL_ID, "/")  # host names ignore case


def test_by_path() -> None:
    assert url_target(req(f"/_url/{URL_ID}/x/y")) == (URL_ID, "/x/y")
    assert url_target(req(f"/_url/{URL_ID}")) == (URL_ID, "/")
    assert url_target(req(f"/_url/{URL_ID}/")) == (URL_ID, "/")


def test_everything_else_is_the_lambda_api() -> None:
    assert url_target(req("/2015-03-31/functions/f/invocations")) is None
    assert url_target(req("/_url/short/x")) is None
    assert url_target(req("/", "short.lambda-url.us-east-1.localhost")) is None
    assert url_target(req("/", f"{URL_ID}.lambda-url.us-east-1.example.com")) is None
