"""The email channel: alerts by SMTP, as plain text and HTML, with a plot attached.

One message is one SMTP transaction: connect (implicit TLS with ``use_tls``),
upgrade with STARTTLS, log in when a username is set, send, quit. It runs the
standard library's :mod:`smtplib` in a worker thread (``asyncio.to_thread``): mail
volume is a few messages a minute, so a blocking client in a thread costs nothing,
and smtplib is the most used SMTP client there is (no extra dependency).

STARTTLS: ``starttls: true`` requires it, ``false`` never uses it, unset uses it
when the server offers it and refuses to send a password over a connection that
stays in clear text. Certificates are verified against the system's CAs
(``SSL_CERT_FILE`` names another bundle).

Each email is ``multipart/alternative`` (text and HTML from the templates of
:mod:`monitoring.notify.channels.render`) inside ``multipart/mixed`` when the
context draws a plot (a PNG attachment). Its ``Message-ID`` is derived from the
notification's id, so a redelivery after a crash is recognisable as the same mail,
and ``References`` names the group, so mail clients thread a group's updates.

Failures are classified as SMTP intends: 4xx replies and connection problems are
retryable, 5xx replies (a rejected recipient, failed authentication) are not. No
password reaches a result, a log line or an exception message (:func:`redact`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import email.utils
import hashlib
import logging
import re
import smtplib
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.channels.registry import ChannelConfigError
from monitoring.notify.channels.render import render_html, render_subject, render_text
from monitoring.notify.channels.secrets import SecretError, redact, resolve_any
from monitoring.notify.model import DeliveryResult, Message

DEFAULT_TIMEOUT_S = 30.0
HELLO = "localhost"
"""The name we give in EHLO (looking up our own FQDN can hang on a broken resolver)."""
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9_.-]+")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """An email channel's settings with secrets resolved (the password is kept out of the repr)."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    starttls: bool | None = None


class _Failure(Exception):
    """A delivery failure already classified (raised inside the worker thread)."""

    def __init__(self, detail: str, retryable: bool) -> None:
        super().__init__(detail)
        self.retryable = retryable


def addresses(value: Any) -> tuple[str, ...]:
    """A recipients setting (an address, a comma-separated text, or a list) as a tuple."""
    items = [value] if isinstance(value, str) else \
        list(value) if isinstance(value, list | tuple) else []
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.extend(a.strip() for a in item.split(",") if a.strip())
    return tuple(dict.fromkeys(out))


def smtp_settings(settings: Mapping[str, Any]) -> SmtpSettings:
    """Resolve and check the settings; raises SecretError or ChannelConfigError naming the field."""
    resolved: dict[str, Any] = resolve_any(dict(settings))
    host = resolved.get("smtp_server")
    if not isinstance(host, str) or not host:
        raise ChannelConfigError("'smtp_server' is required (the SMTP server's host name)")
    use_tls = _flag(resolved, "use_tls") or False
    starttls = _flag(resolved, "starttls")
    username = resolved.get("username") or None
    password = resolved.get("password") or None
    if username is not None and password is None:
        raise ChannelConfigError("'username' is set but 'password' is not")
    sender = resolved.get("from") or username
    if not isinstance(sender, str) or "@" not in sender:
        raise ChannelConfigError("'from' must be an email address (default: the username)")
    recipients = addresses(resolved.get("to")) + addresses(resolved.get("recipients"))
    default_port = 465 if use_tls else 587 if starttls or (starttls is None and username) \
        else 25
    return SmtpSettings(host, _port(resolved.get("smtp_port"), default_port), sender,
                        tuple(dict.fromkeys(recipients)), username, password, use_tls,
                        None if use_tls else starttls)


def _flag(settings: Mapping[str, Any], key: str) -> bool | None:
    value = settings.get(key)
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ChannelConfigError(f"'{key}' must be true or false, got {value!r}")


