"""The subject vault: per-subject AES-256-GCM keys in files wrapped by the KEK; erasure.

Tamper catalogue case here: T37 at the vault level (crypto-shredding a subject: decryption
fails with "erased", no file in the folder holds the key any more).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from monitoring.audit.errors import ErasedError, SigningKeyError, VerifyFailure
from monitoring.audit.vault import (
    ENV_KEK,
    ENV_KEK_FILE,
    ERASED_FILE,
    META_FILE,
    SubjectVault,
    load_kek,
    pii_sha256,
)

AAD = b"monitoring.local/audit/x|3"


@pytest.fixture
def kek() -> bytes:
    return os.urandom(32)


@pytest.fixture
def vault(tmp_path: Path, kek: bytes) -> SubjectVault:
    return SubjectVault.open(tmp_path / "keys", kek)


def key_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".key")


def forms(secret: bytes) -> list[bytes]:
    """A key as it might sit in a file: raw, hex, base64 (standard and URL-safe)."""
    return [secret, secret.hex().encode(), secret.hex().upper().encode(),
            base64.b64encode(secret), base64.urlsafe_b64encode(secret)]


def test_seal_and_open(vault: SubjectVault) -> None:
    sealed = vault.seal("alice@example.org", b"personal", AAD)
    assert sealed.ref.startswith("s-") and len(sealed.ref) == 34
    assert len(sealed.nonce) == 12 and b"personal" not in sealed.ciphertext
    assert sealed.sha256 == hashlib.sha256(sealed.nonce + sealed.ciphertext).hexdigest()
    assert sealed.commitment().sha256 == pii_sha256(sealed.nonce, sealed.ciphertext)
    assert vault.open_sealed(sealed.ref, sealed.nonce, sealed.ciphertext, AAD) == b"personal"


def test_nonces_are_fresh(vault: SubjectVault) -> None:
    a, b = (vault.seal("alice", b"same", AAD) for _ in range(2))
    assert a.ref == b.ref and a.nonce != b.nonce and a.ciphertext != b.ciphertext


@pytest.mark.parametrize("part", ["ciphertext", "nonce", "aad"])
def test_tampering_is_reported(vault: SubjectVault, part: str) -> None:
    sealed = vault.seal("alice", b"personal", AAD)
    nonce, ciphertext, aad = sealed.nonce, sealed.ciphertext, AAD
    if part == "ciphertext":
        ciphertext = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    elif part == "nonce":
        nonce = bytes([nonce[0] ^ 1]) + nonce[1:]
    else:
        aad = b"monitoring.local/audit/x|4"  # another seq: a row moved between entries
    with pytest.raises(VerifyFailure, match=f"subject {sealed.ref} does not decrypt"):
        vault.open_sealed(sealed.ref, nonce, ciphertext, aad)


def test_refs_are_stable_random_and_per_subject(tmp_path: Path, kek: bytes,
                                                vault: SubjectVault) -> None:
    a = vault.ref_for("alice")
    assert vault.ref_for("alice") == a
    assert vault.ref_for("bob") != a
    assert vault.ref_for("carol", create=False) is None
    again = SubjectVault.open(tmp_path / "keys", kek)
    assert again.ref_for("alice", create=False) == a
    assert a != "s-" + hashlib.sha256(b"alice").hexdigest()[:32]
    # NFC: one subject however its accents are typed.
    assert vault.ref_for("Jos\u00e9") == vault.ref_for("Jose\u0301")
    # Another vault (another index key) gives another file name for the same subject.
    other = SubjectVault.open(tmp_path / "other", kek)
    other.ref_for("alice")
    assert {p.name for p in key_files(tmp_path / "other")}.isdisjoint(
        p.name for p in key_files(tmp_path / "keys"))


def test_folder_reveals_no_subject(vault: SubjectVault) -> None:
    subjects = ["alice@example.org", "198.51.100.7", "bob"]
    for s in subjects:
        vault.ref_for(s)
    files = key_files(vault.folder)
    assert len(files) == 3
    plain_hashes = {hashlib.sha256(s.encode()).hexdigest() for s in subjects}
    for path in files:
        assert len(path.stem) == 64 and path.stem not in plain_hashes
        content = path.read_bytes()
        assert not any(s.encode() in content or s.encode() in path.name.encode()
                       for s in subjects)


def test_files_are_private(vault: SubjectVault) -> None:
    vault.ref_for("alice")
    assert stat.S_IMODE(vault.folder.stat().st_mode) == 0o700
    for path in [*key_files(vault.folder), vault.folder / META_FILE]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in vault.folder.iterdir() if p.name.startswith(".tmp-")]


def test_group_readable_key_file_is_refused(tmp_path: Path, kek: bytes,
                                            vault: SubjectVault) -> None:
    vault.ref_for("alice")
    [path] = key_files(vault.folder)
    path.chmod(0o640)
    with pytest.raises(SigningKeyError, match="accessible by group or others"):
        SubjectVault.open(vault.folder, kek).ref_for("alice")


def test_wrong_kek_is_refused_before_writing(tmp_path: Path, vault: SubjectVault) -> None:
    vault.ref_for("alice")
    before = sorted(p.name for p in vault.folder.iterdir())
    with pytest.raises(SigningKeyError, match="created with another key-encryption key"):
        SubjectVault.open(vault.folder, os.urandom(32))
    assert sorted(p.name for p in vault.folder.iterdir()) == before
    with pytest.raises(SigningKeyError, match="must be 32 bytes"):
        SubjectVault.open(tmp_path / "x", b"short")


def test_lost_index_key_is_refused(kek: bytes, vault: SubjectVault) -> None:
    vault.ref_for("alice")
    (vault.folder / META_FILE).unlink()
    with pytest.raises(SigningKeyError, match=r"vault\.json: missing, but the folder holds"):
        SubjectVault.open(vault.folder, kek)


def test_altered_key_file_is_reported(tmp_path: Path, kek: bytes,
                                      vault: SubjectVault) -> None:
    sealed = vault.seal("alice", b"p", AAD)
    [path] = key_files(vault.folder)
    path.write_text(path.read_text().replace('"dek": "', '"dek": "AAAA'))
    fresh = SubjectVault.open(vault.folder, kek)
    with pytest.raises(SigningKeyError, match="does not unwrap with the key-encryption key"):
        fresh.open_sealed(sealed.ref, sealed.nonce, sealed.ciphertext, AAD)
    path.write_text("not json")
    with pytest.raises(SigningKeyError, match="not a subject key file"):
        SubjectVault.open(vault.folder, kek).ref_for("alice")


def test_a_missing_key_is_not_an_erasure(tmp_path: Path, kek: bytes,
                                         vault: SubjectVault) -> None:
    sealed = vault.seal("alice", b"p", AAD)
    [path] = key_files(vault.folder)
    path.unlink()  # removed behind the vault's back, or the wrong --vault folder
    fresh = SubjectVault.open(vault.folder, kek)
    assert not fresh.is_erased(sealed.ref)
    with pytest.raises(SigningKeyError, match=f"no key for subject {sealed.ref}"):
        fresh.open_sealed(sealed.ref, sealed.nonce, sealed.ciphertext, AAD)


def test_another_process_key_is_found(tmp_path: Path, kek: bytes, vault: SubjectVault) -> None:
    reader = SubjectVault.open(vault.folder, kek)
    reader.refs()  # scanned while the folder was empty
    sealed = vault.seal("late", b"p", AAD)
    assert reader.open_sealed(sealed.ref, sealed.nonce, sealed.ciphertext, AAD) == b"p"


def test_concurrent_first_use_creates_one_key(vault: SubjectVault) -> None:
    refs: list[str | None] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        refs.append(vault.ref_for("shared"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(refs)) == 1 and len(key_files(vault.folder)) == 1


def test_concurrent_first_use_writes_the_key_once(vault: SubjectVault,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    real = vault._create

    def counting(name: str) -> tuple[str, bytes]:
        created.append(name)
        return real(name)

    monkeypatch.setattr(vault, "_create", counting)
    barrier = threading.Barrier(8)
    threads = [threading.Thread(target=lambda: (barrier.wait(), vault.ref_for("shared")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1


def test_a_slow_new_key_does_not_hold_up_other_subjects(vault: SubjectVault,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer seals for known subjects while a producer's new key is being fsynced."""
    import monitoring.audit.vault as vault_module

    known = vault.seal("known", b"p", AAD).ref
    writing, release = threading.Event(), threading.Event()
    from monitoring.audit.fsutil import write_atomic as real

    def slow(path: Path, data: bytes, **kwargs: object) -> None:
        writing.set()
        assert release.wait(10)
        real(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(vault_module, "write_atomic", slow)  # the name vault.py calls
    creator = threading.Thread(target=vault.ref_for, args=("new subject",))
    creator.start()
    assert writing.wait(10)
    sealed: list[str] = []
    sealer = threading.Thread(target=lambda: sealed.append(vault.seal("known", b"q", AAD).ref))
    sealer.start()
    sealer.join(5)
    done_while_writing = sealed == [known]
    release.set()
    creator.join(10)
    sealer.join(5)
    assert done_while_writing
    assert vault.ref_for("new subject", create=False) is not None


def test_an_erasure_during_a_key_load_is_not_undone(vault: SubjectVault,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A key erased while another thread was loading it must not come back from a cache."""
    real = vault._create
    erased: list[str | None] = []

    def create_then_erase(name: str) -> tuple[str, bytes]:
        loaded = real(name)
        if not erased:
            erased.append(vault.erase("bob"))  # lands between the file and the cache
        return loaded

    monkeypatch.setattr(vault, "_create", create_then_erase)
    ref = vault.ref_for("bob")
    assert erased and erased[0] is not None and ref != erased[0]
    assert vault.is_erased(erased[0]) and not vault.is_erased(str(ref))
    sealed = vault.seal("bob", b"after", AAD)
    assert sealed.ref == ref
    assert vault.open_sealed(ref, sealed.nonce, sealed.ciphertext, AAD) == b"after"


def test_nonces_come_from_the_os_in_blocks_and_never_repeat(
        vault: SubjectVault, monkeypatch: pytest.MonkeyPatch) -> None:
    import monitoring.audit.vault as vault_module

    reads: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", counting)
    pool = vault_module.NoncePool()
    nonces = [pool.take() for _ in range(2 * pool.BLOCK + 1)]
    assert len(set(nonces)) == len(nonces) and {len(n) for n in nonces} == {12}
    assert len(reads) == 3
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # as in a forked child
    pool.take()
    assert len(reads) == 4  # a child never hands out its parent's nonces


# ------------------------------------------------------------------ T37 erasure


def test_t37_erase_destroys_the_key(tmp_path: Path, kek: bytes, vault: SubjectVault) -> None:
    keep = vault.seal("bob", b"bob's data", AAD)
    sealed = [vault.seal("alice@example.org", f"alice {i}".encode(), AAD) for i in range(3)]
    ref = sealed[0].ref
    dek = vault._deks[ref]
    [alice_file] = [p for p in key_files(vault.folder)
                    if ref.encode() in p.read_bytes()]
    wrapped = base64.b64decode(__import__("json").loads(alice_file.read_text())["dek"])

    assert vault.erase("alice@example.org") == ref
    assert vault.is_erased(ref) and not vault.is_erased(keep.ref)
    for s in sealed:
        with pytest.raises(ErasedError, match=f"subject {ref} was erased"):
            vault.open_sealed(s.ref, s.nonce, s.ciphertext, AAD)
    assert not alice_file.exists()
    # No file left in the folder holds the key, raw or wrapped, in any encoding.
    needles = forms(dek) + forms(wrapped)
    for path in vault.folder.iterdir():
        content = path.read_bytes()
        assert not any(n in content for n in needles), path.name
    assert ref.encode() in (vault.folder / ERASED_FILE).read_bytes()
    # A fresh process sees the same: erased, not merely missing; bob is untouched.
    fresh = SubjectVault.open(vault.folder, kek)
    assert fresh.is_erased(ref)
    with pytest.raises(ErasedError):
        fresh.open_sealed(ref, sealed[0].nonce, sealed[0].ciphertext, AAD)
    assert fresh.open_sealed(keep.ref, keep.nonce, keep.ciphertext, AAD) == b"bob's data"
    assert fresh.ref_for("alice@example.org", create=False) is None


def test_t37_erase_overwrites_before_unlinking(vault: SubjectVault,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    vault.ref_for("alice")
    [path] = key_files(vault.folder)
    seen: list[bytes] = []
    real_unlink = os.unlink

    def spy(p: os.PathLike[str] | str, *args: object, **kwargs: object) -> None:
        if Path(p) == path:
            seen.append(path.read_bytes())
        real_unlink(p)

    monkeypatch.setattr(os, "unlink", spy)
    vault.erase("alice")
    assert seen and set(seen[0]) == {0}


def test_t37_erase_details(vault: SubjectVault) -> None:
    assert vault.erase("nobody") is None
    first = vault.ref_for("Jos\u00e9")
    assert vault.erase("Jose\u0301") == first  # NFD input erases the NFC subject
    again = vault.ref_for("Jos\u00e9")
    assert again is not None and again != first  # new data after erasure: a new key
    assert vault.refs() == [again]


def test_rekey(tmp_path: Path, kek: bytes, vault: SubjectVault) -> None:
    a = vault.seal("alice", b"a", AAD)
    b = vault.seal("bob", b"b", AAD)
    new_kek = os.urandom(32)
    names = sorted(p.name for p in key_files(vault.folder))
    rekeyed = vault.rekey(new_kek)
    assert sorted(p.name for p in key_files(vault.folder)) == names
    assert rekeyed.open_sealed(a.ref, a.nonce, a.ciphertext, AAD) == b"a"
    fresh = SubjectVault.open(vault.folder, new_kek)
    assert fresh.ref_for("bob", create=False) == b.ref
    assert fresh.open_sealed(b.ref, b.nonce, b.ciphertext, AAD) == b"b"
    with pytest.raises(SigningKeyError, match="another key-encryption key"):
        SubjectVault.open(vault.folder, kek)


def test_interrupted_rekey_finishes_on_a_second_run(tmp_path: Path, kek: bytes,
                                                    vault: SubjectVault,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sealed = [vault.seal(f"user{i}", f"d{i}".encode(), AAD) for i in range(4)]
    new_kek = os.urandom(32)
    calls = 0
    real = SubjectVault._write_key_file

    def crash_after_two(self: SubjectVault, *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise OSError("simulated crash")
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SubjectVault, "_write_key_file", crash_after_two)
    with pytest.raises(OSError, match="simulated crash"):
        vault.rekey(new_kek)
    monkeypatch.setattr(SubjectVault, "_write_key_file", real)
    SubjectVault.open(vault.folder, kek).rekey(new_kek)
    fresh = SubjectVault.open(vault.folder, new_kek)
    for i, s in enumerate(sealed):
        assert fresh.open_sealed(s.ref, s.nonce, s.ciphertext, AAD) == f"d{i}".encode()


# ------------------------------------------------------------------ the KEK


def test_load_kek_from_env(tmp_path: Path) -> None:
    raw = os.urandom(32)
    assert load_kek(env={ENV_KEK: base64.b64encode(raw).decode()}) == raw
    with pytest.raises(SigningKeyError, match=r"\$MONITORING_AUDIT_KEK: base64 decodes to 3"):
        load_kek(env={ENV_KEK: "YWJj"})
    path = tmp_path / "kek"
    path.write_bytes(base64.b64encode(raw) + b"\n")
    path.chmod(0o600)
    assert load_kek(env={ENV_KEK_FILE: str(path)}) == raw
    assert load_kek(path, env={ENV_KEK: base64.b64encode(os.urandom(32)).decode()}) == raw


def test_load_kek_default_path_is_created_private(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    with pytest.raises(SigningKeyError, match="no key-encryption key; set"):
        load_kek(env=env)
    kek = load_kek(create=True, env=env)
    path = tmp_path / "cfg" / "monitoring" / "audit-kek"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_kek(env=env) == kek and len(kek) == 32
    assert load_kek(create=True, env=env) == kek  # never regenerated


def test_load_kek_refuses_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_bytes(base64.b64encode(os.urandom(32)))
    path.chmod(0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_kek(path)
