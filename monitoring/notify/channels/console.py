"""The console channel: one readable line per alert on standard output.

``monitoring serve`` adds it by default, so a new user sees alerts fire and resolve
in the terminal before configuring any other channel. Lines are printed with rich
(colour on a terminal, plain text when piped or captured) and with rich markup off,
because label values and annotations may contain brackets.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.channels.render import alert_line, format_ms
from monitoring.notify.model import FIRING, DeliveryResult, Message

STATUS_STYLES = {FIRING: "bold red", "resolved": "bold green"}


def kind_prefix(message: Message) -> str:
    """What kind of notification the line belongs to, when not a plain firing/resolved one."""
    if message.kind == "escalation":
        stage = "" if message.stage is None else f" stage {message.stage}"
        person = f" ({message.person})" if message.person else ""
        return f"escalation{stage}{person}: "
    if message.kind in ("repeat", "acknowledged", "test"):
        return f"{message.kind}: "
    return ""


def console_lines(message: Message) -> list[str]:
    """The lines the console prints for a message (without colour)."""
    when = format_ms(message.created_ms)
    prefix = kind_prefix(message)
    return [f"{when} {prefix}{alert_line(a)} (id {a.fingerprint})"
            for a in (*message.firing, *message.resolved)]


class ConsoleChannel:
    """Prints alerts to a stream (standard output by default)."""

    type = "console"

    def __init__(self, name: str, settings: Mapping[str, Any] | None = None,
                 context: ChannelContext | None = None, *, stream: TextIO | None = None) -> None:
        self.name = name
        self._console = Console(file=stream or sys.stdout, markup=False, highlight=False,
                                soft_wrap=True, emoji=False)

    async def send(self, message: Message) -> DeliveryResult:
        """Print one line per alert; a closed stream is a failure that retrying cannot fix."""
        lines = console_lines(message)
        alerts = (*message.firing, *message.resolved)
        try:
            for line, alert in zip(lines, alerts, strict=True):
                text = Text(line)
                start = line.find(f"[{alert.status.upper()}]")
                if start >= 0:
                    text.stylize(STATUS_STYLES.get(alert.status, ""), start,
                                 start + len(alert.status) + 2)
                self._console.print(text)
            self._console.file.flush()
        except (OSError, ValueError) as exc:  # closed or broken stream
            return DeliveryResult(False, retryable=False,
                                  detail=f"cannot write to the console: {exc}")
        return DeliveryResult(True, detail=f"printed {len(lines)} line(s)")

    async def aclose(self) -> None:
        """Nothing to release (the stream belongs to the caller)."""
