"""Asynchronous invocation configuration: retries, maximum event age and destinations
per function, version or alias (Put/Get/Update/Delete/ListFunctionEventInvokeConfigs).

A config belongs to one qualifier: ``$LATEST`` (what an unqualified name means), a
version number or an alias name, as on Lambda; an Event invocation follows the config of
the qualifier it was invoked with. ``policy`` is what the async queue reads for each
event it settles: the config's settings, Lambda's defaults where it has none (two
retries, six hours), and the dead-letter queue of the version that runs.

Destinations are checked when configured, as Lambda checks them: a function must exist
in the caller's account and region and may not be the function itself; a queue, topic
or event bus must be one of the caller's region; anything else is refused with the
message Lambda gives. The messages follow Lambda's (the API reference pages are cited
in tests/control/test_event_invoke.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, String, Table, Text, select
from sqlalchemy.engine import Connection, Row

from kindling.control.aliases import AliasService
from kindling.control.functions import FunctionService
from kindling.control.models import LATEST, FunctionConfig, FunctionRef, function_arn, is_alias_name
from kindling.control.naming import parse_function_name
from kindling.control.paging import decode_marker, encode_marker, page_size
from kindling.control.store import CHANGES, FunctionKey
from kindling.errors import NotFoundError, ValidationError
from kindling.store import Store, metadata

#: Lambda's defaults for an Event invocation without a config of its own.
DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE_S = 21600

event_invoke_configs = Table(
    "event_invoke_configs",
    metadata,
    Column("account_id", String(12), primary_key=True),
    Column("region", String(32), primary_key=True),
    Column("function_name", String(64), primary_key=True),
    Column("qualifier", String(128), primary_key=True),
    Column("config", Text, nullable=False),
    Column("last_modified", Float, nullable=False),
)

#: A destination ARN: arn:partition:service:region:account:resource.
_DESTINATION = re.compile(
    r"^arn:(?P<partition>aws[a-zA-Z0-9-]*):(?P<service>[a-zA-Z0-9-]+):"
    r"(?P<region>[a-z0-9-]*):(?P<account>\d{12})?:(?P<resource>.+)$"
)
#: The services kindling delivers records to (S3, on-failure only on AWS, is not one yet).
DESTINATION_SERVICES = ("lambda", "sqs", "sns", "events")


@dataclass(frozen=True, slots=True)
class AsyncPolicy:
    """What the queue does with one Event invocation of a qualifier."""

    max_retries: int = DEFAULT_RETRIES
    max_age_s: float = DEFAULT_MAX_AGE_S
    on_success: str | None = None
    on_failure: str | None = None
    #: DeadLetterConfig.TargetArn of the version the event runs (SQS or SNS).
    dead_letter: str | None = None


@dataclass(frozen=True, slots=True)
class EventInvokeConfig:
    ref: FunctionRef  # its qualifier is $LATEST, a version or an alias, never None
    last_modified: float
    max_retries: int | None = None
    max_age_s: int | None = None
    on_success: str | None = None
    on_failure: str | None = None

    def to_api(self) -> dict[str, Any]:
        """The FunctionEventInvokeConfig shape; DestinationConfig always carries both
        members, empty when unset, as Lambda answers."""
        out: dict[str, Any] = {
            "LastModified": self.last_modified,
            "FunctionArn": function_arn(
                self.ref.account_id, self.ref.region, self.ref.name, self.ref.qualifier
            ),
            "DestinationConfig": {
                "OnSuccess": {"Destination": self.on_success} if self.on_success else {},
                "OnFailure": {"Destination": self.on_failure} if self.on_failure else {},
            },
        }
        if self.max_retries is not None:
            out["MaximumRetryAttempts"] = self.max_retries
        if self.max_age_s is not None:
            out["MaximumEventAgeInSeconds"] = self.max_age_s
        return out

    def record(self) -> str:
        return json.dumps(
            {
                "max_retries": self.max_retries,
                "max_age_s": self.max_age_s,
                "on_success": self.on_success,
                "on_failure": self.on_failure,
            }
        )

    @classmethod
    def from_row(cls, row: Row[Any]) -> EventInvokeConfig:
        data = json.loads(row.config)
        return cls(
            FunctionRef(row.account_id, row.region, row.function_name, row.qualifier),
            float(row.last_modified),
            data.get("max_retries"),
            data.get("max_age_s"),
            data.get("on_success"),
            data.get("on_failure"),
        )


class EventInvokeStore:
    """The statements on ``event_invoke_configs``; only this class runs them.

    Every Event invocation the queue runs reads its config (``get``; a fifth of the
    server's CPU under a stream of events when it was a query each), so configs are
    cached here, absent ones too. Each write forgets what it changed and tells the other
    control nodes on the functions' change channel, whose ``FunctionService`` hears it
    and calls ``forget`` for that function."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[tuple[str, str, str, str | None], EventInvokeConfig | None] = {}

    @staticmethod
    def _function(ref: FunctionRef) -> Any:
        t = event_invoke_configs.c
        return (
            (t.account_id == ref.account_id)
            & (t.region == ref.region)
            & (t.function_name == ref.name)
        )

    def _where(self, ref: FunctionRef) -> Any:
        return self._function(ref) & (event_invoke_configs.c.qualifier == ref.qualifier)

    def forget(self, function: FunctionKey | None) -> None:
        """Drops what is cached of ``function`` (None: of every function)."""
        if function is None:
            self._cache.clear()
            return
        for key in [k for k in self._cache if k[:3] == function]:
            del self._cache[key]

    def _wrote(self, conn: Connection, ref: FunctionRef) -> None:
        self.forget((ref.account_id, ref.region, ref.name))
        self._store.notify(conn, CHANGES, f"{ref.account_id}/{ref.region}/{ref.name}")

    def get(self, ref: FunctionRef) -> EventInvokeConfig | None:
        key = (ref.account_id, ref.region, ref.name, ref.qualifier)
        if key in self._cache:
            return self._cache[key]
        with self._store.begin() as conn:
            row = conn.execute(select(event_invoke_configs).where(self._where(ref))).first()
        config = None if row is None else EventInvokeConfig.from_row(row)
        self._cache[key] = config
        return config

    def put(self, config: EventInvokeConfig) -> None:
        with self._store.begin() as conn:
            conn.execute(event_invoke_configs.delete().where(self._where(config.ref)))
            conn.execute(
                event_invoke_configs.insert().values(
                    account_id=config.ref.account_id,
                    region=config.ref.region,
                    function_name=config.ref.name,
                    qualifier=config.ref.qualifier,
                    config=config.record(),
                    last_modified=config.last_modified,
                )
            )
            self._wrote(conn, config.ref)

    def delete(self, ref: FunctionRef) -> bool:
        with self._store.begin() as conn:
            done = conn.execute(event_invoke_configs.delete().where(self._where(ref)))
            self._wrote(conn, ref)
        return done.rowcount == 1

    def delete_function(self, ref: FunctionRef) -> None:
        """Every config of the function ``ref`` names (its qualifier is ignored)."""
        with self._store.begin() as conn:
            conn.execute(event_invoke_configs.delete().where(self._function(ref)))
            self._wrote(conn, ref)

    def page(self, ref: FunctionRef, after: str, limit: int) -> list[EventInvokeConfig]:
        query = (
            select(event_invoke_configs)
            .where(self._function(ref) & (event_invoke_configs.c.qualifier > after))
            .order_by(event_invoke_configs.c.qualifier)
            .limit(limit)
        )
        with self._store.begin() as conn:
            return [EventInvokeConfig.from_row(r) for r in conn.execute(query).all()]


def _invalid_config(on_success: str | None, on_failure: str | None) -> ValidationError:
    success = f"OnSuccess(destination={on_success})" if on_success else "null"
    failure = f"OnFailure(destination={on_failure})" if on_failure else "null"
    return ValidationError(
        f"The provided destination config DestinationConfig(onSuccess={success}, "
        f"onFailure={failure}) is invalid."
    )


class EventInvokeConfigService:
    def __init__(
        self,
        functions: FunctionService,
        aliases: AliasService,
        store: EventInvokeStore,
        resolve: Callable[[FunctionRef], FunctionConfig] | None = None,
    ) -> None:
        """``resolve``: the version an invocation of a ref runs (an alias routes), for the
        dead-letter queue of ``policy``; by default the ref's own version."""
        self._functions = functions
        self._aliases = aliases
        self._store = store
        self._resolve = resolve or functions.get

    # ------------------------------------------------------------------ operations

    def put(self, ref: FunctionRef, params: dict[str, Any]) -> EventInvokeConfig:
        """Replaces the config of ``ref``: what the request leaves out is unset."""
        ref = self._existing(ref)
        _require_a_setting(params)
        on_success, on_failure = self._destinations(ref, params.get("DestinationConfig"))
        config = EventInvokeConfig(
            ref,
            time.time(),
            params.get("MaximumRetryAttempts"),
            params.get("MaximumEventAgeInSeconds"),
            on_success,
            on_failure,
        )
        self._store.put(config)
        return config

    def update(self, ref: FunctionRef, params: dict[str, Any]) -> EventInvokeConfig:
        """Changes only the settings the request names (a DestinationConfig given
        replaces the one there, both members)."""
        _require_a_setting(params)
        ref = self._existing(ref)
        current = self._store.get(ref)
        if current is None:
            raise self._none(ref)
        on_success, on_failure = current.on_success, current.on_failure
        if params.get("DestinationConfig") is not None:  # replaced as a whole, as on AWS
            on_success, on_failure = self._destinations(ref, params["DestinationConfig"])
        config = EventInvokeConfig(
            ref,
            time.time(),
            params.get("MaximumRetryAttempts", current.max_retries),
            params.get("MaximumEventAgeInSeconds", current.max_age_s),
            on_success,
            on_failure,
        )
        self._store.put(config)
        return config

    def get(self, ref: FunctionRef) -> EventInvokeConfig:
        ref = _qualified(ref)
        config = self._store.get(ref) if self._exists(ref) else None
        if config is None:
            raise self._none(ref)
        return config

    def delete(self, ref: FunctionRef) -> None:
        qualified = _qualified(ref)
        if not self._exists(qualified) or not self._store.delete(qualified):
            raise self._none(ref)

    def page(
        self, ref: FunctionRef, marker: str | None, max_items: int | None
    ) -> tuple[list[EventInvokeConfig], str | None]:
        try:
            self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        except NotFoundError:
            raise NotFoundError("The function doesn't exist.") from None
        after = str(decode_marker(marker)) if marker else ""
        size = page_size(max_items)
        found = self._store.page(FunctionRef(ref.account_id, ref.region, ref.name), after, size + 1)
        more = len(found) > size
        page = found[:size]
        return page, encode_marker(page[-1].ref.qualifier) if more and page else None

    def forget_function(self, ref: FunctionRef) -> None:
        """The function was deleted: its configs go with it, as on Lambda."""
        self._store.delete_function(ref)

    def forget_qualifier(self, ref: FunctionRef) -> None:
        """A version or alias was deleted: its config goes with it (an alias made again
        under the name starts without one)."""
        if ref.qualifier:
            self._store.delete(ref)

    # ------------------------------------------------------------------ the queue's view

    def policy(self, ref: FunctionRef) -> AsyncPolicy:
        """How the queue treats an event invoked as ``ref``; raises NotFoundError if the
        function (or alias) is gone."""
        qualified = _qualified(ref)
        config = self._store.get(qualified)
        dead_letter = self._resolve(ref).dead_letter_target_arn
        if config is None:
            return AsyncPolicy(dead_letter=dead_letter)
        return AsyncPolicy(
            DEFAULT_RETRIES if config.max_retries is None else config.max_retries,
            DEFAULT_MAX_AGE_S if config.max_age_s is None else config.max_age_s,
            config.on_success,
            config.on_failure,
            dead_letter,
        )

    # ------------------------------------------------------------------ internals

    def _exists(self, ref: FunctionRef) -> bool:
        try:
            self._existing(ref)
        except NotFoundError:
            return False
        return True

    def _existing(self, ref: FunctionRef) -> FunctionRef:
        """``ref`` with its qualifier ($LATEST when none), if that function, version or
        alias exists."""
        ref = _qualified(ref)
        try:
            if is_alias_name(ref.qualifier):
                assert ref.qualifier is not None
                self._aliases.get(FunctionRef(ref.account_id, ref.region, ref.name), ref.qualifier)
            else:
                self._functions.get(ref)
        except NotFoundError:
            raise NotFoundError("The function doesn't exist.") from None
        return ref

    @staticmethod
    def _none(ref: FunctionRef) -> NotFoundError:
        arn = function_arn(ref.account_id, ref.region, ref.name, ref.qualifier)
        return NotFoundError(f"The function {arn} doesn't have an EventInvokeConfig")

    def _destinations(
        self, ref: FunctionRef, given: dict[str, Any] | None
    ) -> tuple[str | None, str | None]:
        given = given or {}
        on_success = (given.get("OnSuccess") or {}).get("Destination") or None
        on_failure = (given.get("OnFailure") or {}).get("Destination") or None
        for destination in (on_success, on_failure):
            if destination is not None and not self._valid_destination(ref, destination):
                raise _invalid_config(on_success, on_failure)
        return on_success, on_failure

    def _valid_destination(self, ref: FunctionRef, destination: str) -> bool:
        found = _DESTINATION.match(destination)
        if found is None:
            return False
        service, region = found.group("service"), found.group("region")
        if service == "s3":
            raise ValidationError(
                "S3 destinations are not supported by this kindling server yet: records are "
                "not written to buckets. kindling refuses settings it would not honour "
                "instead of ignoring them."
            )
        if service not in DESTINATION_SERVICES or region != ref.region:
            return False
        if service != "lambda":
            return bool(found.group("account"))
        try:
            target = parse_function_name(destination, ref.account_id, ref.region)
            if target.qualifier and is_alias_name(target.qualifier):
                self._aliases.get(
                    FunctionRef(target.account_id, target.region, target.name), target.qualifier
                )
            else:
                self._functions.get(target)
        except (ValidationError, NotFoundError):
            raise ValidationError(f"The destination ARN {destination} is invalid.") from None
        if target.name == ref.name:
            raise ValidationError("You can't specify the function as a destination for itself.")
        return True


def _qualified(ref: FunctionRef) -> FunctionRef:
    return FunctionRef(ref.account_id, ref.region, ref.name, ref.qualifier or LATEST)


def _require_a_setting(params: dict[str, Any]) -> None:
    if all(
        params.get(k) is None
        for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
    ):
        raise ValidationError(
            "You must specify at least one of error handling or destination setting."
        )
