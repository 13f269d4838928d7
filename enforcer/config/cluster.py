"""``[cluster]``: its keys read and checked, with file:line in every error (see `Reader`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from enforcer.config.model import ClusterConfig

if TYPE_CHECKING:
    from enforcer.config.reader import Reader

__all__ = ["KEYS", "cluster_config"]

KEYS = {
    "advertise",
    "role",
    "join",
    "etcd-endpoints",
    "client-port",
    "peer-port",
    "join-port",
    "lease-ttl",
}
ROLES = ("controller", "worker")


def _endpoints(reader: Reader, table: Mapping[str, Any]) -> tuple[str, ...]:
    key = ("cluster", "etcd-endpoints")
    value = table.get("etcd-endpoints", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise reader.error(
            key, 'cluster.etcd-endpoints: expected a list of URLs such as ["http://10.0.0.11:2379"]'
        )
    for url in value:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
            raise reader.error(
                key,
                f'cluster.etcd-endpoints: "{url}" is not a URL such as http://10.0.0.11:2379',
            )
    return tuple(value)


def cluster_config(reader: Reader, table: Mapping[str, Any]) -> ClusterConfig:
    """The `[cluster]` table as `ClusterConfig`; ConfigError naming the key and line."""
    default = ClusterConfig()
    reader.table(table, ("cluster",), KEYS)
    advertise = reader.string(table, ("cluster", "advertise"), default.advertise)
    if advertise:
        try:
            ipaddress.ip_address(advertise)
        except ValueError:
            raise reader.error(
                ("cluster", "advertise"),
                f'cluster.advertise: "{advertise}" is not an IP address such as 10.0.0.11',
            ) from None
    role = reader.string(table, ("cluster", "role"), default.role)
    if role not in ROLES:
        raise reader.error(
            ("cluster", "role"), f'cluster.role: "{role}" is neither controller nor worker'
        )
    ports = {}
    for name in ("client-port", "peer-port", "join-port"):
        port = reader.integer(table, ("cluster", name), getattr(default, name.replace("-", "_")), 1)
        if port > 65535:
            raise reader.error(("cluster", name), f"cluster.{name}: {port} is not a port")
        ports[name] = port
    if ports["client-port"] == ports["peer-port"]:
        raise reader.error(
            ("cluster", "peer-port"), "cluster.peer-port: must differ from client-port"
        )
    if ports["join-port"] in (ports["client-port"], ports["peer-port"]):
        raise reader.error(
            ("cluster", "join-port"),
            "cluster.join-port: must differ from client-port and peer-port",
        )
    ttl = reader.duration(table, ("cluster", "lease-ttl"), default.lease_ttl)
    if ttl < 2:  # etcd grants no lease shorter than 2 s
        raise reader.error(("cluster", "lease-ttl"), "cluster.lease-ttl: must be at least 2s")
    endpoints = _endpoints(reader, table)
    join = reader.string(table, ("cluster", "join"), default.join)
    if (endpoints or join) and not advertise:
        raise reader.error(
            ("cluster", "join" if join else "etcd-endpoints"),
            "cluster.advertise: a multi-host site needs this host's address inside the site",
        )
    if endpoints and join:
        raise reader.error(
            ("cluster", "join"),
            "cluster.join: a host joins a site of managed members, not given etcd-endpoints",
        )
    if advertise and role == "worker" and not (join or endpoints):
        raise reader.error(
            ("cluster", "role"),
            "cluster.role: a worker joins an existing site: give cluster.join (a join bundle)",
        )
    return ClusterConfig(
        advertise=advertise,
        role=role,
        join=join,
        etcd_endpoints=endpoints,
        client_port=ports["client-port"],
        peer_port=ports["peer-port"],
        lease_ttl=ttl,
        join_port=ports["join-port"],
    )
