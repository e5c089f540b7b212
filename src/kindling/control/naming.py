"""Reading the many spellings of a function name: name, name:qualifier, partial and full ARN."""

from __future__ import annotations

import re

from kindling.control.models import FunctionRef
from kindling.errors import ValidationError

_ARN = re.compile(
    r"^(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:(?P<region>[a-z0-9-]+):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9_-]{1,64})"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?$"
)


def parse_function_name(
    value: str, account_id: str, region: str, qualifier: str | None = None
) -> FunctionRef:
    """Resolves ``value`` as Lambda does; the caller's account and region fill the gaps."""
    found = _ARN.match(value)
    if found is None:
        raise ValidationError(f"Function name {value!r} is not valid")
    arn_region = found.group("region")
    if arn_region and arn_region != region:
        raise ValidationError(
            f"Region {arn_region} in the function ARN does not match the request's region {region}"
        )
    arn_account = found.group("account")
    if arn_account and arn_account != account_id:
        raise ValidationError(
            f"The account {arn_account} in the function ARN is not the caller's account"
        )
    arn_qualifier = found.group("qualifier")
    if arn_qualifier and qualifier and arn_qualifier != qualifier:
        raise ValidationError(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return FunctionRef(account_id, region, found.group("name"), arn_qualifier or qualifier)


def parse_resource_arn(value: str, account_id: str, region: str) -> FunctionRef:
    """Tags are addressed by a full function ARN."""
    if not value.startswith("arn:") or ":function:" not in value:
        raise ValidationError(f"Resource {value!r} is not a valid function ARN")
    return parse_function_name(value, account_id, region)
