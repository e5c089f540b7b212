"""The counting service in Redis: one count of concurrent executions for many nodes.

Control nodes of a cluster admit invocations each on their own, yet the account limit
and a function's reserved concurrency are the cluster's. Here every execution is one
slot, a member of Redis sorted sets scored by the time its lease expires (Redis's own
clock, so nodes' clocks do not matter):

    {prefix}:fn:{account}:{region}:{name}   the function's slots
    {prefix}:acct:{account}                 every slot of the account
    {prefix}:unres:{account}                the slots of the account's unreserved pool
    {prefix}:od:{account}:{region}:{name}   a reserved function's slots beyond the
                                            provisioned ones
    {prefix}:prov:{account}:{region}:{name}:{version}
                                            a version's provisioned slots
    {prefix}:node:{node}                    the node's heartbeat marker (see renewal)

Admission and release are Lua scripts, so the check of a limit and the taking of a slot
are one atomic step however many nodes ask at once. A node renews the leases of the
slots it holds every third of ``lease_ttl_s`` (its heartbeat); a node that dies stops
renewing, and its slots drop out of every count once their leases expire (each
admission first removes the expired members of the sets it reads). A crashed node never
keeps concurrency from the others longer than one lease.

Redis restarted without its data (or a node stalled past its leases): the node's
heartbeat marker has gone with them, and the next renewal adds the node's held slots
back instead of only renewing those still there, so the counts are true again within a
heartbeat. While Redis is down, an admission fails with ServiceError (Lambda's
ServiceException), at once or within ``COUNTING_TIMEOUT_S``; a release that cannot
reach Redis is left to its lease. Nothing needs restarting when Redis is back: the next
command reconnects.

A release publishes the freed slot on ``{prefix}:freed``; every node's listener hands it
to its ``on_freed`` listeners, so a throttled Event invocation parked on node X runs when
node Y frees a slot of its function. A node tells its own listeners at once, as the
in-process counter does, and skips its own messages.

The ConcurrentExecutions gauges of a node show the cluster's counts (not a share of
them: aggregate nodes with max, not sum), the newest of those its admissions and
releases were answered or it was told of, ordered by Redis's clock; they are the numbers
its admissions were checked against.

Provisioned concurrency is counted as in process (ADR 0027): an invocation of a version
with provisioned concurrency takes one of its provisioned slots while one is free, and
beyond them a slot of its function's reservation (what the reservation has beyond the
provisioned concurrency) or of the unreserved pool (what the account has beyond the
reservations and the provisioned concurrency of unreserved functions).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from types import TracebackType
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from kindling.control.concurrency import ConcurrencySettings
from kindling.control.models import LATEST
from kindling.errors import ServiceError, ThrottledError
from kindling.invoke.counting import (
    ACCOUNT_REASON,
    RESERVED_REASON,
    THROTTLE_MESSAGE,
    UNRESERVED,
    FreedListener,
    FunctionKey,
)
from kindling.limits import (
    COUNTING_CONNECTIONS,
    COUNTING_LEASE_TTL_S,
    COUNTING_RENEW_BATCH,
    COUNTING_TIMEOUT_S,
)
from kindling.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

UNREACHABLE = "The concurrency counter (Redis) cannot be reached; try again."

# Lua shared by the scripts: Redis's clock, in ms and as a µs stamp (a string: a Lua
# number would print it rounded) that orders the counts the scripts answer; and a key's
# TTL pushed out to ``ttl`` (never shortened: every member's lease ends before its key
# does, and a set whose function is never invoked again does not stay for ever).
_PRELUDE = """
local function clock()
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return ms, t[1] .. string.format('%06d', tonumber(t[2]))
end
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
"""

#: KEYS: function, account, then the pools: the version's provisioned slots, the
#: reservation's beyond them, the unreserved pool. ARGV: slot, ttl ms, provisioned,
#: reserved beyond provisioned (-1: no reservation), unreserved limit. Returns
#: {0 admitted | 1 reserved full | 2 account full, function's count, account's count,
#: stamp, the pool taken from (0 provisioned, 1 reserved, 2 unreserved)}.
ADMIT = (
    _PRELUDE
    + """
