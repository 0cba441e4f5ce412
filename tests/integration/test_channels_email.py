"""The email channel against a real SMTP server (aiosmtpd on 127.0.0.1).

Each test reads what the server received with the ``email`` package: recipients,
subject, Message-ID, the text and HTML alternatives and the PNG attachment.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from monitoring.dsl.config import load_notification_config
from monitoring.dsl.source import SourceFile
from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.channels.email import EmailChannel
from monitoring.notify.channels.plot import store_plot_source
from monitoring.notify.channels.registry import build_channels
from monitoring.notify.model import Alert, DeliveryResult, FakeClock, Message
from tests.support.smtp import SmtpServer

PASSWORD = "s3cr3t-Pa55word!"
USER = "alerts@example.org"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def cpu_alert(instance: str = "web-1", status: str = "firing") -> Alert:
    return Alert({"alertname": "HighCPU", "severity": "critical", "instance": instance,
                  "team": "<ops & infra>"},
                 {"summary": f"CPU above 90% on {instance}",
                  "runbook_url": "https://runbooks.example.org/cpu"},
                 status, T0, T0 + 600_000 if status == "resolved" else None, 0.9734, "HighCPU")


def message(*alerts: Alert, recipients: tuple[str, ...] = (), kind: str = "firing",
            mid: str = "3f2a9c0d11e24b7f9a1c2d3e4f506172") -> Message:
    return Message(mid, "email", kind, "{}:{alertname=\"HighCPU\"}", alerts or (cpu_alert(),),
                   T0 + 300_000, recipients)


def series(msg: Message) -> list[tuple[Mapping[str, str], list[int], list[float]]]:
    times = [T0 - 3_600_000 + i * 15_000 for i in range(300)]
    return [({"__name__": "node_cpu_usage_ratio", "instance": "web-1"}, times,
             [0.5 + 0.5 * i / 300 for i in range(300)])]


def context(plot: Any = None) -> ChannelContext:
    return ChannelContext(clock=FakeClock(T0 + 300_000), plot=plot,
                          external_url="http://monitor.example.org:9464")


def settings(server: SmtpServer, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"smtp_server": server.host, "smtp_port": server.port,
                            "from": USER, "to": ["oncall@example.org", "team@example.org"]}
    base.update(extra)
    return base


def send(channel: EmailChannel, msg: Message) -> DeliveryResult:
    return asyncio.run(channel.send(msg))


def parts(mail: EmailMessage) -> tuple[str, str, list[EmailMessage]]:
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    return (text.get_content(), html.get_content(),
            [p for p in mail.iter_attachments() if isinstance(p, EmailMessage)])


def test_starttls_auth_html_text_png_and_recipients(tmp_path: Path) -> None:
    with SmtpServer(tmp_path, mode="starttls", credentials=(USER, PASSWORD)) as server:
        channel = EmailChannel("ops-mail", settings(server, username=USER, password=PASSWORD,
                                                    starttls=True),
                               context(store_plot_source(series)),
                               ssl_context=server.client_context())
        result = send(channel, message())
        received = server.messages()
    assert result.ok, result.detail
    assert result.remote_id == "<3f2a9c0d11e24b7f9a1c2d3e4f506172@example.org>"
    assert len(received) == 1
    got = received[0]
    assert got.tls is True
    assert got.login == USER
    assert got.mail_from == USER
    assert got.rcpt_tos == ("oncall@example.org", "team@example.org")
    mail = got.message
    assert mail["To"] == "oncall@example.org, team@example.org"
    assert mail["From"] == USER
    assert mail["Subject"] == ("[FIRING:1] HighCPU (instance=web-1 severity=critical "
                               "team=<ops & infra>): CPU above 90% on web-1")
    assert mail["Message-ID"] == "<3f2a9c0d11e24b7f9a1c2d3e4f506172@example.org>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"] == "Thu, 01 Jan 2026 00:05:00 +0000"
    assert mail.get_content_type() == "multipart/mixed"
    text, html, attachments = parts(mail)
    assert ("* [FIRING] critical HighCPU instance=web-1 team=<ops & infra> value=0.9734: "
            "CPU above 90% on web-1") in text
    assert "Runbook: https://runbooks.example.org/cpu" in text
    assert "Details: http://monitor.example.org:9464/api/v1/alerts/" + \
        cpu_alert().fingerprint in text
    assert "<code>&lt;ops &amp; infra&gt;</code>" in html  # autoescaped label value
    assert "<ops & infra>" not in html
    assert f'href="http://monitor.example.org:9464/api/v1/alerts/{cpu_alert().fingerprint}"' \
        in html
    assert 'href="https://runbooks.example.org/cpu"' in html
    assert "A plot of the alert's metric is attached." in html
    assert len(attachments) == 1
    png = attachments[0]
    assert png.get_content_type() == "image/png"
    assert png.get_filename() == f"HighCPU-{cpu_alert().fingerprint}.png"
    data = png.get_content()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000


def test_implicit_tls_with_auth(tmp_path: Path) -> None:
    with SmtpServer(tmp_path, mode="tls", credentials=(USER, PASSWORD)) as server:
        channel = EmailChannel("email", settings(server, username=USER, password=PASSWORD,
                                                 use_tls=True),
                               context(), ssl_context=server.client_context())
        result = send(channel, message())
        received = server.messages()
    assert result.ok, result.detail
    assert [(r.tls, r.login) for r in received] == [(True, USER)]
    _, _, attachments = parts(received[0].message)
    assert attachments == []  # no plot source: no attachment


def test_plain_message_recipients_override_to(tmp_path: Path) -> None:
    with SmtpServer(tmp_path) as server:
        channel = EmailChannel("email", settings(server), context())
        result = send(channel, message(recipients=("alice@example.org",)))
        received = server.messages()
    assert result.ok
    assert result.detail == f"sent to alice@example.org via 127.0.0.1:{server.port}"
    assert [r.rcpt_tos for r in received] == [("alice@example.org",)]
    assert received[0].tls is False
    assert received[0].message["To"] == "alice@example.org"


def test_resolved_and_escalation_wording(tmp_path: Path) -> None:
    escalation = Message("e1", "email", "escalation", "g", (cpu_alert(),), T0 + 900_000,
                         ("bob@example.org",), stage=2, policy="critical-alerts",
                         person="bob")
    with SmtpServer(tmp_path) as server:
        channel = EmailChannel("email", settings(server), context())
        assert send(channel, message(cpu_alert(status="resolved"), kind="resolved")).ok
        assert send(channel, escalation).ok
        resolved, escalated = (r.message for r in server.messages())
    assert resolved["Subject"] == ("[RESOLVED] HighCPU (instance=web-1 severity=critical "
                                   "team=<ops & infra>): CPU above 90% on web-1")
    text, _, _ = parts(resolved)
    assert "Started: 2026-01-01T00:00:00Z, resolved: 2026-01-01T00:10:00Z (lasted 10m)" in text
    assert escalated["Subject"].startswith("[ESCALATION stage 2] [FIRING:1] HighCPU")
    text, html, _ = parts(escalated)
    assert "Escalation policy critical-alerts, stage 2, on call: bob." in text
    assert f"monitoring ack {cpu_alert().fingerprint}" in text
    assert "on call: <strong>bob</strong>" in html


def test_every_recipient_rejected_with_550_is_not_retryable(tmp_path: Path) -> None:
    reject = {"oncall@example.org": "550 5.1.1 <oncall@example.org>: user unknown",
              "team@example.org": "550 5.1.1 <team@example.org>: user unknown"}
    with SmtpServer(tmp_path, reject=reject) as server:
        result = send(EmailChannel("email", settings(server), context()), message())
        received = server.messages()
    assert received == []
    assert (result.ok, result.retryable) == (False, False)
    assert "every recipient was refused" in result.detail
    assert "oncall@example.org (550 5.1.1 <oncall@example.org>: user unknown)" in result.detail


def test_one_recipient_rejected_delivers_to_the_others(tmp_path: Path) -> None:
    reject = {"team@example.org": "550 5.1.1 user unknown"}
    with SmtpServer(tmp_path, reject=reject) as server:
        result = send(EmailChannel("email", settings(server), context()), message())
        received = server.messages()
    assert result.ok
    assert [r.rcpt_tos for r in received] == [("oncall@example.org",)]
    assert result.detail.endswith("; refused: team@example.org (550 5.1.1 user unknown)")


def test_temporary_4xx_rejection_is_retryable(tmp_path: Path) -> None:
    reject = {"oncall@example.org": "450 4.2.1 mailbox busy",
              "team@example.org": "450 4.2.1 mailbox busy"}
    with SmtpServer(tmp_path, reject=reject) as server:
        result = send(EmailChannel("email", settings(server), context()), message())
    assert (result.ok, result.retryable) == (False, True)


def test_data_451_is_retryable_and_554_is_not(tmp_path: Path) -> None:
    with SmtpServer(tmp_path, data_reply="451 4.3.0 try again later") as server:
        temporary = send(EmailChannel("email", settings(server), context()), message())
    with SmtpServer(tmp_path, data_reply="554 5.7.1 message rejected as spam") as server:
        permanent = send(EmailChannel("email", settings(server), context()), message())
    assert (temporary.ok, temporary.retryable) == (False, True)
    assert temporary.detail == "DataError: 451 4.3.0 try again later"
    assert (permanent.ok, permanent.retryable) == (False, False)
    assert permanent.detail == "DataError: 554 5.7.1 message rejected as spam"


def test_refused_connection_is_retryable() -> None:
    with socket.socket() as s:  # a port that was free a moment ago, with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = EmailChannel("email", {"smtp_server": "127.0.0.1", "smtp_port": port,
                                     "from": USER, "to": "oncall@example.org"}, context())
    result = send(channel, message())
    assert (result.ok, result.retryable) == (False, True)
    assert result.detail.startswith(f"cannot talk to 127.0.0.1:{port}: ConnectionRefusedError")


def test_untrusted_certificate_is_not_retryable(tmp_path: Path) -> None:
    with SmtpServer(tmp_path, mode="starttls") as server:
        result = send(EmailChannel("email", settings(server, starttls=True), context()),
                      message())
        received = server.messages()
    assert received == []
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail.startswith("TLS certificate of 127.0.0.1 not trusted")


def test_password_never_sent_in_clear_unless_allowed(tmp_path: Path) -> None:
    with SmtpServer(tmp_path, credentials=(USER, PASSWORD)) as server:
        refused = send(EmailChannel("email", settings(server, username=USER,
                                                      password=PASSWORD), context()),
                       message())
        before = len(server.messages())
        allowed = send(EmailChannel("email", settings(server, username=USER, password=PASSWORD,
                                                      starttls=False), context()), message())
        received = server.messages()
    assert (refused.ok, refused.retryable, before) == (False, False, 0)
    assert "refusing to send the password in clear text" in refused.detail
    assert allowed.ok
    assert [r.login for r in received] == [USER]


def test_secrets_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "smtp-password"
    secret_file.write_text(PASSWORD + "\n")
    monkeypatch.setenv("SMTP_USER", USER)
    monkeypatch.setenv("SMTP_PASSWORD_FILE", str(secret_file))
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    with SmtpServer(tmp_path, mode="starttls", credentials=(USER, PASSWORD)) as server:
        channel = EmailChannel("email", settings(server, username="${SMTP_USER}",
                                                 password="${SMTP_PASSWORD}"),
                               context(), ssl_context=server.client_context())
        result = send(channel, message())
        received = server.messages()
    assert result.ok, result.detail
    assert [r.login for r in received] == [USER]


def test_missing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_PASSWORD", raising=False)
    monkeypatch.delenv("NOPE_PASSWORD_FILE", raising=False)
    channel = EmailChannel("email", {"smtp_server": "127.0.0.1", "username": USER,
                                     "password": "${NOPE_PASSWORD}", "to": "a@example.org"},
                           context())
    result = send(channel, message())
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail == ("email channel 'email': secret ${NOPE_PASSWORD}: environment "
                             "variable NOPE_PASSWORD is not set (nor NOPE_PASSWORD_FILE "
                             "naming a file that holds it)")


def test_password_appears_in_no_detail_and_no_log(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Wrong password (535), and a server that echoes the password back in a rejection."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    results = []
    with SmtpServer(tmp_path, mode="starttls", credentials=(USER, "another-password")) as srv:
        channel = EmailChannel("email", settings(srv, username=USER,
                                                 password="${SMTP_PASSWORD}"),
                               context(), ssl_context=srv.client_context())
        results.append(send(channel, message()))
    echo = {"oncall@example.org": f"550 5.1.1 bad mailbox, password was {PASSWORD}",
            "team@example.org": f"550 5.1.1 password was {PASSWORD}"}
    with SmtpServer(tmp_path, mode="starttls", credentials=(USER, PASSWORD),
                    reject=echo) as srv:
        channel = EmailChannel("email", settings(srv, username=USER,
                                                 password="${SMTP_PASSWORD}"),
                               context(), ssl_context=srv.client_context())
        results.append(send(channel, message()))
        assert PASSWORD not in repr(channel)
    auth_failed, echoed = results
    assert (auth_failed.ok, auth_failed.retryable) == (False, False)
    assert auth_failed.detail == "AuthenticationError: 535 5.7.8 Authentication credentials invalid"
    assert (echoed.ok, echoed.retryable) == (False, False)
    assert "password was ***" in echoed.detail
    for result in results:
        assert PASSWORD not in result.detail
    ours = "\n".join(r.getMessage() for r in caplog.records
                     if r.name.startswith("monitoring"))  # not the test server's own log
    assert "failed: every recipient was refused" in ours  # the failure was logged
    assert "failed: AuthenticationError: 535" in ours
    assert PASSWORD not in ours


def test_failing_plot_still_sends_the_email(tmp_path: Path) -> None:
    def broken(msg: Message) -> list[Any]:
        raise RuntimeError("store closed")

    with SmtpServer(tmp_path) as server:
        result = send(EmailChannel("email", settings(server),
                                   context(store_plot_source(broken))), message())
        received = server.messages()
    assert result.ok
    _, html, attachments = parts(received[0].message)
    assert attachments == []
    assert "plot" not in html


def test_seed_style_config_file_to_delivered_email(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """notification_config.yaml as the seed writes it, with the password from the env."""
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    with SmtpServer(tmp_path, credentials=(USER, PASSWORD)) as server:
        text = (f'email:\n  smtp_server: "{server.host}"\n  smtp_port: {server.port}\n'
                f'  username: "{USER}"\n  password: "${{SMTP_PASSWORD}}"\n'
                f'  starttls: false\n  to: [oncall@example.org]\n')
        config, diagnostics = load_notification_config(SourceFile("notification_config.yaml",
                                                                  text))
        assert diagnostics == []
        channels = build_channels(config.channels, context())
        assert sorted(channels) == ["console", "email"]
        result = asyncio.run(channels["email"].send(message()))
        received = server.messages()
    assert result.ok, result.detail
    assert [(r.login, r.rcpt_tos) for r in received] == [(USER, ("oncall@example.org",))]
