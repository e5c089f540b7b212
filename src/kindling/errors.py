"""The one exception tree of kindling.

Every failure a component can report is a subclass of ``KindlingError``. The API layer
maps each class to the AWS error shape a Lambda client expects, in exactly one place
(``kindling.api.errors``); no other module turns an error into a status code (the HTTP
server answers only what fails before there is a request to err: a malformed, oversized
or too slow one, with a plain 400/408/413/414/431/503)::

    KindlingError
    +-- ValidationError            -> InvalidParameterValueException (400)
    |   +-- RequestContentError    -> InvalidRequestContentException (400)
    |   +-- ConstraintError        -> ValidationException (400)
    |   +-- UnsupportedMediaError  -> UnsupportedMediaTypeException (415)
    |   +-- PolicyTooLargeError    -> PolicyLengthExceededException (400)
    |   +-- CodeVerificationFailedError -> CodeVerificationFailedException (400)
    +-- NotFoundError              -> ResourceNotFoundException (404)
    |   +-- ProvisionedConfigNotFoundError -> ProvisionedConcurrencyConfigNotFoundException
    |   +-- CodeSigningConfigNotFoundError -> CodeSigningConfigNotFoundException (404)
    +-- ConflictError              -> ResourceConflictException (409)
    |   +-- SnapStartNotReadyError -> SnapStartNotReadyException (409)
    |   +-- DeleteConflictError    -> IAM's DeleteConflict (409)
    +-- PreconditionError          -> PreconditionFailedException (412)
    +-- TooLargeError              -> RequestTooLargeException (413)
    +-- ThrottledError             -> TooManyRequestsException (429)
    +-- AuthError                  -> the IAM-ish 403 family
    |   +-- SignatureError         -> InvalidSignatureException
    |   +-- UnknownKeyError        -> UnrecognizedClientException
    |   +-- ExpiredTokenError      -> ExpiredTokenException
    |   +-- MissingAuthError       -> MissingAuthenticationTokenException
    |   +-- AccessDeniedError      -> AccessDeniedException (a function URL's 403)
    +-- UnknownOperationError      -> UnknownOperationException (404)
    +-- FunctionResponseError      -> a function URL's 502: the function failed or
    |                                 answered what is not an HTTP response
    +-- SandboxError               -> ServiceException (500); raised by workers
    |   +-- SandboxGoneError       -> (retried on another sandbox before it reaches a client)
    +-- ServiceError               -> ServiceException (500)
        +-- StoreUnavailableError  -> ServiceException (500); the store cannot be reached
"""

from __future__ import annotations


class KindlingError(Exception):
    """Root of every error kindling raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(KindlingError):
    """A parameter has a value AWS would refuse."""


class RequestContentError(ValidationError):
    """The request body is not JSON, or not of the shape the operation takes."""


class ConstraintError(ValidationError):
    """A value breaks a constraint of the service model (length, range, pattern, enum)."""


class UnsupportedMediaError(ValidationError):
    """The payload is not of a media type the operation accepts."""


class InvalidEventPatternError(ValidationError):
    """An event pattern (EventBridge rule, event source mapping filter) that cannot be
    compiled; the message says why, the API adds each service's own preamble."""


class PolicyTooLargeError(ValidationError):
    """A resource-based policy would grow past its size quota."""


class CodeVerificationFailedError(ValidationError):
    """A code signing config's policy is Enforce and the code is not signed by one of
    its publishers (kindling has no AWS Signer: no code is signed)."""


class MalformedPolicyError(ValidationError):
    """A policy document IAM would refuse (MalformedPolicyDocument); the message is IAM's."""


class NotFoundError(KindlingError):
    """The named function, version or resource does not exist."""


class ProvisionedConfigNotFoundError(NotFoundError):
    """No provisioned concurrency config exists for that qualifier."""


class CodeSigningConfigNotFoundError(NotFoundError):
    """A function names a code signing config that does not exist."""


class ConflictError(KindlingError):
    """The resource exists already, or is in a state that forbids the change."""


class DeleteConflictError(ConflictError):
    """IAM refuses to delete an entity something still uses (DeleteConflict)."""


class SnapStartNotReadyError(ConflictError):
    """A SnapStart version is invoked while its snapshot is still being taken."""


class PreconditionError(KindlingError):
    """A RevisionId given by the client no longer matches."""


class TooLargeError(KindlingError):
    """A request body exceeds one of Lambda's size quotas."""


class RequestEntityTooLargeError(TooLargeError):
    """A request, or an Invoke payload, over Lambda's size for that operation: AWS answers
    these with ``RequestEntityTooLargeException`` (413), a code its model does not
    declare ("Request must be smaller than N bytes for the X operation")."""


class ThrottledError(KindlingError):
    """A concurrency limit refuses the invocation."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AuthError(KindlingError):
    """The request could not be authenticated."""


class SignatureError(AuthError):
    """The SigV4 signature does not match the request."""


class UnknownKeyError(AuthError):
    """The access key is not one kindling knows."""


class ExpiredTokenError(AuthError):
    """A session token (AssumeRole's, a function's) is past its expiry."""


class MissingAuthError(AuthError):
    """The request carries no SigV4 authorization at all."""


class AccessDeniedError(AuthError):
    """The caller may not invoke this (a function URL without a matching policy)."""


class FunctionResponseError(KindlingError):
    """A function behind a URL failed, or answered with what cannot be an HTTP response."""


class UnknownOperationError(KindlingError):
    """No Lambda operation matches the method and path."""


class SandboxError(KindlingError):
    """A sandbox could not be created or failed outside the function's own fault."""


class SandboxGoneError(SandboxError):
    """A worker no longer has the sandbox named (it died idle, or its worker forgot it).

    The invocation never reached it, so the invoke path may take another sandbox."""


class ServiceError(KindlingError):
    """An internal failure that is kindling's fault, not the caller's."""


class StoreUnavailableError(ServiceError):
    """The store (PostgreSQL) cannot be reached now; the request may be retried."""
