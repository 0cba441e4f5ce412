"""A real SMTP server for tests: aiosmtpd on a free 127.0.0.1 port.

``SmtpServer(mode=...)`` runs aiosmtpd's threaded Controller in plain text,
with STARTTLS, or with implicit TLS (a self-signed certificate made with
``cryptography`` for 127.0.0.1 / localhost; :meth:`SmtpServer.client_context`
trusts it), optionally requiring AUTH LOGIN / PLAIN with one user and password.
Every accepted message is parsed with the ``email`` package and kept in
:attr:`SmtpServer.received`, with its envelope (MAIL FROM, RCPT TO), whether the
session used TLS and who logged in. ``reject`` maps recipient addresses to the
reply RCPT TO gets (``"550 5.1.1 no such user"``); ``data_reply`` makes every
DATA fail with that reply.

Use it as a context manager (the server stops, and its thread ends, on exit).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.processes import Service
from tests.support.prometheus import free_port

HOST = "127.0.0.1"
MODES = ("plain", "starttls", "tls")


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    tls: bool
    login: str | None


def self_signed_cert(directory: Path, host: str = HOST) -> tuple[Path, Path]:
    """A certificate and key (PEM files in ``directory``) valid for ``host`` and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "monitoring-test-smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Handler:
    """aiosmtpd handler: applies the configured rejections and keeps what arrives."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(self, smtp: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.server.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, smtp: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply = self.server.reject.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        if self.server.data_reply is not None:
            return self.server.data_reply
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data,
                                                                LoginPassword) else None
        with self.server.lock:
            self.server.received.append(Received(
                str(envelope.mail_from), tuple(envelope.rcpt_tos), parsed, raw,
                smtp.transport is not None and smtp.transport.get_extra_info("sslcontext")
                is not None, login))
        return "250 Message accepted for delivery"


class SmtpServer(Service):
    """aiosmtpd on 127.0.0.1: ``with SmtpServer(tmp_path, mode="starttls", ...) as smtp``."""

    def __init__(self, directory: Path, *, mode: str = "plain",
                 credentials: tuple[str, str] | None = None,
                 reject: Mapping[str, str] | None = None,
                 data_reply: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.credentials = credentials
        self.reject = dict(reject or {})
        self.data_reply = data_reply
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.host = HOST
        self.cert_path: Path | None = None
        kwargs: dict[str, Any] = {"hostname": HOST, "port": self.port,
                                  "server_hostname": "smtp.test"}
        if mode != "plain":
            self.cert_path, key_path = self_signed_cert(directory)
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_context.load_cert_chain(self.cert_path, key_path)
            kwargs["tls_context" if mode == "starttls" else "ssl_context"] = server_context
        if credentials is not None:
            kwargs["authenticator"] = self._authenticate
            # aiosmtpd does not see implicit TLS as TLS (it would hide AUTH), so only
            # STARTTLS mode asks for TLS before AUTH; plain mode offers AUTH in clear.
            kwargs["auth_require_tls"] = mode == "starttls"
        self._controller = Controller(_Handler(self), **kwargs)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if self.credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.credentials
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def client_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts this server's certificate (and nothing else)."""
        if self.cert_path is None:
            raise RuntimeError("a plain-text server has no certificate")
        return ssl.create_default_context(cafile=str(self.cert_path))

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def messages(self) -> list[Received]:
        """What arrived so far (a copy)."""
        with self.lock:
            return list(self.received)
