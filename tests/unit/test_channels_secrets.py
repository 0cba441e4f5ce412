from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.notify.channels.secrets import (
    SecretError,
    lookup,
    redact,
    resolve,
    resolve_any,
    secret_values,
)


def test_env_value_wins_over_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    env = {"PW": "from-env", "PW_FILE": str(secret)}
    assert lookup("PW", env) == "from-env"
    assert lookup("PW", {"PW_FILE": str(secret)}) == "from-file"  # one newline stripped


def test_file_keeps_inner_whitespace(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(" a b \n\n")
    assert lookup("PW", {"PW_FILE": str(secret)}) == " a b \n"


def test_resolve_substitutes_inside_text() -> None:
    env = {"HOST": "hooks.example.org", "TOKEN": "T0K3N"}
    assert resolve("https://${HOST}/x/${TOKEN}", env) == "https://hooks.example.org/x/T0K3N"
    assert resolve("no references $HOST {TOKEN}", env) == "no references $HOST {TOKEN}"
    assert resolve_any({"a": ["${HOST}", 3], "b": {"c": "${TOKEN}"}, "d": True}, env) == \
        {"a": ["hooks.example.org", 3], "b": {"c": "T0K3N"}, "d": True}


def test_missing_variable_names_it_and_no_value() -> None:
    with pytest.raises(SecretError) as info:
        resolve("${SMTP_PASSWORD}", {"OTHER": "x"})
    assert str(info.value) == ("secret ${SMTP_PASSWORD}: environment variable SMTP_PASSWORD is "
                               "not set (nor SMTP_PASSWORD_FILE naming a file that holds it)")
    assert info.value.name == "SMTP_PASSWORD"


def test_unreadable_file_names_the_variable_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(SecretError) as info:
        lookup("PW", {"PW_FILE": str(missing)})
    assert str(info.value) == (f"secret ${{PW}}: cannot read the file named by PW_FILE "
                               f"({missing}): No such file or directory")


def test_redact_hides_resolved_references_and_secret_keys() -> None:
    env = {"SMTP_PASSWORD": "hunter2-long", "WEBHOOK": "https://hooks.example.org/T/B/XYZ"}
    settings = {"password": "${SMTP_PASSWORD}", "url": "${WEBHOOK}",
                "routing_key": "literal-routing-key", "smtp_server": "mail.example.org",
                "headers": {"Authorization": "Bearer abcdef"}}
    text = ("login hunter2-long failed posting to https://hooks.example.org/T/B/XYZ with "
            "literal-routing-key and Bearer abcdef via mail.example.org")
    assert redact(text, settings, env) == "login *** failed posting to *** with *** and *** " \
        "via mail.example.org"


def test_redact_masks_longest_first_and_skips_tiny_values() -> None:
    env = {"A": "abcd", "B": "abcdefgh", "C": "1"}
    settings = {"x": "${A}", "y": "${B}", "z": "${C}"}
    assert secret_values(settings, env) == ["abcdefgh", "abcd"]
    assert redact("abcdefgh abcd 1", settings, env) == "*** *** 1"


def test_redact_tolerates_unresolvable_references() -> None:
    assert redact("secret ${NOPE} missing", {"password": "${NOPE}"}, {}) == \
        "secret ${NOPE} missing"
