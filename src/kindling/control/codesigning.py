"""Code signing configs: the resources of AWS's API, and the one check they make.

A code signing config names the signing profiles allowed to publish code
(``AllowedPublishers``) and what Lambda does with code they did not sign
(``CodeSigningPolicies.UntrustedArtifactOnDeployment``: ``Warn`` deploys it and warns,
``Enforce`` refuses it). A function is bound to at most one config.

kindling has no AWS Signer, so it can verify no signature: every zip is unsigned. A
function bound to an ``Enforce`` config therefore refuses every CreateFunction and
UpdateFunctionCode with ``CodeVerificationFailedException`` and says why; under ``Warn``
the code deploys and the server logs the warning (ADR 0029). Everything else (the
configs, their bindings, which functions use one) is kept and answered as AWS does, so
tools that manage these resources (Terraform reads a function's binding on every
refresh) work unchanged.

Only this module runs statements on its two tables.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
from typing import Any, Protocol

from sqlalchemy import Column, String, Table, Text, select

from kindling.control.models import FunctionRef, now_timestamp
from kindling.control.paging import decode_marker, encode_marker, page_size
from kindling.control.store import FunctionStore
from kindling.errors import (
    CodeSigningConfigNotFoundError,
    CodeVerificationFailedError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from kindling.store import Store, metadata

log = logging.getLogger(__name__)

code_signing_configs = Table(
    "code_signing_configs",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("id", String(32), primary_key=True),  # csc- and 17 of [a-z0-9]
    Column("config", Text, nullable=False),  # the CodeSigningConfig shape, as answered
    Column("tags", Text, nullable=False, default="{}"),
)

#: Which config each function is bound to (a function has at most one).
function_code_signing = Table(
    "function_code_signing",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("function_name", String(64), primary_key=True),
    Column("config_id", String(32), nullable=False),
)

_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"code-signing-config:(?P<id>csc-[a-z0-9]{17})$"
)
_ID_ALPHABET = string.ascii_lowercase + string.digits
DEFAULT_POLICY = "Warn"
#: Tags on one resource, as on a function.
MAX_TAGS = 50


class DeployCheck(Protocol):
    """Code signing (``kindling.control.codesigning``): whether code may be deployed to
    a function, and its binding to a code signing config."""

    def check_deploy(self, ref: FunctionRef, arn: str | None = None) -> None: ...

    def bind(self, ref: FunctionRef, arn: str) -> None: ...


class NoSigning:
    """No code signing configs (a service built without them, in tests): every deploy
    may go ahead, and a config named does not exist."""

    def check_deploy(self, ref: FunctionRef, arn: str | None = None) -> None:
        if arn is not None:
            self.bind(ref, arn)

    def bind(self, ref: FunctionRef, arn: str) -> None:
        raise CodeSigningConfigNotFoundError(
            f"The code signing configuration cannot be found: {arn}"
        )


class CodeSigning:
    """The configs of every account, and each function's binding to one."""

    def __init__(self, store: Store, functions: FunctionStore) -> None:
        self._store = store
        self._functions = functions

    # configs
    def create(self, account_id: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        config_id = "csc-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))
        config = {
            "CodeSigningConfigId": config_id,
            "CodeSigningConfigArn": (
                f"arn:aws:lambda:{region}:{account_id}:code-signing-config:{config_id}"
            ),
            "Description": params.get("Description", ""),
            "AllowedPublishers": dict(params["AllowedPublishers"]),
            "CodeSigningPolicies": {
                "UntrustedArtifactOnDeployment": (params.get("CodeSigningPolicies") or {}).get(
                    "UntrustedArtifactOnDeployment", DEFAULT_POLICY
                )
            },
            "LastModified": now_timestamp(),
        }
        with self._store.begin() as conn:
            conn.execute(
                code_signing_configs.insert().values(
                    account_id=account_id,
                    region=region,
                    id=config_id,
                    config=json.dumps(config),
                    tags=json.dumps(dict(params.get("Tags") or {})),
                )
            )
        return config

    def get(self, account_id: str, region: str, arn: str) -> dict[str, Any]:
        config = self._find(account_id, region, arn)
        if config is None:
            raise NotFoundError(f"The code signing configuration cannot be found: {arn}")
        return config

    def update(
        self, account_id: str, region: str, arn: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        config = self.get(account_id, region, arn)
        if "Description" in params:
            config["Description"] = params["Description"]
        if "AllowedPublishers" in params:
            config["AllowedPublishers"] = dict(params["AllowedPublishers"])
        if "CodeSigningPolicies" in params:
            config["CodeSigningPolicies"] = {
                "UntrustedArtifactOnDeployment": params["CodeSigningPolicies"].get(
                    "UntrustedArtifactOnDeployment", DEFAULT_POLICY
                )
            }
        config["LastModified"] = now_timestamp()
        with self._store.begin() as conn:
            conn.execute(
                code_signing_configs.update()
                .where(self._where(account_id, region, config["CodeSigningConfigId"]))
                .values(config=json.dumps(config))
            )
        return config

    def delete(self, account_id: str, region: str, arn: str) -> None:
        config_id = self.get(account_id, region, arn)["CodeSigningConfigId"]
        with self._store.begin() as conn:
            used = conn.execute(
                select(function_code_signing.c.function_name)
                .where(self._bound_to(account_id, region, config_id))
                .limit(1)
            ).first()
            if used is not None:
                raise ConflictError(
                    f"The code signing configuration {arn} cannot be deleted because it is "
                    f"used by one or more functions (for one, {used[0]})."
                )
            conn.execute(
                code_signing_configs.delete().where(self._where(account_id, region, config_id))
            )

    def page(
        self, account_id: str, region: str, marker: str | None, max_items: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        after = str(decode_marker(marker)) if marker else ""
        limit = page_size(max_items)
        query = (
            select(code_signing_configs.c.config)
            .where(
                (code_signing_configs.c.account_id == account_id)
                & (code_signing_configs.c.region == region)
                & (code_signing_configs.c.id > after)
            )
            .order_by(code_signing_configs.c.id)
            .limit(limit + 1)
        )
        with self._store.begin() as conn:
            found = [json.loads(r[0]) for r in conn.execute(query).all()]
        if len(found) <= limit:
            return found, None
        found = found[:limit]
        return found, encode_marker(found[-1]["CodeSigningConfigId"])

    def functions_using(
        self, account_id: str, region: str, arn: str, marker: str | None, max_items: int | None
    ) -> tuple[list[str], str | None]:
        """ARNs of the functions bound to the config, by name."""
        config_id = self.get(account_id, region, arn)["CodeSigningConfigId"]
        after = str(decode_marker(marker)) if marker else ""
        limit = page_size(max_items)
        query = (
            select(function_code_signing.c.function_name)
            .where(
                self._bound_to(account_id, region, config_id)
                & (function_code_signing.c.function_name > after)
            )
            .order_by(function_code_signing.c.function_name)
            .limit(limit + 1)
        )
        with self._store.begin() as conn:
            names = [str(r[0]) for r in conn.execute(query).all()]
        more = len(names) > limit
        names = names[:limit]
        arns = [FunctionRef(account_id, region, n).arn for n in names]
        return arns, encode_marker(names[-1]) if more else None

    # tags
    def tags(self, account_id: str, region: str, arn: str) -> dict[str, str]:
        config_id = self.get(account_id, region, arn)["CodeSigningConfigId"]
        with self._store.begin() as conn:
            row = conn.execute(
                select(code_signing_configs.c.tags).where(
                    self._where(account_id, region, config_id)
                )
            ).first()
        return dict(json.loads(row[0])) if row else {}

    def set_tags(self, account_id: str, region: str, arn: str, tags: dict[str, str]) -> None:
        if len(tags) > MAX_TAGS:
            raise ValidationError("Number of tags exceeds resource tag limit.")
        config_id = self.get(account_id, region, arn)["CodeSigningConfigId"]
        with self._store.begin() as conn:
            conn.execute(
                code_signing_configs.update()
                .where(self._where(account_id, region, config_id))
                .values(tags=json.dumps(tags))
            )

    # bindings
    def bind(self, ref: FunctionRef, arn: str) -> None:
        """Binds a function (not a version or alias) to a config, replacing any other."""
        self._whole_function(ref)
        config_id = self._existing(ref.account_id, ref.region, arn)["CodeSigningConfigId"]
        with self._store.begin() as conn:
            conn.execute(function_code_signing.delete().where(self._of(ref)))
            conn.execute(
                function_code_signing.insert().values(
                    account_id=ref.account_id,
                    region=ref.region,
                    function_name=ref.name,
                    config_id=config_id,
                )
            )

    def bound(self, ref: FunctionRef) -> str:
        """The ARN of the function's config, or "" (what AWS answers for none)."""
        self._whole_function(ref)
        with self._store.begin() as conn:
            row = conn.execute(
                select(function_code_signing.c.config_id).where(self._of(ref))
            ).first()
        if row is None:
            return ""
        return f"arn:aws:lambda:{ref.region}:{ref.account_id}:code-signing-config:{row[0]}"

    def unbind(self, ref: FunctionRef) -> None:
        self._whole_function(ref)
        self.forget_function(ref)

    def forget_function(self, ref: FunctionRef) -> None:
        """A deleted function's binding goes with it."""
        with self._store.begin() as conn:
            conn.execute(function_code_signing.delete().where(self._of(ref)))

    # the check
    def check_deploy(self, ref: FunctionRef, arn: str | None = None) -> None:
        """Refuses code for ``ref`` (unsigned: all code is) when the config ``arn`` (by
        default, the one the function is bound to) enforces signatures."""
        if arn is None:
            arn = self.bound(ref)
            if not arn:
                return
        config = self._existing(ref.account_id, ref.region, arn)
        policy = config["CodeSigningPolicies"]["UntrustedArtifactOnDeployment"]
        if policy == "Enforce":
            raise CodeVerificationFailedError(
                f"The code signing configuration {arn} of function {ref.name} sets "
                "UntrustedArtifactOnDeployment to Enforce, and the code is not signed by "
                "one of its allowed publishers: kindling has no AWS Signer and verifies no "
                "signature, so it deploys code under such a configuration only when its "
                "policy is Warn."
            )
        log.warning(
            "deploying unsigned code to %s under code signing configuration %s (policy Warn)",
            ref.arn,
            arn,
        )

    # internals
    def _find(self, account_id: str, region: str, arn: str) -> dict[str, Any] | None:
        found = _ARN.match(arn)
        if found is None:
            raise ValidationError(f"Invalid code signing configuration ARN: {arn}")
        if found.group("account") != account_id or found.group("region") != region:
            return None
        with self._store.begin() as conn:
            row = conn.execute(
                select(code_signing_configs.c.config).where(
                    self._where(account_id, region, found.group("id"))
                )
            ).first()
        return json.loads(row[0]) if row else None

    def _existing(self, account_id: str, region: str, arn: str) -> dict[str, Any]:
        """The config a function names: a missing one is CodeSigningConfigNotFound."""
        config = self._find(account_id, region, arn)
        if config is None:
            raise CodeSigningConfigNotFoundError(
                f"The code signing configuration cannot be found: {arn}"
            )
        return config

    def _whole_function(self, ref: FunctionRef) -> None:
        if ref.qualifier:
            raise ValidationError(
                "A code signing configuration applies to a function, not to a version or "
                f"alias: {ref.arn}:{ref.qualifier}"
            )
        if self._functions.tags(ref.account_id, ref.region, ref.name) is None:
            raise NotFoundError(f"Function not found: {ref.arn}")

    @staticmethod
    def _where(account_id: str, region: str, config_id: str) -> Any:
        return (
            (code_signing_configs.c.account_id == account_id)
            & (code_signing_configs.c.region == region)
            & (code_signing_configs.c.id == config_id)
        )

    @staticmethod
    def _bound_to(account_id: str, region: str, config_id: str) -> Any:
        return (
            (function_code_signing.c.account_id == account_id)
            & (function_code_signing.c.region == region)
            & (function_code_signing.c.config_id == config_id)
        )

    @staticmethod
    def _of(ref: FunctionRef) -> Any:
        return (
            (function_code_signing.c.account_id == ref.account_id)
            & (function_code_signing.c.region == ref.region)
            & (function_code_signing.c.function_name == ref.name)
        )
