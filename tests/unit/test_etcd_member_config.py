"""The managed etcd member's configuration, command line, restart backoff and missing etcd."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from enforcer.site.etcd.certs import TLSFiles, create_site_ca
from enforcer.site.etcd.member import (
    Backoff,
    EtcdMissing,
    ManagedMember,
    MemberConfig,
    etcd_binary,
)


def config(tmp_path: Path, **changes: object) -> MemberConfig:
    fields: dict[str, object] = {
        "name": "host-a",
        "data_dir": tmp_path / "etcd",
        "advertise": "10.0.0.11",
    }
    fields.update(changes)
    return MemberConfig(**fields)  # type: ignore[arg-type]


def test_missing_etcd_is_one_clear_error_naming_the_debian_package(tmp_path: Path) -> None:
    member = ManagedMember(config(tmp_path), binary="etcd-is-not-installed-here")
    with pytest.raises(EtcdMissing) as caught:
        asyncio.run(member.start())
    assert "etcd is not installed" in str(caught.value)
    assert "apt-get install etcd-server" in str(caught.value)
    assert not (tmp_path / "etcd").exists() and member.pid is None


def test_etcd_is_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "etcd"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert etcd_binary() == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EtcdMissing, match="etcd-server"):
        etcd_binary()


def test_default_ports_and_urls_follow_the_cluster_section(tmp_path: Path) -> None:
    plain = config(tmp_path)
    assert (plain.client_url, plain.peer_url) == ("http://10.0.0.11:7720", "http://10.0.0.11:7721")
    tls = TLSFiles(tmp_path / "ca.pem", tmp_path / "m.pem", tmp_path / "m-key.pem")
    six = config(tmp_path, advertise="fd00::11", tls=tls)
    assert six.client_url == "https://[fd00::11]:7720"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "etcd member name '' must be"),
        ({"name": "a b"}, "etcd member name 'a b' must be"),
        ({"advertise": "host-a.local"}, "[cluster] advertise 'host-a.local' is not an IP address"),
        ({"client_port": 0}, "[cluster] client-port 0 is not a port number"),
        ({"peer_port": 70000}, "[cluster] peer-port 70000 is not a port number"),
        ({"peer_port": 7720}, "client-port and peer-port are both 7720"),
        ({"cluster_state": "joined"}, "cluster state 'joined' is not 'new' or 'existing'"),
        (
            {"initial_cluster": {"host-b": "http://10.0.0.12:7721"}},
            "does not name this member host-a=http://10.0.0.11:7721",
        ),
    ],
)
def test_bad_member_settings_are_refused_with_one_clear_message(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config(tmp_path, **changes)


def test_command_secures_peers_and_clients_with_the_site_ca(tmp_path: Path) -> None:
    tls = create_site_ca("s").write_pair(tmp_path / "tls", "member", "host-a", ["10.0.0.11"])
    cluster = {"host-a": "https://10.0.0.11:7721", "host-b": "https://10.0.0.12:7721"}
    argv = config(tmp_path, tls=tls, initial_cluster=cluster, cluster_state="existing").command(
        "/usr/bin/etcd"
    )
    assert argv[0] == "/usr/bin/etcd"
    for flag in (
        "--name=host-a",
        f"--data-dir={tmp_path / 'etcd'}",
        "--listen-client-urls=https://10.0.0.11:7720",
        "--advertise-client-urls=https://10.0.0.11:7720",
        "--listen-peer-urls=https://10.0.0.11:7721",
        "--initial-cluster=host-a=https://10.0.0.11:7721,host-b=https://10.0.0.12:7721",
        "--initial-cluster-state=existing",
        "--client-cert-auth=true",
        "--peer-client-cert-auth=true",
        f"--trusted-ca-file={tls.ca}",
        f"--peer-cert-file={tls.cert}",
        f"--peer-key-file={tls.key}",
    ):
        assert flag in argv
    alone = config(tmp_path).command("etcd")
    assert "--initial-cluster=host-a=http://10.0.0.11:7721" in alone
    assert not any("cert" in flag for flag in alone)


def test_member_certificates_serve_the_address_and_are_client_certificates_too(
    tmp_path: Path,
) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca = create_site_ca("s")
    files = ca.write_pair(tmp_path, "member", "host-a", ["10.0.0.11"])
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.11"]
    assert files.key.stat().st_mode & 0o777 == 0o600
    assert cert.issuer == ca.cert.subject


def test_restarts_back_off_to_a_cap_and_start_quick_again_after_a_healthy_run() -> None:
    backoff = Backoff(first=0.2, factor=2, cap=1.0, healthy_after=30)
    delays: list[float] = []
    delay: float | None = None
    for _ in range(5):
        delay = backoff.next(delay, uptime=1.0)
        delays.append(delay)
    assert delays == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.next(1.0, uptime=31.0) == 0.2
