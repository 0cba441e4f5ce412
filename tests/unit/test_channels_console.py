from __future__ import annotations

import asyncio
import io

import pytest

from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.channels.console import ConsoleChannel, console_lines
from monitoring.notify.model import Alert, Message

T0 = 1_767_225_600_000


def alert(instance: str, status: str = "firing") -> Alert:
    return Alert({"alertname": "DiskFull", "severity": "warning", "instance": instance},
                 {"summary": "[disk] almost full"}, status, T0,
                 T0 + 60_000 if status == "resolved" else None, 0.97, "DiskFull")


def test_one_line_per_alert_without_colour_when_not_a_tty() -> None:
    out = io.StringIO()
    channel = ConsoleChannel("console", {}, ChannelContext(), stream=out)
    msg = Message("m1", "console", "firing", "g", (alert("b", "resolved"), alert("a")),
                  T0 + 120_000)
    result = asyncio.run(channel.send(msg))
    assert result.ok
    assert result.detail == "printed 2 line(s)"
    fa, fb = alert("a").fingerprint, alert("b").fingerprint
    assert out.getvalue() == (
        f"2026-01-01T00:02:00Z [FIRING] warning DiskFull instance=a value=0.97: "
        f"[disk] almost full (id {fa})\n"
        f"2026-01-01T00:02:00Z [RESOLVED] warning DiskFull instance=b: "
        f"[disk] almost full (id {fb})\n")
    assert "\x1b[" not in out.getvalue()


def test_escalation_and_ack_lines_say_so() -> None:
    esc = Message("m2", "console", "escalation", "g", (alert("a"),), T0, stage=2, person="bob")
    ack = Message("m3", "console", "acknowledged", "g", (alert("a"),), T0)
    assert console_lines(esc)[0].startswith(
        "2026-01-01T00:00:00Z escalation stage 2 (bob): [FIRING] warning DiskFull")
    assert console_lines(ack)[0].startswith("2026-01-01T00:00:00Z acknowledged: [FIRING]")


def test_colour_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    channel = ConsoleChannel("console", {}, ChannelContext(), stream=out)
    assert asyncio.run(channel.send(Message("m", "console", "firing", "g", (alert("a"),), T0))).ok
    assert "\x1b[1;31m[FIRING]\x1b[0m" in out.getvalue()


def test_closed_stream_is_a_permanent_failure() -> None:
    out = io.StringIO()
    out.close()
    channel = ConsoleChannel("console", {}, ChannelContext(), stream=out)
    result = asyncio.run(channel.send(Message("m", "console", "firing", "g", (alert("a"),), T0)))
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail.startswith("cannot write to the console")
