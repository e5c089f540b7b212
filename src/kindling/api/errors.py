"""The one place where kindling's exceptions become AWS error responses.

Lambda answers an error with the header ``x-amzn-ErrorType`` and a JSON body whose
member names come from the error shape in the service model (some use ``message``,
some ``Message``). The status codes are listed below beside each error: the model's own
for Lambda's errors, AWS's for the generic ones it does not hold (signature, unknown
operation, ``ValidationException``).

A 5xx tells the caller only Lambda's own words: its detail (a sandbox id, a path, a
traceback's last line) goes to the server log under the request id the caller is given
in ``x-amzn-RequestId``, so an operator can find it and a caller learns nothing inside.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kindling import errors as e
from kindling.httpd import Response

log = logging.getLogger(__name__)

#: What Lambda's API reference says of a ServiceException; a caller sees nothing more.
SERVICE_EXCEPTION_MESSAGE = "The AWS Lambda service encountered an internal error."

_CODES: list[tuple[type[e.KindlingError], str, int]] = [
    (e.UnsupportedMediaError, "UnsupportedMediaTypeException", 415),
    (e.CodeVerificationFailedError, "CodeVerificationFailedException", 400),
    (e.RequestContentError, "InvalidRequestContentException", 400),
    (e.ConstraintError, "ValidationException", 400),
    (e.ValidationError, "InvalidParameterValueException", 400),
    (e.ProvisionedConfigNotFoundError, "ProvisionedConcurrencyConfigNotFoundException", 404),
    (e.CodeSigningConfigNotFoundError, "CodeSigningConfigNotFoundException", 404),
    (e.NotFoundError, "ResourceNotFoundException", 404),
    (e.SnapStartNotReadyError, "SnapStartNotReadyException", 409),
    (e.ConflictError, "ResourceConflictException", 409),
    (e.PreconditionError, "PreconditionFailedException", 412),
    (e.TooLargeError, "RequestTooLargeException", 413),
    (e.ThrottledError, "TooManyRequestsException", 429),
    (e.SignatureError, "InvalidSignatureException", 403),
    (e.UnknownKeyError, "UnrecognizedClientException", 403),
    (e.MissingAuthError, "MissingAuthenticationTokenException", 403),
    (e.UnknownOperationError, "UnknownOperationException", 404),
]


class ErrorMapper:
    """Renders any exception as the Lambda error a client would get from AWS."""

    def __init__(self, service_model: Any) -> None:
        self._model = service_model
        self._message_key: dict[str, str] = {}
        for shape in service_model.error_shapes:
            members = set(shape.members)
            self._message_key[shape.name] = "message" if "message" in members else "Message"

    def code_for(self, exc: BaseException) -> tuple[str, int]:
        if isinstance(exc, e.KindlingError):
            for cls, code, status in _CODES:
                if isinstance(exc, cls):
                    return code, status
        return "ServiceException", 500

    def render(self, exc: BaseException, request_id: str) -> Response:
        code, status = self.code_for(exc)
        if status >= 500:
            log.error("request %s answered %s: %s: %s", request_id, code, type(exc).__name__, exc)
            message = SERVICE_EXCEPTION_MESSAGE
        else:
            message = exc.message if isinstance(exc, e.KindlingError) else str(exc)
        body: dict[str, Any] = {
            "Type": "User" if status < 500 else "Service",
            self._message_key.get(code, "message"): message,
        }
        headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", code),
            ("x-amzn-RequestId", request_id),
        ]
        if isinstance(exc, e.ThrottledError):
            body["Reason"] = exc.reason
            headers.append(("Retry-After", "1"))
        return Response(status, headers, json.dumps(body).encode())
