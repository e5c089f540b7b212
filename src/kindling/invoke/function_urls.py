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

import json
import uuid
from collections.abc import Callable

from kindling.control.function_urls import FunctionUrlConfigs
from kindling.control.models import LATEST
from kindling.control.policies import PolicyService, UrlCaller
from kindling.errors import AccessDeniedError, FunctionResponseError
from kindling.iam.sigv4 import Caller
from kindling.invoke.service import InvokeService
from kindling.invoke.url_events import (
    UrlRequest,
    UrlResponse,
    build_event,
    cors_preflight,
    interpret,
    with_cors,
)

#: Authenticates the request being served (SigV4), raising AuthError if it cannot.
Authenticate = Callable[[], Caller]
FORBIDDEN = "Forbidden"


class FunctionUrlService:
    def __init__(
        self, configs: FunctionUrlConfigs, policies: PolicyService, invoker: InvokeService
    ) -> None:
        self._configs = configs
        self._policies = policies
        self._invoker = invoker

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
                    "userArn": f"arn:aws:iam::{signer.account_id}:root",
                    "userId": signer.account_id,
                }
            }
        ref = config.ref
        target = (ref.account_id, ref.region, ref.name, ref.qualifier or LATEST)
        if not self._policies.allows_url(target, config.auth_type, caller):
            raise AccessDeniedError(FORBIDDEN)
        request_id = str(uuid.uuid4())
        event = build_event(request, url_id, ref.region, account, request_id, authorizer)
        out = await self._invoker.invoke(ref, json.dumps(event).encode(), request_id=request_id)
        if out.function_error is not None:
            raise FunctionResponseError(f"The function failed: {out.function_error}")
        response = interpret(out.payload)
        return with_cors(response, config.cors, request.headers.get("origin")), request_id
