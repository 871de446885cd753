"""The fleet CA (pki.py) and whom a component trusts (tls.py): certificates a real TLS handshake accepts for
the names they were issued for, and refuses for any other name or CA; plain HTTP refused once a CA is pinned."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from roost import pki
from roost.tls import Listener, TlsError, Trust, trust_from


def _files(tmp: Path, name: str, pem: pki.Pem) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert.write_bytes(pem.cert)
    key.write_bytes(pem.key)
    return cert, key


async def _handshake(server_cert: Path, server_key: Path, client: ssl.SSLContext, name: str) -> bytes:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(server_cert, server_key)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readline())
            await writer.drain()
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=name)
        writer.write(b"hello\n")
        line = await reader.readline()
        writer.close()
        return line
    finally:
        server.close()


async def test_a_certificate_of_the_fleet_ca_is_trusted_for_its_names_only(tmp_path: Path) -> None:
    ca = pki.new_ca()
    cert, key = _files(tmp_path, "agent", pki.issue(ca, ["127.0.0.1", "agent.internal"]))
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert)
    trust = Trust(ca_file)
    assert await _handshake(cert, key, trust.context(), "127.0.0.1") == b"hello\n"
    assert await _handshake(cert, key, trust.context(), "agent.internal") == b"hello\n"
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(cert, key, trust.context(), "other.internal")  # not a name it was issued for
    other = tmp_path / "other-ca.pem"
    other.write_bytes(pki.new_ca().cert)
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(cert, key, Trust(other).context(), "127.0.0.1")  # pinned: another CA's cert fails
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(cert, key, Trust().context(), "127.0.0.1")  # the system's CAs do not know the fleet's


def test_a_pinned_ca_refuses_plain_http_and_bad_files_are_clear(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pki.new_ca().cert)
    trust = Trust(ca_file)
    assert trust.check_url("https://127.0.0.1:4280", "--server")
    with pytest.raises(TlsError, match="plain HTTP"):
        trust.check_url("http://127.0.0.1:4280", "--server")
    assert Trust().check_url("http://127.0.0.1:4280", "--server")  # no CA given: as before
    monkeypatch.setenv("ROOST_CA_FILE", str(ca_file))
    assert trust_from(None).ca == ca_file
    with pytest.raises(TlsError, match="no CA file"):
        trust_from(tmp_path / "missing.pem")
    cert, key = _files(tmp_path, "a", pki.issue(pki.new_ca(), ["127.0.0.1"]))
    Listener(cert, key).check()
    _, other_key = _files(tmp_path, "b", pki.issue(pki.new_ca(), ["127.0.0.1"]))
    with pytest.raises(TlsError, match="cannot use"):
        Listener(cert, other_key).check()  # a key that is not the certificate's
    with pytest.raises(ValueError):
        pki.issue(pki.new_ca(), [])


def test_describe_says_what_a_certificate_is_for() -> None:
    ca = pki.new_ca("Test CA")
    info = pki.describe(pki.issue(ca, ["*.example.test", "10.0.0.1"]).cert)
    assert info["names"] == ["*.example.test", "10.0.0.1"] and "Test CA" in str(info["issuer"])
