"""What control keeps, as interfaces: one part per kind of record, composed into a `Store`.

Every method is atomic (one transaction). SQLite implements these (`control.store.sqlite`),
PostgreSQL the same parts (`control.store.pg`), where several control processes share one
database: there the store also has a `ChangeFeed` (what the others changed) and a `Leadership`
(the one process that runs the loops that must run once).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from control.fleet.events import EventPage, EventQuery
from control.model import AppVersion, ControlError, Deployment, Site, StatusResult, Tenant
from control.store.git import GitRecords
from control.vaults.envelope import Vault

# the one answer to an enrollment with an unknown site or secret: names cannot be probed
UNKNOWN_SECRET = (
    "the enrollment bundle is not valid: control does not know its secret "
    "(issue a new one with `edge-control site token`)"
)


RETRY_AFTER_SECONDS = 5


class StoreUnavailable(ControlError):
    """The database cannot be reached now (503 with Retry-After): nothing was changed."""

    status = 503
    code = "unavailable"
    retry_after = RETRY_AFTER_SECONDS


class StoreNotWritten(ControlError):
    """The database refused a write (its disk is full, its file system read-only, an I/O
    error): the transaction was rolled back, nothing was changed (507)."""

    status = 507
    code = "not-stored"


class StoreOpenError(Exception):
    """The store cannot be opened; the message names the database (never a password)."""


# one changed record: (feed position, kind, name); kinds are the CHANGE_* names
Change = tuple[int, str, str]
CHANGE_TENANT = "tenant"
CHANGE_SITE = "site"
CHANGE_STATUS = "status"
CHANGE_APP = "app"
CHANGE_DEPLOYMENT = "deployment"
CHANGE_VAULT = "vault"
CHANGE_GIT = "git"  # name: the Git source whose record, state or ownership changed
CHANGE_LOG_REQUEST = "log-request"  # name: the site a log request waits for


class TenantRecords(abc.ABC):
    @abc.abstractmethod
    async def create(
        self, name: str, parent: str, now: float, quota: dict[str, float] | None = None
    ) -> Tenant: ...
    @abc.abstractmethod
    async def load(self) -> list[Tenant]: ...
    @abc.abstractmethod
    async def add_token(
        self, token_hash: str, tenant: str, description: str, now: float
    ) -> None: ...
    @abc.abstractmethod
    async def token_tenant(self, token_hash: str) -> str | None: ...


class SiteRecords(abc.ABC):
    @abc.abstractmethod
    async def create_enrollment(
        self, secret_hash: str, site: Site, expires: float, now: float
    ) -> None: ...
    @abc.abstractmethod
    async def check_enrollment(self, secret_hash: str, site: str, now: float) -> None:
        """Forbidden unless `secret_hash` is an unused, unexpired secret of `site`."""

    @abc.abstractmethod
    async def consume_enrollment(
        self, secret_hash: str, site: str, serial: str, now: float, public_key: str = ""
    ) -> None: ...
    @abc.abstractmethod
    async def load(self) -> list[Site]: ...
    @abc.abstractmethod
    async def get(self, names: Sequence[str]) -> list[Site]:
        """The sites in `names` that exist."""

    @abc.abstractmethod
    async def save(self, site: Site) -> None: ...
    @abc.abstractmethod
    async def save_revisions(self, changes: Sequence[tuple[str, int, str]]) -> None: ...
    @abc.abstractmethod
    async def save_contacts(self, contacts: Iterable[tuple[str, float]]) -> None: ...
    @abc.abstractmethod
    async def apply_status(
        self, site: Site, seq: int, events: Sequence[Any], now: float
    ) -> StatusResult: ...
    @abc.abstractmethod
    async def events(self, site: str, limit: int) -> list[dict[str, Any]]: ...


class AppRecords(abc.ABC):
    @abc.abstractmethod
    async def put_version(self, app: AppVersion, keep: int, protected: set[str]) -> bool: ...
    @abc.abstractmethod
    async def versions(self, name: str | None = None) -> list[AppVersion]: ...


class DeploymentRecords(abc.ABC):
    @abc.abstractmethod
    async def put(self, deployment: Deployment) -> None: ...
    @abc.abstractmethod
    async def load(self) -> list[Deployment]: ...
    @abc.abstractmethod
    async def delete(self, name: str) -> None: ...
    @abc.abstractmethod
    async def save_rollouts(
        self, rollouts: Sequence[tuple[str, dict[str, Any] | None]]
    ) -> None: ...


class VaultRecords(abc.ABC):
    @abc.abstractmethod
    async def meta(self, key: str) -> bytes | None: ...
    @abc.abstractmethod
    async def set_meta_once(self, key: str, value: bytes) -> bytes: ...
    @abc.abstractmethod
    async def load(self) -> list[Vault]: ...
    @abc.abstractmethod
    async def put(self, vault: Vault, previous_version: int | None) -> None: ...
    @abc.abstractmethod
    async def delete(self, name: str) -> None: ...
    @abc.abstractmethod
    async def site_key(self, site: str, wrapped: bytes, now: float) -> bytes: ...


class EventRecords(abc.ABC):
    """Sites' events across the fleet (written with the status batches that carry them)."""

    @abc.abstractmethod
    async def page(self, query: EventQuery) -> EventPage:
        """Without ``after``: the newest ``limit`` events; with it, the oldest ``limit`` after
        it; oldest first either way."""

    @abc.abstractmethod
    async def trim(self, before: float) -> int:
        """Forget events received before `before`; how many."""