def _port(value: Any, default: int) -> int:
    if value is None:
        return default
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ChannelConfigError(f"'smtp_port' must be a TCP port number, got {value!r}") \
            from None
    if not 0 < port < 65536:
        raise ChannelConfigError(f"'smtp_port' must be between 1 and 65535, got {port}")
    return port


def message_id_header(message: Message, sender: str) -> str:
    """``<id@domain>`` from the notification id: the same notification, the same Message-ID."""
    return f"<{message.id}@{_domain(sender)}>"


def group_reference(message: Message, sender: str) -> str:
    """A stable pseudo Message-ID per group, so mail clients thread a group's emails."""
    digest = hashlib.sha256(f"{message.channel}\x00{message.group_key}".encode()).hexdigest()
    return f"<group-{digest[:24]}@{_domain(sender)}>"


def _domain(sender: str) -> str:
    address = email.utils.parseaddr(sender)[1]
    _, at, domain = address.rpartition("@")
    return domain if at and domain else "monitoring.local"


def build_email(message: Message, cfg: SmtpSettings, recipients: Iterable[str], *,
                now_ms: int, external_url: str, plot: bytes | None) -> EmailMessage:
    """The MIME message: text and HTML alternatives, and the plot as a PNG attachment."""
    mail = EmailMessage(policy=email.policy.SMTP)
    mail["Subject"] = render_subject(message, external_url)
    mail["From"] = cfg.sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = email.utils.format_datetime(dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC))
    mail["Message-ID"] = message_id_header(message, cfg.sender)
    mail["References"] = group_reference(message, cfg.sender)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    mail["X-Monitoring-Kind"] = message.kind
    mail.set_content(render_text(message, external_url))
    mail.add_alternative(render_html(message, external_url, has_plot=plot is not None),
                         subtype="html")
    if plot is not None:
        mail.add_attachment(plot, maintype="image", subtype="png",
                            filename=_plot_filename(message))
    return mail


def _plot_filename(message: Message) -> str:
    first = message.alerts[0] if message.alerts else None
    name = (first.name or first.rule or "alert") if first else "alert"
    stem = _UNSAFE_FILENAME.sub("_", name).strip("_") or "alert"
    return f"{stem}-{first.fingerprint}.png" if first else f"{stem}.png"


