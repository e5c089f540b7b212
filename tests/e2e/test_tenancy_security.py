"""Two accounts, several users: every allowed call succeeds and every other fails with
AWS's error and words (issue 19's "Done when"; ADR 0036).

AWS behaviours, each from AWS's documentation:
- IAM user guide, "Policy evaluation logic": default deny; an explicit deny overrides
  any allow; "Cross-account policy evaluation logic": across accounts both the
  caller's identity-based policy and the resource-based policy must allow.
- Lambda developer guide, "Granting function access to other accounts": AddPermission
  with another account as Principal lets that account invoke; RemovePermission takes
  it back; the grant covers only the action it names.
- IAM user guide, "Troubleshoot access denied error messages": "User: <arn> is not
  authorized to perform: <action> on resource: <arn> because no identity-based policy
  allows the <action> action", "... because no resource-based policy allows ...",
  "... with an explicit deny in an identity-based policy".
- STS: a request with an expired session token fails with ExpiredTokenException
  ("The security token included in the request is expired"); a request signed with the
  wrong secret fails with InvalidSignatureException.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from kindling.iam.secrets import ServerKey
from kindling.iam.sessions import SessionIssuer

from .support import KINDLING, REGION, AwsCli, Server, client_error, make_zip, wait_active

pytestmark = pytest.mark.timeout(600)
CODE = make_zip({"app.py": "def handler(event, context):\n    return 'hi'\n"})
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass
class Tenant:
    account: str
    key: str
    secret: str
    token: str | None = None

    def client(self, server: Server, service: str) -> Any:
        return boto3.session.Session().client(
            service,
            region_name=REGION,
            endpoint_url=server.endpoint,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            aws_session_token=self.token,
            config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}),
        )


def make_account(server: Server, name: str) -> Tenant:
    run = subprocess.run(
        [
            str(KINDLING),
            "admin",
            "account",
            "create",
            name,
            "--json",
            "--endpoint",
            server.endpoint,
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    key = json.loads(run.stdout)["Key"]
    return Tenant(key["AccountId"], key["AccessKeyId"], key["SecretAccessKey"])


def make_user(server: Server, root: Tenant, name: str, *statements: dict[str, Any]) -> Tenant:
    iam = root.client(server, "iam")
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(
            UserName=name,
            PolicyName="p",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Tenant(root.account, key["AccessKeyId"], key["SecretAccessKey"])


def make_function(server: Server, root: Tenant, name: str) -> str:
    iam, lam = root.client(server, "iam"), root.client(server, "lambda")
    try:
        role = iam.get_role(RoleName="fn")["Role"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]
    arn = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Arn"],
        Handler="app.handler",
        Code={"ZipFile": CODE},
    )["FunctionArn"]
    wait_active(lam, name)
    return str(arn)


def allow(action: str, resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action: str, resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Tenant, Tenant]]:
    root = tmp_path_factory.mktemp("tenancy")
    server = Server(data_dir=root / "data", log_path=root / "server.log")
    server.start()
    try:
        yield server, make_account(server, "team-a"), make_account(server, "team-b")
    finally:
        server.stop_cleanly()


def test_accounts_see_only_their_own(world: tuple[Server, Tenant, Tenant]) -> None:
    server, a, b = world
    fa = make_function(server, a, "same")
    fb = make_function(server, b, "same")
    assert fa != fb and f":{a.account}:" in fa and f":{b.account}:" in fb
    lam_b = b.client(server, "lambda")
    assert [f["FunctionArn"] for f in lam_b.list_functions()["Functions"]] == [fb]
    assert [r["Arn"] for r in b.client(server, "iam").list_roles()["Roles"]] == [
        f"arn:aws:iam::{b.account}:role/fn"
    ]
    # another account's function, existing or not, is denied alike: nothing to infer
    for target in (fa, f"arn:aws:lambda:{REGION}:{a.account}:function:nothing-here"):
        with client_error("AccessDeniedException", 403) as info:
            lam_b.invoke(FunctionName=target)
        assert info.value.response["Error"]["Message"] == (
            f"User: arn:aws:iam::{b.account}:root is not authorized to perform: "
            f"lambda:InvokeFunction on resource: {target} because no resource-based policy "
            "allows the lambda:InvokeFunction action"
        )
    with client_error("AccessDeniedException", 403):
        lam_b.get_function(FunctionName=fa)
    with client_error("AccessDeniedException", 403):
        lam_b.delete_function(FunctionName=fa)
    assert a.client(server, "lambda").get_function(FunctionName="same")


def test_cross_account_invoke_only_by_add_permission(world: tuple[Server, Tenant, Tenant]) -> None:
    server, a, b = world
    fa = make_function(server, a, "shared")
    lam_a, lam_b = a.client(server, "lambda"), b.client(server, "lambda")
    with client_error("AccessDeniedException", 403):
        lam_b.invoke(FunctionName=fa)
    lam_a.add_permission(
        FunctionName="shared", StatementId="b", Action="lambda:InvokeFunction", Principal=b.account
    )
    assert json.loads(lam_b.invoke(FunctionName=fa)["Payload"].read()) == "hi"
    with client_error("AccessDeniedException", 403):  # the grant names Invoke only
        lam_b.get_function(FunctionName=fa)
    # a user of B needs its own identity policy too (cross-account: both must allow)
    carl = make_user(server, b, "carl", allow("lambda:GetFunction"))
    with client_error("AccessDeniedException", 403) as info:
        carl.client(server, "lambda").invoke(FunctionName=fa)
    assert "because no identity-based policy allows" in info.value.response["Error"]["Message"]
    dora = make_user(server, b, "dora", allow("lambda:InvokeFunction", fa))
    assert (
        json.loads(dora.client(server, "lambda").invoke(FunctionName=fa)["Payload"].read()) == "hi"
    )
    lam_a.remove_permission(FunctionName="shared", StatementId="b")
    with client_error("AccessDeniedException", 403):
        lam_b.invoke(FunctionName=fa)


def test_users_get_exactly_their_policies(world: tuple[Server, Tenant, Tenant]) -> None:
    server, a, _b = world
    fn = make_function(server, a, "guarded")
    alice = make_user(server, a, "alice", allow("lambda:InvokeFunction", fn))
    bob = make_user(server, a, "bob")
    carol = make_user(server, a, "carol", allow("lambda:*"), deny("lambda:DeleteFunction"))
    lam_alice = alice.client(server, "lambda")
    assert json.loads(lam_alice.invoke(FunctionName="guarded")["Payload"].read()) == "hi"
    with client_error("AccessDeniedException", 403) as info:
        lam_alice.get_function(FunctionName="guarded")
    assert info.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{a.account}:user/alice is not authorized to perform: "
        f"lambda:GetFunction on resource: {fn} because no identity-based policy allows the "
        "lambda:GetFunction action"
    )
    with client_error("AccessDeniedException", 403):
        lam_alice.list_functions()
    with client_error("AccessDeniedException", 403):
        bob.client(server, "lambda").invoke(FunctionName="guarded")
    lam_carol = carol.client(server, "lambda")
    assert lam_carol.get_function(FunctionName="guarded")["Configuration"]["FunctionArn"] == fn
    with client_error("AccessDeniedException", 403) as info:
        lam_carol.delete_function(FunctionName="guarded")
    assert info.value.response["Error"]["Message"].endswith(
        "with an explicit deny in an identity-based policy"
    )
    # IAM itself is authorized the same way: bob may not give himself rights
    with pytest.raises(Exception) as denied:
        bob.client(server, "iam").put_user_policy(
            UserName="bob",
            PolicyName="x",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allow("*")]}),
        )
    assert "AccessDenied" in str(denied.value)
    # a role the caller may not pass cannot become a function's role
    with client_error("AccessDeniedException", 403) as info:
        lam_carol.create_function(
            FunctionName="by-carol",
            Runtime="python3.12",
            Handler="app.handler",
            Role=f"arn:aws:iam::{a.account}:role/fn",
            Code={"ZipFile": CODE},
        )
    assert "iam:PassRole" in info.value.response["Error"]["Message"]


def test_forged_expired_and_re_signed_requests(world: tuple[Server, Tenant, Tenant]) -> None:
    server, a, b = world
    issuer = SessionIssuer(ServerKey.load_or_create(server.data_dir / "server.key"))
    old = issuer.issue(a.account, "fn", "/", "s", 900, now=time.time() - 3600)
    expired = Tenant(a.account, old.access_key_id, old.secret_access_key, old.token)
    with client_error("ExpiredTokenException", 403) as info:
        expired.client(server, "lambda").list_functions()
    assert info.value.response["Error"]["Message"] == (
        "The security token included in the request is expired"
    )
    re_signed = Tenant(a.account, a.key, b.secret)
    with client_error("InvalidSignatureException", 403):
        re_signed.client(server, "lambda").list_functions()
    other_key = SessionIssuer(ServerKey(b"\x01" * 32)).issue(a.account, "fn", "/", "s", 900)
    forged = Tenant(
        a.account, other_key.access_key_id, other_key.secret_access_key, other_key.token
    )
    with client_error("UnrecognizedClientException", 403):
        forged.client(server, "lambda").list_functions()


def _url_call(server: Server, url: str, who: Tenant) -> int:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from .test_function_urls import call, url_id

    uid = url_id(url)
    host = f"{uid}.lambda-url.{REGION}.localhost:{server.port}"
    request = AWSRequest(method="GET", url=f"http://{host}/", headers={"Host": host})
    SigV4Auth(Credentials(who.key, who.secret, who.token), "lambda", REGION).add_auth(request)
    return call(server, uid, "GET", "/", headers=dict(request.headers.items())).status


def test_an_aws_iam_url_needs_invoke_function_url(world: tuple[Server, Tenant, Tenant]) -> None:
    """Lambda developer guide, "Control access to Lambda function URLs": with AWS_IAM,
    a principal of the function's account needs lambda:InvokeFunctionUrl in its
    identity-based policy; one of another account needs the function's resource-based
    policy to allow it as well; a refused request gets 403 Forbidden."""
    server, a, b = world
    fn = make_function(server, a, "by-url")
    url = a.client(server, "lambda").create_function_url_config(
        FunctionName="by-url", AuthType="AWS_IAM"
    )["FunctionUrl"]
    eve = make_user(server, a, "eve", allow("lambda:InvokeFunction", fn))
    fay = make_user(server, a, "fay", allow("lambda:InvokeFunctionUrl", fn))
    assert _url_call(server, url, a) == 200  # the account's root
    assert _url_call(server, url, eve) == 403  # InvokeFunction is not InvokeFunctionUrl
    assert _url_call(server, url, fay) == 200
    assert _url_call(server, url, b) == 403  # another account, no resource policy
    a.client(server, "lambda").add_permission(
        FunctionName="by-url",
        StatementId="b-url",
        Action="lambda:InvokeFunctionUrl",
        Principal=b.account,
        FunctionUrlAuthType="AWS_IAM",
    )
    assert _url_call(server, url, b) == 200


def test_a_role_trusting_another_account_is_assumed_from_it(
    world: tuple[Server, Tenant, Tenant],
) -> None:
    """IAM user guide, "Cross account resource access in IAM" / STS AssumeRole: the
    role's trust policy names the other account, and the other account's principal
    needs sts:AssumeRole in its own identity policy (its root needs none)."""
    server, a, b = world
    a.client(server, "iam").create_role(
        RoleName="for-b",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{b.account}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    role_arn = f"arn:aws:iam::{a.account}:role/for-b"
    creds = b.client(server, "sts").assume_role(RoleArn=role_arn, RoleSessionName="xx")[
        "Credentials"
    ]
    session = Tenant(
        a.account, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    )
    me = session.client(server, "sts").get_caller_identity()
    assert me["Arn"] == f"arn:aws:sts::{a.account}:assumed-role/for-b/xx"
    with client_error("AccessDeniedException", 403):  # the role has no policies yet
        session.client(server, "lambda").list_functions()
    gus = make_user(server, b, "gus")
    with pytest.raises(Exception, match="AccessDenied"):
        gus.client(server, "sts").assume_role(RoleArn=role_arn, RoleSessionName="yy")
    with pytest.raises(Exception, match="AccessDenied"):  # A's root is not trusted
        a.client(server, "sts").assume_role(RoleArn=role_arn, RoleSessionName="zz")


def test_eventbridge_calls_are_authorized_on_the_rule_they_name(
    world: tuple[Server, Tenant, Tenant],
) -> None:
    """IAM's resource types for EventBridge: ``rule/[bus/]name`` (ADR 0043)."""
    server, a, _b = world
    rules = f"arn:aws:events:{REGION}:{a.account}:rule/team-*"
    ruler = make_user(
        server, a, "ruler", allow("events:PutRule", rules), allow("events:DeleteRule", rules)
    )
    events = ruler.client(server, "events")
    events.put_rule(Name="team-nightly", ScheduleExpression="rate(1 day)", State="DISABLED")
    with client_error("AccessDeniedException", 403) as info:
        events.put_rule(Name="other-nightly", ScheduleExpression="rate(1 day)")
    assert info.value.response["Error"]["Message"] == (
        f"User: arn:aws:iam::{a.account}:user/ruler is not authorized to perform: "
        f"events:PutRule on resource: arn:aws:events:{REGION}:{a.account}:rule/other-nightly "
        "because no identity-based policy allows the events:PutRule action"
    )
    root_events = a.client(server, "events")
    root_events.create_event_bus(Name="orders")
    with client_error("AccessDeniedException", 403):  # team-* of another bus is not rule/team-*
        events.put_rule(Name="team-x", EventBusName="orders", ScheduleExpression="rate(1 day)")
    events.delete_rule(Name="team-nightly")
    root_events.delete_event_bus(Name="orders")


