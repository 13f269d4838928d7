"""This host's own part of a multi-host site on disk, under ``<state-dir>/cluster/``.

site.json        the membership: site, role, address, ports, the store's client URLs, the
                 initial cluster its member was started with (written once joined or created)
tls/             ca.pem (the site CA), host.pem and host-key.pem (0600): this host's certificate,
                 a client certificate for the store and, on a controller, its member's
                 peer/server certificate for `advertise`
ca/              site-ca.pem and site-ca-key.pem (0600): the site CA, on controllers only
etcd/            the managed member's data directory (controllers)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enforcer.shared.pki import write_file
from enforcer.site.etcd.certs import TLSFiles

__all__ = ["ClusterFiles", "Membership"]


@dataclass(frozen=True)
class Membership:
    site: str
    role: str  # controller | worker
    advertise: str
    endpoints: tuple[str, ...]  # the store's client URLs
    client_port: int
    peer_port: int
    join_port: int
    initial_cluster: Mapping[str, str] = field(default_factory=dict)
    first: bool = False  # this host created the site

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "role": self.role,
            "advertise": self.advertise,
            "endpoints": list(self.endpoints),
            "client-port": self.client_port,
            "peer-port": self.peer_port,
            "join-port": self.join_port,
            "initial-cluster": dict(self.initial_cluster),
            "first": self.first,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Membership:
        return cls(
            site=str(raw["site"]),
            role=str(raw["role"]),
            advertise=str(raw["advertise"]),
            endpoints=tuple(str(e) for e in raw["endpoints"]),
            client_port=int(raw["client-port"]),
            peer_port=int(raw["peer-port"]),
            join_port=int(raw["join-port"]),
            initial_cluster={str(k): str(v) for k, v in raw["initial-cluster"].items()},
            first=bool(raw.get("first", False)),
        )


class ClusterFiles:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "cluster"
        self.state_path = self.root / "site.json"
        self.tls_dir = self.root / "tls"
        self.ca_dir = self.root / "ca"
        self.data_dir = self.root / "etcd"

    @property
    def tls(self) -> TLSFiles:
        return TLSFiles(
            self.tls_dir / "ca.pem", self.tls_dir / "host.pem", self.tls_dir / "host-key.pem"
        )

    def load(self) -> Membership | None:
        """This host's membership; None when it is in no multi-host site (of its own store)."""
        try:
            raw = json.loads(self.state_path.read_text())
            return Membership.from_json(raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"{self.state_path} is unreadable ({exc}): remove it to leave the "
                "site, then join again"
            ) from None

    def save(self, membership: Membership) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = json.dumps(membership.to_json(), indent=2, sort_keys=True).encode()
        write_file(self.state_path, body, 0o600)
