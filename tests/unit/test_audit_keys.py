"""Signing keys: files, permissions, the environment, the default path, and validity windows.

Catalogue case here: T25 (a checkpoint signed outside its key's validity window is rejected).
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from monitoring.audit import keys as keys_module
from monitoring.audit.errors import SigningKeyError, VerifyFailure
from monitoring.audit.keys import (
    ENV_KEY,
    ENV_KEY_FILE,
    KeyHistory,
    KeyWindow,
    SigningKey,
    accepted_keys,
    create_secret_file,
    decode_secret32,
    default_key_path,
    load_secret_file,
    load_signing_key,
    parse_vkey_window,
    write_key_file,
    write_secret_file,
)
from monitoring.audit.note import Checkpoint, open_checkpoint, sign_checkpoint

ORIGIN = "monitoring.local/audit/feedfacefeedfacefeedfacefeedface"
SEED = bytes(range(32))


def secret(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


# ---------------------------------------------------------------- key objects


def test_signing_key_round_trips_its_seed_and_signs_checkpoints() -> None:
    key = SigningKey.from_seed(ORIGIN, SEED)
    assert key.seed() == SEED
    assert key == SigningKey.from_seed(ORIGIN, SEED)
    assert key.vkey().startswith(f"{ORIGIN}+{key.verifier().key_id.hex()}+")
    cp = Checkpoint(ORIGIN, 3, bytes(32))
    assert open_checkpoint(sign_checkpoint(cp, key.signer()), [key.verifier()])[0] == cp


def test_signing_key_rejects_bad_names_and_seeds() -> None:
    with pytest.raises(SigningKeyError, match="invalid key name"):
        SigningKey.from_seed("has space", SEED)
    with pytest.raises(SigningKeyError, match="32 bytes, got 31"):
        SigningKey.from_seed(ORIGIN, SEED[:31])


# ---------------------------------------------------------------- key files


def test_write_key_file_creates_0600_and_loads_back(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask the file is private
    try:
        path = tmp_path / "deep" / "dir" / "signing.key"
        key = SigningKey.generate(ORIGIN)
        write_key_file(path, key)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert base64.b64decode(path.read_bytes().strip()) == key.seed()
    assert load_signing_key(ORIGIN, path) == key


def test_write_key_file_refuses_to_overwrite(tmp_path: Path) -> None:
    path = secret(tmp_path / "k", b"old")
    with pytest.raises(SigningKeyError, match="already exists; refusing to overwrite"):
        write_key_file(path, SigningKey.generate(ORIGIN))
    assert path.read_bytes() == b"old"


@pytest.mark.parametrize("data", [
    SEED,
    base64.b64encode(SEED),
    base64.b64encode(SEED) + b"\n",
    b"  " + base64.b64encode(SEED) + b"\r\n",
    Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()),
])
def test_key_file_formats(tmp_path: Path, data: bytes) -> None:
    path = secret(tmp_path / "k", data)
    assert load_signing_key(ORIGIN, path).seed() == SEED


@pytest.mark.parametrize(("data", "reason"), [
    (b"not a key", "expected 32 raw bytes or their base64 text"),
    (base64.b64encode(SEED[:16]), "decodes to 16 bytes, expected 32"),
    (b"", "empty; expected 32 raw bytes"),
    (b"\n", "empty; expected 32 raw bytes"),
    (Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")), "encrypted PEM keys are not supported"),
    (ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), "not an Ed25519 key"),
    (b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
     "not a readable PEM private key"),
])
def test_bad_key_files_name_the_file_and_the_problem(tmp_path: Path, data: bytes,
                                                      reason: str) -> None:
    path = secret(tmp_path / "k", data)
    with pytest.raises(SigningKeyError, match=reason) as err:
        load_signing_key(ORIGIN, path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret(tmp_path / "k", base64.b64encode(SEED), mode)
    with pytest.raises(SigningKeyError) as err:
        load_signing_key(ORIGIN, path)
    assert f"(mode {mode:04o})" in str(err.value)
    assert f"chmod 600 {path}" in str(err.value)


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    for mode in (0o600, 0o400):
        path = secret(tmp_path / f"k{mode:o}", base64.b64encode(SEED), mode)
        assert load_signing_key(ORIGIN, path).seed() == SEED


def test_load_secret_file_refuses_folders_and_missing_files(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir(mode=0o700)
    with pytest.raises(SigningKeyError, match="not a regular file"):
        load_secret_file(folder)
    with pytest.raises(SigningKeyError, match="no such key file"):
        load_secret_file(tmp_path / "missing")


def test_symlinked_secret_is_read_through(tmp_path: Path) -> None:
    target = secret(tmp_path / "real", b"x" * 32)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert load_secret_file(link) == b"x" * 32


def test_secret_helpers_for_the_kek(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    write_secret_file(path, base64.b64encode(b"k" * 32))
    assert decode_secret32(load_secret_file(path), str(path)) == b"k" * 32


# ---------------------------------------------------------------- where the key comes from


def test_environment_seed_wins_over_the_default_path(tmp_path: Path) -> None:
    env = {ENV_KEY: base64.b64encode(SEED).decode(), "XDG_CONFIG_HOME": str(tmp_path)}
    assert load_signing_key(ORIGIN, env=env).seed() == SEED
    assert not (tmp_path / "monitoring").exists()


def test_bad_environment_seed_names_the_variable() -> None:
    with pytest.raises(SigningKeyError, match=r"\$MONITORING_AUDIT_KEY"):
        load_signing_key(ORIGIN, env={ENV_KEY: "short"})


def test_key_file_from_the_environment(tmp_path: Path) -> None:
    path = secret(tmp_path / "k", SEED)
    assert load_signing_key(ORIGIN, env={ENV_KEY_FILE: str(path)}).seed() == SEED


def test_explicit_path_wins_over_the_environment(tmp_path: Path) -> None:
    path = secret(tmp_path / "k", SEED)
    other = base64.b64encode(bytes(32)).decode()
    assert load_signing_key(ORIGIN, path, env={ENV_KEY: other}).seed() == SEED


def test_default_path_is_generated_on_request(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    with pytest.raises(SigningKeyError, match="no signing key; create one with"):
        load_signing_key(ORIGIN, env=env)
    key = load_signing_key(ORIGIN, create=True, env=env)
    path = tmp_path / "cfg" / "monitoring" / "audit-signing.key"
    assert default_key_path(env) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(ORIGIN, env=env) == key  # the same key next time
    assert load_signing_key(ORIGIN, create=True, env=env) == key  # never regenerated


def test_generation_race_uses_the_key_another_process_wrote(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    path = tmp_path / "k"
    winner = SigningKey.from_seed(ORIGIN, SEED)
    real_write = keys_module.write_secret_file

    def lose_the_race(target: Path, data: bytes) -> None:
        real_write(target, base64.b64encode(winner.seed()))  # the other process, first
        real_write(target, data)  # ours: refused

    monkeypatch.setattr(keys_module, "write_secret_file", lose_the_race)
    assert load_signing_key(ORIGIN, path, create=True) == winner
    assert create_secret_file(tmp_path / "k", b"x") is False


def test_default_path_falls_back_to_home(tmp_path: Path) -> None:
    assert default_key_path({"HOME": str(tmp_path)}) == \
        tmp_path / ".config" / "monitoring" / "audit-signing.key"


# ---------------------------------------------------------------- T25: validity windows


def rotated() -> tuple[SigningKey, SigningKey, KeyHistory]:
    old, new = SigningKey.from_seed(ORIGIN, SEED), SigningKey.from_seed(ORIGIN, bytes(32))
    history = KeyHistory.genesis(old.verifier())
    history.rotate(new.verifier(), 10)  # the rotation batch's checkpoint, size 10, old key
    return old, new, history


def test_rotation_windows() -> None:
    old, new, history = rotated()
    assert history.windows == [KeyWindow(old.verifier(), 1, 10), KeyWindow(new.verifier(), 11)]
    assert history.current == new.verifier()
    assert history.verifiers == [old.verifier(), new.verifier()]
    for size in (1, 5, 10):
        history.check(old.verifier(), size)
    for size in (11, 1000):
        history.check(new.verifier(), size)


def test_t25_newer_key_re_signing_an_old_size_is_rejected() -> None:
    _, new, history = rotated()
    for size in (1, 9, 10):
        with pytest.raises(VerifyFailure) as err:
            history.check(new.verifier(), size)
        assert err.value.reason == (
            f"checkpoint of size {size} is signed by key {new.verifier().key_hex} outside its "
            "validity window (sizes 11..)")


def test_t25_retired_key_signing_after_its_window_is_rejected() -> None:
    old, _, history = rotated()
    with pytest.raises(VerifyFailure, match=r"outside its validity window \(sizes 1\.\.10\)") \
            as err:
        history.check(old.verifier(), 11)
    assert old.verifier().key_id.hex() in err.value.reason


def test_t25_key_not_in_history_is_rejected() -> None:
    _, _, history = rotated()
    stranger = SigningKey.generate(ORIGIN).verifier()
    with pytest.raises(VerifyFailure, match="not in the ledger's key history"):
        history.check(stranger, 5)


def test_t25_check_any_takes_a_valid_signer_or_reports_the_first_failure() -> None:
    old, new, history = rotated()
    assert history.check_any([new.verifier(), old.verifier()], 4) == old.verifier()
    with pytest.raises(VerifyFailure, match="sizes 11\\.\\."):
        history.check_any([new.verifier()], 4)


def test_rotation_before_the_current_window_is_refused() -> None:
    old, new, history = rotated()
    with pytest.raises(VerifyFailure, match=r"rotation at size 3 lies before the current key's "
                       r"window 11\.\."):
        history.rotate(old.verifier(), 3)
    ended = KeyHistory([KeyWindow(old.verifier(), 1, 10)])
    with pytest.raises(SigningKeyError, match="already ends"):
        ended.rotate(new.verifier(), 12)
    with pytest.raises(SigningKeyError, match="without a genesis key"):
        KeyHistory().rotate(new.verifier(), 12)


def test_t25_history_opens_checkpoints_only_inside_the_signers_window() -> None:
    old, new, history = rotated()
    cp = Checkpoint(ORIGIN, 7, bytes(32))
    assert history.open_checkpoint(sign_checkpoint(cp, old.signer())) == (cp, old.verifier())
    with pytest.raises(VerifyFailure, match=r"outside its validity window \(sizes 11\.\.\)"):
        history.open_checkpoint(sign_checkpoint(cp, new.signer()))
    with pytest.raises(VerifyFailure, match=r"^checkpoint: checkpoint is for origin"):
        history.open_checkpoint(sign_checkpoint(cp, old.signer()), "monitoring.local/other")
    with pytest.raises(VerifyFailure, match=r"^checkpoint: invalid signature"):
        history.open_checkpoint(sign_checkpoint(cp, old.signer()).replace("\n7\n", "\n8\n"))


def test_accepted_keys_from_vkeys_verifiers_or_a_history() -> None:
    old, new, history = rotated()
    assert accepted_keys(history) is history
    assert accepted_keys(old.vkey()).windows == [KeyWindow(old.verifier(), 1)]
    assert accepted_keys([old.verifier(), new.vkey() + "@11-"]).windows == [
        KeyWindow(old.verifier(), 1), KeyWindow(new.verifier(), 11)]
    empties: list[KeyHistory | list[str]] = [[], KeyHistory()]
    for empty in empties:
        with pytest.raises(SigningKeyError, match="no verifier key given"):
            accepted_keys(empty)


@pytest.mark.parametrize(("suffix", "window"), [
    ("", (1, None)), ("@5-", (5, None)), ("@1-10", (1, 10)), ("@11-11", (11, 11)),
])
def test_vkey_with_a_window(suffix: str, window: tuple[int, int | None]) -> None:
    key = SigningKey.from_seed("a@b.example/log", SEED)
    parsed = parse_vkey_window(key.vkey() + suffix)
    assert parsed.verifier == key.verifier()
    assert (parsed.valid_from, parsed.valid_to) == window


@pytest.mark.parametrize(("suffix", "reason"), [
    ("@x-1", "malformed key window"), ("@5", "malformed key window"),
    ("@9-3", "ends before it starts"),
])
def test_vkey_window_errors(suffix: str, reason: str) -> None:
    key = SigningKey.from_seed(ORIGIN, SEED)
    with pytest.raises(SigningKeyError, match=reason):
        parse_vkey_window(key.vkey() + suffix)