class EmailChannel:
    """Sends each message as one email to its recipients (or the channel's ``to``)."""

    type = "email"

    def __init__(self, name: str, settings: Mapping[str, Any], context: ChannelContext, *,
                 ssl_context: ssl.SSLContext | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not settings.get("smtp_server"):
            raise ChannelConfigError(f"email channel {name!r}: 'smtp_server' is required")
        self.name = name
        self._settings = dict(settings)
        self._context = context
        self._ssl_context = ssl_context
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"EmailChannel(name={self.name!r})"

    async def send(self, message: Message) -> DeliveryResult:
        """Deliver one message; never raises for a delivery problem."""
        try:
            cfg = smtp_settings(self._settings)
        except (SecretError, ChannelConfigError) as exc:
            return self._result(False, False, f"email channel {self.name!r}: {exc}", message)
        recipients = message.recipients or cfg.recipients
        if not recipients:
            return self._result(False, False, "no recipients: set 'to' on the channel or "
                                "recipients on the escalation stage", message)
        now_ms = self._context.clock.now_ms()
        try:
            refused = await asyncio.to_thread(self._deliver, message, cfg, recipients, now_ms)
        except _Failure as exc:
            return self._result(False, exc.retryable, str(exc), message)
        except Exception as exc:  # a channel never raises: unknown problems are retried
            return self._result(False, True, f"unexpected error: {type(exc).__name__}: {exc}",
                                message)
        sent = [r for r in recipients if r not in refused]
        detail = f"sent to {', '.join(sent)} via {cfg.host}:{cfg.port}"
        if refused:
            detail += "; refused: " + "; ".join(
                f"{addr} ({_reply(code, text)})" for addr, (code, text) in refused.items())
        return self._result(True, False, detail, message, message_id_header(message,
                                                                            cfg.sender))

    async def aclose(self) -> None:
        """Nothing to release: each message uses its own SMTP connection."""

    def _result(self, ok: bool, retryable: bool, detail: str, message: Message,
                remote_id: str | None = None) -> DeliveryResult:
        text = redact(detail, self._settings)
        # Debug only: the delivery log, the ledger and the deliverer's throttled
        # warnings (delivery.FailureLog) report outcomes.
        log.debug("email %s (%s)%s: %s", message.id, self.name,
                  "" if ok else " failed" + (", will retry" if retryable else ""), text)
        return DeliveryResult(ok, retryable, text, remote_id)

    def _plot(self, message: Message) -> bytes | None:
        if self._context.plot is None:
            return None
        try:
            return self._context.plot(message)
        except Exception:  # a missing plot must not stop the email
            log.warning("plot for message %s failed; sending without it", message.id,
                        exc_info=True)
            return None

    def _deliver(self, message: Message, cfg: SmtpSettings, recipients: tuple[str, ...],
                 now_ms: int) -> dict[str, tuple[int, bytes]]:
        """Build and send the email (worker thread); returns the refused recipients."""
        try:
            mail = build_email(message, cfg, recipients, now_ms=now_ms,
                               external_url=self._context.external_url,
                               plot=self._plot(message))
        except ValueError as exc:  # e.g. a line break in an address
            raise _Failure(f"cannot build the email: {exc}", retryable=False) from None
        try:
            return self._smtp(cfg, mail, recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise _Failure("every recipient was refused: " + "; ".join(
                f"{addr} ({_reply(code, text)})" for addr, (code, text) in
                exc.recipients.items()), retryable=any(400 <= c < 500 for c in codes)) \
                from None
        except smtplib.SMTPResponseException as exc:
            what = type(exc).__name__.removeprefix("SMTP")
            raise _Failure(f"{what}: {_reply(exc.smtp_code, exc.smtp_error)}",
                           retryable=not 500 <= exc.smtp_code < 600) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise _Failure(f"{cfg.host}:{cfg.port}: {exc}", retryable=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise _Failure(f"TLS certificate of {cfg.host} not trusted: "
                           f"{exc.verify_message or exc.reason}", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise _Failure(f"cannot talk to {cfg.host}:{cfg.port}: "
                           f"{type(exc).__name__}: {exc}", retryable=True) from None

    def _smtp(self, cfg: SmtpSettings, mail: EmailMessage,
              recipients: tuple[str, ...]) -> dict[str, tuple[int, bytes]]:
        context = self._ssl_context or ssl.create_default_context()
        client = smtplib.SMTP_SSL(cfg.host, cfg.port, HELLO, timeout=self._timeout_s,
                                  context=context) if cfg.use_tls else \
            smtplib.SMTP(cfg.host, cfg.port, HELLO, timeout=self._timeout_s)
        with client:
            client.ehlo()
            if not cfg.use_tls:
                self._upgrade(client, cfg, context)
            if cfg.username is not None and cfg.password is not None:
                client.login(cfg.username, cfg.password)
            return client.send_message(mail, cfg.sender, list(recipients))

    @staticmethod
    def _upgrade(client: smtplib.SMTP, cfg: SmtpSettings, context: ssl.SSLContext) -> None:
        offered = client.has_extn("starttls")
        if cfg.starttls is False:
            return
        if not offered:
            if cfg.starttls:
                raise _Failure(f"{cfg.host}:{cfg.port} does not offer STARTTLS "
                               "(starttls: true)", retryable=False)
            if cfg.username is not None:
                raise _Failure(f"{cfg.host}:{cfg.port} does not offer STARTTLS; refusing to "
                               "send the password in clear text (set starttls: false to allow "
                               "it, or use_tls: true)", retryable=False)
            return
        client.starttls(context=context)
        client.ehlo()


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(message.split())}".strip()
