"""Certificates from an ACME CA (RFC 8555; Let's Encrypt, or Debian's `pebble` in tests) with the `acme`
library: an account whose key is kept in the server's data directory (0600), an order per hostname, the
http-01 challenge answered by the edges (they fetch pending challenges with the certificate bundle and answer
`/.well-known/acme-challenge/TOKEN` on their HTTP port), then the certificate stored as an app's certificate.

The `acme` client is synchronous (requests): every call here runs in a worker thread."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from roost.private_files import write_private

log = logging.getLogger("roost.server.acme")
ORDER_SECONDS = 90  # an order that is not valid by then has failed


class AcmeError(Exception):
    pass


@dataclass(frozen=True)
class AcmeConfig:
    directory: str  # e.g. https://acme-v02.api.letsencrypt.org/directory
    ca_file: Path | None = None  # whom to trust for the directory's TLS (pebble's own CA); None: the system's
    email: str = ""
    challenge_wait: float = 2.5  # how long the edges get to learn a challenge before the CA is told to check


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class AcmeIssuer:
    def __init__(self, config: AcmeConfig, account_key_path: Path) -> None:
        self.config = config
        self.account_key_path = account_key_path
        self._client: client.ClientV2 | None = None

    def _account_key(self) -> ec.EllipticCurvePrivateKey:
        try:
            key = serialization.load_pem_private_key(self.account_key_path.read_bytes(), None)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return key
        except FileNotFoundError:
            pass
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(self.account_key_path, _pem_key(key).decode())
        return key

    def _connect(self) -> client.ClientV2:
        if self._client is not None:
            return self._client
        verify: bool | str = str(self.config.ca_file) if self.config.ca_file else True
        net = client.ClientNetwork(JWKEC(key=self._account_key()), alg=ES256, user_agent="roost",
                                   verify_ssl=verify)  # type: ignore[arg-type]  # requests takes a CA path too
        acme = client.ClientV2(client.ClientV2.get_directory(self.config.directory, net), net=net)
        registration = messages.NewRegistration.from_data(email=self.config.email or None,
                                                          terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as exc:  # this key has an account already: use it
            net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        self._client = acme
        return acme

    def issue(self, hostname: str, publish: Callable[[str, str], None], withdraw: Callable[[str], None],
              wait: Callable[[float], None]) -> tuple[str, str]:
        """(fullchain PEM, key PEM) for `hostname`. `publish(token, key_authorization)` hands the http-01
        answer to the edges; `withdraw(token)` takes it back once the CA has decided."""
        try:
            acme = self._connect()
            key = ec.generate_private_key(ec.SECP256R1())
            order = acme.new_order(crypto_util.make_csr(_pem_key(key), [hostname]))
            tokens = []
            try:
                for authz in order.authorizations:
                    chall = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
                    if chall is None:
                        raise AcmeError(f"the ACME CA offers no http-01 challenge for {hostname}")
                    response, validation = chall.response_and_validation(acme.net.key)
                    token = chall.chall.encode("token")
                    publish(token, validation)
                    tokens.append((chall, response, token))
                wait(self.config.challenge_wait)  # the edges fetch it with their next bundle
                for chall, response, _ in tokens:
                    acme.answer_challenge(chall, response)
                deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_SECONDS)
                done = acme.poll_and_finalize(order, deadline)
            finally:
                for _, _, token in tokens:
                    withdraw(token)
        except errors.ValidationError as exc:
            problems = "; ".join(str(a.body.challenges[0].error) for a in exc.failed_authzrs
                                 if a.body.challenges and a.body.challenges[0].error)
            raise AcmeError(f"the ACME CA could not validate {hostname}: {problems or exc}") from None
        except (errors.Error, messages.Error, OSError, ValueError) as exc:
            raise AcmeError(f"ACME order for {hostname} failed: {exc}") from None
        except Exception as exc:  # requests' errors and the like: one clear line, not a traceback
            raise AcmeError(f"ACME order for {hostname} failed: {type(exc).__name__}: {exc}") from None
        return str(done.fullchain_pem), _pem_key(key).decode()
