"""Signed notes, checkpoints and cosignatures (C2SP signed-note / tlog-checkpoint / cosignature).

Catalogue cases here: T21 (edited checkpoint text), T22 (unknown or colliding keys), T23 (extra
lines around a note), T24 (control characters, too many or too large signatures). T20, T25-T27
and T31 are in test_audit_offline.py and test_audit_keys.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.audit.errors import NoteError
from monitoring.audit.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    NoteSigner,
    NoteVerifier,
    add_signatures,
    cosign,
    cosignature_time,
    key_id_for,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
    verify_cosignature,
)

Edit = Callable[[str], str]
ORIGIN = "monitoring.local/audit/0123456789abcdef0123456789abcdef"
ROOT = hashlib.sha256(b"root").digest()

# golang.org/x/mod/sumdb/note's documented example (package doc of note.go).
GO_SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1F" \
    "FYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def make_key(name: str = ORIGIN, seed: int = 1) -> tuple[NoteSigner, NoteVerifier]:
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(bytes([seed])).digest())
    return NoteSigner(name, private), NoteVerifier(name, private.public_key())


SIGNER, VERIFIER = make_key()
CP = Checkpoint(ORIGIN, 42, ROOT)
NOTE = sign_checkpoint(CP, SIGNER)


# ---------------------------------------------------------------- format and interop


def test_go_sumdb_example_verifies_and_is_signed_byte_for_byte() -> None:
    v = NoteVerifier.from_vkey(GO_VKEY)
    assert v.vkey() == GO_VKEY
    body, verified = open_note(GO_NOTE, [v])
    assert body == GO_TEXT and verified == [v]
    signer = NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(GO_SKEY_SEED))
    assert signer.key_id.hex() == "c74f20a3"
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE  # Ed25519 is deterministic


def test_key_id_and_vkey_follow_signed_note() -> None:
    pub = VERIFIER.public_raw
    want = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + pub).digest()[:4]
    assert VERIFIER.key_id == SIGNER.key_id == want == key_id_for(ORIGIN, 1, pub)
    name, hex_id, data = VERIFIER.vkey().split("+")
    assert (name, hex_id) == (ORIGIN, want.hex())
    assert base64.b64decode(data) == b"\x01" + pub
    assert NoteVerifier.from_vkey(VERIFIER.vkey()) == VERIFIER


def test_checkpoint_note_has_the_exact_c2sp_layout() -> None:
    b64root = base64.b64encode(ROOT).decode()
    assert CP.body() == f"{ORIGIN}\n42\n{b64root}\n"
    head, sig_line = NOTE.split("\n\n")
    assert head + "\n" == CP.body()
    assert sig_line.startswith(f"\u2014 {ORIGIN} ") and sig_line.endswith("\n")
    raw = base64.b64decode(sig_line.split(" ")[2])
    assert raw[:4] == SIGNER.key_id and len(raw) == 4 + 64
    cp, verified = open_checkpoint(NOTE, [VERIFIER], ORIGIN)
    assert cp == CP and verified == [VERIFIER]


def test_vkeys_round_trip_also_when_the_key_data_contains_plus_signs() -> None:
    keys = [Ed25519PrivateKey.generate().public_key() for _ in range(64)]
    vkeys = [NoteVerifier(ORIGIN, k).vkey() for k in keys]
    assert any("+" in v.split("+", 2)[2] for v in vkeys)
    assert [NoteVerifier.from_vkey(v).vkey() for v in vkeys] == vkeys


@pytest.mark.parametrize(("vkey", "reason"), [
    ("nothing", "expected NAME+KEYID+KEYDATA"),
    ("a+b+c+d", "key id must be 8 hex digits"),
    (GO_VKEY.replace("c74f20a3", "c74f20a4"), "does not match its public key"),
    (GO_VKEY.replace("c74f20a3", "c74f20"), "8 hex digits"),
    (GO_VKEY[:-2] + "!!", "not valid base64"),
    ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "invalid key name"),
    ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy", "key data must be"),
])
def test_malformed_vkeys_are_rejected_with_the_reason(vkey: str, reason: str) -> None:
    with pytest.raises(NoteError, match=re.escape(reason)):
        NoteVerifier.from_vkey(vkey)


def test_a_cosigner_vkey_is_not_a_log_key() -> None:
    cosigner = CosignatureVerifier(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError, match="signature type 0x04, expected 0x01"):
        NoteVerifier.from_vkey(cosigner.vkey())
    assert CosignatureVerifier.from_vkey(cosigner.vkey()) == cosigner


@pytest.mark.parametrize(("body", "reason"), [
    (f"{ORIGIN}\n042\n{base64.b64encode(ROOT).decode()}\n", "leading zeros"),
    (f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n", "decimal number"),
    (f"{ORIGIN}\n+1\n{base64.b64encode(ROOT).decode()}\n", "decimal number"),
    (f"{ORIGIN}\n 1\n{base64.b64encode(ROOT).decode()}\n", "decimal number"),
    (f"{ORIGIN}\n{2**63}\n{base64.b64encode(ROOT).decode()}\n", "below 2\\^63"),
    (f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", "expected 32 bytes"),
    (f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode().rstrip('=')}\n", "not valid base64"),
    (f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\next\n", "exactly 3 lines"),
    (f"{ORIGIN}\n1\n", "exactly 3 lines"),
    (f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}", "end with a newline"),
    (f"\n1\n{base64.b64encode(ROOT).decode()}\n", "empty origin"),
    (f"my log\n1\n{base64.b64encode(ROOT).decode()}\n", "invalid origin"),
    (f"a+b\n1\n{base64.b64encode(ROOT).decode()}\n", "invalid origin"),
])
def test_checkpoint_parser_accepts_only_the_three_line_form(body: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        Checkpoint.parse(body)


def test_checkpoint_round_trips_at_the_limits() -> None:
    for size in (0, 1, 2**63 - 1):
        cp = Checkpoint(ORIGIN, size, ROOT)
        assert Checkpoint.parse(cp.body()) == cp
        assert open_checkpoint(sign_checkpoint(cp, SIGNER), [VERIFIER])[0] == cp


# ---------------------------------------------------------------- T21


def test_t21_edited_size_fails_the_signature() -> None:
    forged = NOTE.replace(f"{ORIGIN}\n42\n", f"{ORIGIN}\n43\n")
    assert forged != NOTE
    with pytest.raises(NoteError, match=f"invalid signature for key {ORIGIN}\\+"
                       f"{VERIFIER.key_id.hex()}"):
        open_checkpoint(forged, [VERIFIER])


def test_t21_edited_root_fails_the_signature() -> None:
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    forged = NOTE.replace(base64.b64encode(ROOT).decode(), other)
    assert forged != NOTE
    with pytest.raises(NoteError, match="invalid signature for key"):
        open_checkpoint(forged, [VERIFIER])


def test_t21_flipped_signature_bit_fails() -> None:
    body, line = NOTE.split("\n\n")
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[10] ^= 1
    forged = f"{body}\n\n\u2014 {ORIGIN} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(NoteError, match="invalid signature for key"):
        open_note(forged, [VERIFIER])


# ---------------------------------------------------------------- T22


def test_t22_unknown_key_name_is_ignored_next_to_a_known_signature() -> None:
    stranger, _ = make_key("stranger.example/log", seed=7)
    note = add_signatures(NOTE, [stranger])
    body, verified = open_note(note, [VERIFIER])
    assert body == CP.body() and verified == [VERIFIER]


def test_t22_note_signed_only_by_unknown_keys_is_rejected() -> None:
    stranger, _ = make_key("stranger.example/log", seed=7)
    note = sign_checkpoint(CP, stranger)
    with pytest.raises(NoteError, match=re.escape(
            "no valid signature from a known key (signed by: stranger.example/log+")):
        open_checkpoint(note, [VERIFIER])


def test_t22_same_name_other_key_has_another_key_id_and_is_ignored() -> None:
    impostor, impostor_v = make_key(ORIGIN, seed=9)
    assert impostor.key_id != SIGNER.key_id
    with pytest.raises(NoteError, match="no valid signature from a known key"):
        open_checkpoint(sign_checkpoint(CP, impostor), [VERIFIER])
    # next to the genuine signature it is simply ignored
    _, verified = open_checkpoint(add_signatures(NOTE, [impostor]), [VERIFIER])
    assert verified == [VERIFIER] and impostor_v not in verified


class _CollidingSigner:
    """An attacker key that claims the genuine key's name and key id."""

    def __init__(self, name: str, key_id: bytes) -> None:
        self.name, self.key_id = name, key_id
        self._private = Ed25519PrivateKey.generate()

    def sign(self, msg: bytes) -> bytes:
        return self._private.sign(msg)


