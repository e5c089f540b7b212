"""Code signing configs on each engine: the statements on their two tables, paging, the
bindings, and the deploy check (kindling signs nothing: Enforce refuses all code)."""

from __future__ import annotations

import pytest

from kindling.control.codesigning import CodeSigning
from kindling.control.models import FunctionConfig, FunctionRef
from kindling.control.store import FunctionStore
from kindling.errors import (
    CodeSigningConfigNotFoundError,
    CodeVerificationFailedError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from kindling.store import Store

ACCOUNT, REGION = "000000000000", "us-east-1"
PROFILE = "arn:aws:signer:us-east-1:000000000000:/signing-profiles/p/abcdefghij"


@pytest.fixture
def parts(store_url: str) -> tuple[CodeSigning, FunctionStore]:
    store = Store(store_url)
    functions = FunctionStore(store)
    return CodeSigning(store, functions), functions


def _function(functions: FunctionStore, name: str) -> FunctionRef:
    config = FunctionConfig(ACCOUNT, REGION, name, "python3.11", "r", "h", "s", "d", 1, "t", "r")
    assert functions.insert(config, {})
    return FunctionRef(ACCOUNT, REGION, name)


def _create(signing: CodeSigning, policy: str | None = None) -> str:
    params: dict[str, object] = {"AllowedPublishers": {"SigningProfileVersionArns": [PROFILE]}}
    if policy:
        params["CodeSigningPolicies"] = {"UntrustedArtifactOnDeployment": policy}
    return str(signing.create(ACCOUNT, REGION, params)["CodeSigningConfigArn"])


def test_configs_page_in_order_and_every_one_is_listed_once(
    parts: tuple[CodeSigning, FunctionStore],
) -> None:
    signing, _ = parts
    made = sorted(_create(signing) for _ in range(5))
    seen: list[str] = []
    marker = None
    while True:
        page, marker = signing.page(ACCOUNT, REGION, marker, 2)
        assert len(page) <= 2
        seen += [c["CodeSigningConfigArn"] for c in page]
        if marker is None:
            break
    assert seen == made
    assert signing.page("111111111111", REGION, None, None) == ([], None)


def test_a_bound_config_stays_until_its_function_goes(
    parts: tuple[CodeSigning, FunctionStore],
) -> None:
    signing, functions = parts
    arn = _create(signing)
    ref = _function(functions, "f")
    assert signing.bound(ref) == ""
    signing.bind(ref, arn)
    assert signing.bound(ref) == arn
    assert signing.functions_using(ACCOUNT, REGION, arn, None, None) == ([ref.arn], None)
    with pytest.raises(ConflictError, match="used by one or more functions"):
        signing.delete(ACCOUNT, REGION, arn)
    signing.forget_function(ref)  # what deleting the function does
    signing.delete(ACCOUNT, REGION, arn)
    with pytest.raises(NotFoundError):
        signing.get(ACCOUNT, REGION, arn)


def test_bindings_need_a_whole_function_and_a_config_that_exists(
    parts: tuple[CodeSigning, FunctionStore],
) -> None:
    signing, functions = parts
    arn = _create(signing)
    with pytest.raises(NotFoundError, match="Function not found"):
        signing.bind(FunctionRef(ACCOUNT, REGION, "missing"), arn)
    ref = _function(functions, "f")
    with pytest.raises(ValidationError, match="not to a version or alias"):
        signing.bind(FunctionRef(ACCOUNT, REGION, "f", "live"), arn)
    missing = arn[:-17] + "0" * 17
    with pytest.raises(CodeSigningConfigNotFoundError):
        signing.bind(ref, missing)
    with pytest.raises(ValidationError, match="Invalid code signing configuration ARN"):
        signing.get(ACCOUNT, REGION, "arn:aws:lambda:us-east-1:000000000000:function:f")
    other_account = arn.replace(ACCOUNT, "111111111111")
    with pytest.raises(NotFoundError):
        signing.get(ACCOUNT, REGION, other_account)


def test_enforce_refuses_every_deploy_and_warn_lets_it_through(
    parts: tuple[CodeSigning, FunctionStore],
) -> None:
    signing, functions = parts
    ref = _function(functions, "f")
    signing.check_deploy(ref)  # no config: nothing to check
    warn = _create(signing)  # Warn is the default policy
    signing.check_deploy(ref, warn)
    enforce = _create(signing, "Enforce")
    with pytest.raises(CodeVerificationFailedError, match="no AWS Signer"):
        signing.check_deploy(ref, enforce)
    signing.bind(ref, enforce)
    with pytest.raises(CodeVerificationFailedError):
        signing.check_deploy(ref)
    signing.update(
        ACCOUNT, REGION, enforce, {"CodeSigningPolicies": {"UntrustedArtifactOnDeployment": "Warn"}}
    )
    signing.check_deploy(ref)


def test_tags_are_kept_with_the_config(parts: tuple[CodeSigning, FunctionStore]) -> None:
    signing, _ = parts
    arn = str(
        signing.create(
            ACCOUNT,
            REGION,
            {"AllowedPublishers": {"SigningProfileVersionArns": [PROFILE]}, "Tags": {"a": "1"}},
        )["CodeSigningConfigArn"]
    )
    assert signing.tags(ACCOUNT, REGION, arn) == {"a": "1"}
    signing.set_tags(ACCOUNT, REGION, arn, {"b": "2"})
    assert signing.tags(ACCOUNT, REGION, arn) == {"b": "2"}
    with pytest.raises(ValidationError, match="tag limit"):
        signing.set_tags(ACCOUNT, REGION, arn, {str(n): "x" for n in range(51)})
