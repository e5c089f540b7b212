"""Requests for the fuzz test: every operation of botocore's Lambda model, its input made
from the model's shapes with hostile values, serialized by botocore's own rest-json
serializer and then (often) mutated where a parser must cope: the body (nested, broken,
mistyped JSON), the path (junk, bad percent-encoding), the query and the headers. Each
request is SigV4-signed by botocore after mutation, so it reaches the parsers past auth.

Everything is drawn from one ``random.Random``: a seed reproduces a run.
"""

from __future__ import annotations

import datetime
import io
import random
import zipfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, create_request_object, prepare_request_dict
from botocore.credentials import Credentials
from botocore.serialize import create_serializer

#: A function that exists (the test creates it), so operations on it go deep.
TARGET = "fuzz-target"

STRINGS = (
    "",
    "a",
    TARGET,
    f"arn:aws:lambda:us-east-1:000000000000:function:{TARGET}",
    f"arn:aws:lambda:us-east-1:000000000000:function:{TARGET}:$LATEST",
    "arn:aws:lambda:..:000000000000:function:x",
    "$LATEST",
    "1",
    "../../etc/passwd",
    "..",
    "%00",
    "\x00",
    "a\x00b",
    "\u202e\u0000\ud7ff",
    "😀" * 3,
    "python3.11",
    "app.handler",
    "arn:aws:iam::000000000000:role/x",
    "rate(1 minute)",
    "{}",
    "[" * 50,
    " ",
    "\r\nX-Injected: 1",
)
#: Plausible values by member name, for requests that should get past validation and
#: reach deeper code with one hostile value among tame ones.
TAME = {
    "FunctionName": TARGET,
    "Role": "arn:aws:iam::000000000000:role/x",
    "Runtime": "python3.11",
    "Handler": "app.handler",
    "Qualifier": "$LATEST",
    "FunctionVersion": "$LATEST",
    "Name": "live",
    "StatementId": "s1",
    "Action": "lambda:InvokeFunction",
    "Principal": "s3.amazonaws.com",
    "Resource": f"arn:aws:lambda:us-east-1:000000000000:function:{TARGET}",
    "ARN": f"arn:aws:lambda:us-east-1:000000000000:function:{TARGET}",
    "MemorySize": 128,
    "Timeout": 3,
    "ReservedConcurrentExecutions": 5,
    "ProvisionedConcurrentExecutions": 1,
    "MaxItems": 5,
    "LayerName": "layer",
    "VersionNumber": 1,
}
NUMBERS = (0, -1, 1, 3, 128, 900, 10240, 2**31, 2**63 - 1, -(2**63), 10**30)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


GOOD_ZIP = _zip({"app.py": b"def handler(event, context):\n    return event\n"})

#: Zips whose unpacking once answered 500 (names over 255 bytes, ``.`` entries,
#: file/directory clashes, long paths): now Lambda's InvalidParameterValueException.
BAD_ZIPS = (
    _zip({"x" * 300: b"1"}),
    _zip({"x/.": b"1"}),
    _zip({"a": b"1", "a/b": b"2"}),
    _zip({"/".join(["d" * 200] * 30): b"1"}),
)


def _header_safe(value: str) -> str:
    """What can be a header value at all (http.client refuses CR/LF and non-latin-1)."""
    text = value.replace("\r", "").replace("\n", "")
    return text.encode("utf-8").decode("latin-1")


@dataclass
class Fuzzed:
    operation: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    #: The path or query was mutated after serialization (it may route nowhere).
    mutated_url: bool = False

    def describe(self) -> str:
        return f"{self.operation} {self.method} {self.url[:300]} body={self.body[:300]!r}"