def test_a_groups_policies_count_for_its_members_only(
    world: tuple[Server, Tenant, Tenant],
) -> None:
    """IAM user guide, "IAM user groups": a policy attached to a group applies to every
    user in it; an explicit deny of a group's policy wins; a group is deleted only
    once it has no members ("Cannot delete entity, must remove users from group
    first.")."""
    server, a, b = world
    fn = make_function(server, a, "grouped")
    iam = a.client(server, "iam")
    dave = make_user(server, a, "dave")
    lam_dave = dave.client(server, "lambda")
    with client_error("AccessDeniedException", 403):
        lam_dave.get_function(FunctionName="grouped")

    group = iam.create_group(GroupName="devs")["Group"]
    assert group["Arn"] == f"arn:aws:iam::{a.account}:group/devs"
    iam.put_group_policy(
        GroupName="devs",
        PolicyName="read",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allow("lambda:*", fn)]}),
    )
    no_delete = iam.create_policy(
        PolicyName="no-delete",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [deny("lambda:DeleteFunction")]}
        ),
    )["Policy"]["Arn"]
    iam.attach_group_policy(GroupName="devs", PolicyArn=no_delete)
    iam.add_user_to_group(GroupName="devs", UserName="dave")
    assert lam_dave.get_function(FunctionName="grouped")["Configuration"]["FunctionArn"] == fn
    with client_error("AccessDeniedException", 403) as info:
        lam_dave.delete_function(FunctionName="grouped")
    assert info.value.response["Error"]["Message"].endswith(
        "with an explicit deny in an identity-based policy"
    )

    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="dave")["Groups"]] == ["devs"]
    got = iam.get_group(GroupName="devs")
    assert [u["UserName"] for u in got["Users"]] == ["dave"] and not got["IsTruncated"]
    assert iam.list_group_policies(GroupName="devs")["PolicyNames"] == ["read"]
    assert iam.get_group_policy(GroupName="devs", PolicyName="read")["PolicyName"] == "read"
    attached = iam.list_attached_group_policies(GroupName="devs")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [no_delete]
    with client_error("DeleteConflict", 409):
        iam.delete_group(GroupName="devs")
    with client_error("DeleteConflict", 409):
        iam.delete_user(UserName="dave")
    with client_error("NoSuchEntity", 404):  # groups are per account
        b.client(server, "iam").get_group(GroupName="devs")

    iam.remove_user_from_group(GroupName="devs", UserName="dave")
    with client_error("AccessDeniedException", 403):
        lam_dave.get_function(FunctionName="grouped")
    iam.delete_group_policy(GroupName="devs", PolicyName="read")
    iam.detach_group_policy(GroupName="devs", PolicyArn=no_delete)
    iam.delete_group(GroupName="devs")
    with client_error("NoSuchEntity", 404) as info:
        iam.get_group(GroupName="devs")
    assert info.value.response["Error"]["Message"] == "The group with name devs cannot be found."


