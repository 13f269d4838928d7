"""How this host reaches its multi-host site's store: given etcd endpoints, or the site's own
etcd members (DESIGN.md, "Site, hosts and the scheduler").

- `[cluster] etcd-endpoints`: an existing etcd; nothing is started.
- `advertise` on a controller, no `join`: the site's first controller. It makes the site CA,
  its certificate, and starts its own member (TLS for peers and clients).
- `join` (or `edge-enforcer site join` against the running daemon): the host redeems the bundle
  at the inviting controller (`joinclient`), keeps its certificates, and then starts its member
  as a learner of the existing cluster and promotes it (a controller), or only talks to the
  store (a worker).
- Later starts read the membership kept in ``<state-dir>/cluster`` (`local`) and start the
  member again; the bundle is not used twice.

Every controller of a managed site serves the join service (`joinservice`) and can print join
bundles. The store's client URLs are refreshed from the member list while the host runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

from enforcer.config.model import ClusterConfig
from enforcer.shared import pki
from enforcer.site.cluster.joinclient import redeem
from enforcer.site.cluster.joining import (
    JOINS,
    ROLES,
    Invitation,
    JoinBundle,
    JoinError,
    controller_count_warning,
    encode_join_bundle,
    invitation_key,
    parse_join_bundle,
    stale_invitations,
)
from enforcer.site.cluster.joinservice import JoinService
from enforcer.site.cluster.local import ClusterFiles, Membership
from enforcer.site.etcd.certs import (
    SiteCA,
    load_or_create_site_ca,
    load_site_ca,
    save_site_ca,
    write_cert_pair,
)
from enforcer.site.etcd.errors import EtcdError
from enforcer.site.etcd.gateway import EtcdGateway
from enforcer.site.etcd.member import EtcdMissing, ManagedMember, MemberConfig, etcd_binary
from enforcer.site.kv.base import KVError

__all__ = ["SiteStore", "SiteStoreError", "read_bundle"]

log = logging.getLogger(__name__)

PROMOTE_WAIT = 30.0
REFRESH_EVERY = 5.0


class SiteStoreError(KVError):
    """The site store cannot be set up; the message says why in one line."""


def read_bundle(value: str) -> str:
    """`cluster.join` as given: the bundle, or "@/path" to a file holding it."""
    if not value.startswith("@"):
        return value.strip()
    try:
        return Path(value[1:]).read_text().strip()
    except OSError as exc:
        raise SiteStoreError(
            f"cluster.join: cannot read {value[1:]}: {(exc.strerror or str(exc)).lower()}"
        ) from None


class SiteStore:
    def __init__(self, config: ClusterConfig, state_dir: Path, host: str, site: str) -> None:
        self.config = config
        self.files = ClusterFiles(state_dir)
        self.host = host
        self.site = site
        self.membership: Membership | None = None
        self.gateway: EtcdGateway | None = None
        self.member: ManagedMember | None = None
        self.service: JoinService | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.warnings: list[str] = []  # from joining

    def _membership(self) -> Membership | None:
        try:
            return self.files.load()
        except ValueError as exc:
            raise SiteStoreError(str(exc)) from None

    @property
    def wanted(self) -> bool:
        """Whether this host is (or becomes at start) part of a multi-host site."""
        return self.config.enabled or self.files.state_path.exists()

    def preflight(self) -> None:
        """What must hold before anything starts: etcd installed on a controller that runs
        its own member. SiteStoreError naming the Debian package otherwise."""
        if not self.wanted or self.config.etcd_endpoints:
            return
        membership = self._membership()
        role = membership.role if membership else self.config.role
        if role == "controller":
            try:
                etcd_binary()
            except EtcdMissing as exc:
                raise SiteStoreError(str(exc)) from None

    async def start(self) -> EtcdGateway:
        """Reach the store (starting this host's member, joining first if asked)."""
        cfg = self.config
        timeout = max(0.5, cfg.lease_ttl / 3)
        if cfg.etcd_endpoints:
            self.gateway = EtcdGateway(cfg.etcd_endpoints, timeout=timeout)
            return self.gateway
        membership = self._membership()
        if membership is None:
            if cfg.join:
                membership = await self._join(read_bundle(cfg.join), cfg.advertise)
            else:
                membership = self._create()
        await self._run(membership)
        assert self.gateway is not None
        return self.gateway

    async def join_running(self, bundle: str, advertise: str) -> tuple[Membership, list[str]]:
        """`edge-enforcer site join` on a running one-host site; the membership and warnings."""
        if self.gateway is not None or self.files.state_path.exists():
            raise SiteStoreError(f"this host is part of site {self.site} already")
        if not advertise:
            raise SiteStoreError(
                "give this host's address inside the site: --advertise ADDRESS "
                "(or cluster.advertise in the configuration)"
            )
        membership = await self._join(bundle, advertise)
        await self._run(membership)
        return membership, self.warnings

    # -- creating and joining --------------------------------------------------------------
    def _create(self) -> Membership:
        cfg = self.config
        ca = load_or_create_site_ca(self.files.ca_dir, self.site)
        ca.write_pair(self.files.tls_dir, "host", self.host, [cfg.advertise])
        membership = Membership(
            site=self.site,
            role="controller",
            advertise=cfg.advertise,
            endpoints=(self._url(cfg.advertise, cfg.client_port),),
            client_port=cfg.client_port,
            peer_port=cfg.peer_port,
            join_port=cfg.join_port,
            first=True,
        )
        self.files.save(membership)
        log.info("created site %s: this host is its first controller", self.site)
        return membership

    async def _join(self, text: str, advertise: str) -> Membership:
        cfg = self.config
        try:
            bundle = parse_join_bundle(text)
            if bundle.role == "controller":
                self.preflight_member()
            key = pki.generate_key()
            admission = await redeem(bundle, self.host, advertise, cfg.peer_port, key)
        except JoinError as exc:
            raise SiteStoreError(f"cannot join the site: {exc}") from None
        stem = self.files.tls
        write_cert_pair(
            stem.ca.parent, "host", admission.ca, admission.certificate, pki.key_to_pem(key)
        )
        if admission.ca_key is not None:
            save_site_ca(self.files.ca_dir, admission.ca, admission.ca_key)
        own = self._url(advertise, cfg.client_port)
        controller = bundle.role == "controller"
        endpoints = tuple(admission.endpoints) + ((own,) if controller else ())
        membership = Membership(
            site=bundle.site,
            role=bundle.role,
            advertise=advertise,
            endpoints=tuple(dict.fromkeys(endpoints)),
            client_port=cfg.client_port,
            peer_port=cfg.peer_port,
            join_port=cfg.join_port,
            initial_cluster=admission.initial_cluster,
        )
        self.files.save(membership)
        self.warnings = list(admission.warnings)
        for warning in admission.warnings:
            log.warning("%s", warning)
        log.info("joined site %s as a %s", bundle.site, bundle.role)
        return membership

    def preflight_member(self) -> None:
        try:
            etcd_binary()
        except EtcdMissing as exc:
            raise JoinError(str(exc)) from None

    # -- running ---------------------------------------------------------------------------
    async def _run(self, membership: Membership) -> None:
        self.membership = membership
        self.site = membership.site
        tls = self.files.tls
        context = tls.client_context()
        timeout = max(0.5, self.config.lease_ttl / 3)
        if membership.role == "controller":
            try:
                self.member = ManagedMember(
                    MemberConfig(
                        name=self.host,
                        data_dir=self.files.data_dir,
                        advertise=membership.advertise,
                        client_port=membership.client_port,
                        peer_port=membership.peer_port,
                        initial_cluster=membership.initial_cluster,
                        cluster_state="new" if membership.first else "existing",
                        tls=tls,
                    )
                )
                await self.member.start()
            except (EtcdMissing, OSError, RuntimeError, ValueError) as exc:
                raise SiteStoreError(f"the site store's member on this host: {exc}") from None
        self.gateway = EtcdGateway(membership.endpoints, ssl_context=context, timeout=timeout)
        if membership.role == "controller":
            await self._promote()
            ca = load_site_ca(self.files.ca_dir)
            if ca is not None:
                server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                server.load_cert_chain(str(tls.cert), str(tls.key))
                self.service = JoinService(
                    gateway=self.gateway,
                    ca=ca,
                    host=self.host,
                    address=membership.advertise,
                    port=membership.join_port,
                    tls=server,
                )
                try:
                    await self.service.start()
                except OSError as exc:
                    raise SiteStoreError(str(exc)) from None
        self._refresher = asyncio.create_task(self._refresh(), name="site-store-endpoints")

    async def _promote(self) -> None:
        """A member that joined as a learner votes once it has caught up."""
        assert self.gateway is not None and self.member is not None
        url = self.member.config.peer_url
        deadline = time.monotonic() + PROMOTE_WAIT
        while True:
            try:
                members = await self.gateway.member_list()
                mine = next((m for m in members if url in m.peer_urls), None)
                if mine is None or not mine.is_learner:
                    return
                await self.gateway.member_promote(mine.id)
                log.info("this host's etcd member now votes")
                return
            except EtcdError as exc:
                if time.monotonic() > deadline:
                    raise SiteStoreError(
                        f"this host's etcd member could not be promoted within "
                        f"{PROMOTE_WAIT:g}s: {exc}"
                    ) from None
                await asyncio.sleep(0.3)

    async def _refresh(self) -> None:
        """Follow the store's members: their client URLs become the endpoints."""
        assert self.gateway is not None and self.membership is not None
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            with contextlib.suppress(EtcdError):
                members = await self.gateway.member_list()
                urls = tuple(
                    sorted({u for m in members if not m.is_learner for u in m.client_urls})
                )
                if urls and urls != tuple(sorted(self.membership.endpoints)):
                    self.gateway.set_endpoints(urls)
                    self.membership = dataclasses.replace(self.membership, endpoints=urls)
                    self.files.save(self.membership)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        if self.service is not None:
            await self.service.stop()
        if self.member is not None:
            await self.member.stop()

    async def voting_members(self) -> list[str]:
        """The names (host ids) of the store's voting members; none on given etcd."""
        if self.gateway is None or self.config.etcd_endpoints:
            return []
        return [m.name for m in await self.gateway.member_list() if not m.is_learner]

    async def leave(self) -> None:
        """This host leaves the site's store: its member (a controller's) is removed from the
        cluster and stopped, and its part of the site on disk goes (`<state-dir>/cluster`)."""
        if self.gateway is not None and self.member is not None:
            url = self.member.config.peer_url
            mine = next((m for m in await self.gateway.member_list() if url in m.peer_urls), None)
            if mine is not None:
                await self.gateway.member_remove(mine.id)
                log.info("this host's etcd member left the site's store")
        await self.stop()
        if self.gateway is not None:
            await self.gateway.close()
        self.gateway = self.member = self.service = self._refresher = None
        self.membership = None
        shutil.rmtree(self.files.root, ignore_errors=True)

    # -- inviting --------------------------------------------------------------------------
    async def create_bundle(self, role: str, expires_in: float) -> dict[str, Any]:
        """A one-time join bundle for a host of `role`, valid `expires_in` seconds."""
        if role not in ROLES:
            raise SiteStoreError(f"role {role!r} is neither of {ROLES}")
        if expires_in <= 0:
            raise SiteStoreError("a join bundle must be valid for some time: --expires 1h")
        if self.config.etcd_endpoints:
            raise SiteStoreError(
                "this site's store is given etcd (cluster.etcd-endpoints): join bundles need "
                "the site's own members; configure the new host's [cluster] like this one's"
            )
        if self.membership is None or self.gateway is None:
            raise SiteStoreError(
                "this host is not part of a multi-host site with its own store: set "
                "[cluster] advertise (the site's first controller) and restart it"
            )
        ca: SiteCA | None = load_site_ca(self.files.ca_dir)
        if self.membership.role != "controller" or ca is None or self.service is None:
            raise SiteStoreError(
                "only a controller of the site can print join bundles: this host is a worker"
            )
        members = await self.gateway.member_list()
        endpoints = sorted({u for m in members for u in m.client_urls})
        await self._forget_stale_invitations()
        expires = time.time() + expires_in
        secret = secrets.token_urlsafe(24)
        invitation = Invitation(role=role, expires=expires, created_by=self.host)
        created = await self.gateway.create(invitation_key(secret), invitation.to_json())
        if not created.succeeded:  # 192 random bits: never, but never silently either
            raise SiteStoreError("a join bundle with this secret exists already: try again")
        bundle = JoinBundle(
            site=self.site,
            url=self.service.url,
            endpoints=tuple(endpoints),
            ca_fingerprint=ca.fingerprint,
            secret=secret,
            role=role,
            expires=expires,
        )
        warnings = []
        if role == "controller":
            warning = controller_count_warning(len(members) + 1)
            if warning:
                warnings.append(warning.replace("the site has", "the site will have"))
        return {
            "bundle": encode_join_bundle(bundle),
            "role": role,
            "expires": int(expires),
            "warnings": warnings,
        }

    async def _forget_stale_invitations(self) -> None:
        """Invitations long expired (used or not) go from the store."""
        assert self.gateway is not None
        kept: dict[str, Invitation] = {}
        for entry in (await self.gateway.range(JOINS, prefix=True)).kvs:
            with contextlib.suppress(JoinError):
                kept[entry.key] = Invitation.from_json(entry.value)
        for key in stale_invitations(kept, time.time()):
            await self.gateway.delete(key)

    @staticmethod
    def _url(address: str, port: int) -> str:
        host = f"[{address}]" if ":" in address else address
        return f"https://{host}:{port}"
