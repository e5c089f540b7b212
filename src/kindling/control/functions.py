"""The function registry: create, read, update, delete, tag; the state machine of a function.

A function is created ``Pending`` and becomes ``Active`` once its code is prepared; an
update sets ``LastUpdateStatus`` to ``InProgress`` and then ``Successful``. Both second
steps run on the event loop ``SETTLE_AFTER_S`` after the answer, as Lambda's run shortly
after, so the SDK's waiters see the same sequence they see on AWS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from kindling.control import snapstart
from kindling.control.code_source import CodeSource, NoCodeSource, s3_location, zip_from
from kindling.control.codesigning import DeployCheck, NoSigning
from kindling.control.codestore import CodeStore, StoredCode, unzipped_size
from kindling.control.collection import CodeCollector
from kindling.control.function_params import check_create, configuration_changes, new_config
from kindling.control.layers import LayerResolver, check_total_size
from kindling.control.models import (
    LATEST,
    TAG_VALUES,
    FunctionConfig,
    FunctionLayer,
    FunctionRef,
    FunctionState,
    UpdateStatus,
    check_kindling_tags,
    is_alias_name,
    now_timestamp,
)
from kindling.control.paging import decode_marker, encode_marker, page_size, page_versions
from kindling.control.quotas import check_configuration, check_honoured
from kindling.control.store import FunctionKey, FunctionStore
from kindling.errors import (
    ConflictError,
    NotFoundError,
    PreconditionError,
    ValidationError,
)
from kindling.limits import CODE_COLLECT_GRACE_S
from kindling.runtimes.catalog import RuntimeCatalog

Listener = Callable[[FunctionConfig], None]
DeletedListener = Callable[[FunctionRef], None]
#: Hears that a function (None: any) may have been changed by another control node.
ChangedListener = Callable[[FunctionKey | None], None]

#: Pending -> Active and InProgress -> Successful this long after the write: short enough
#: that a waiter's first poll after its 1 s delay sees the end state, long enough that a
#: client that does not wait meets ResourceConflictException as on AWS.
SETTLE_AFTER_S = 0.25


def _revision() -> str:
    return str(uuid.uuid4())


class FunctionService:
    """Owns function versions. ``on_retired`` listeners hear of every config that stops
    being current, ``on_deleted`` ones of every whole function deleted."""

    def __init__(
        self,
        store: FunctionStore,
        code: CodeStore,
        runtimes: RuntimeCatalog,
        code_grace_s: float = CODE_COLLECT_GRACE_S,
        sandbox_backends: Sequence[str] = ("namespace", "gvisor"),
        signing: DeployCheck | None = None,
        layers: LayerResolver | None = None,
        code_source: CodeSource | None = None,
    ) -> None:
        """``code_source``: where code named by an S3 location comes from (none: such
        code is refused with what to configure)."""
        self._store = store
        self._code_source: CodeSource = code_source or NoCodeSource()
        self._signing = signing or NoSigning()
        self._layers = layers
        #: What the tag kindling:sandbox may name on this server (the operator's choice).
        self._backends = tuple(sandbox_backends)
        self._code = code
        self._collector = CodeCollector(store, code, code_grace_s)
        self._runtimes = runtimes
        self._cache: dict[tuple[str, str, str, str], FunctionConfig] = {}
        #: Tags by function: read on every cold start (the sandbox and network tags), a
        #: query each (7 % of the server's CPU in bench burst). Written only through here.
        self._tags: dict[tuple[str, str, str], dict[str, str]] = {}
        self._listeners: list[Listener] = []
        self._deleted_listeners: list[DeletedListener] = []
        self._changed_listeners: list[ChangedListener] = []

    def on_retired(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def on_deleted(self, listener: DeletedListener) -> None:
        """Hears of a whole function deleted (its log goes with it, for one)."""
        self._deleted_listeners.append(listener)

    def on_changed(self, listener: ChangedListener) -> None:
        """Hears of a function that a node (another, or this one) wrote, once this
        service has read it again: the caches of other services drop it too."""
        self._changed_listeners.append(listener)

    async def follow(self) -> None:
        """Keeps what this node caches true to the store while other control nodes
        write to it (their writes are heard through the store), until cancelled."""
        await self._store.follow(self.refresh)

    def refresh(self, function: FunctionKey | None) -> None:
        """Forgets what is cached of ``function`` (None: of every function), to be read
        again; a version whose revision changed or that is gone is retired, and a
        function gone deleted, as if it had happened here."""
        deleted: list[FunctionRef] = []
        for key in [k for k in self._cache if function is None or k[:3] == function]:
            cached = self._cache.pop(key, None)
            if cached is None:
                continue
            now = self._store.get(*key)
            if now is None or now.revision_id != cached.revision_id:
                self.forget(cached)
                if now is None and cached.version == LATEST:
                    deleted.append(FunctionRef(*key[:3]))
            if now is None or now.code_digest != cached.code_digest:
                self.collect_replaced(cached.code_digest, key[:3])  # this node's copy of it
        if function is not None:
            latest = self._store.get(*function, LATEST)
            if latest is None:  # deleted: what this node kept of it goes
                self._collector.end_graces(function)
                self.collect_all()
            else:
                self._code.prefetch(latest.code_digest)  # written elsewhere: bring it here
        for tagged in [k for k in self._tags if function is None or k == function]:
            del self._tags[tagged]
        for listener in self._changed_listeners:
            listener(function)
        for ref in deleted:
            for deleted_listener in self._deleted_listeners:
                deleted_listener(ref)

    def recover(self) -> None:
        """Settles functions a previous process left Pending or InProgress, and deletes
        code it left unreferenced."""
        self.collect_all()
        for config in self._store.all_versions():
            if config.state is FunctionState.PENDING:
                self._activate(config)
            elif config.last_update_status is UpdateStatus.IN_PROGRESS:
                self._finish_update(config)

    # reads
    def get(self, ref: FunctionRef) -> FunctionConfig:
        """$LATEST, a published version, or the primary version of an alias."""
        version = ref.qualifier or LATEST
        if is_alias_name(version):
            alias = self._store.alias(ref.account_id, ref.region, ref.name, version)
            if alias is None:
                raise NotFoundError(f"Function not found: {ref.arn}:{version}")
            version = str(alias["FunctionVersion"])
        key = (ref.account_id, ref.region, ref.name, version)
        config = self._cache.get(key)
        if config is None:
            config = self._store.get(*key)
            if config is None:
                raise NotFoundError(
                    f"Function not found: {ref.arn}"
                    + (f":{ref.qualifier}" if ref.qualifier else "")
                )
            self._cache[key] = config
        return config

    def tags(self, ref: FunctionRef) -> dict[str, str]:
        key = (ref.account_id, ref.region, ref.name)
        cached = self._tags.get(key)
        if cached is None:
            cached = self._store.tags(*key)
            if cached is None:
                raise NotFoundError(f"Function not found: {ref.arn}")
            self._tags[key] = cached
        return dict(cached)

    def page(
        self,
        account_id: str,
        region: str,
        marker: str | None,
        max_items: int | None,
        all_versions: bool = False,
        master_region: str | None = None,
    ) -> tuple[list[FunctionConfig], str | None]:
        """ListFunctions: $LATEST of each function by name, or (``FunctionVersion=ALL``)
        every version of each, $LATEST first and then by number. ``MasterRegion`` asks
        for the Lambda@Edge replicas of functions of that region, of which kindling
        makes none."""
        if master_region is not None:
            if not all_versions:
                raise ValidationError("MasterRegion can be specified only with FunctionVersion ALL")
            return [], None
        if all_versions:
            return page_versions(self._store, account_id, region, marker, max_items)
        after = str(decode_marker(marker)) if marker else ""
        limit = page_size(max_items)
        page = self._store.page(account_id, region, after, limit + 1)
        if len(page) <= limit:
            return page, None
        page = page[:limit]
        return page, encode_marker(page[-1].name)

    # writes
    async def create(
        self, account_id: str, region: str, ref: FunctionRef, params: dict[str, Any]
    ) -> FunctionConfig:
        """Everything is checked before the zip is unpacked (off the loop); a create
        refused at any point leaves no code behind."""
        check_create(ref, params, region, self._runtimes, self._backends)
        code = params.get("Code") or {}
        layers = self._resolve_layers(account_id, region, params.get("Layers") or [])
        if s3_location(code) is not None and self._store.get(
            account_id, region, ref.name, LATEST
        ):  # before a fetch of up to 250 MB, not after
            raise ConflictError(f"Function already exist: {ref.name}")
        data = await self._zip_from(code, region)
        unpacked = unzipped_size(data)
        check_total_size(unpacked, layers)
        if self._store.get(account_id, region, ref.name, LATEST) is not None:
            raise ConflictError(f"Function already exist: {ref.name}")
        signing_arn = params.get("CodeSigningConfigArn")
        if signing_arn:
            self._signing.check_deploy(ref, signing_arn)
        stored = await self._code.put(data)
        try:
            config = self._insert(
                account_id,
                region,
                ref,
                params,
                stored,
                {"layers": layers, "code_unzipped_size": unpacked},
            )
        except BaseException:
            self._code.release(stored.digest)
            self.collect(stored.digest)
            raise
        self._code.release(stored.digest)
        return config

    def _insert(
        self,
        account_id: str,
        region: str,
        ref: FunctionRef,
        params: dict[str, Any],
        stored: StoredCode,
        extra: dict[str, Any] | None = None,
    ) -> FunctionConfig:
        config = new_config(account_id, region, ref, params, stored, _revision(), extra)
        if not self._store.insert(config, dict(params.get("Tags") or {})):
            raise ConflictError(f"Function already exist: {ref.name}")
        if params.get("CodeSigningConfigArn"):  # checked before the zip was stored
            self._signing.bind(ref, params["CodeSigningConfigArn"])
        self._tags[(account_id, region, ref.name)] = dict(params.get("Tags") or {})
        self._later(self._activate, config)
        return config

    async def update_code(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionConfig:
        """The old code is collected once nothing references it and its last invocation
        may have ended (``CODE_COLLECT_GRACE_S``)."""
        self._current_for_update(ref, params.get("RevisionId"))
        if params.get("ImageUri"):
            raise ValidationError("PackageType Image is not supported by this kindling host yet")
        location = s3_location(params)
        if params.get("ZipFile") is None and location is None:
            raise ValidationError("Please provide a source for function code.")
        check_honoured({"Architectures": params.get("Architectures")})
        self._signing.check_deploy(FunctionRef(ref.account_id, ref.region, ref.name))
        data = (
            bytes(params["ZipFile"])
            if location is None
            else await self._code_source.fetch(location, ref.region)
        )
        unpacked = unzipped_size(data)
        check_total_size(
            unpacked, self.get(FunctionRef(ref.account_id, ref.region, ref.name)).layers
        )
        stored = await self._code.put(data)
        try:
            # again: the function may have changed while the zip was unpacked
            current = self._current_for_update(ref, params.get("RevisionId"))
            updated = replace(
                current,
                code_sha256=stored.sha256_b64,
                code_digest=stored.digest,
                code_size=stored.size,
                code_unzipped_size=unpacked,
                architectures=tuple(params.get("Architectures") or current.architectures),
            )
            check_total_size(unpacked, current.layers)
            done = self._begin_update(current, updated)
        except BaseException:
            self._code.release(stored.digest)
            self.collect(stored.digest)
            raise
        self._code.release(stored.digest)
        if current.code_digest != stored.digest:
            self.collect_replaced(current.code_digest, (ref.account_id, ref.region, ref.name))
        return done

    def update_configuration(self, ref: FunctionRef, params: dict[str, Any]) -> FunctionConfig:
        current = self._current_for_update(ref, params.get("RevisionId"))
        check_configuration(params)
        runtime = params.get("Runtime", current.runtime)
        if runtime != current.runtime:
            self._runtimes.resolve(runtime)
        changes = configuration_changes(current, params, ref.region)
        changes["runtime"] = runtime
        if "Layers" in params:
            changes["layers"] = self._resolve_layers(
                ref.account_id, ref.region, params["Layers"] or [], current.layers
            )
            check_total_size(self._unzipped(current), changes["layers"])
        updated = replace(current, **changes)
        snapstart.check_function(
            updated.runtime, updated.snapstart_apply_on, updated.ephemeral_storage
        )
        done = self._begin_update(current, updated)
        kept = {layer.digest for layer in updated.layers} | {updated.code_digest}
        for layer in current.layers:
            if layer.digest not in kept:
                self.collect_replaced(layer.digest, (ref.account_id, ref.region, ref.name))
        return done

    def _resolve_layers(
        self,
        account_id: str,
        region: str,
        arns: Sequence[str],
        kept: Sequence[FunctionLayer] = (),
    ) -> tuple[FunctionLayer, ...]:
        if not arns:
            return ()
        if self._layers is None:
            raise ValidationError("Layers are not supported by this kindling host")
        return self._layers.resolve(account_id, region, arns, kept)

    def _unzipped(self, config: FunctionConfig) -> int:
        """A version's code, unpacked (records from before layers lack the figure)."""
        if config.code_unzipped_size:
            return config.code_unzipped_size
        try:
            return unzipped_size(self._code.zip_bytes(config.code_digest))
        except FileNotFoundError:
            return 0

    def layer_trees(self, config: FunctionConfig) -> tuple[str, ...]:
        """The unpacked trees of a version's layers, in order (a later one wins at /opt)."""
        return tuple(str(self._code.tree(layer.digest)) for layer in config.layers)

    def change(self, ref: FunctionRef, **changes: Any) -> FunctionConfig:
        """A change of $LATEST that needs no preparing (PutRuntimeManagementConfig's):
        saved at once under a new RevisionId, with no InProgress step."""
        current = self._current_for_update(ref, None)
        updated = replace(current, **changes, revision_id=_revision())
        self._save(updated)
        self.forget(current)
        return updated

    def delete(self, ref: FunctionRef) -> None:
        """Deletes the function with all its versions and aliases (see VersionService for one
        version)."""
        if ref.qualifier == LATEST:
            raise ValidationError(
                "$LATEST version cannot be deleted without deleting the function."
            )
        config = self.get(ref)
        self._store.delete(ref.account_id, ref.region, ref.name)
        self._tags.pop((ref.account_id, ref.region, ref.name), None)
        function = (ref.account_id, ref.region, ref.name)
        for key in [k for k in self._cache if k[:3] == function]:
            del self._cache[key]  # its published versions too: they went with it
        self.forget(config)
        for listener in self._deleted_listeners:
            listener(FunctionRef(ref.account_id, ref.region, ref.name))
        self._collector.end_graces(function)  # its sandboxes went: so does code it replaced
        self.collect_all()  # its versions' code too, not only $LATEST's

    def tag(self, ref: FunctionRef, tags: dict[str, str]) -> None:
        check_kindling_tags(tags, self._backends)
        current = self.tags(ref)
        current.update(tags)
        if len(current) > 50:
            raise ValidationError("Number of tags exceeds resource tag limit.")
        self._store.set_tags(ref.account_id, ref.region, ref.name, current)
        self._tags[(ref.account_id, ref.region, ref.name)] = dict(current)
        if any(key in TAG_VALUES for key in tags):
            self.forget(self.get(FunctionRef(ref.account_id, ref.region, ref.name)))

    def untag(self, ref: FunctionRef, keys: list[str]) -> None:
        current = self.tags(ref)
        for key in keys:
            current.pop(key, None)
        self._store.set_tags(ref.account_id, ref.region, ref.name, current)
        self._tags[(ref.account_id, ref.region, ref.name)] = dict(current)
        if any(key in TAG_VALUES for key in keys):
            self.forget(self.get(FunctionRef(ref.account_id, ref.region, ref.name)))

    def code_zip_by_digest(self, digest: str) -> bytes:
        """The zip of a digest (read from the shared store if this node lacks it)."""
        if not digest.isalnum():
            raise FileNotFoundError(digest)
        return self._code.zip_bytes(digest)

    def code_known(self, digests: list[str]) -> set[str]:
        """Those of ``digests`` the control plane still keeps: a worker drops the rest."""
        return self._code.known(d for d in digests if d.isalnum())

    def code_tree(self, config: FunctionConfig) -> str:
        return str(self._code.tree(config.code_digest))

    def collect(
        self, digest: str, after_s: float = 0.0, function: FunctionKey | None = None
    ) -> None:
        """Deletes a digest's code once nothing references it (``CodeCollector``)."""
        self._collector.collect(digest, after_s, function)

    def collect_replaced(self, digest: str, function: FunctionKey | None = None) -> None:
        """Code a version no longer uses: collected after its grace."""
        self._collector.collect_replaced(digest, function)

    def collect_all(self) -> None:
        """Deletes every stored digest nothing references (and none waiting its time)."""
        self._collector.collect_all()

    def names(self) -> set[tuple[str, str, str]]:
        """(account, region, name) of every function there is."""
        return {(c.account_id, c.region, c.name) for c in self._store.all_versions()}

    def account_usage(self, account_id: str) -> tuple[int, int]:
        """(function count, total code bytes) of an account, over all regions."""
        count = total = 0
        for config in self._store.all_latest(account_id):
            count += 1
            total += config.code_size
        return count, total

    # internals
    async def _zip_from(self, code: dict[str, Any], region: str) -> bytes:
        """The zip sent (``ZipFile``) or named (S3, fetched off the loop; ADR 0037)."""
        if code.get("ImageUri"):
            raise ValidationError("PackageType Image is not supported by this kindling host yet")
        return await zip_from(
            code, self._code_source, region, "Please provide a source for function code."
        )

    def _current_for_update(self, ref: FunctionRef, revision: str | None) -> FunctionConfig:
        if ref.qualifier and ref.qualifier != LATEST:
            raise ValidationError("Only $LATEST can be updated; published versions are immutable")
        current = self.get(FunctionRef(ref.account_id, ref.region, ref.name))
        if current.last_update_status is UpdateStatus.IN_PROGRESS or (
            current.state is FunctionState.PENDING
        ):
            raise ConflictError(
                "The operation cannot be performed at this time. An update is in progress for "
                f"resource: {current.arn}"
            )
        if revision is not None and revision != current.reported_revision_id:
            raise PreconditionError(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            )
        return current

    def _begin_update(self, current: FunctionConfig, updated: FunctionConfig) -> FunctionConfig:
        updated = replace(
            updated,
            last_modified=now_timestamp(),
            revision_id=_revision(),
            last_update_status=UpdateStatus.IN_PROGRESS,
            last_update_status_reason="The function is being created.",
            last_update_status_reason_code="Creating",
        )
        self._save(updated)
        self.forget(current)
        self._later(self._finish_update, updated)
        return updated

    def settle_later(self, config: FunctionConfig) -> None:
        """A version published while $LATEST was still being prepared settles the same way."""
        if config.state is FunctionState.PENDING:
            self._later(self._activate, config)
        elif config.last_update_status is UpdateStatus.IN_PROGRESS:
            self._later(self._finish_update, config)

    def _activate(self, config: FunctionConfig) -> None:
        self._settle(
            config,
            state=FunctionState.ACTIVE,
            state_reason=None,
            state_reason_code=None,
            last_update_status=UpdateStatus.SUCCESSFUL,
        )

    def _finish_update(self, config: FunctionConfig) -> None:
        self._settle(
            config,
            last_update_status=UpdateStatus.SUCCESSFUL,
            last_update_status_reason=None,
            last_update_status_reason_code=None,
        )

    def _settle(self, config: FunctionConfig, **changes: Any) -> None:
        key = (config.account_id, config.region, config.name, config.version)
        latest = self._store.get(*key)
        if latest is None or latest.revision_id != config.revision_id:
            return  # deleted or changed again meanwhile
        try:
            self.code_tree(latest)
            self.layer_trees(latest)  # unpacked here before its first start needs them
        except OSError as exc:
            changes = {
                "state": FunctionState.FAILED,
                "state_reason": f"Code could not be prepared: {exc}",
                "state_reason_code": "InternalError",
                "last_update_status": UpdateStatus.FAILED,
            }
        self._save(replace(latest, **changes))

    def new_api_revision(self, ref: FunctionRef, revision: str | None = None) -> str:
        """Gives $LATEST a new RevisionId as AWS does after a change that is neither its
        code nor its configuration (a permission, a published version): its sandboxes'
        revision stays, so none is retired (ADR 0039). Returns the new id."""
        minted = revision or _revision()
        updated = self._store.new_api_revision(ref.account_id, ref.region, ref.name, minted)
        if updated is None:
            raise NotFoundError(
                f"Function not found: {FunctionRef(ref.account_id, ref.region, ref.name).arn}"
            )
        self._cache[(ref.account_id, ref.region, ref.name, LATEST)] = updated
        return minted

    def _save(self, config: FunctionConfig) -> None:
        self._store.put(config)
        self._cache[(config.account_id, config.region, config.name, config.version)] = config

    def forget(self, config: FunctionConfig) -> None:
        """Drops a cached config and tells the listeners it is no longer current."""
        self._cache.pop((config.account_id, config.region, config.name, config.version), None)
        for listener in self._listeners:
            listener(config)

    def _later(self, fn: Callable[[FunctionConfig], None], config: FunctionConfig) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            fn(config)
            return
        loop.call_later(SETTLE_AFTER_S, fn, config)
