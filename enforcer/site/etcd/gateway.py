"""A small async etcd v3 client over etcd's JSON gateway (`/v3/...`, etcd 3.4), with aiohttp.

Debian 12 packages no async etcd client; the gateway every member serves on its client port
speaks JSON over HTTP/1.1, which is all this needs. Requests go to the endpoint that last
answered; an endpoint that refuses the connection is skipped for the next one in the list. A
request that timed out is not repeated elsewhere (it may have been applied): it raises
`Unavailable`, and the next request starts at the next endpoint.

    async with EtcdGateway(["https://10.0.0.11:7720"], ssl_context=tls.client_context()) as etcd:
        result = await etcd.create("hosts/a", b"...", lease=lease.id)

Streams (watch, keep-alive) answer 200 even when they fail, with `{"error": ...}` as the body;
unary calls answer an HTTP error with an error body. Both become the typed errors of
`enforcer.site.etcd.errors`.
"""

from __future__ import annotations

import contextlib
import io
import json
import ssl
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from enforcer.site.etcd.errors import (
    NOT_FOUND,
    AuthFailed,
    Compacted,
    EtcdError,
    LeaseExpired,
    RequestFailed,
    Unavailable,
    Unreachable,
    parse_answer,
)
from enforcer.site.etcd.records import (
    Compare,
    Delete,
    Get,
    KeyValue,
    Lease,
    Member,
    Op,
    Put,
    Range,
    Status,
    TxnResult,
    kv_from,
    member_from,
    number,
    range_body,
    status_from,
)
from enforcer.site.etcd.watch import Watch

__all__ = ["Compare", "Delete", "EtcdGateway", "Get", "Put"]


