"""Resource-based policies on both store engines: AWS's statement shapes, per-qualifier
policies, RevisionId checks and AWS's error words.

AWS: AddPermission / RemovePermission / GetPolicy in the Lambda API reference, and
"Using resource-based policies for Lambda" (docs/adr/0030 cites both): the statement
``{"Sid":"sns","Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},...}``, an
account principal as ``{"AWS":"arn:aws:iam::210987654321:root"}``, SourceAccount under
StringEquals and SourceArn under ArnLike.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kindling.control.aliases import AliasService
from kindling.control.codestore import CodeStore
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.policies import POLICY_MAX_BYTES, PolicyService, UrlCaller
from kindling.control.resource_store import ResourceStore
from kindling.control.store import FunctionStore
from kindling.control.versions import VersionService
from kindling.errors import (
    ConflictError,
    NotFoundError,
    PolicyTooLargeError,
    PreconditionError,
    ValidationError,
)
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_functions import ACCOUNT, REGION, _params, run
from tests.engines import Postgres

REF = FunctionRef(ACCOUNT, REGION, "f")
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f"


@pytest.fixture
def world(tmp_path: Path, store_url: str) -> tuple[FunctionService, AliasService, PolicyService]:
    store = Store(store_url)
    table = FunctionStore(store)
    functions = FunctionService(table, CodeStore(tmp_path / "code"), RuntimeCatalog())
    run(functions.create(ACCOUNT, REGION, REF, _params()))
    functions.recover()
    VersionService(functions, table).publish(REF)
    aliases = AliasService(functions, table, random.Random(1))
    aliases.create(REF, {"Name": "live", "FunctionVersion": "1"})
    return functions, aliases, PolicyService(functions, aliases, ResourceStore(store))


def add(policies: PolicyService, ref: FunctionRef = REF, **params: object) -> dict[str, object]:
    base: dict[str, object] = {
        "StatementId": "s1",
        "Action": "lambda:InvokeFunction",
        "Principal": "sns.amazonaws.com",
    }
    base.update(params)
    statement: dict[str, object] = json.loads(policies.add(ref, base))
    return statement


def test_statements_are_written_as_aws_writes_them(
    world: tuple[FunctionService, AliasService, PolicyService],
) -> None:
    _functions, _aliases, policies = world
    assert add(policies) == {
        "Sid": "s1",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": ARN,
    }
    assert add(policies, StatementId="acct", Principal="210987654321")["Principal"] == {
        "AWS": "arn:aws:iam::210987654321:root"
    }
    role = "arn:aws:iam::444455556666:role/example"
    assert add(policies, StatementId="role", Principal=role)["Principal"] == {"AWS": role}
    assert add(policies, StatementId="all", Principal="*")["Principal"] == "*"
    s3 = add(
        policies,
        StatementId="s3",
        Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::my-bucket",
        SourceAccount="123456789012",
        PrincipalOrgID="o-a1b2c3d4e5",
    )
    assert s3["Condition"] == {
        "StringEquals": {
            "aws:PrincipalOrgID": "o-a1b2c3d4e5",
            "AWS:SourceAccount": "123456789012",
        },
        "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"},
    }
    url = add(
        policies,
        StatementId="url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    assert url["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
    document, _revision = policies.get(REF)
    assert document.startswith('{"Version":"2012-10-17","Id":"default","Statement":[')
    assert [s["Sid"] for s in json.loads(document)["Statement"]] == [
        "s1",
        "acct",
        "role",
        "all",
        "s3",
        "url",
    ]


def test_each_qualifier_has_its_own_policy(
    world: tuple[FunctionService, AliasService, PolicyService],
) -> None:
    _functions, _aliases, policies = world
    add(policies)
    version = add(policies, FunctionRef(ACCOUNT, REGION, "f", "1"))  # the same sid: another policy
    alias = add(policies, FunctionRef(ACCOUNT, REGION, "f", "live"))
    assert version["Resource"] == f"{ARN}:1"
    assert alias["Resource"] == f"{ARN}:live"
    document, _revision = policies.get(FunctionRef(ACCOUNT, REGION, "f", "1"))
    assert len(json.loads(document)["Statement"]) == 1
    with pytest.raises(ValidationError, match=r"not support adding policies for \$LATEST"):
        add(policies, FunctionRef(ACCOUNT, REGION, "f", "$LATEST"))
    with pytest.raises(NotFoundError, match=f"Function not found: {ARN}:7"):
        add(policies, FunctionRef(ACCOUNT, REGION, "f", "7"))
    with pytest.raises(NotFoundError, match=f"Function not found: {ARN}:gone"):
        add(policies, FunctionRef(ACCOUNT, REGION, "f", "gone"))


def test_errors_in_aws_words(world: tuple[FunctionService, AliasService, PolicyService]) -> None:
    _functions, _aliases, policies = world
    with pytest.raises(NotFoundError, match=r"^The resource you requested does not exist\.$"):
        policies.get(REF)
    with pytest.raises(NotFoundError, match=r"^No policy is associated with the given resource\.$"):
        policies.remove(REF, "s1", None)
    add(policies)
    with pytest.raises(ConflictError, match=r"The statement id \(s1\) provided already exists"):
        add(policies)
    with pytest.raises(NotFoundError, match=r"^Statement nope is not found in resource policy\.$"):
        policies.remove(REF, "nope", None)
    with pytest.raises(NotFoundError, match=r"No policy found for: .*function:ghost$"):
        policies.remove(FunctionRef(ACCOUNT, REGION, "ghost"), "s1", None)
    with pytest.raises(ValidationError, match="The provided principal was invalid"):
        add(policies, StatementId="bad", Principal="someone")
    with pytest.raises(PolicyTooLargeError, match=str(POLICY_MAX_BYTES)):
        for i in range(200):
            add(policies, StatementId=f"big{i}", SourceArn="arn:aws:s3:::" + "b" * 200)


def test_revision_ids_guard_and_change(
    world: tuple[FunctionService, AliasService, PolicyService],
) -> None:
    functions, aliases, policies = world
    # what GetFunction shows (publishing version 1 gave $LATEST a new one, ADR 0039)
    function_revision = functions.get(REF).reported_revision_id
    with pytest.raises(PreconditionError, match="does not match the latest Revision Id"):
        add(policies, RevisionId="stale")
    add(policies, RevisionId=function_revision)  # before any policy: the function's own
    _document, first = policies.get(REF)
    assert functions.get(REF).reported_revision_id == first  # as AWS: the function's too
    add(policies, StatementId="s2", RevisionId=first)
    _document, second = policies.get(REF)
    assert second != first
    with pytest.raises(PreconditionError):
        policies.remove(REF, "s2", first)
    policies.remove(REF, "s2", second)
    _document, third = policies.get(REF)
    assert third not in (first, second)
    policies.remove(REF, "s1", None)
    with pytest.raises(NotFoundError):
        policies.get(REF)  # the last statement took the policy with it
    alias_ref = FunctionRef(ACCOUNT, REGION, "f", "live")
    add(policies, alias_ref, RevisionId=aliases.get(REF, "live").revision_id)


def test_url_invocation_needs_a_matching_statement(
    world: tuple[FunctionService, AliasService, PolicyService],
) -> None:
    _functions, _aliases, policies = world
    target = (ACCOUNT, REGION, "f", "$LATEST")
    anonymous = UrlCaller()
    assert not policies.allows_url(target, "NONE", anonymous)
    add(policies, Action="lambda:InvokeFunction", Principal="*")  # not the URL action
    add(
        policies,
        StatementId="iam-only",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="AWS_IAM",
    )
    add(
        policies,
        StatementId="sourced",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        SourceAccount="123456789012",
    )
    assert not policies.allows_url(target, "NONE", anonymous)
    add(
        policies,
        StatementId="public",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    assert policies.allows_url(target, "NONE", anonymous)
    assert not policies.allows_url((ACCOUNT, REGION, "f", "live"), "NONE", anonymous)
    # AWS_IAM: the owner's account needs no statement; another account needs one naming it
    assert policies.allows_url(target, "AWS_IAM", UrlCaller(ACCOUNT))
    other = UrlCaller("444455556666")
    policies.remove(REF, "iam-only", None)
    assert not policies.allows_url(target, "AWS_IAM", other)
    add(
        policies,
        StatementId="xacct",
        Action="lambda:InvokeFunctionUrl",
        Principal="arn:aws:iam::444455556666:role/example",
        FunctionUrlAuthType="AWS_IAM",
    )
    assert policies.allows_url(target, "AWS_IAM", other)


def test_a_deleted_alias_or_version_takes_its_policy_along(
    world: tuple[FunctionService, AliasService, PolicyService],
) -> None:
    functions, aliases, policies = world
    alias_ref = FunctionRef(ACCOUNT, REGION, "f", "live")
    aliases.on_deleted(policies.forget_alias)  # as the composition root wires them
    add(policies, alias_ref)
    aliases.delete(REF, "live")
    aliases.create(REF, {"Name": "live", "FunctionVersion": "1"})
    with pytest.raises(NotFoundError):
        policies.get(alias_ref)
    version_ref = FunctionRef(ACCOUNT, REGION, "f", "1")
    add(policies, version_ref)
    policies.forget_version(functions.get(version_ref))
    with pytest.raises(NotFoundError):
        policies.get(version_ref)


def test_policy_writes_are_compare_and_set(store_url: str) -> None:
    """Two control nodes adding statements at once: the second writer's stale view
    loses and reads again, instead of overwriting the first one's statement."""
    table = ResourceStore(Store(store_url))
    target = (ACCOUNT, REGION, "f", "$LATEST")
    assert table.change_policy(target, None, [{"Sid": "a"}], "r1")
    assert not table.change_policy(target, None, [{"Sid": "b"}], "r2")  # exists already
    assert not table.change_policy(target, "stale", [{"Sid": "b"}], "r2")
    assert table.change_policy(target, "r1", [{"Sid": "a"}, {"Sid": "b"}], "r2")
    stored = table.policy(target)
    assert stored is not None and stored.revision_id == "r2"
    assert [s["Sid"] for s in stored.statements] == ["a", "b"]
    assert table.change_policy(target, "r2", [], "r3")  # the last statement: no policy
    assert table.policy(target) is None


