from __future__ import annotations

from typing import Any

import pytest

from monitoring.notify.channels.email import (
    addresses,
    build_email,
    group_reference,
    message_id_header,
    smtp_settings,
)
from monitoring.notify.channels.registry import ChannelConfigError
from monitoring.notify.model import Alert, Message

BASE = {"smtp_server": "mail.example.org", "from": "alerts@example.org"}


def settings(**extra: Any) -> dict[str, Any]:
    return {**BASE, **extra}


@pytest.mark.parametrize(("extra", "port", "starttls"), [
    ({}, 25, None),
    ({"username": "u@example.org", "password": "p"}, 587, None),
    ({"starttls": True}, 587, True),
    ({"starttls": False, "username": "u@example.org", "password": "p"}, 25, False),
    ({"use_tls": True}, 465, None),
    ({"use_tls": "${TLS}", "smtp_port": "${PORT}"}, 2465, None),
])
def test_port_and_tls_defaults(extra: dict[str, Any], port: int, starttls: bool | None,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLS", "true")
    monkeypatch.setenv("PORT", "2465")
    cfg = smtp_settings(settings(**extra))
    assert (cfg.port, cfg.starttls) == (port, starttls)


def test_sender_defaults_to_username_and_recipients_merge() -> None:
    cfg = smtp_settings({"smtp_server": "m", "username": "bot@example.org", "password": "pw-1",
                         "to": "a@x.org, b@x.org", "recipients": ["b@x.org", "c@x.org"]})
    assert cfg.sender == "bot@example.org"
    assert cfg.recipients == ("a@x.org", "b@x.org", "c@x.org")
    assert cfg.password == "pw-1"
    assert "pw-1" not in repr(cfg)


@pytest.mark.parametrize(("extra", "error"), [
    ({"smtp_server": ""}, "'smtp_server' is required"),
    ({"username": "u@example.org"}, "'username' is set but 'password' is not"),
    ({"from": "not-an-address"}, "'from' must be an email address"),
    ({"smtp_port": "abc"}, "'smtp_port' must be a TCP port number, got 'abc'"),
    ({"smtp_port": 70000}, "'smtp_port' must be between 1 and 65535, got 70000"),
    ({"starttls": "maybe"}, "'starttls' must be true or false, got 'maybe'"),
])
def test_bad_settings_name_the_field(extra: dict[str, Any], error: str) -> None:
    with pytest.raises(ChannelConfigError, match=error):
        smtp_settings(settings(**extra))


def test_addresses() -> None:
    assert addresses(" a@x , b@x ") == ("a@x", "b@x")
    assert addresses(["a@x", "a@x", 3]) == ("a@x",)
    assert addresses(None) == ()


def test_ids_are_stable_and_line_breaks_in_addresses_are_refused() -> None:
    alert = Alert({"alertname": "A"}, {}, "firing", 0)
    msg = Message("abc", "email", "firing", "g1", (alert,), 0)
    assert message_id_header(msg, "Alerts <alerts@example.org>") == "<abc@example.org>"
    assert message_id_header(msg, "alerts") == "<abc@monitoring.local>"
    assert group_reference(msg, "a@example.org") == group_reference(
        Message("other", "email", "resolved", "g1", (alert.resolved(5),), 5), "a@example.org")
    cfg = smtp_settings(settings())
    with pytest.raises(ValueError):
        build_email(msg, cfg, ["a@x.org\r\nBcc: evil@x.org"], now_ms=0,
                    external_url="http://x", plot=None)