def test_t22_colliding_key_id_is_verified_and_rejects_the_note() -> None:
    colliding = _CollidingSigner(ORIGIN, SIGNER.key_id)
    alone = sign_checkpoint(CP, colliding)
    with pytest.raises(NoteError, match="invalid signature for key"):
        open_checkpoint(alone, [VERIFIER])
    # a failing known-key signature rejects the whole note, even beside a valid one
    both = NOTE + parse_note(alone).signatures[0].line + "\n"
    parsed = parse_note(both)
    assert len(parsed.signatures) == 2
    with pytest.raises(NoteError, match="invalid signature for key"):
        open_checkpoint(both, [VERIFIER])


def test_t22_same_key_id_other_name_is_unknown() -> None:
    other_name = _CollidingSigner("other.example/log", SIGNER.key_id)
    note = add_signatures(NOTE, [other_name])
    assert open_note(note, [VERIFIER])[1] == [VERIFIER]
    with pytest.raises(NoteError, match="no valid signature from a known key"):
        open_note(sign_checkpoint(CP, other_name), [VERIFIER])


def test_duplicate_signature_lines_count_once_and_ambiguous_lists_are_refused() -> None:
    line = parse_note(NOTE).signatures[0].line
    doubled = NOTE + line + "\n"
    assert open_note(doubled, [VERIFIER])[1] == [VERIFIER]
    twin = NoteVerifier(ORIGIN, VERIFIER.public_key)
    with pytest.raises(NoteError, match="ambiguous verifier list"):
        open_note(NOTE, [VERIFIER, twin])


