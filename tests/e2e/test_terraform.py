"""Terraform, as a user runs it, against a real kindling server: the hashicorp/aws
provider creates a function (zip) with a layer, an alias, a provisioned concurrency
config, a code signing config, a runtime management config, a recursion config, an
asynchronous invocation config, a function URL and the permission that opens it; a
second plan shows no change; an update (code, memory, environment) applies and plans clean again;
destroy leaves nothing.

Terraform comes from the machine (``terraform`` on PATH) and the provider from a local
filesystem mirror (no registry is reached): ``KINDLING_TF_MIRROR``, else the
``filesystem_mirror`` of the CLI config in ``TF_CLI_CONFIG_FILE``, else the directories
Terraform searches by default and ``/opt/tf-plugins``. Where either is missing the test
skips and says which.

The provider is told not to call STS or IAM (``skip_credentials_validation``,
``skip_requesting_account_id``, ``skip_metadata_api_check``): kindling serves Lambda
only, and with those flags the provider needs nothing else (ADR 0029).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.engines import MotoServer

from .support import ACCOUNT, REGION, Server, make_zip, wait_for

#: Where a provider may sit in a mirror: HOST/NAMESPACE/TYPE/VERSION/OS_ARCH (unpacked).
PROVIDER = Path("registry.terraform.io/hashicorp/aws")
DEFAULT_MIRRORS = (
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
    "/opt/tf-plugins",
)
#: Each terraform command may take this long on a loaded machine (the provider waits
#: 5 s between its polls of a function's state).
TF_TIMEOUT_S = 600


def _configured_mirrors() -> list[str]:
    config = os.environ.get("TF_CLI_CONFIG_FILE")
    if not config or not os.path.isfile(config):
        return []
    text = Path(config).read_text(errors="replace")
    return re.findall(r'filesystem_mirror\s*\{[^}]*?path\s*=\s*"([^"]+)"', text, re.S)


def find_aws_provider() -> tuple[Path, str] | None:
    """(mirror directory, provider version) of a hashicorp/aws for this platform."""
    candidates = [
        *(p for p in (os.environ.get("KINDLING_TF_MIRROR"),) if p),
        *_configured_mirrors(),
        *DEFAULT_MIRRORS,
    ]
    for candidate in candidates:
        root = Path(os.path.expanduser(candidate))
        versions = sorted(
            (p for p in (root / PROVIDER).glob("*/linux_amd64") if p.is_dir()),
            key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")],
        )
        if versions:
            return root, versions[-1].parent.name
    return None


def _tf_or_skip() -> tuple[str, Path, str]:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (not on PATH)")
    found = find_aws_provider()
    if found is None:
        pytest.skip(
            "no local mirror of the hashicorp/aws provider (set KINDLING_TF_MIRROR to a "
            "filesystem mirror holding registry.terraform.io/hashicorp/aws/VERSION/linux_amd64)"
        )
    return terraform, found[0], found[1]


#: The provider every configuration here (and test_logging_config's) talks to kindling's
#: Lambda API through, told not to call STS or IAM.
PROVIDER_TF = """
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "%(version)s" }
  }
}
provider "aws" {
  region                      = "%(region)s"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
    lambda = "%(endpoint)s"
  }
}
"""

MAIN_TF = (
    PROVIDER_TF
    + """variable "memory" { type = number }
