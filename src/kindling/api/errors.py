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
    (e.PolicyTooLargeError, "PolicyLengthExceededException", 400),
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


#: A function URL's answers to what is not the function's own: (status, error type,
#: message). AWS: 403 Forbidden without a permission ("Security and auth model for
#: Lambda function URLs"), 429 when throttled ("Throttling function URLs"), 502 when the
#: function fails or answers what is not a response, 413 past the 6 MB payload.
_URL_CODES: list[tuple[type[e.KindlingError], int, str, str | None]] = [
    (e.AccessDeniedError, 403, "AccessDeniedException", "Forbidden"),
    (e.MissingAuthError, 403, "AccessDeniedException", "Forbidden"),
    (e.AuthError, 403, "AccessDeniedException", None),
    (e.NotFoundError, 403, "AccessDeniedException", "Forbidden"),
    (e.ThrottledError, 429, "TooManyRequestsException", "Rate Exceeded."),
    (e.TooLargeError, 413, "RequestTooLargeException", None),
    (e.FunctionResponseError, 502, "", None),
]


def render_url_error(exc: BaseException, request_id: str) -> Response:
    """The answer a function URL gives when it cannot give the function's own."""
    headers = [("x-amzn-RequestId", request_id)]
    for cls, status, code, fixed in _URL_CODES:
        if isinstance(exc, cls):
            if status == 502:
                log.info("function URL request %s: %s", request_id, exc)
                headers.append(("Content-Type", "text/plain"))
                return Response(502, headers, b"Internal Server Error")
            message = fixed or (exc.message if isinstance(exc, e.KindlingError) else str(exc))
            headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
            return Response(status, headers, json.dumps({"Message": message}).encode())
    log.error("function URL request %s failed: %s: %s", request_id, type(exc).__name__, exc)
    headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", "ServiceException")]
    return Response(500, headers, json.dumps({"Message": SERVICE_EXCEPTION_MESSAGE}).encode())