class EtcdGateway:
    """An etcd v3 client for one cluster, given its members' client URLs."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints given")
        for url in endpoints:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"etcd endpoint {url!r} is not an http:// or https:// URL")
        self.endpoints = [url.rstrip("/") for url in endpoints]
        self.timeout = timeout
        self._ssl = ssl_context
        self._first = 0

    async def __aenter__(self) -> EtcdGateway:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Nothing stays open between requests; kept so that callers need not know."""

    # ------------------------------------------------------------------ keys

    async def get(self, key: str) -> KeyValue | None:
        found = await self.range(key)
        return found.kvs[0] if found.kvs else None

    async def range(
        self, key: str, *, prefix: bool = False, revision: int = 0, limit: int = 0
    ) -> Range:
        """The key (or every key under the prefix), now or at an earlier `revision`."""
        body = range_body(key, prefix)
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        try:
            answer = await self.call("kv/range", body, repeatable=True)
        except Compacted as e:
            raise Compacted(e.endpoint, None, revision) from None
        return Range(
            tuple(kv_from(kv) for kv in answer.get("kvs", ())),
            _revision(answer),
            bool(answer.get("more", False)),
        )

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write the key unconditionally; the store's revision after the write."""
        with _lease_gone(lease):
            answer = await self.call("kv/put", Put(key, value, lease).body()["request_put"])
        return _revision(answer)

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete the key (or every key under the prefix); how many were deleted."""
        answer = await self.call("kv/deleterange", range_body(key, prefix))
        return number(answer, "deleted")

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Run `success` if every compare holds, else `failure`, atomically."""
        leases = [op.lease for op in (*success, *failure) if isinstance(op, Put) and op.lease]
        with _lease_gone(leases[0] if leases else 0):
            answer = await self.call(
                "kv/txn",
                {
                    "compare": [c.body() for c in compares],
                    "success": [op.body() for op in success],
                    "failure": [op.body() for op in failure],
                },
            )
        reads = tuple(
            tuple(kv_from(kv) for kv in response["response_range"].get("kvs", ()))
            for response in answer.get("responses", ())
            if "response_range" in response
        )
        return TxnResult(bool(answer.get("succeeded", False)), _revision(answer), reads)

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> TxnResult:
        """Write the key only if it does not exist; on failure `current` is the existing key."""
        return await self.txn([Compare(key, "create", 0)], [Put(key, value, lease)], [Get(key)])

    async def update(
        self, key: str, value: bytes, mod_revision: int, *, lease: int = 0
    ) -> TxnResult:
        """Write the key only if it was last written at `mod_revision`; on failure `current` is
        the key as it is now (None: deleted)."""
        compare = Compare(key, "mod", mod_revision)
        return await self.txn([compare], [Put(key, value, lease)], [Get(key)])

    async def delete_if(self, key: str, mod_revision: int) -> TxnResult:
        """Delete the key only if it was last written at `mod_revision`."""
        return await self.txn([Compare(key, "mod", mod_revision)], [Delete(key)], [Get(key)])

    async def compact(self, revision: int) -> None:
        """Forget the history before `revision` (watches and ranges before it fail)."""
        await self.call("kv/compaction", {"revision": str(revision), "physical": True})

    def watch(
        self,
        key: str,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        idle_timeout: float | None = None,
    ) -> Watch:
        """Changes to the key (or prefix) from `start_revision` on (0: from now); see `Watch`."""
        body = range_body(key, prefix)
        if start_revision:
            body["start_revision"] = str(start_revision)
        body["prev_kv"] = prev_kv
        body["progress_notify"] = idle_timeout is not None
        return Watch(self, {"create_request": body}, start_revision, idle_timeout)

    # ------------------------------------------------------------------ leases

    async def lease_grant(self, ttl: int) -> Lease:
        """A new lease; keys written with it are deleted when it expires."""
        answer = await self.call("lease/grant", {"TTL": int(ttl)})
        return Lease(number(answer, "ID"), number(answer, "TTL"))

    async def lease_keepalive(self, lease_id: int) -> int:
        """Renew the lease once (one POST); its TTL. `LeaseExpired` when it is gone."""
        answer = await self.call(
            "lease/keepalive", {"ID": str(lease_id)}, stream=True, repeatable=True
        )
        ttl = number(answer, "TTL")
        if ttl <= 0:
            raise LeaseExpired(self.endpoints[self._first], lease_id)
        return ttl

    async def lease_time_to_live(self, lease_id: int) -> int:
        """Seconds left on the lease; `LeaseExpired` when it is gone."""
        answer = await self.call("kv/lease/timetolive", {"ID": str(lease_id)}, repeatable=True)
        ttl = int(answer.get("TTL") or 0)
        if ttl <= 0:
            raise LeaseExpired(self.endpoints[self._first], lease_id)
        return ttl

    async def lease_revoke(self, lease_id: int) -> bool:
        """Revoke the lease and delete its keys; False when it had already gone."""
        try:
            await self.call("kv/lease/revoke", {"ID": str(lease_id)}, repeatable=True)
        except RequestFailed as e:
            if e.code == NOT_FOUND:
                return False
            raise
        return True

    # ------------------------------------------------------------------ cluster

    async def status(self) -> Status:
        """The status of the member that answers (its leader is 0 while it has none)."""
        return status_from(await self.call("maintenance/status", {}, repeatable=True))

    async def member_list(self) -> list[Member]:
        answer = await self.call("cluster/member/list", {}, repeatable=True)
        return [member_from(m) for m in answer.get("members", ())]

    async def member_add(
        self, peer_urls: Sequence[str], *, learner: bool = False
    ) -> tuple[Member, list[Member]]:
        """Announce a new member by its peer URLs; the new member and the whole list. A
        `learner` does not count towards quorum until `member_promote`."""
        body: dict[str, Any] = {"peerURLs": list(peer_urls)}
        if learner:
            body["isLearner"] = True
        answer = await self.call("cluster/member/add", body)
        return member_from(answer["member"]), [member_from(m) for m in answer["members"]]

    async def member_promote(self, member_id: int) -> None:
        """Make a learner a voting member (refused while it has not caught up with the leader)."""
        await self.call("cluster/member/promote", {"ID": str(member_id)})

    async def member_remove(self, member_id: int) -> None:
        await self.call("cluster/member/remove", {"ID": str(member_id)})

    # ------------------------------------------------------------------ transport

    async def call(
        self, path: str, body: dict[str, Any], *, stream: bool = False, repeatable: bool = False
    ) -> dict[str, Any]:
        """POST `body` to /v3/PATH on the first endpoint that takes the connection; the answer
        (a stream's first `result`). Raises the typed errors of `errors`.

        A `repeatable` request (a read, a keep-alive) also moves on to the next endpoint when
        an open connection breaks; any other is not sent twice, as it may have been applied.
        """
        url_path = "/v3/" + path
        failures: list[str] = []
        for endpoint in self.rotation():
            try:
                raw, status = await self._post(endpoint + url_path, body, self.timeout)
            except aiohttp.ClientConnectorError as e:
                if isinstance(e, aiohttp.ClientSSLError):
                    raise AuthFailed(endpoint, f"TLS handshake failed: {e}") from None
                failures.append(f"{endpoint} ({e.os_error.strerror or e})")
                self.advance(endpoint)
                continue
            except TimeoutError:
                self.advance(endpoint)
                raise await self._timed_out(endpoint, url_path) from None
            except aiohttp.ClientError as e:
                self.advance(endpoint)
                error = _broken(endpoint, e)
                if repeatable and isinstance(error, Unreachable):
                    failures.append(f"{endpoint} ({error.detail})")
                    continue
                raise error from None
            self.settle(endpoint)
            return parse_answer(endpoint, raw, status, stream=stream)
        raise Unreachable(
            ", ".join(self.endpoints), "no member accepted a connection: " + "; ".join(failures)
        )

    async def _timed_out(self, endpoint: str, url_path: str) -> EtcdError:
        """Why `endpoint` did not answer in time: ask it (briefly) whether it has a leader."""
        waited = f"no answer to {url_path} within {self.timeout:g}s"
        try:
            raw, _ = await self._post(
                endpoint + "/v3/maintenance/status", {}, min(self.timeout, 0.5)
            )
            leader = number(json.loads(raw), "leader")
        except (TimeoutError, aiohttp.ClientError, ValueError, AttributeError):
            return Unavailable(endpoint, f"{waited}: the member is not responding")
        if not leader:
            return Unavailable(endpoint, f"{waited}: the member has no leader (quorum lost)")
        return Unavailable(endpoint, f"{waited}, though it follows a leader (overloaded?)")

    async def _post(self, url: str, body: dict[str, Any], timeout: float) -> tuple[bytes, int]:
        """One request on a connection of its own (see `session`). The body goes as a stream
        (a log reply relayed through the store is over 1 MiB once in base64: aiohttp warns of
        a large body given as bytes)."""
        data, headers = io.BytesIO(json.dumps(body).encode()), {"Content-Type": "application/json"}
        limit = aiohttp.ClientTimeout(total=timeout)
        async with (
            self.session() as session,
            session.post(url, data=data, headers=headers, timeout=limit) as response,
        ):
            return await response.read(), response.status

    def session(self) -> aiohttp.ClientSession:
        """A fresh HTTP session for one request or one watch, to be closed after it.

        One connection per request: a pooled connection to a member that has since died fails
        only once the request is on it, when it can no longer be sent elsewhere; a fresh one is
        refused at once, and the request goes to the next member. Closing the session drops
        its connection at once (a TLS close would wait for the member's close_notify).
        """
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
        return aiohttp.ClientSession(connector=connector)

    def set_endpoints(self, endpoints: Sequence[str]) -> None:
        """Talk to these members from now on (the cluster grew or shrank)."""
        urls = [url.rstrip("/") for url in endpoints]
        if urls and urls != self.endpoints:
            current = self.endpoints[self._first]
            self.endpoints = urls
            self._first = urls.index(current) if current in urls else 0

    def rotation(self) -> list[str]:
        return self.endpoints[self._first :] + self.endpoints[: self._first]

    def advance(self, endpoint: str) -> None:
        """The next request starts after `endpoint`, which just failed."""
        self._first = (self.endpoints.index(endpoint) + 1) % len(self.endpoints)

    def settle(self, endpoint: str) -> None:
        """The next request starts at `endpoint`, which just answered."""
        self._first = self.endpoints.index(endpoint)


@contextlib.contextmanager
def _lease_gone(lease: int) -> Iterator[None]:
    """A write with a lease that no longer exists raises `LeaseExpired` (etcd: NotFound)."""
    try:
        yield
    except RequestFailed as e:
        if lease and e.code == NOT_FOUND and "lease" in e.reason:
            raise LeaseExpired(e.endpoint, lease) from None
        raise


def _broken(endpoint: str, error: aiohttp.ClientError) -> EtcdError:
    """An error on an open connection: a TLS refusal of our certificate, or a dropped one."""
    text = str(error) or type(error).__name__
    if "certificate" in text.lower() or isinstance(error, aiohttp.ClientSSLError):
        return AuthFailed(endpoint, f"TLS refused: {text}")
    return Unreachable(endpoint, f"the connection broke: {text}")


def _revision(answer: dict[str, Any]) -> int:
    return number(answer.get("header", {}), "revision")