def test_what_one_node_writes_the_others_policy_and_url_caches_learn(
    postgres: Postgres, tmp_path: Path
) -> None:
    """Two control nodes on one PostgreSQL: a URL request on node b reads its URL and
    policy from b's cache; what node a changes, b hears (the functions' channel)."""
    url = postgres.database()
    target = (ACCOUNT, REGION, "f", "$LATEST")
    uid = "u" * 32

    async def until(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 60
        while not check():
            assert time.monotonic() < deadline, "not heard within the limit"
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        nodes = []
        listening = [asyncio.Event(), asyncio.Event()]
        for index, name in enumerate(("a", "b")):
            table = FunctionStore(Store(url))
            functions = FunctionService(table, CodeStore(tmp_path / name), RuntimeCatalog())
            resources = ResourceStore(Store(url))
            functions.on_changed(resources.forget)  # as the composition root wires it
            ready = listening[index]
            functions.on_changed(lambda f, ready=ready: ready.set() if f is None else None)
            nodes.append((functions, resources))
        (fa, a), (fb, b) = nodes
        following = [asyncio.get_running_loop().create_task(f.follow()) for f in (fa, fb)]
        try:
            for ready in listening:
                await asyncio.wait_for(ready.wait(), 60)
            assert b.policy(target) is None and b.url(uid) is None  # cached: no policy
            assert a.change_policy(target, None, [{"Sid": "a"}], "r1")
            assert a.insert_url(uid, target, {"AuthType": "NONE"})
            await until(lambda: b.policy(target) is not None and b.url(uid) is not None)
            assert a.change_policy(target, "r1", [{"Sid": "a"}, {"Sid": "b"}], "r2")
            a.put_url(uid, target, {"AuthType": "AWS_IAM"})

            def changed() -> bool:
                stored, found = b.policy(target), b.url(uid)
                return (
                    stored is not None
                    and stored.revision_id == "r2"
                    and found is not None
                    and found.config == {"AuthType": "AWS_IAM"}
                )

            await until(changed)
            a.delete_function(ACCOUNT, REGION, "f")
            await until(lambda: b.policy(target) is None and b.url(uid) is None)
        finally:
            for task in following:
                task.cancel()

    asyncio.run(scenario())


def test_resources_of_functions_that_are_gone_are_swept(
    world: tuple[FunctionService, AliasService, PolicyService], store_url: str
) -> None:
    """A server stopped between DeleteFunction and deleting the function's policy and
    URL: at the next start they go, so a function made again by that name has none."""
    functions, _aliases, policies = world
    add(policies)
    table = ResourceStore(Store(store_url))
    table.insert_url("g" * 32, (ACCOUNT, REGION, "ghost", "$LATEST"), {"AuthType": "NONE"})
    table.change_policy((ACCOUNT, REGION, "ghost", "$LATEST"), None, [{"Sid": "x"}], "r")
    table.keep_only(functions.names)
    assert table.url("g" * 32) is None
    assert table.policy((ACCOUNT, REGION, "ghost", "$LATEST")) is None
    assert table.policy((ACCOUNT, REGION, "f", "$LATEST")) is not None  # f still exists