class Fuzzer:
    def __init__(self, model: Any, endpoint: str, seed: int) -> None:
        self.model = model
        self.endpoint = endpoint
        self.rng = random.Random(seed)
        self.serializer = create_serializer("rest-json", include_validation=False)
        self.credentials = Credentials("test", "test")
        self.operations = sorted(model.operation_names)

    # values by shape
    def value(self, shape: Any, depth: int = 0, name: str = "", tame: bool = False) -> Any:
        """A value for ``shape``; ``tame``: mostly plausible values, a few hostile ones."""
        rng = self.rng
        kind = shape.type_name
        if tame and name in TAME and rng.random() < 0.9:
            return TAME[name]
        if tame and getattr(shape, "enum", None) and rng.random() < 0.9:
            return shape.enum[0]
        if kind == "structure":
            required = set(shape.required_members)
            return {
                member_name: self.value(member, depth + 1, member_name, tame)
                for member_name, member in shape.members.items()
                if member_name in required or (depth < 4 and rng.random() < 0.5)
            }
        if kind == "list":
            count = rng.choice((0, 1, 2, 3))
            return [self.value(shape.member, depth + 1, "", tame) for _ in range(count)]
        if kind == "map":
            count = rng.choice((0, 1, 2))
            return {self.value(shape.key, depth + 1): self.value(shape.value) for _ in range(count)}
        if kind == "string":
            return self.string(shape)
        if kind in ("integer", "long"):
            low, high = shape.metadata.get("min"), shape.metadata.get("max")
            edges = [n for n in (low, high) if n is not None]
            return rng.choice((*NUMBERS, *edges, *(n + 1 for n in edges), *(n - 1 for n in edges)))
        if kind in ("double", "float"):
            return rng.choice((0.0, -1.5, 1e308, 3.5))
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "blob":
            return self.blob()
        if kind == "timestamp":
            return rng.choice(
                (datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC), 0, 2**31, "2020-01-01")
            )
        return None

    def string(self, shape: Any) -> str:
        rng = self.rng
        enum = shape.enum
        if enum and rng.random() < 0.7:
            return str(rng.choice(enum))
        roll = rng.random()
        if roll < 0.6:
            return rng.choice(STRINGS)
        low = shape.metadata.get("min", 0)
        high = shape.metadata.get("max", 256)
        length = rng.choice((low, high, high + 1, max(low - 1, 0), min(high * 4, 20000)))
        alphabet = rng.choice(("a", "ab-_:", "é漢\x7f", "%/?#&="))
        return "".join(rng.choice(alphabet) for _ in range(length))

    def blob(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return GOOD_ZIP
        if roll < 0.45:
            return rng.choice(BAD_ZIPS)
        if roll < 0.6:
            return b"PK\x03\x04" + rng.randbytes(rng.randint(0, 200))
        return rng.randbytes(rng.choice((0, 1, 17, 300)))

    # requests
    def request(self, name: str | None = None) -> Fuzzed:
        """One request for ``name`` (an operation), or for one chosen at random."""
        rng = self.rng
        name = name or rng.choice(self.operations)
        operation = self.model.operation_model(name)
        serialized = None
        for _ in range(5):
            params: dict[str, Any] = {}
            if operation.input_shape is not None:
                tame = rng.random() < 0.5
                params = self.value(operation.input_shape, tame=tame)
                if params.get("FunctionName") == TARGET and name == "DeleteFunction":
                    params["FunctionName"] = "fuzz-other"  # keep the target for the rest
                if tame and name == "CreateFunction":
                    params["FunctionName"] = f"fz{rng.randrange(10**6)}"  # new: reaches unpacking
            try:
                serialized = self.serializer.serialize_to_request(params, operation)
                break
            except Exception:  # the serializer itself refused a hostile value: again
                continue
        if serialized is None:
            serialized = self.serializer.serialize_to_request(self._plain(operation), operation)
        prepare_request_dict(serialized, self.endpoint)
        request = create_request_object(serialized)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        url = request.url
        headers = {k: _header_safe(v) for k, v in request.headers.items()}
        if rng.random() < 0.5:
            body = self.mutate_body(body)
        mutated_url = rng.random() < 0.25
        if mutated_url:
            url = self.mutate_url(url)
        if rng.random() < 0.2:
            headers.update(self.mutate_headers())
        fuzzed = Fuzzed(name, operation.http["method"], url, headers, body)
        fuzzed.mutated_url = mutated_url
        return fuzzed

    @staticmethod
    def _plain(operation: Any) -> dict[str, Any]:
        """Required members with tame values: what the serializer always takes."""
        shape = operation.input_shape
        if shape is None:
            return {}
        tame = {"string": TARGET, "integer": 1, "long": 1, "boolean": True, "blob": b"x"}
        return {
            name: tame[shape.members[name].type_name]
            for name in shape.required_members
            if shape.members[name].type_name in tame
        }

    def internal(self) -> Fuzzed:
        """A request to kindling's own signed routes beside the model: the logs endpoint
        (``kindling logs``) with hostile names and offsets, and code downloads."""
        rng = self.rng
        name = rng.choice((TARGET, "nope", "..", "%2e%2e", "a" * 300, "%ff", quote("漢")))
        if rng.random() < 0.7:
            offset = rng.choice(("0", "abc", "-5", "99999999999999999999999", "", "1e9", "%00"))
            path = f"/_kindling/logs/{name}?offset={offset}"
        else:
            path = rng.choice(
                (f"/_kindling/code/{name}", "/_kindling/code/", "/_kindling/nope/x", "/_kindling/")
            )
        return Fuzzed("kindling:" + path.split("/")[2], "GET", self.endpoint + path, {}, b"")

    def mutate_body(self, body: bytes) -> bytes:
        rng = self.rng
        choices = (
            lambda: b"[" * 2000,
            lambda: b"{" * 2000,
            lambda: b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}",
            lambda: b'{"FunctionName": ' + b"[" * 1500 + b"]" * 1500 + b"}",
            lambda: body[: rng.randint(0, len(body))] if body else b"{",
            lambda: rng.randbytes(rng.randint(1, 300)),
            lambda: rng.choice((b"null", b"[]", b'"s"', b"1e999", b"-0", b"true", b"{}")),
            lambda: b'{"FunctionName": 123, "Timeout": "x", "Environment": []}',
            lambda: b'{"Unknown": {"Deep": [1, 2, {"x": null}]}}',
            lambda: b"\xff\xfe{}",
            lambda: body.replace(b'"', b"'", 1),
            lambda: body + b"," + body,
        )
        mutated: bytes = rng.choice(choices)()
        return mutated

    def mutate_url(self, url: str) -> str:
        rng = self.rng
        parts = urlsplit(url)
        segments = parts.path.split("/")
        if len(segments) > 2 and rng.random() < 0.7:
            index = rng.randrange(2, len(segments))
            segments[index] = rng.choice(
                (
                    "%ff%fe",
                    "%00",
                    "..",
                    "%2e%2e",
                    "a" * 5000,
                    quote("\u202e漢"),
                    "%",
                    "%zz",
                    "",
                    "a%2Fb",
                )
            )
        query = parts.query
        if rng.random() < 0.6:
            extra = rng.choice(
                (
                    "Qualifier=%ff",
                    "MaxItems=abc",
                    "MaxItems=-1",
                    "MaxItems=99999999999999999999",
                    "Marker=%%%",
                    "Marker=" + quote("[" * 1500),
                    "Marker=W1tbW1tb",
                    "FunctionVersion=ALL&FunctionVersion=x",
                    "Qualifier=" + "a" * 3000,
                    "=&&=",
                )
            )
            query = f"{query}&{extra}" if query else extra
        return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), query, ""))

    def mutate_headers(self) -> dict[str, str]:
        rng = self.rng
        return rng.choice(
            (
                {"X-Amz-Invocation-Type": rng.choice(("Event", "DryRun", "Bogus", ""))},
                {"X-Amz-Log-Type": rng.choice(("Tail", "None", "x"))},
                {"X-Amz-Client-Context": rng.choice(("!!", "W1tb", "e30=", "W10="))},
                {"Content-Type": rng.choice(("text/plain", "", "application/x-amz-json-1.1"))},
                {"X-Amz-Log-Type": "Tail", "X-Amz-Invocation-Type": "RequestResponse"},
            )
        )

    def signed(self, fuzzed: Fuzzed) -> AWSRequest:
        request = AWSRequest(
            method=fuzzed.method, url=fuzzed.url, data=fuzzed.body, headers=fuzzed.headers
        )
        if "Authorization" in request.headers:
            del request.headers["Authorization"]
        SigV4Auth(self.credentials, "lambda", "us-east-1").add_auth(request)
        return request
