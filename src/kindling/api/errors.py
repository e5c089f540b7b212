"""The one place where kindling's exceptions become AWS error responses.

Lambda answers an error with the header ``x-amzn-ErrorType`` and a JSON body whose
member names come from the error shape in the service model (some use ``message``,
some ``Message``). The status codes are listed below beside each error: the model's own
for Lambda's errors, AWS's for the generic ones it does not hold (signature, unknown
operation, ``ValidationException``).

A 5xx tells the caller only Lambda's own words: its detail (a sandbox id, a path, a
traceback's last line) goes to the server log under the request id the caller is given
in ``x-amzn-RequestId``, so an operator can find it and a caller learns nothing inside.

EventBridge (JSON 1.1) and EventBridge Scheduler (REST-JSON) have tables of their own
(``EVENTS_CODES``, ``SCHEDULER_CODES``): the same exception tree, each service's words.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from xml.sax.saxutils import escape

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
    (e.RequestEntityTooLargeError, "RequestEntityTooLargeException", 413),
    (e.TooLargeError, "RequestTooLargeException", 413),
    (e.ThrottledError, "TooManyRequestsException", 429),
    (e.SignatureError, "InvalidSignatureException", 403),
    (e.UnknownKeyError, "UnrecognizedClientException", 403),
    (e.ExpiredTokenError, "ExpiredTokenException", 403),
    (e.AccessDeniedError, "AccessDeniedException", 403),
    (e.MissingAuthError, "MissingAuthenticationTokenException", 403),
    (e.UnknownOperationError, "UnknownOperationException", 404),
]


#: The signature errors every service answers alike (the status Lambda gives them).
_AUTH_CODES: list[tuple[type[e.KindlingError], str, int]] = [
    (e.SignatureError, "InvalidSignatureException", 403),
    (e.UnknownKeyError, "UnrecognizedClientException", 403),
    (e.ExpiredTokenError, "ExpiredTokenException", 403),
    (e.AccessDeniedError, "AccessDeniedException", 403),
    (e.MissingAuthError, "MissingAuthenticationTokenException", 403),
]

#: EventBridge (JSON 1.1): every error of its model is a 400 but InternalException
#: (API reference, "Common Errors" and each operation's Errors). ConflictError is a
#: name taken (CreateEventBus); a refused delete (a rule with targets) is a
#: ValidationError, as AWS answers ValidationException for it.
EVENTS_CODES: list[tuple[type[e.KindlingError], str, int]] = [
    (e.InvalidEventPatternError, "InvalidEventPatternException", 400),
    (e.ValidationError, "ValidationException", 400),
    (e.NotFoundError, "ResourceNotFoundException", 400),
    (e.ConflictError, "ResourceAlreadyExistsException", 400),
    (e.TooLargeError, "ValidationException", 400),
    (e.ThrottledError, "ThrottlingException", 400),
    *_AUTH_CODES,
    (e.UnknownOperationError, "UnknownOperationException", 400),
]
EVENTS_INTERNAL = ("InternalException", "An internal error occurred.")

#: EventBridge Scheduler (REST-JSON): the status codes are its model's.
SCHEDULER_CODES: list[tuple[type[e.KindlingError], str, int]] = [
    (e.ValidationError, "ValidationException", 400),
    (e.NotFoundError, "ResourceNotFoundException", 404),
    (e.ConflictError, "ConflictException", 409),
    (e.TooLargeError, "ValidationException", 400),
    (e.ThrottledError, "ThrottlingException", 429),
    *_AUTH_CODES,
    (e.UnknownOperationError, "UnknownOperationException", 404),
]
#: IAM and STS (query protocol): the codes of their models and of AWS's common errors
#: for query APIs ("Common Errors" in the IAM and STS API references).
IAM_CODES: list[tuple[type[e.KindlingError], str, int]] = [
    (e.MalformedPolicyError, "MalformedPolicyDocument", 400),
    (e.ValidationError, "InvalidInput", 400),
    (e.NotFoundError, "NoSuchEntity", 404),
    (e.DeleteConflictError, "DeleteConflict", 409),
    (e.ConflictError, "EntityAlreadyExists", 409),
    (e.AccessDeniedError, "AccessDenied", 403),
    (e.ExpiredTokenError, "ExpiredToken", 403),
    (e.SignatureError, "SignatureDoesNotMatch", 403),
    (e.UnknownKeyError, "InvalidClientTokenId", 403),
    (e.MissingAuthError, "MissingAuthenticationToken", 403),
    (e.UnknownOperationError, "InvalidAction", 400),
    (e.TooLargeError, "InvalidInput", 400),
]
IAM_INTERNAL = ("ServiceFailure", "An internal error occurred.")

SCHEDULER_INTERNAL = (
    "InternalServerException",
    "Unexpected error occurred while processing the request.",
)


class ErrorMapper:
    """Renders any exception as the error a client of one service would get from AWS:
    Lambda's by default; ``codes`` and ``internal`` name another service's (its error
    codes, and the code and only message of a 5xx). A JSON 1.1 service (``protocol``
    "json") carries the code in the body's ``__type`` too, where botocore reads it."""

    def __init__(
        self,
        service_model: Any,
        codes: list[tuple[type[e.KindlingError], str, int]] | None = None,
        internal: tuple[str, str] = ("ServiceException", SERVICE_EXCEPTION_MESSAGE),
    ) -> None:
        self._model = service_model
        self._codes = _CODES if codes is None else codes
        self._internal = internal
        self._lambda = codes is None
        self._json = service_model.metadata.get("protocol") == "json"
        self._message_key: dict[str, str] = {}
        #: Codes whose body carries ``Type`` (User or Service): the errors of Lambda's
        #: own service layer, whose model shapes declare it, and its 413 for a request
        #: over an operation's size. The front door's (signature, unknown key, missing
        #: token, access denied) and ValidationException carry no Type on AWS.
        self._typed = {"RequestEntityTooLargeException", "ServiceException"}
        for shape in service_model.error_shapes:
            members = set(shape.members)
            if "Type" in members:
                self._typed.add(shape.name)
            self._message_key[shape.name] = "Message" if "Message" in members else "message"
            if self._lambda:
                self._message_key[shape.name] = "message" if "message" in members else "Message"

    def code_for(self, exc: BaseException) -> tuple[str, int]:
        if isinstance(exc, e.KindlingError):
            for cls, code, status in self._codes:
                if isinstance(exc, cls):
                    return code, status
        return self._internal[0], 500

    def render(self, exc: BaseException, request_id: str) -> Response:
        code, status = self.code_for(exc)
        if status >= 500:
            log.error("request %s answered %s: %s: %s", request_id, code, type(exc).__name__, exc)
            message = self._internal[1]
        else:
            message = exc.message if isinstance(exc, e.KindlingError) else str(exc)
        body: dict[str, Any] = {self._message_key.get(code, "message"): message}
        if self._lambda and code in self._typed:
            body["Type"] = "User" if status < 500 else "Service"
        if self._json:
            body["__type"] = code
        headers = [
            ("Content-Type", "application/x-amz-json-1.1" if self._json else "application/json"),
            ("x-amzn-ErrorType", code),
            ("x-amzn-RequestId", request_id),
        ]
        if isinstance(exc, e.ThrottledError) and self._lambda:
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


def render_unserved(
    service: str, served: list[str], request_id: str, xml: bool = False
) -> Response:
    """A request signed for a service kindling does not serve, answered naming the
    service, in the shape its client parses: the AWS JSON error (the code in
    ``x-amzn-ErrorType`` and ``__type``) for the JSON protocols, or the XML
    ``ErrorResponse`` that botocore's query, EC2 and REST-XML parsers all read (``xml``:
    CloudFormation from ``sam deploy``, S3), so a client pointed here by mistake says
    why at once instead of failing to parse the answer."""
    message = (
        f"kindling does not serve the {service!r} API: this endpoint serves "
        f"{', '.join(served)}. The request was signed for service {service!r}."
    )
    code = "UnknownOperationException"
    if xml:
        document = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
        return Response(400, headers, document.encode())
    body = {"__type": code, "message": message, "Message": message}
    headers = [
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", code),
        ("x-amzn-RequestId", request_id),
    ]
    return Response(400, headers, json.dumps(body).encode())
