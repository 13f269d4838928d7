"""``[network]``: the site network of a multi-host site, read and checked (see `Reader`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from enforcer.config.model import NetworkConfig

if TYPE_CHECKING:
    from enforcer.config.reader import Reader

__all__ = ["KEYS", "network_config"]

KEYS = {"site-network", "range", "host-prefix", "network-prefix", "wireguard-port"}


def network_config(reader: Reader, table: Mapping[str, Any]) -> NetworkConfig:
    """The `[network]` table as `NetworkConfig`; ConfigError naming the key and line."""
    default = NetworkConfig()
    reader.table(table, ("network",), KEYS)
    enabled = table.get("site-network", default.site_network)
    if not isinstance(enabled, bool):
        raise reader.error(("network", "site-network"), "network.site-network: expected a boolean")
    text = reader.string(table, ("network", "range"), default.range)
    try:
        net = ipaddress.IPv4Network(text)
    except ValueError as exc:
        raise reader.error(
            ("network", "range"),
            f'network.range: "{text}" is not an IPv4 network such as 10.213.0.0/16 ({exc})',
        ) from None
    host = reader.integer(table, ("network", "host-prefix"), default.host_prefix, 1)
    sub = reader.integer(table, ("network", "network-prefix"), default.network_prefix, 1)
    if not net.prefixlen <= host <= sub <= 29:
        key = ("network", "host-prefix" if host < net.prefixlen or host > sub else "network-prefix")
        raise reader.error(
            key,
            f"network: range {net} (/{net.prefixlen}) <= host-prefix (/{host}) <= "
            f"network-prefix (/{sub}) <= /29 does not hold",
        )
    port = reader.integer(table, ("network", "wireguard-port"), default.wireguard_port, 1)
    if port > 65535:
        raise reader.error(
            ("network", "wireguard-port"), f"network.wireguard-port: {port} is not a port"
        )
    return NetworkConfig(
        site_network=enabled, range=str(net), host_prefix=host, network_prefix=sub,
        wireguard_port=port,
    )  # fmt: skip