local now, stamp = clock()
local ttl = tonumber(ARGV[2])
for i = 1, 5 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
local pool
if redis.call('ZCARD', KEYS[3]) < tonumber(ARGV[3]) then
  pool = 0
elseif tonumber(ARGV[4]) >= 0 then
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then return {1, 0, 0, stamp, 0} end
  pool = 1
else
  if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[5]) then return {2, 0, 0, stamp, 0} end
  pool = 2
end
for _, i in ipairs({1, 2, 3 + pool}) do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[1])
  keep(KEYS[i], ttl)
end
return {0, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), stamp, pool}
"""
)

#: KEYS: function, account, the slot's pool. ARGV: slot, channel, message. Publishes the
#: message with the counts after the release and their stamp appended; returns
#: {function's count, account's count, stamp}.
RELEASE = (
    _PRELUDE
    + """
local now, stamp = clock()
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
end
local in_function = redis.call('ZCARD', KEYS[1])
local in_account = redis.call('ZCARD', KEYS[2])
local counts = in_function .. '\\n' .. in_account .. '\\n' .. stamp
redis.call('PUBLISH', ARGV[2], ARGV[3] .. '\\n' .. counts)
return {in_function, in_account, stamp}
"""
)

#: KEYS: the node's marker, then each slot's sets. ARGV: ttl ms, then per slot: its id
#: and how many of KEYS are its sets. Renews the held slots' leases; adds them back
#: when the marker is gone (Redis lost its data, or the node stalled past its leases).
#: Returns 1 when it added them back.
RENEW = (
    _PRELUDE
    + """
local now = clock()
local ttl = tonumber(ARGV[1])
local restore = redis.call('EXISTS', KEYS[1]) == 0
local k = 2
for i = 2, #ARGV, 2 do
  local slot = ARGV[i]
  for j = k, k + tonumber(ARGV[i + 1]) - 1 do
    if restore then
      redis.call('ZADD', KEYS[j], now + ttl, slot)
    else
      redis.call('ZADD', KEYS[j], 'XX', now + ttl, slot)
    end
    keep(KEYS[j], ttl)
  end
  k = k + tonumber(ARGV[i + 1])
end
redis.call('SET', KEYS[1], '1', 'PX', ttl)
if restore then return 1 end
return 0
"""
)

#: KEYS: a set. Returns its count of live slots.
COUNT = (
    _PRELUDE
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', (clock()))
return redis.call('ZCARD', KEYS[1])
"""
)


