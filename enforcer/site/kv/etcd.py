"""The site store on etcd: the multi-host site's engine, over `enforcer.site.etcd.gateway`.

A thin translation of `SiteKV` onto etcd's v3 API: compare-and-swap is a transaction on the
key's create/mod revision, a watch is one gateway stream, leases are etcd's (whose TTLs are
whole seconds, at least the member's minimum: the granted TTL is what `grant` answers). The
gateway's errors become the interface's: a lease that is gone `LeaseNotFound`, a compacted
watch `Compacted`, anything that means "cannot answer now" `Unavailable`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING, Any

from enforcer.site.etcd import errors as etcd
from enforcer.site.etcd.gateway import EtcdGateway
from enforcer.site.etcd.records import EventKind as EtcdEventKind
from enforcer.site.etcd.records import KeyValue, b64, encode_key, kv_from, number, prefix_end
from enforcer.site.etcd.watch import Watch
from enforcer.site.kv.base import (
    Compacted,
    Entry,
    Event,
    EventKind,
    Health,
    InvalidRequest,
    KVError,
    Lease,
    LeaseNotFound,
    SiteKV,
    Unavailable,
    check_key,
    check_ttl,
)

__all__ = ["EtcdKV"]

ALL_KEYS = {"key": b64(b"\x00"), "range_end": b64(b"\x00")}  # etcd's "every key"


def _range(prefix: str, *, is_prefix: bool = True) -> dict[str, Any]:
    if is_prefix and not prefix:
        return dict(ALL_KEYS)
    raw = encode_key(prefix)
    body: dict[str, Any] = {"key": b64(raw)}
    if is_prefix:
        body["range_end"] = b64(prefix_end(raw))
    return body


def _entry(kv: KeyValue) -> Entry:
    return Entry(
        kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease or None
    )


@contextlib.contextmanager
def _translated(lease: int | None = None) -> Iterator[None]:
    """The gateway's errors as the interface's."""
    try:
        yield
    except etcd.LeaseExpired as exc:
        raise LeaseNotFound(exc.lease_id) from None
    except etcd.Compacted as exc:
        raise Compacted(exc.asked, exc.compact_revision or 0) from None
    except etcd.RequestFailed as exc:
        if "lease not found" in exc.detail and lease is not None:
            raise LeaseNotFound(lease) from None
        if "future revision" in exc.detail:
            raise InvalidRequest(str(exc)) from None
        raise KVError(str(exc)) from None
    except etcd.EtcdError as exc:  # Unreachable, Unavailable, AuthFailed
        raise Unavailable(str(exc)) from None


class EtcdKV:
    """The etcd engine of `enforcer.site.kv.base.SiteKV` (see the module documentation)."""

    engine = "etcd"

    def __init__(self, gateway: EtcdGateway) -> None:
        self.gateway = gateway
        self._watches: set[Watch] = set()  # open streams, ended by close()

    async def close(self) -> None:
        # A watch its caller abandoned still holds a connection: end it with the store.
        for watch in list(self._watches):
            await watch.__aexit__(None, None, None)
        await self.gateway.close()

    # -- keys ----------------------------------------------------------------------------
    async def get(self, key: str) -> Entry | None:
        check_key(key)
        with _translated():
            found = await self.gateway.get(key)
        return _entry(found) if found is not None else None

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        with _translated():
            answer = await self.gateway.call("kv/range", _range(prefix))
        entries = [_entry(kv_from(kv)) for kv in answer.get("kvs", ())]
        return entries, number(answer.get("header", {}), "revision")

    async def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        check_key(key)
        with _translated(lease):
            return await self.gateway.put(key, value, lease=lease or 0)

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        if not prefix:
            check_key(key)
        with _translated():
            answer = await self.gateway.call("kv/deleterange", _range(key, is_prefix=prefix))
        return number(answer, "deleted")

    async def create(self, key: str, value: bytes, lease: int | None = None) -> int | None:
        check_key(key)
        with _translated(lease):
            result = await self.gateway.create(key, value, lease=lease or 0)
        return result.revision if result.succeeded else None

    async def replace(
        self, key: str, value: bytes, expected_mod_revision: int, lease: int | None = None
    ) -> int | None:
        check_key(key)
        with _translated(lease):
            result = await self.gateway.update(key, value, expected_mod_revision, lease=lease or 0)
        return result.revision if result.succeeded else None

    # -- leases --------------------------------------------------------------------------
    async def grant(self, ttl: float) -> Lease:
        seconds = math.ceil(check_ttl(ttl))
        with _translated():
            granted = await self.gateway.lease_grant(seconds)
        return Lease(granted.id, float(granted.ttl))

    async def keep_alive(self, lease: int) -> float:
        with _translated(lease):
            return float(await self.gateway.lease_keepalive(lease))

    async def time_to_live(self, lease: int) -> float | None:
        try:
            with _translated(lease):
                return float(await self.gateway.lease_time_to_live(lease))
        except LeaseNotFound:
            return None

    async def revoke(self, lease: int) -> None:
        with _translated(lease):
            await self.gateway.lease_revoke(lease)

    # -- watch and maintenance -----------------------------------------------------------
    async def watch(self, prefix: str, from_revision: int) -> AsyncGenerator[Event, None]:
        if from_revision < 1:
            raise InvalidRequest(f"a watch starts at revision 1 or later, not {from_revision}")
        request = _range(prefix)
        request["start_revision"] = str(from_revision)
        with _translated():
            async with Watch(self.gateway, {"create_request": request}, from_revision, None) as w:
                self._watches.add(w)
                try:
                    async for batch in w:
                        for event in batch:
                            kv = event.kv
                            if event.kind is EtcdEventKind.DELETE:
                                yield Event(EventKind.DELETE, kv.key, b"", kv.mod_revision)
                            else:
                                yield Event(
                                    EventKind.PUT,
                                    kv.key,
                                    kv.value,
                                    kv.mod_revision,
                                    kv.create_revision,
                                    kv.lease or None,
                                )
                finally:
                    self._watches.discard(w)

    async def compact(self, revision: int) -> None:
        try:
            with _translated():
                await self.gateway.compact(revision)
        except Compacted:
            pass  # compacted there (or later) already

    async def health(self) -> Health:
        try:
            with _translated():
                status = await self.gateway.status()
        except KVError as exc:
            return Health(False, self.engine, 0, str(exc))
        endpoint = self.gateway.rotation()[0]
        if not status.leader:
            return Health(
                False, self.engine, status.revision, f"{endpoint}: the store has no leader"
            )
        return Health(True, self.engine, status.revision, endpoint)


if TYPE_CHECKING:  # mypy checks that the engine implements the interface
    _IMPLEMENTS: type[SiteKV] = EtcdKV
