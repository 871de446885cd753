"""A fleet's CA on disk: made once in a directory (`roost tls init DIR`, or by `roost dev up` in the fleet's
directory), and certificates from it for the server and each host's agent, for the names and addresses they
are reached at (`roost tls issue`). Keys are 0600 in a 0700 directory; ca.key never leaves it."""

from __future__ import annotations

import os
from pathlib import Path

from roost import pki
from roost.private_files import write_private


def fleet_ca(data_dir: Path) -> tuple[pki.Pem, Path]:
    """The fleet's CA in DATA_DIR/tls (made on first use) and the path of its certificate, which every
    component pins."""
    tls = data_dir / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    os.chmod(tls, 0o700)
    cert, key = tls / "ca.pem", tls / "ca.key"
    if cert.exists() and key.exists():
        return pki.Pem(cert.read_bytes(), key.read_bytes()), cert
    ca = pki.new_ca("Roost fleet CA")
    write_private(key, ca.key.decode())
    write_private(cert, ca.cert.decode())  # not secret, but written whole before anyone trusts it
    return ca, cert


def issue_files(data_dir: Path, name: str, addresses: list[str]) -> tuple[Path, Path]:
    """A certificate from the fleet CA for `addresses`, as tls/NAME.pem and tls/NAME.key (re-issued each time:
    a restarted fleet may listen elsewhere)."""
    ca, _ = fleet_ca(data_dir)
    leaf = pki.issue(ca, addresses)
    cert, key = data_dir / "tls" / f"{name}.pem", data_dir / "tls" / f"{name}.key"
    write_private(key, leaf.key.decode())
    write_private(cert, leaf.cert.decode())
    return cert, key