class RedisCounter:
    """``Counting`` shared by every node that names the same Redis (``redis://`` URL)."""

    def __init__(
        self,
        url: str,
        settings: ConcurrencySettings,
        metrics: Metrics | None = None,
        *,
        prefix: str = "kindling",
        node_id: str | None = None,
        lease_ttl_s: float = COUNTING_LEASE_TTL_S,
        timeout_s: float = COUNTING_TIMEOUT_S,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._prefix = prefix
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self._ttl_ms = int(lease_ttl_s * 1000)
        self._timeout_s = timeout_s
        # One immediate retry: a pooled connection Redis closed (a restart) fails its
        # next command once; the retry reconnects. Every wait is bounded by timeout_s.
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=COUNTING_CONNECTIONS,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._redis = Redis(connection_pool=self._pool)
        self._admit = self._redis.register_script(ADMIT)
        self._release = self._redis.register_script(RELEASE)
        self._renew = self._redis.register_script(RENEW)
        self._count = self._redis.register_script(COUNT)
        self._channel = f"{prefix}:freed"
        self._marker = f"{prefix}:node:{self.node_id}"
        self._slot_ids = itertools.count()
        #: The slots this node holds: id -> its function, the sets it is a member of
        #: (the function's, the account's, its pool's), whether of the unreserved pool.
        self._held: dict[str, tuple[FunctionKey, tuple[str, ...], bool]] = {}
        self._freed: list[FreedListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: The newest counts known, with their stamps, for the gauges (``_counted``).
        self._function_counts: dict[FunctionKey, tuple[int, int]] = {}
        self._account_counts: dict[str, tuple[int, int]] = {}
        self._releases_failing = False

    # ------------------------------------------------------------------ Counting

    def on_freed(self, listener: FreedListener) -> None:
        self._freed.append(listener)

    def admit(
        self, account_id: str, region: str, name: str, version: str = LATEST
    ) -> _RedisAdmission:
        return _RedisAdmission(self, (account_id, region, name), version)

    async def in_use(self, account_id: str) -> int:
        try:
            async with asyncio.timeout(self._timeout_s):
                return int(await self._count(keys=[self._account_key(account_id)]))
        except (RedisError, TimeoutError) as exc:
            raise ServiceError(UNREACHABLE) from exc

    @property
    def held(self) -> int:
        """Slots this node holds now."""
        return len(self._held)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat(), name="counting-heartbeat"),
            loop.create_task(self._listen(), name="counting-freed"),
        ]
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.ping()
        except (RedisError, TimeoutError) as exc:
            log.warning(
                "counting: Redis not reachable at start (%s); invokes fail until it is", exc
            )

    async def close(self) -> None:
        """Stops the heartbeat and the listener, gives back what is still held (or leaves
        it to its leases) and closes the connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(TimeoutError):  # Redis down: the leases end them
            async with asyncio.timeout(self._timeout_s):
                for slot in list(self._held):
                    await self._release_held(slot)
        await self._redis.aclose()
        await self._pool.disconnect()

    # ------------------------------------------------------------------ admission

    def _account_key(self, account_id: str) -> str:
        return f"{self._prefix}:acct:{account_id}"

    async def _take(self, key: FunctionKey, version: str) -> tuple[str, bool]:
        """A slot of ``key`` (its id, whether of the unreserved pool) or ThrottledError."""
        account_id, region, name = key
        settings = self._settings
        reserved = settings.reserved(account_id, region, name)
        beyond = -1
        if reserved is not None:
            beyond = max(reserved - settings.provisioned_total(account_id, region, name), 0)
        slot = f"{self.node_id}:{next(self._slot_ids)}"
        function = f"{account_id}:{region}:{name}"
        sets = (
            f"{self._prefix}:fn:{function}",
            self._account_key(account_id),
            f"{self._prefix}:prov:{function}:{version}",
            f"{self._prefix}:od:{function}",
            f"{self._prefix}:unres:{account_id}",
        )
        args: list[str | int] = [
            slot,
            self._ttl_ms,
            settings.provisioned(account_id, region, name, version),
            beyond,
            settings.unreserved(account_id),
        ]
        try:
            async with asyncio.timeout(self._timeout_s):
                code, in_function, in_account, stamp, pool = await self._admit(keys=sets, args=args)
        except (RedisError, TimeoutError) as exc:
            # had the script run before the answer was lost, its slot ends with its lease
            raise ServiceError(UNREACHABLE) from exc
        if code == 1:
            raise ThrottledError(THROTTLE_MESSAGE, RESERVED_REASON)
        if code == 2:
            raise ThrottledError(THROTTLE_MESSAGE, ACCOUNT_REASON)
        unreserved = pool == UNRESERVED
        self._held[slot] = (key, (sets[0], sets[1], sets[2 + int(pool)]), unreserved)
        self._counted(key, int(in_function), int(in_account), int(stamp))
        return slot, unreserved

    async def _give(self, key: FunctionKey, slot: str, unreserved: bool) -> None:
        await self._release_held(slot)
        self._tell(key, unreserved)

    async def _release_held(self, slot: str) -> None:
        held = self._held.pop(slot, None)  # first: the heartbeat renews it no more
        if held is None:
            return
        key, sets, unreserved = held
        message = "\n".join((self.node_id, *key, "1" if unreserved else "0"))
        try:
            async with asyncio.timeout(self._timeout_s):
                in_function, in_account, stamp = await self._release(
                    keys=sets, args=[slot, self._channel, message]
                )
        except (RedisError, TimeoutError) as exc:
            if not self._releases_failing:  # once per outage, not once per release
                log.warning("counting: releases do not reach Redis (%s); leases end them", exc)
            self._releases_failing = True
        else:
            self._releases_failing = False
            self._counted(key, int(in_function), int(in_account), int(stamp))

    def _counted(self, key: FunctionKey, in_function: int, in_account: int, stamp: int) -> None:
        """Sets the gauges to the newest counts this node knows. Answers of concurrent
        scripts (and messages) arrive in any order; Redis's stamp says which is newest,
        so a late answer never puts back an older count."""
        function = self._function_counts.get(key)
        if function is None or stamp >= function[0]:
            function = self._function_counts[key] = (stamp, in_function)
        account = self._account_counts.get(key[0])
        if account is None or stamp >= account[0]:
            account = self._account_counts[key[0]] = (stamp, in_account)
        self._metrics.concurrency(*key, function[1], account[1])

    def _tell(self, key: FunctionKey, unreserved: bool) -> None:
        for listener in self._freed:
            try:
                listener(key, unreserved)
            except Exception:  # a listener must never break a release
                log.exception("a freed-slot listener failed")

    # ------------------------------------------------------------------ background

    async def _heartbeat(self) -> None:
        """Renews this node's leases every third of a lease, for as long as it runs."""
        period = self._ttl_ms / 3000
        failing = False
        while True:
            try:
                async with asyncio.timeout(self._timeout_s * 2):
                    restored = await self._renew_all()
                if restored:
                    log.warning("counting: Redis had lost this node's slots; added them back")
                if failing:
                    log.info("counting: Redis reachable again")
                failing = False
            except (RedisError, TimeoutError) as exc:
                if not failing:
                    log.warning("counting: heartbeat cannot reach Redis (%s)", exc)
                failing = True
            await asyncio.sleep(period)

    async def _renew_all(self) -> bool:
        held = list(self._held.items())
        restored = False
        for start in range(0, max(len(held), 1), COUNTING_RENEW_BATCH):
            keys: list[str] = [self._marker]
            args: list[Any] = [self._ttl_ms]
            for slot, (_key, sets, _unreserved) in held[start : start + COUNTING_RENEW_BATCH]:
                keys.extend(sets)
                args.extend((slot, len(sets)))
            restored = bool(await self._renew(keys=keys, args=args)) or restored
        return restored and bool(held)

    async def _listen(self) -> None:
        """Hands every other node's freed slot to the listeners; reconnects for ever."""
        failing = False
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    if failing:
                        log.info("counting: listening for freed slots again")
                    failing = False
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self._freed_elsewhere(message["data"])
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("counting: cannot listen for freed slots (%s)", exc)
                failing = True
                await asyncio.sleep(min(1.0, self._ttl_ms / 3000))

    def _freed_elsewhere(self, data: bytes) -> None:
        """node, account, region, name, unreserved (1/0), then the counts after it and
        their stamp."""
        parts = data.decode().split("\n")
        if len(parts) != 8 or parts[0] == self.node_id:
            return
        key = (parts[1], parts[2], parts[3])
        self._counted(key, int(parts[5]), int(parts[6]), int(parts[7]))
        self._tell(key, parts[4] == "1")


class _RedisAdmission:
    __slots__ = ("_counter", "_key", "_slot", "_unreserved", "_version")

    def __init__(self, counter: RedisCounter, key: FunctionKey, version: str) -> None:
        self._counter = counter
        self._key = key
        self._version = version
        self._slot = ""
        self._unreserved = False

    async def __aenter__(self) -> None:
        self._slot, self._unreserved = await self._counter._take(self._key, self._version)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._counter._give(self._key, self._slot, self._unreserved)
