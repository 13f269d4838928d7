"""The enforcer's TCP API serves TLS off loopback, so that bearer tokens never cross a network
in clear: a real enforcer process, answered over real TLS."""

from __future__ import annotations

import datetime
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from enforcer.shared import pki
from tests.support.enforcer import EnforcerProc
from tests.support.engines import DockerEngine
from tests.support.http import request
from tests.support.processes import free_port


def listening(engine: DockerEngine, listen: str, extra: str = "") -> EnforcerProc:
    root = Path(tempfile.mkdtemp(prefix="tls-", dir="/tmp"))
    enf = EnforcerProc(root, engine.url)
    enf.write_config()
    text = enf.config_path.read_text()
    enf.config_path.write_text(text.replace("[api]\n", f'[api]\nlisten = "{listen}"\n{extra}'))
    enf.start()
    return enf


@pytest.fixture()
def stop_later() -> Iterator[list[EnforcerProc]]:
    started: list[EnforcerProc] = []
    yield started
    for enf in started:
        enf.stop()
        shutil.rmtree(enf.root, ignore_errors=True)


def health(port: int, token: str, context: ssl.SSLContext | None) -> int:
    scheme = "http" if context is None else "https"
    url = f"{scheme}://127.0.0.1:{port}/v1/health"
    return request("GET", url, headers={"Authorization": f"Bearer {token}"}, context=context).status


def served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der).encode()


def test_off_loopback_the_api_serves_tls_with_a_certificate_of_the_host_made_at_first_start(
    engine: DockerEngine, stop_later: list[EnforcerProc]
) -> None:
    port = free_port()
    enf = listening(engine, f"0.0.0.0:{port}")
    stop_later.append(enf)
    cert = enf.state_dir / "api-tls" / "cert.pem"
    assert cert.exists() and (enf.state_dir / "api-tls" / "key.pem").stat().st_mode & 0o077 == 0
    token = (enf.state_dir / "api-token").read_text().strip()

    with pytest.raises(aiohttp.ClientError):
        health(port, token, None)  # no plain HTTP: the token would cross in clear
    pinned = ssl.create_default_context(cafile=str(cert))
    assert health(port, token, pinned) == 200
    assert served_certificate(port) == cert.read_bytes()

    enf.stop()  # the same certificate on the next start
    before = cert.read_bytes()
    enf.start()
    assert cert.read_bytes() == before and served_certificate(port) == before


def test_given_certificate_files_are_served_and_loopback_alone_may_be_plain(
    engine: DockerEngine, stop_later: list[EnforcerProc], tmp_path: Path
) -> None:
    key = pki.generate_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge.example")])
    now = datetime.datetime.now(datetime.UTC)
    given = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("edge.example")]), False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(given)
    (tmp_path / "key.pem").write_bytes(pki.key_to_pem(key))
    files = f'tls-cert = "{tmp_path / "cert.pem"}"\ntls-key = "{tmp_path / "key.pem"}"\n'
    port = free_port()
    enf = listening(engine, f"0.0.0.0:{port}", files)
    stop_later.append(enf)
    assert served_certificate(port) == given
    assert not (enf.state_dir / "api-tls").exists()

    plain_port = free_port()
    local = listening(engine, f"127.0.0.1:{plain_port}")
    stop_later.append(local)
    token = (local.state_dir / "api-token").read_text().strip()
    assert health(plain_port, token, None) == 200
    assert not (local.state_dir / "api-tls").exists()