def test_iam_lists_are_paged_with_marker_and_max_items(
    world: tuple[Server, Tenant, Tenant],
) -> None:
    server, _a, _b = world
    iam = boto3.session.Session().client(
        "iam",
        region_name=REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    names = [f"pager-{i}" for i in range(5)]
    for name in names:
        iam.create_user(UserName=name, Path="/pager/")
        iam.create_group(GroupName=name, Path="/pager/")
    first = iam.list_users(PathPrefix="/pager/", MaxItems=2)
    assert [u["UserName"] for u in first["Users"]] == names[:2]
    assert first["IsTruncated"] and first["Marker"]
    second = iam.list_users(PathPrefix="/pager/", MaxItems=2, Marker=first["Marker"])
    assert [u["UserName"] for u in second["Users"]] == names[2:4]
    pages = iam.get_paginator("list_groups").paginate(
        PathPrefix="/pager/", PaginationConfig={"PageSize": 2}
    )
    assert [g["GroupName"] for page in pages for g in page["Groups"]] == names
    with client_error("InvalidInput", 400):
        iam.list_users(Marker="not-a-marker!")
    # the AWS CLI follows the markers by itself
    cli = AwsCli(server.endpoint)
    listed = cli.json("list-users", "--path-prefix", "/pager/", "--page-size", "1", service="iam")
    assert [u["UserName"] for u in listed["Users"]] == names
    assert [
        g["GroupName"]
        for g in cli.json("list-groups", "--path-prefix", "/pager/", service="iam")["Groups"]
    ] == names
    for name in names:
        iam.delete_user(UserName=name)
        iam.delete_group(GroupName=name)


def _scrape(server: Server, headers: dict[str, str] | None = None, query: str = "") -> str:
    url = f"{server.endpoint}/metrics" + (f"?{query}" if query else "")
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return str(answer.read().decode())


def _signed_scrape(server: Server, who: Tenant, presign: bool = False) -> str:
    request = AWSRequest(method="GET", url=f"{server.endpoint}/metrics")
    credentials = Credentials(who.key, who.secret, who.token)
    if presign:
        SigV4QueryAuth(credentials, "lambda", REGION, 60).add_auth(request)
        return _scrape(server, query=request.url.split("?", 1)[1])
    SigV4Auth(credentials, "lambda", REGION).add_auth(request)
    return _scrape(server, dict(request.headers.items()))


def test_metrics_show_each_reader_only_what_it_may_see(
    world: tuple[Server, Tenant, Tenant],
) -> None:
    """ADR 0043: unsigned, names only of the dev account (its key is public) and totals;
    signed, the signer's account's series; the operator's bearer token, everything."""
    server, a, b = world
    make_function(server, a, "metered-a")
    make_function(server, b, "metered-b")
    a.client(server, "lambda").invoke(FunctionName="metered-a")
    b.client(server, "lambda").invoke(FunctionName="metered-b")

    public = _scrape(server)
    for leaked in ("metered-a", "metered-b", a.account, b.account):
        assert leaked not in public
    assert 'account="_others"' in public and "kindling_invocations_total" in public

    mine = _signed_scrape(server, a)
    assert 'function="metered-a"' in mine and a.account in mine
    assert "metered-b" not in mine and b.account not in mine and "process_" not in mine
    assert 'function="metered-b"' in _signed_scrape(server, b, presign=True)

    token = (server.data_dir / "metrics.token").read_text().strip()
    assert (server.data_dir / "metrics.token").stat().st_mode & 0o777 == 0o600
    everything = _scrape(server, {"Authorization": f"Bearer {token}"})
    assert 'function="metered-a"' in everything and 'function="metered-b"' in everything

    with pytest.raises(urllib.error.HTTPError) as info:
        _scrape(server, {"Authorization": "Bearer " + "0" * 64})
    assert info.value.code == 403
    nobody = make_user(server, a, "no-metrics")
    with pytest.raises(urllib.error.HTTPError) as info:
        _signed_scrape(server, nobody)
    assert info.value.code == 403
    assert "cloudwatch:GetMetricData" in info.value.read().decode()
    watcher = make_user(server, a, "watcher", allow("cloudwatch:GetMetricData"))
    assert 'function="metered-a"' in _signed_scrape(server, watcher)
