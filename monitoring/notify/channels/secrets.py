"""Secrets in channel settings: ``${NAME}`` read from the environment or a file, never shown.

``notification_config.yaml`` is committed to git, so a password is written as
``${SMTP_PASSWORD}`` and read when the channel sends (a channel can be built before
the variable is set, and a rotated secret file is picked up without a restart).
``NAME`` comes from the environment variable ``NAME``, or, when that is unset, from
the file named by ``NAME_FILE`` (the Docker / Kubernetes secrets convention), with
one trailing newline stripped.

Every text a channel shows (a delivery detail, a log line, an exception) goes
through :func:`redact`, which replaces the resolved value of every setting that
references a variable, and of every setting whose name says it is a secret, by
``***``: a server that echoes a password back cannot leak it into the delivery log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from monitoring.dsl.config import ENV_REFERENCE

SECRET_KEYS = re.compile(r"password|passwd|secret|token|routing_key|api_key|webhook_url|"
                         r"authorization", re.IGNORECASE)
"""Setting names whose values are secret even when written literally in the file."""
MASK = "***"
_MIN_REDACT = 4
"""Values shorter than this are not masked in text (masking "1" would garble details)."""


class SecretError(Exception):
    """A ``${NAME}`` reference that cannot be resolved; the message names NAME, never a value."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"secret ${{{name}}}: {reason}")
        self.name = name


def lookup(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of variable ``name``: ``$NAME``, else the contents of the file ``$NAME_FILE``."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value is not None:
        return value
    path = env.get(f"{name}_FILE")
    if path is None:
        raise SecretError(name, f"environment variable {name} is not set "
                                f"(nor {name}_FILE naming a file that holds it)")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(name, f"cannot read the file named by {name}_FILE ({path}): "
                                f"{exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise SecretError(name, f"the file named by {name}_FILE ({path}) is not UTF-8") \
            from None
    return text[:-1] if text.endswith("\n") else text


def resolve(value: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` with every ``${NAME}`` replaced by the variable's value (see :func:`lookup`)."""
    return ENV_REFERENCE.sub(lambda m: lookup(m.group(1), environ), value)


def resolve_any(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A setting with references resolved inside strings, lists and mappings."""
    if isinstance(value, str):
        return resolve(value, environ)
    if isinstance(value, Mapping):
        return {k: resolve_any(v, environ) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_any(v, environ) for v in value]
    return value


def secret_values(settings: Mapping[str, Any],
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """The texts :func:`redact` hides: resolved references and values of secret-named keys.

    Unresolvable references are skipped (there is nothing to leak); the longest values
    come first so that a secret containing another is masked whole.
    """
    found: set[str] = set()
    for key, value in _walk(settings, ""):
        try:
            if SECRET_KEYS.search(key):
                found.add(resolve(value, environ))
            found.update(lookup(m.group(1), environ) for m in ENV_REFERENCE.finditer(value))
        except SecretError:
            continue
    return sorted((v for v in found if len(v) >= _MIN_REDACT), key=len, reverse=True)


def redact(text: str, settings: Mapping[str, Any],
           environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret of ``settings`` replaced by ``***``."""
    for secret in secret_values(settings, environ):
        text = text.replace(secret, MASK)
    return text


def _walk(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """``(key, string)`` for every string inside nested settings (list items keep the key)."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, str(k))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk(v, key)

