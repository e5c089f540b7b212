"""Terraform's aws provider applies and destroys a role, its inline policy, an AWS
managed policy attachment, a function with that role and a permission, as a user runs
it (issue 19's "Done when"; ADR 0036). The provider validates its credentials with
sts:GetCallerIdentity, so STS is exercised as Terraform uses it.

Needs terraform on PATH and the hashicorp/aws provider in a filesystem mirror
(``KINDLING_TF_MIRROR`` or /opt/tf-plugins); skips saying which is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from .support import Server

pytestmark = pytest.mark.timeout(900)
PROVIDER = "5.100.0"

#: The provider every configuration here talks to kindling through.
PROVIDER_TF = """
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "%(provider)s" }
  }
}
provider "aws" {
  region                  = "us-east-1"
  access_key              = "test"
  secret_key              = "test"
  skip_metadata_api_check = true
  skip_region_validation  = true
  endpoints {
    lambda = "%(endpoint)s"
    iam    = "%(endpoint)s"
    sts    = "%(endpoint)s"
  }
}
"""

MAIN_TF = (
    PROVIDER_TF
    + """resource "aws_iam_role" "fn" {
  name = "tf-fn-role"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect = "Allow", Principal = { Service = "lambda.amazonaws.com" },
      Action = "sts:AssumeRole"
    }]
  })
}
resource "aws_iam_role_policy" "invoke" {
  name = "invoke"
  role = aws_iam_role.fn.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "lambda:InvokeFunction", Resource = "*" }]
  })
}
resource "aws_iam_role_policy_attachment" "basic" {
  role       = aws_iam_role.fn.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}
resource "aws_lambda_function" "a" {
  function_name    = "tf-a"
  role             = aws_iam_role.fn.arn
  handler          = "app.handler"
  runtime          = "python3.12"
  filename         = "fn.zip"
  source_code_hash = filebase64sha256("fn.zip")
}
resource "aws_lambda_permission" "p" {
  statement_id  = "events"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.a.function_name
  principal     = "events.amazonaws.com"
}
"""
)


def _mirror() -> Path | None:
    for candidate in (os.environ.get("KINDLING_TF_MIRROR"), "/opt/tf-plugins"):
        if candidate and (Path(candidate) / "registry.terraform.io/hashicorp/aws").is_dir():
            return Path(candidate)
    return None


Terraform = Callable[..., subprocess.CompletedProcess[str]]


def _terraform(server: Server, tmp_path: Path, main_tf: str) -> Terraform:
    """``terraform`` in a work dir holding ``main_tf`` (``%(provider)s`` and
    ``%(endpoint)s`` filled in) and fn.zip, against ``server``, the provider from the
    mirror."""
    terraform = shutil.which("terraform")
    mirror = _mirror()
    if terraform is None or mirror is None:
        pytest.skip(f"needs terraform on PATH ({terraform}) and the aws provider mirror ({mirror})")
    server.start()
    work = tmp_path / "tf"
    work.mkdir()
    with zipfile.ZipFile(work / "fn.zip", "w") as archive:
        archive.writestr("app.py", "def handler(e, c):\n    return 'hi'\n")
    (work / "main.tf").write_text(main_tf % {"provider": PROVIDER, "endpoint": server.endpoint})
    rc = tmp_path / "terraformrc"
    rc.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
        '  direct { exclude = ["registry.terraform.io/hashicorp/aws"] }\n}\n'
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TF_CLI_CONFIG_FILE": str(rc),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }

    def tf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [terraform, *args, "-input=false", "-no-color"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    return tf


def _apply_plan_destroy(tf: Terraform, resources: int) -> None:
    for step in (("init",), ("apply", "-auto-approve")):
        run = tf(*step)
        assert run.returncode == 0, run.stdout + run.stderr
    plan = tf("plan", "-detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr  # 0: nothing to change
    destroy = tf("destroy", "-auto-approve")
    assert destroy.returncode == 0, destroy.stdout + destroy.stderr
    assert f"Resources: {resources} destroyed" in destroy.stdout


def test_terraform_applies_and_destroys_a_role_function_and_permission(
    private_server: Server, tmp_path: Path
) -> None:
    _apply_plan_destroy(_terraform(private_server, tmp_path, MAIN_TF), 5)


GROUPS_TF = (
    PROVIDER_TF
    + """resource "aws_iam_user" "dev" {
  name = "tf-dev"
}
resource "aws_iam_group" "devs" {
  name = "tf-devs"
}
resource "aws_iam_group_membership" "devs" {
  name  = "tf-devs-membership"
  group = aws_iam_group.devs.name
  users = [aws_iam_user.dev.name]
}
resource "aws_iam_group_policy" "read" {
  name  = "read"
  group = aws_iam_group.devs.name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "lambda:Get*", Resource = "*" }]
  })
}
resource "aws_iam_group_policy_attachment" "role" {
  group      = aws_iam_group.devs.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaRole"
}
resource "aws_lambda_function" "secret" {
  function_name    = "tf-secret"
  role             = "arn:aws:iam::000000000000:role/any"
  handler          = "app.handler"
  runtime          = "python3.12"
  filename         = "fn.zip"
  source_code_hash = filebase64sha256("fn.zip")
  kms_key_arn      = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  environment {
    variables = { DB_PASSWORD = "tf-secret-value" }
  }
}
"""
)


def test_terraform_applies_and_destroys_groups_and_a_function_with_a_kms_key(
    private_server: Server, tmp_path: Path
) -> None:
    """ADR 0043: aws_iam_group, its membership, inline and attached policies; a function
    with kms_key_arn and environment variables plans clean (both read back as sent)."""
    _apply_plan_destroy(_terraform(private_server, tmp_path, GROUPS_TF), 6)