class LogRequests(abc.ABC):
    """Log requests waiting for a site's long-poll and its reply, visible to every control
    process on the database (the operator's call and the site's poll may be on two)."""

    @abc.abstractmethod
    async def add(self, request_id: str, site: str, request: dict[str, Any], now: float) -> None:
        """Keep a new request (and forget those older than `REQUESTS_KEPT_SECONDS`)."""

    @abc.abstractmethod
    async def take(self, site: str, since: float, now: float) -> list[dict[str, Any]]:
        """The site's requests made after `since` not handed out yet, now marked handed out."""

    @abc.abstractmethod
    async def reply(self, request_id: str, site: str, reply: str, since: float, now: float) -> bool:
        """Keep the site's reply to one of its requests made after `since`, not answered yet;
        False when there is no such request."""

    @abc.abstractmethod
    async def state(self, request_id: str) -> tuple[float | None, str | None] | None:
        """(handed out at, reply) of a request; None when there is none."""

    @abc.abstractmethod
    async def forget(self, request_id: str) -> None: ...


REQUESTS_KEPT_SECONDS = 120.0


class ChangeFeed(abc.ABC):
    """What the control processes sharing the database changed, in the order it committed."""

    @abc.abstractmethod
    async def latest(self) -> int:
        """The position of the last change (0 when none)."""

    @abc.abstractmethod
    async def since(self, after: int, limit: int) -> list[Change]: ...
    @abc.abstractmethod
    async def listen(self, wake: Callable[[bool], None]) -> None:
        """Call ``wake(False)`` whenever a change is committed, and ``wake(True)`` after each
        (re)connection: notifications may have been lost meanwhile; runs until cancelled."""

    @abc.abstractmethod
    async def trim(self, before: float) -> int:
        """Forget changes made before `before`; how many."""


class Leadership(abc.ABC):
    """One lock across the control processes: whoever holds it runs the loops that must run
    once (rollouts, trimming the change feed)."""

    held: bool = False

    @abc.abstractmethod
    async def run(self, changed: Callable[[bool], None]) -> None:
        """Try to take the lock until cancelled, calling `changed` when `held` changes."""


class Store(abc.ABC):
    """The store: opened once, then used through its parts."""

    tenants: TenantRecords
    sites: SiteRecords
    apps: AppRecords
    deployments: DeploymentRecords
    vaults: VaultRecords
    git: GitRecords
    events: EventRecords
    log_requests: LogRequests
    # None: the only process on its database (SQLite)
    feed: ChangeFeed | None = None
    leadership: Leadership | None = None

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, and apply the migrations the database lacks (SchemaTooNew when it has
        migrations this control does not know)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    def batch(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A block whose store calls (in this task) commit together: other control processes
        see the whole of a change or none of it. Each call is its own transaction here."""
        return contextlib.nullcontext()
