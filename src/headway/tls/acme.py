"""Getting a certificate from an ACME server with certbot's `acme` client: account (key kept 0600
under $HEADWAY_HOME/tls/accounts), order, HTTP-01 challenges handed to `publish` (the router
answers them), finalize. The protocol is the library's; here only its use and its errors, each
re-raised as Headway's own naming the domain and what to do. Never prints; never logs a key."""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import requests
from acme import challenges, client, messages
from acme import errors as acme_errors
from acme.crypto_util import make_csr
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwk import JWKRSA

from headway.errors import ConfigError
from headway.tls.sites import Site, folder

TIMEOUT = 90.0  # seconds an order may take from new order to certificate
Publish = Callable[[str, str], None]  # (token, key authorization)


class CertificateRefused(ConfigError):
    """The ACME server would not issue: a name it could not validate, or refused outright."""


def issue(home: Path, site: Site, *, publish: Publish, unpublish: Callable[[str], None]) -> str:
    """A new certificate for the site's hosts: the chain and its new key, as one PEM text."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    acme = _client(home, site)
    try:
        order = acme.new_order(make_csr(key_pem, site.hosts))
        tokens = _answer(acme, order, publish)
        try:
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=TIMEOUT)
            order = acme.poll_and_finalize(order, deadline)
        finally:
            for token in tokens:
                unpublish(token)
    except acme_errors.ValidationError as exc:
        raise _refused(site, exc) from None
    except messages.Error as exc:
        raise CertificateRefused(
            f"the ACME server refused a certificate for {', '.join(site.hosts)}: {_detail(exc)}",
            hint="check [router] hosts (names on the public internet, no IP addresses), then "
            "`headway tls renew`") from None
    except acme_errors.TimeoutError:
        raise CertificateRefused(
            f"the ACME server did not issue a certificate for {', '.join(site.hosts)} within "
            f"{TIMEOUT:.0f}s", hint="try again with `headway tls renew`") from None
    except (acme_errors.Error, requests.RequestException) as exc:
        raise _unreachable(site, exc) from None
    return str(order.fullchain_pem).strip() + "\n" + key_pem.decode()


def _client(home: Path, site: Site) -> client.ClientV2:
    key = _account_key(home, site.directory)
    net = client.ClientNetwork(key, user_agent="headway", timeout=30,
                               verify_ssl=cast(bool, site.ca_bundle or True))
    try:
        directory = client.ClientV2.get_directory(site.directory, net)
        acme = client.ClientV2(directory, net=net)
        registration = messages.NewRegistration.from_data(email=site.email,
                                                          terms_of_service_agreed=True)
        try:
            net.account = acme.new_account(registration)
        except acme_errors.ConflictError as exc:  # this key has an account already
            net.account = messages.RegistrationResource(uri=exc.location,
                                                        body=messages.Registration())
    except messages.Error as exc:
        raise ConfigError(f"[router.acme] directory {site.directory} refused the account: "
                          f"{_detail(exc)}", hint="check [router.acme] email") from None
    except (acme_errors.Error, requests.RequestException, ValueError) as exc:
        raise _unreachable(site, exc) from None
    return acme


def _answer(acme: client.ClientV2, order: messages.OrderResource,
            publish: Publish) -> list[str]:
    """Publish each pending HTTP-01 challenge, then tell the server to validate it."""
    tokens = []
    for authz in order.authorizations:
        if authz.body.status == messages.STATUS_VALID:
            continue  # validated recently for this account
        chall = next((c for c in authz.body.challenges
                      if isinstance(c.chall, challenges.HTTP01)), None)
        if chall is None:
            raise CertificateRefused(
                f"the ACME server offers no HTTP-01 challenge for "
                f"{authz.body.identifier.value}", hint="use an ACME server that validates "
                "over HTTP ([router.acme] directory)")
        response, validation = chall.response_and_validation(acme.net.key)
        token = chall.chall.encode("token")
        publish(token, validation)
        tokens.append(token)
        acme.answer_challenge(chall, response)
    return tokens


def _refused(site: Site, exc: acme_errors.ValidationError) -> CertificateRefused:
    failed = []
    for authz in exc.failed_authzrs:
        errors = [_detail(c.error) for c in authz.body.challenges if c.error is not None]
        failed.append((authz.body.identifier.value, "; ".join(errors) or "validation failed"))
    names = ", ".join(name for name, _ in failed)
    detail = "; ".join(f"{name}: {why}" for name, why in failed)
    return CertificateRefused(
        f"no certificate: the ACME server could not validate {names} ({detail})",
        hint=f"point {names} (DNS) at this host and let the internet reach the router on "
        f"port {site.http_port} (HTTP-01 is answered there), or take it out of [router] hosts "
        "and deploy; then `headway tls renew`. HTTPS keeps the certificate it had")


def _unreachable(site: Site, exc: BaseException) -> ConfigError:
    bundle = f" (trusting {site.ca_bundle})" if site.ca_bundle else ""
    return ConfigError(f"[router.acme] directory {site.directory}: cannot reach the ACME "
                       f"server{bundle}: {type(exc).__name__}: {exc}",
                       hint="check the URL; a private ACME server's own HTTPS needs "
                       "[router.acme] ca_bundle")


def _detail(error: Any) -> str:
    detail = getattr(error, "detail", None) or getattr(error, "description", None)
    return str(detail or error)


def _account_key(home: Path, directory: str) -> JWKRSA:
    """One account key per ACME directory, made once, kept 0600."""
    path = folder(home) / "accounts" / (hashlib.sha256(directory.encode()).hexdigest()[:16]
                                        + ".pem")
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        return JWKRSA(key=cast(rsa.RSAPrivateKey, key))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return JWKRSA(key=key)