variable "greeting" { type = string }
resource "aws_lambda_code_signing_config" "signing" {
  description = "kindling e2e"
  allowed_publishers {
    signing_profile_version_arns = ["%(profile)s"]
  }
  policies {
    untrusted_artifact_on_deployment = "Warn"
  }
}
resource "aws_lambda_layer_version" "lib" {
  layer_name          = "%(name)s-lib"
  filename            = "layer.zip"
  source_code_hash    = filebase64sha256("layer.zip")
  compatible_runtimes = ["python3.11"]
  description         = "greetings"
  license_info        = "MIT"
}
resource "aws_lambda_function" "fn" {
  function_name           = "%(name)s"
  layers                  = [aws_lambda_layer_version.lib.arn]
  role                    = "arn:aws:iam::%(account)s:role/terraform"
  handler                 = "app.handler"
  runtime                 = "python3.11"
  filename                = "fn.zip"
  source_code_hash        = filebase64sha256("fn.zip")
  memory_size             = var.memory
  timeout                 = 10
  description             = "made by terraform"
  architectures           = ["x86_64"]
  publish                 = true
  reserved_concurrent_executions = 5
  tags                    = { team = "kindling" }
  ephemeral_storage {
    size = 1024
  }
  tracing_config {
    mode = "PassThrough"
  }
  logging_config {
    log_format = "Text"
    log_group  = "/kindling/e2e"
  }
  code_signing_config_arn = aws_lambda_code_signing_config.signing.arn
  environment {
    variables = { GREETING = var.greeting }
  }
}
resource "aws_lambda_alias" "live" {
  name             = "live"
  function_name    = aws_lambda_function.fn.function_name
  function_version = aws_lambda_function.fn.version
}
resource "aws_lambda_provisioned_concurrency_config" "warm" {
  function_name                     = aws_lambda_alias.live.function_name
  qualifier                         = aws_lambda_alias.live.name
  provisioned_concurrent_executions = 1
}
resource "aws_lambda_function_recursion_config" "loops" {
  function_name  = aws_lambda_function.fn.function_name
  recursive_loop = "Allow"
}
resource "aws_lambda_runtime_management_config" "runtime" {
  function_name     = aws_lambda_function.fn.function_name
  update_runtime_on = "FunctionUpdate"
}
resource "aws_lambda_function_event_invoke_config" "async" {
  function_name                = aws_lambda_function.fn.function_name
  maximum_event_age_in_seconds = 120
  maximum_retry_attempts       = 0
}
resource "aws_lambda_function_url" "url" {
  function_name      = aws_lambda_function.fn.function_name
  authorization_type = "NONE"
}
resource "aws_lambda_permission" "url" {
  statement_id           = "public-url"
  action                 = "lambda:InvokeFunctionUrl"
  principal              = "*"
  function_name          = aws_lambda_function.fn.function_name
  function_url_auth_type = "NONE"
}
"""
)

APP = (
    "import os\n"
    "import greet\n"  # from the layer, at /opt/python
    "def handler(event, context):\n"
    "    return {'v': %d, 'greeting': greet.say(os.environ['GREETING'])}\n"
)
#: The function of the S3 lifecycle: no layer.
PLAIN_APP = (
    "import os\n"
    "def handler(event, context):\n"
    "    return {'v': %d, 'greeting': os.environ['GREETING']}\n"
)
LAYER = {"python/greet.py": b"def say(word):\n    return word + '!'\n"}


class Terraform:
    """One working directory of Terraform with its own CLI config and data dir."""

    def __init__(self, terraform: str, mirror: Path, workdir: Path) -> None:
        self.terraform = terraform
        self.workdir = workdir
        cli_config = workdir / "terraformrc"
        cli_config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path = "{mirror}"\n'
            '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
            '  direct {\n    exclude = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
            "}\n"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
        self.env.update(
            TF_CLI_CONFIG_FILE=str(cli_config),
            TF_DATA_DIR=str(workdir / ".terraform"),
            TF_IN_AUTOMATION="1",
            CHECKPOINT_DISABLE="1",
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.terraform, *args, "-no-color", "-input=false"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TF_TIMEOUT_S,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"terraform {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def plan_is_empty(self, *variables: str) -> None:
        """``plan -detailed-exitcode``: 0 is no changes, 2 changes, 1 an error."""
        done = self.run("plan", "-detailed-exitcode", *variables)
        assert done.returncode == 0, (
            f"the second plan is not empty (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


def _vars(memory: int, greeting: str) -> tuple[str, ...]:
    return ("-var", f"memory={memory}", "-var", f"greeting={greeting}")


def _invoke_live(lam: Any, name: str) -> dict[str, Any]:
    out = lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
    assert out["StatusCode"] == 200 and "FunctionError" not in out, out
    result: dict[str, Any] = json.loads(out["Payload"].read())
    return result


def _through_url(server: Server, url: str) -> Any:
    """A GET of a function URL as a browser sends it: no signature."""
    url_id = url.split("//", 1)[1].split(".", 1)[0]
    with urllib.request.urlopen(f"{server.endpoint}/_url/{url_id}/", timeout=60) as answer:
        return json.loads(answer.read())


def test_terraform_lifecycle(server: Server, lam: Any, fn_name: str, tmp_path: Path) -> None:
    terraform, mirror, version = _tf_or_skip()
    tf = Terraform(terraform, mirror, tmp_path)
    (tmp_path / "main.tf").write_text(
        MAIN_TF
        % {
            "version": version,
            "region": REGION,
            "account": ACCOUNT,
            "endpoint": server.endpoint,
            "name": fn_name,
            "profile": f"arn:aws:signer:{REGION}:{ACCOUNT}:/signing-profiles/kindling/abcdefghij",
        }
    )
    (tmp_path / "fn.zip").write_bytes(make_zip({"app.py": APP % 1}))
    (tmp_path / "layer.zip").write_bytes(make_zip(LAYER))
    tf.ok("init")

    tf.ok("apply", "-auto-approve", *_vars(128, "hello"))
    config = lam.get_function(FunctionName=fn_name)["Configuration"]
    assert (config["MemorySize"], config["Environment"]["Variables"]) == (
        128,
        {"GREETING": "hello"},
    )
    assert (config["Timeout"], config["EphemeralStorage"], config["Description"]) == (
        10,
        {"Size": 1024},
        "made by terraform",
    )
    got = lam.get_function(FunctionName=fn_name)
    assert got["Tags"] == {"team": "kindling"}
    assert got["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    assert lam.get_alias(FunctionName=fn_name, Name="live")["FunctionVersion"] == "1"
    warm = lam.get_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="live")
    assert warm["RequestedProvisionedConcurrentExecutions"] == 1
    signing = lam.get_function_code_signing_config(FunctionName=fn_name)["CodeSigningConfigArn"]
    assert ":code-signing-config:csc-" in signing
    runtime = lam.get_runtime_management_config(FunctionName=fn_name)
    assert runtime["UpdateRuntimeOn"] == "FunctionUpdate"
    assert lam.get_function_recursion_config(FunctionName=fn_name)["RecursiveLoop"] == "Allow"
    (layer,) = config["Layers"]
    assert layer["Arn"].endswith(f":layer:{fn_name}-lib:1")
    invoke_config = lam.get_function_event_invoke_config(FunctionName=fn_name)
    assert (invoke_config["MaximumEventAgeInSeconds"], invoke_config["MaximumRetryAttempts"]) == (
        120,
        0,
    )
    url = lam.get_function_url_config(FunctionName=fn_name)["FunctionUrl"]
    assert _through_url(server, url) == {"v": 1, "greeting": "hello!"}
    tf.plan_is_empty(*_vars(128, "hello"))

    (tmp_path / "fn.zip").write_bytes(make_zip({"app.py": APP % 2}))
    tf.ok("apply", "-auto-approve", *_vars(256, "bye"))
    assert lam.get_function_configuration(FunctionName=fn_name)["MemorySize"] == 256
    assert lam.get_alias(FunctionName=fn_name, Name="live")["FunctionVersion"] == "2"
    assert wait_for(lambda: _invoke_live(lam, fn_name), timeout=120) == {
        "v": 2,
        "greeting": "bye!",
    }
    tf.plan_is_empty(*_vars(256, "bye"))

    tf.ok("destroy", "-auto-approve", *_vars(256, "bye"))
    with pytest.raises(ClientError) as gone:
        lam.get_function(FunctionName=fn_name)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as signing_gone:
        lam.get_code_signing_config(CodeSigningConfigArn=signing)
    assert signing_gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert not lam.list_layer_versions(LayerName=f"{fn_name}-lib")["LayerVersions"]


S3_TF = (
    PROVIDER_TF
    + """variable "object_version" { type = string }
