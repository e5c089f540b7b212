"""Code from S3: the zip a CreateFunction, UpdateFunctionCode or PublishLayerVersion
names by ``S3Bucket``/``S3Key``/``S3ObjectVersion`` instead of sending it (ADR 0037).

The bucket is the operator's S3-compatible store (MinIO, Ceph, AWS itself), named the
standard way in the server's environment: ``AWS_ENDPOINT_URL_S3``, else
``AWS_ENDPOINT_URL``; credentials come from botocore's default chain. With neither
variable set there is no source (``NoCodeSource``) and a request naming S3 gets an error
that says what to set: kindling never reaches AWS unless told to.

``S3CodeSource`` fetches in threads of its own (``CODE_S3_FETCHES``; botocore blocks),
never on the event loop. An object is refused from its Content-Length past
``CODE_S3_OBJECT_BYTES`` and its body read no further than that, so a fetch never holds
more. Every failure is AWS's InvalidParameterValueException: S3's own refusals in
Lambda's words ("Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error
Message: The specified key does not exist."), a store that cannot be reached or stalls
with a message naming the endpoint; never a 5xx.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as EndpointError,
)
from botocore.session import get_session

from kindling.errors import ValidationError
from kindling.limits import (
    CODE_S3_CHUNK_BYTES,
    CODE_S3_CLIENTS,
    CODE_S3_FETCH_S,
    CODE_S3_FETCHES,
    CODE_S3_OBJECT_BYTES,
    CODE_S3_TIMEOUTS_S,
)

#: Lambda's words for a ZipFile sent beside an S3 location.
ZIP_AND_S3 = "Please do not provide other FunctionCode parameters when providing a ZipFile."
#: ... and for half an S3 location.
HALF_S3 = "S3 Bucket and Key are required for uploading with S3 parameters."
#: Where the store's endpoint is read from, in order (botocore's own variables).
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    key: str
    version: str | None = None


def s3_location(fields: Mapping[str, Any]) -> S3Location | None:
    """The S3 object ``fields`` name (CreateFunction's ``Code``, PublishLayerVersion's
    ``Content``, UpdateFunctionCode's own fields), or None where they name none."""
    bucket, key, version, mode = (
        fields.get(f) for f in ("S3Bucket", "S3Key", "S3ObjectVersion", "S3ObjectStorageMode")
    )
    if not (bucket or key or version or mode):
        return None
    if fields.get("ZipFile") is not None:
        raise ValidationError(ZIP_AND_S3)
    if not bucket or not key:
        raise ValidationError(HALF_S3)
    for name, value in (("S3Bucket", bucket), ("S3Key", key), ("S3ObjectVersion", version)):
        if value and not _utf8(str(value)):  # JSON's "\ud800": no S3 name can hold it
            raise ValidationError(f"{name} is not valid UTF-8 (it holds a lone surrogate)")
    if mode == "REFERENCE":
        raise ValidationError(
            "S3ObjectStorageMode REFERENCE is not supported by this kindling host: the "
            "deployment package is copied when it is deployed (COPY, the default)"
        )
    return S3Location(str(bucket), str(key), str(version) if version else None)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class CodeSource(Protocol):
    """Where code named by an S3 location comes from."""

    async def fetch(self, location: S3Location, region: str) -> bytes: ...


async def zip_from(
    fields: Mapping[str, Any], source: CodeSource, region: str, missing: str
) -> bytes:
    """The zip ``fields`` carry (``ZipFile``) or name (an S3 location); ``missing`` is
    the operation's words for neither."""
    location = s3_location(fields)
    if location is not None:
        return await source.fetch(location, region)
    data = fields.get("ZipFile")
    if not data:
        raise ValidationError(missing)
    return bytes(data)


def s3_endpoint(environ: Mapping[str, str]) -> str | None:
    """The S3 endpoint the operator configured, as botocore reads it, or None."""
    for name in ENDPOINT_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


class NoCodeSource:
    """A server whose environment names no S3 endpoint."""

    async def fetch(self, location: S3Location, region: str) -> bytes:
        raise ValidationError(
            f"Code from S3 (s3://{location.bucket}/{location.key}) needs an S3 endpoint, and "
            "this kindling server has none: start it with AWS_ENDPOINT_URL_S3 (or "
            "AWS_ENDPOINT_URL) naming an S3-compatible store, and credentials for it in "
            "its environment, or upload the .zip with ZipFile"
        )


def too_large(limit: int) -> ValidationError:
    return ValidationError(f"Unzipped size must be smaller than {limit} bytes")


def read_capped(body: Any, limit: int, deadline: float, chunk: int = CODE_S3_CHUNK_BYTES) -> bytes:
    """All of ``body`` (a file-like object) if it holds at most ``limit`` bytes; reads no
    more than ``limit`` plus one chunk, and gives up at ``deadline`` (monotonic)."""
    out = io.BytesIO()  # getvalue() hands over its buffer: no second copy
    while True:
        data = body.read(min(chunk, limit + 1 - out.tell()))
        if not data:
            return out.getvalue()
        out.write(data)
        if out.tell() > limit:
            raise too_large(limit)
        if time.monotonic() > deadline:
            raise ValidationError(
                "Error occurred while GetObject: the S3 store sent the object too slowly "
                f"(more than {CODE_S3_FETCH_S:.0f} s)"
            )


class S3CodeSource:
    """GetObject on the operator's S3 endpoint. Requests are signed for the region the
    server's configuration names (``AWS_REGION``, ``AWS_DEFAULT_REGION``, a profile's),
    as the store expects; where it names none, for the function's region (a client
    each, the last ``CODE_S3_CLIENTS`` kept: a caller chooses its region freely)."""

    def __init__(
        self,
        endpoint: str,
        session: Any = None,
        limit: int = CODE_S3_OBJECT_BYTES,
        fetches: int = CODE_S3_FETCHES,
        timeouts_s: tuple[float, float] = CODE_S3_TIMEOUTS_S,
        fetch_s: float = CODE_S3_FETCH_S,
    ) -> None:
        """``session``: a botocore Session (credentials, config files); the default
        one when None."""
        self.endpoint = endpoint
        self._session = session
        self._limit = limit
        self._timeouts = timeouts_s
        self._fetch_s = fetch_s
        self._pool = ThreadPoolExecutor(fetches, thread_name_prefix="kindling-s3code")
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    async def fetch(self, location: S3Location, region: str) -> bytes:
        future = self._pool.submit(self.fetch_now, location, region)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def fetch_now(self, location: S3Location, region: str) -> bytes:
        """``fetch`` in the calling thread."""
        deadline = time.monotonic() + self._fetch_s
        extra = {"VersionId": location.version} if location.version else {}
        try:
            response = self._client(region).get_object(
                Bucket=location.bucket, Key=location.key, **extra
            )
            body = response["Body"]
            try:
                if int(response.get("ContentLength") or 0) > self._limit:
                    raise too_large(self._limit)  # not a byte of it read
                return read_capped(body, self._limit, deadline)
            finally:
                body.close()
        except ClientError as exc:
            error = exc.response.get("Error") or {}
            code = error.get("Code") or str(
                exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
            )
            message = error.get("Message") or "(none)"
            raise ValidationError(
                f"Error occurred while GetObject. S3 Error Code: {code}. "
                f"S3 Error Message: {message}"
            ) from exc
        except NoCredentialsError as exc:
            raise ValidationError(
                "Error occurred while GetObject: this kindling server has no credentials "
                f"for its S3 endpoint {self.endpoint} (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or a profile, in its environment)"
            ) from exc
        except (EndpointError, HTTPClientError, OSError) as exc:  # refused, timed out, cut off
            raise ValidationError(
                f"Error occurred while GetObject: the S3 endpoint {self.endpoint} could not "
                f"be reached ({exc})"
            ) from exc
        except BotoCoreError as exc:  # what botocore will not send (a malformed region)
            raise ValidationError(f"Error occurred while GetObject: {exc}") from exc

    def _client(self, region: str) -> Any:
        with self._lock:
            if self._session is None:
                self._session = get_session()
            region = self._session.get_config_variable("region") or region
            client = self._clients.pop(region, None)
            if client is None:
                session = self._session
                connect, read = self._timeouts
                client = session.create_client(
                    "s3",
                    region_name=region,
                    endpoint_url=self.endpoint,
                    config=BotoConfig(
                        connect_timeout=connect,
                        read_timeout=read,
                        retries={"total_max_attempts": 2, "mode": "standard"},
                        max_pool_connections=CODE_S3_FETCHES,
                    ),
                )
                while len(self._clients) >= CODE_S3_CLIENTS:  # dropped, not closed: a
                    del self._clients[next(iter(self._clients))]  # fetch may still use it
            self._clients[region] = client  # the most recently used last
            return client
