"""`[cluster]`: its defaults, every key, and errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from enforcer.config.load import parse_config
from enforcer.config.model import ClusterConfig, ConfigError

PATH = Path("/etc/edgeward/enforcer.toml")

FULL = """\
[cluster]
advertise = "10.0.0.11"
role = "worker"
etcd-endpoints = ["http://10.0.0.11:2379", "https://10.0.0.12:2379"]
client-port = 17720
peer-port = 17721
join-port = 17722
lease-ttl = "5s"
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, PATH)
    return str(caught.value)


def test_without_cluster_keys_the_site_is_one_host_on_sqlite() -> None:
    for text in ("", "[cluster]\n"):
        cluster = parse_config(text, PATH).cluster
        assert cluster == ClusterConfig()
        assert not cluster.enabled
        assert (cluster.role, cluster.client_port, cluster.peer_port) == ("controller", 7720, 7721)
        assert cluster.lease_ttl == 3.0


def test_every_cluster_key_is_read() -> None:
    cluster = parse_config(FULL, PATH).cluster
    assert cluster == ClusterConfig(
        advertise="10.0.0.11",
        role="worker",
        etcd_endpoints=("http://10.0.0.11:2379", "https://10.0.0.12:2379"),
        client_port=17720,
        peer_port=17721,
        join_port=17722,
        lease_ttl=5.0,
    )
    assert cluster.enabled
    joining = parse_config('[cluster]\nadvertise = "10.0.0.12"\njoin = "@/etc/b"\n', PATH)
    assert joining.cluster.join == "@/etc/b" and joining.cluster.enabled
    first = parse_config('[cluster]\nadvertise = "10.0.0.11"\n', PATH).cluster
    assert first.enabled and not first.etcd_endpoints and not first.join


@pytest.mark.parametrize(
    ("line", "wanted"),
    [
        ('role = "boss"', 'cluster.role: "boss" is neither controller nor worker'),
        ('advertise = "host-a"', 'cluster.advertise: "host-a" is not an IP address'),
        ('etcd-endpoints = ["10.0.0.11:2379"]', 'cluster.etcd-endpoints: "10.0.0.11:2379" is not'),
        ('etcd-endpoints = "http://a:1"', "cluster.etcd-endpoints: expected a list of URLs"),
        ('lease-ttl = "1s"', "cluster.lease-ttl: must be at least 2s"),
        ('lease-ttl = "soon"', "cluster.lease-ttl:"),
        ("client-port = 70000", "cluster.client-port: 70000 is not a port"),
        ("peer-port = 2379", "cluster.peer-port: must differ from client-port"),
        ("leader = true", 'unknown key "cluster.leader"'),
    ],
)
def test_a_bad_cluster_key_names_its_line(line: str, wanted: str) -> None:
    base = '[cluster]\nadvertise = "10.0.0.11"\netcd-endpoints = ["http://127.0.0.1:2379"]\n'
    if line.startswith(("advertise", "etcd-endpoints")):
        base = base.replace(line.split(" =")[0] + " =", "#")
    text = (
        base.replace("client-port = 2379", "")
        + ("client-port = 2379\n" if line == "peer-port = 2379" else "")
        + line
        + "\n"
    )
    message = error_of(text)
    assert message.startswith(f"{PATH}:"), message
    assert wanted in message, message
    line_no = int(message.split(":")[1])
    assert text.splitlines()[line_no - 1].startswith(line.split(" =")[0]), (line_no, text)


def test_a_multi_host_site_needs_this_hosts_address() -> None:
    message = error_of('[cluster]\netcd-endpoints = ["http://127.0.0.1:2379"]\n')
    assert "cluster.advertise: a multi-host site needs this host's address" in message
    message = error_of('[cluster]\njoin = "abc"\n')
    assert "cluster.advertise: a multi-host site needs this host's address" in message
    assert message.startswith(f"{PATH}:2:")


def test_a_worker_needs_a_join_bundle_and_ports_differ() -> None:
    message = error_of('[cluster]\nadvertise = "10.0.0.11"\nrole = "worker"\n')
    assert "cluster.role: a worker joins an existing site: give cluster.join" in message
    message = error_of('[cluster]\nadvertise = "10.0.0.11"\njoin-port = 7720\n')
    assert "cluster.join-port: must differ from client-port and peer-port" in message
    text = '[cluster]\nadvertise = "10.0.0.11"\njoin = "x"\netcd-endpoints = ["http://a:1"]\n'
    assert "cluster.join: a host joins a site of managed members" in error_of(text)