resource "aws_lambda_function" "from_s3" {
  function_name     = "%(name)s"
  role              = "arn:aws:iam::%(account)s:role/terraform"
  handler           = "app.handler"
  runtime           = "python3.11"
  s3_bucket         = "%(bucket)s"
  s3_key            = "deploy/ünï app.zip"
  s3_object_version = var.object_version
  environment {
    variables = { GREETING = "from s3" }
  }
}
"""
)


def test_terraform_lifecycle_of_a_function_from_s3(
    server: Server, lam: Any, fn_name: str, aws_services: MotoServer, tmp_path: Path
) -> None:
    """``aws_lambda_function`` with ``s3_bucket``/``s3_key``/``s3_object_version`` (ADR
    0037): the server fetches the zip from the S3 endpoint its environment names (the
    session's moto); the object is put there first, as a user's CI would. A new object
    version is an update of the code; the second plan shows nothing; destroy is clean."""
    terraform, mirror, version = _tf_or_skip()
    s3 = aws_services.client("s3", REGION)
    bucket = f"tf-code-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = "deploy/ünï app.zip"
    first = s3.put_object(Bucket=bucket, Key=key, Body=make_zip({"app.py": PLAIN_APP % 1}))
    tf = Terraform(terraform, mirror, tmp_path)
    (tmp_path / "main.tf").write_text(
        S3_TF
        % {
            "version": version,
            "region": REGION,
            "account": ACCOUNT,
            "endpoint": server.endpoint,
            "name": fn_name,
            "bucket": bucket,
        }
    )
    tf.ok("init")
    on_first = ("-var", f"object_version={first['VersionId']}")
    tf.ok("apply", "-auto-approve", *on_first)
    assert wait_for(lambda: _invoke(lam, fn_name), timeout=120) == {"v": 1, "greeting": "from s3"}
    tf.plan_is_empty(*on_first)

    second = s3.put_object(Bucket=bucket, Key=key, Body=make_zip({"app.py": PLAIN_APP % 2}))
    on_second = ("-var", f"object_version={second['VersionId']}")
    tf.ok("apply", "-auto-approve", *on_second)
    assert wait_for(lambda: _invoke(lam, fn_name), timeout=120) == {"v": 2, "greeting": "from s3"}
    tf.plan_is_empty(*on_second)

    tf.ok("destroy", "-auto-approve", *on_second)
    with pytest.raises(ClientError) as gone:
        lam.get_function(FunctionName=fn_name)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def _invoke(lam: Any, name: str) -> dict[str, Any] | None:
    """The function's answer once it is Active and its update done (None until then)."""
    config = lam.get_function_configuration(FunctionName=name)
    if config["State"] != "Active" or config.get("LastUpdateStatus") == "InProgress":
        return None
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert out["StatusCode"] == 200 and "FunctionError" not in out, out
    result: dict[str, Any] = json.loads(out["Payload"].read())
    return result