def test_a_witness_cosignature_alone_does_not_make_a_checkpoint() -> None:
    witness = CosignatureSigner("witness.example/w1", Ed25519PrivateKey.generate())
    wv = CosignatureVerifier(witness.name, witness.private.public_key())
    body_only = sign_note(CP.body(), [witness])
    with pytest.raises(NoteError, match="no valid signature by the log's own key"):
        open_checkpoint(body_only, [VERIFIER, wv])


# ---------------------------------------------------------------- T23


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda n: n + "unauthenticated line\n", "signature line 2: expected"),
    (lambda n: n + "\n", "no signature lines after its last blank line"),
    (lambda n: n + "\nunauthenticated line\n", "signature line 1: expected"),
    (lambda n: n + "\u2014 x", "does not end with a newline"),
    (lambda n: n.replace("\n", "\r\n"), "control character U\\+000D"),
    (lambda n: n.replace("\n\n", "\n"), "signature line 1: expected|no blank line"),
    (lambda n: n.replace("\n\n", "\nextra body line\n\n"), "invalid signature for key"),
    (lambda n: "unauthenticated line\n" + n, "invalid signature for key"),
])
def test_t23_extra_lines_around_a_note_are_rejected(edit: Edit, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        open_checkpoint(edit(NOTE), [VERIFIER])


def test_t23_signed_extension_lines_open_as_a_note_but_not_as_a_checkpoint() -> None:
    body = CP.body() + "extension line\n"
    note = sign_note(body, [SIGNER])
    assert open_note(note, [VERIFIER])[0] == body
    with pytest.raises(NoteError, match="exactly 3 lines"):
        open_checkpoint(note, [VERIFIER])


def test_a_body_may_contain_empty_lines_the_last_blank_line_separates() -> None:
    body = "first\n\nthird\n"
    note = sign_note(body, [SIGNER])
    assert note == body + "\n" + parse_note(note).signatures[0].line + "\n"
    assert open_note(note, [VERIFIER])[0] == body


def test_t23_text_after_the_blank_line_is_never_part_of_the_body() -> None:
    # the body ends at the LAST blank line: a forged "body" after it is a malformed signature
    with pytest.raises(NoteError, match="signature line 1"):
        open_note(NOTE + "\nfake body\n", [VERIFIER])


# ---------------------------------------------------------------- T24


@pytest.mark.parametrize("origin", ["a\nb", "a\tb", "a\x00b", "a b", "a\u2028b", "a\x7fb", ""])
def test_t24_origin_with_newline_or_control_characters_is_rejected(origin: str) -> None:
    with pytest.raises(NoteError, match=r"checkpoint origin|invalid"):
        Checkpoint(origin, 1, ROOT)
    with pytest.raises(NoteError):
        NoteSigner(origin, Ed25519PrivateKey.generate())


def test_t24_control_characters_anywhere_in_a_note_are_rejected() -> None:
    for ch in ("\x00", "\x07", "\x1b", "\t", "\r"):
        bad = NOTE.replace("\n42\n", f"\n4{ch}2\n")
        with pytest.raises(NoteError, match="control character"):
            open_note(bad, [VERIFIER])
    with pytest.raises(NoteError, match="control character"):
        sign_note("a\x1bb\n", [SIGNER])


def test_t24_invalid_utf8_is_rejected() -> None:
    with pytest.raises(NoteError, match="not valid UTF-8"):
        open_note(NOTE.encode() + b"\xff\n", [VERIFIER])
    with pytest.raises(NoteError, match="not valid UTF-8"):
        open_note("\udc80" + NOTE, [VERIFIER])


def _unknown_sig_lines(count: int) -> str:
    lines = []
    for i in range(count):
        raw = i.to_bytes(4, "big") + bytes(64)
        lines.append(f"\u2014 w{i}.example {base64.b64encode(raw).decode()}\n")
    return "".join(lines)


def test_t24_at_most_100_signatures() -> None:
    assert open_note(NOTE + _unknown_sig_lines(MAX_SIGNATURES - 1), [VERIFIER])[1] == [VERIFIER]
    with pytest.raises(NoteError, match="101 signature lines, limit 100"):
        open_note(NOTE + _unknown_sig_lines(MAX_SIGNATURES), [VERIFIER])


def test_t24_sixteen_signatures_are_accepted_as_the_spec_requires() -> None:
    signers = [make_key(f"w{i}.example", seed=20 + i) for i in range(16)]
    note = sign_note(CP.body(), [SIGNER, *(s for s, _ in signers)])
    verifiers = [VERIFIER, *(v for _, v in signers)]
    assert len(open_note(note, verifiers)[1]) == 17


def test_t24_oversized_note_and_signature_are_rejected() -> None:
    huge_sig = base64.b64encode(bytes(4 + 9000)).decode()
    with pytest.raises(NoteError, match="signature is too large"):
        open_note(NOTE + f"\u2014 big.example {huge_sig}\n", [VERIFIER])
    big_body = "x" * MAX_NOTE_BYTES + "\n"
    with pytest.raises(NoteError, match="note is too large"):
        open_note(big_body + "\n" + parse_note(NOTE).signatures[0].line + "\n", [VERIFIER])
    with pytest.raises(NoteError, match="note is too large"):
        open_note((big_body + "\n").encode(), [VERIFIER])


@pytest.mark.parametrize(("line", "reason"), [
    ("\u2014 name", "missing the signature"),
    ("\u2014 name ", "missing the signature"),
    ("- name AAAAAAA=", "expected '\u2014 <key name>"),
    ("\u2014 name AAAA", "shorter than a key id"),
    ("\u2014 name AAAAAAA", "not valid base64"),
    ("\u2014 name AAAAAAB=", "not canonical base64"),
    ("\u2014 na+me AAAAAAA=", "invalid key name"),
    ("\u2014  AAAAAAA=", "invalid key name"),
])
def test_malformed_signature_lines_say_what_is_wrong(line: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        open_note(f"{CP.body()}\n{line}\n", [VERIFIER])


# ---------------------------------------------------------------- cosignatures


def test_cosignature_signs_the_tlog_cosignature_v1_message() -> None:
    witness = CosignatureSigner("witness.example/w1", Ed25519PrivateKey.generate())
    wv = CosignatureVerifier(witness.name, witness.private.public_key())
    assert wv.key_id == hashlib.sha256(b"witness.example/w1\n\x04" + wv.public_raw).digest()[:4]
    note = cosign(NOTE, witness, timestamp=1679315147)
    cp, ts = verify_cosignature(note, [VERIFIER], wv, ORIGIN)
    assert cp == CP and ts == 1679315147
    raw = base64.b64decode(parse_note(note).signatures[1].line.split(" ")[2])
    assert raw[:4] == wv.key_id and raw[4:12] == (1679315147).to_bytes(8, "big")
    message = f"cosignature/v1\ntime 1679315147\n{CP.body()}".encode()
    witness.private.public_key().verify(raw[12:], message)  # raises if not the spec message
    # the log signature is untouched, and a log verifier ignores the cosignature
    assert open_checkpoint(note, [VERIFIER])[1] == [VERIFIER]


def test_cosignature_with_an_edited_timestamp_fails() -> None:
    witness = CosignatureSigner("witness.example/w1", Ed25519PrivateKey.generate())
    wv = CosignatureVerifier(witness.name, witness.private.public_key())
    note = cosign(NOTE, witness, timestamp=100)
    sig = parse_note(note).signatures[1]
    raw = bytearray(base64.b64decode(sig.line.split(" ")[2]))
    raw[11] ^= 1  # the last timestamp byte
    forged = note.replace(sig.line,
                          f"\u2014 {witness.name} {base64.b64encode(bytes(raw)).decode()}")
    with pytest.raises(NoteError, match=r"invalid signature for key witness\.example/w1"):
        verify_cosignature(forged, [VERIFIER], wv)
    with pytest.raises(NoteError, match="no cosignature by"):
        cosignature_time(NOTE, wv)


def test_recosigning_replaces_the_cosigners_old_line() -> None:
    witness = CosignatureSigner("witness.example/w1", Ed25519PrivateKey.generate(),
                                clock=lambda: 5.0)
    wv = CosignatureVerifier(witness.name, witness.private.public_key())
    once = cosign(NOTE, witness)
    twice = cosign(once, witness, timestamp=9)
    assert len(parse_note(twice).signatures) == 2
    assert cosignature_time(once, wv) == 5 and cosignature_time(twice, wv) == 9


# ---------------------------------------------------------------- Hypothesis


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from("ab+/= \n\u2014\x00\r\t\u00e9" + ORIGIN[:12]),
               max_size=200) | st.text(max_size=200))
def test_note_parser_raises_nothing_but_note_error(text: str) -> None:
    for candidate in (text, text + "\n\n\u2014 a AAAAAAA=\n", NOTE + text):
        with contextlib.suppress(NoteError):
            open_note(candidate, [VERIFIER])
        try:
            cp = Checkpoint.parse(candidate)
        except NoteError:
            continue
        assert cp.body() == candidate  # only the canonical form parses


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_single_character_edit_of_a_signed_checkpoint_is_rejected(
        data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(NOTE) - 1))
    op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    ch = data.draw(st.characters(codec="utf-8"))
    if op == "replace":
        edited = NOTE[:pos] + ch + NOTE[pos + 1 :]
    elif op == "insert":
        edited = NOTE[:pos] + ch + NOTE[pos:]
    else:
        edited = NOTE[:pos] + NOTE[pos + 1 :]
    if edited == NOTE:
        return
    with pytest.raises(NoteError):
        open_checkpoint(edited, [VERIFIER])
