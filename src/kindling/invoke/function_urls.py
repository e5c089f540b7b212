"""Serving function URLs: find the URL, answer a CORS preflight, authorize, build the
payload format 2.0 event, invoke through the one invoke path, and interpret the answer.

Authorization (ADR 0030): AuthType NONE needs a statement in the resource policy of the
URL's function qualifier that grants ``lambda:InvokeFunctionUrl`` to ``*`` (AWS: "Security
and auth model for Lambda function URLs"); AWS_IAM needs a SigV4 signature for service
``lambda`` (checked by the HTTP layer's verifier, called only for such URLs) and, for a
signer of another account, a statement naming it. A URL that does not exist and a
caller without permission get the same 403, so a URL's existence is not told to
strangers.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable

from kindling import limits
from kindling.control.function_urls import FunctionUrlConfigs
from kindling.control.models import LATEST, FunctionRef, function_arn
from kindling.control.policies import PolicyService, UrlCaller
from kindling.errors import AccessDeniedError, FunctionResponseError
from kindling.iam.authorizer import Authorizer
from kindling.iam.sigv4 import Caller
from kindling.invoke.service import InvokeOutput, InvokeService
from kindling.invoke.streaming import (
    HTTP_PRELUDE_TYPE,
    ResponseStream,
    read_prelude,
    until_first_byte,
)
from kindling.invoke.url_events import (
    STREAM_CONTENT_TYPE,
    UrlRequest,
    UrlResponse,
    build_event,
    cors_preflight,
    interpret,
    interpret_prelude,
    with_cors,
)

#: Authenticates the request being served (SigV4), raising AuthError if it cannot.
Authenticate = Callable[[], Caller]
FORBIDDEN = "Forbidden"


class FunctionUrlService:
    def __init__(
        self,
        configs: FunctionUrlConfigs,
        policies: PolicyService,
        invoker: InvokeService,
        authorizer: Authorizer | None = None,
    ) -> None:
        """``authorizer``: how an AWS_IAM URL's signer is judged (ADR 0036): its identity
        policies and the function's resource policy; without it, only the latter."""
        self._authorizer = authorizer
        self._configs = configs
        self._policies = policies
        self._invoker = invoker

    def _check_signer(self, signer: Caller, ref: FunctionRef) -> None:
        """IAM's evaluation for ``lambda:InvokeFunctionUrl``: a signer of the function's
        account needs an identity policy allowing it (its root needs none), one of
        another account the function's resource policy too. Any refusal is the URL's
        plain 403."""
        assert self._authorizer is not None
        resource = function_arn(ref.account_id, ref.region, ref.name, ref.qualifier)
        policy = self._policies.resource_policy(ref)
        try:
            self._authorizer.check(
                signer,
                "lambda:InvokeFunctionUrl",
                resource,
                ref.account_id,
                [policy] if policy is not None else [],
                {"lambda:FunctionUrlAuthType": "AWS_IAM"},
            )
        except AccessDeniedError:
            raise AccessDeniedError(FORBIDDEN) from None

    async def serve(
        self, url_id: str, request: UrlRequest, authenticate: Authenticate
    ) -> tuple[UrlResponse, str | None]:
        """The response, and the invocation's request id (None: nothing was invoked)."""
        config = self._configs.by_id(url_id)
        if config is None:
            raise AccessDeniedError(FORBIDDEN)
        preflight = cors_preflight(config.cors, request)
        if preflight is not None:
            return preflight, None
        caller = UrlCaller()
        account = "anonymous"
        authorizer = None
        if config.auth_type == "AWS_IAM":
            signer = authenticate()
            caller = UrlCaller(signer.account_id)
            account = config.ref.account_id
            authorizer = {
                "iam": {
                    "accessKey": signer.access_key_id,
                    "accountId": signer.account_id,
                    "callerId": signer.account_id,
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": signer.arn,
                    "userId": signer.account_id,
                }
            }
            if self._authorizer is not None:
                self._check_signer(signer, config.ref)
        ref = config.ref
        target = (ref.account_id, ref.region, ref.name, ref.qualifier or LATEST)
        if (
            self._authorizer is None or config.auth_type != "AWS_IAM"
        ) and not self._policies.allows_url(target, config.auth_type, caller):
            raise AccessDeniedError(FORBIDDEN)
        request_id = str(uuid.uuid4())
        event = build_event(request, url_id, ref.region, account, request_id, authorizer)
        payload = json.dumps(event).encode()
        if config.invoke_mode == "RESPONSE_STREAM":
            response = await self._stream(ref, payload, request_id)
            return with_cors(response, config.cors, request.headers.get("origin")), request_id
        out = await self._invoker.invoke(ref, payload, request_id=request_id)
        if out.function_error is not None:
            raise FunctionResponseError(f"The function failed: {out.function_error}")
        response = interpret(out.payload)
        return with_cors(response, config.cors, request.headers.get("origin")), request_id

    async def _stream(self, ref: FunctionRef, payload: bytes, request_id: str) -> UrlResponse:
        """A RESPONSE_STREAM URL (ADR 0032): the answer's head once the function wrote
        its first bytes (its HTTP prelude, if it sent one), the body as it comes. A
        function that fails before its first byte gets the URL's 502, as a buffered one;
        after it, the stream just ends (HTTP has no way left to tell the client)."""
        stream = ResponseStream()
        run = await until_first_byte(
            self._invoker.invoke(ref, payload, request_id=request_id, sink=stream), stream
        )
        try:
            if run.done() and not run.result().streamed:  # a function that did not stream
                out = run.result()
                if out.function_error is not None:
                    raise FunctionResponseError(f"The function failed: {out.function_error}")
                return interpret(out.payload)
            body: bytes = b""
            if stream.content_type == HTTP_PRELUDE_TYPE:
                found = await read_prelude(stream, limits.FRONTEND_MAX_HEADER_BYTES)
                if found is None:
                    raise FunctionResponseError("The function's HTTP prelude did not end")
                prelude, body = found
                response = interpret_prelude(prelude)
            else:
                response = UrlResponse(200, [("Content-Type", STREAM_CONTENT_TYPE)])
        except BaseException:
            stream.close()
            raise
        response.stream = _body(body, stream, run)
        response.close = stream.close
        return response


async def _body(
    first: bytes, stream: ResponseStream, run: asyncio.Future[InvokeOutput]
) -> AsyncIterator[bytes]:
    """The streamed body; a client that hangs up closes ``stream`` (the invocation runs
    on without a reader, and its sandbox is freed when it ends)."""
    try:
        if first:
            yield first
        async for chunk in stream:
            yield chunk
        if run.done() and not run.cancelled() and run.exception() is None:
            out = run.result()
            if not out.streamed and out.function_error is None and out.payload:
                yield out.payload
    finally:
        stream.close()
