"""Receipts (C2SP tlog-proof) and the offline verifier, against an in-memory ledger.

Catalogue cases here: T20 (equivocation / fork shown with both notes), T23 (extra lines in a
receipt), T25 (key windows, offline), T26 (rollback to the verifier), T27 (receipt for X with
envelope Y), T31 (unexpected origin or key). Plus: the module never imports DuckDB, and the
command line. (How long a verification takes is measured by bench/ledger.py, not here.)
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.audit.errors import AuditError, NoteError, SigningKeyError, VerifyFailure
from monitoring.audit.keys import KeyHistory, SigningKey
from monitoring.audit.merkle import MemoryTree, consistency_proof, inclusion_proof, leaf_hash
from monitoring.audit.note import Checkpoint, add_signatures, sign_checkpoint
from monitoring.audit.offline import (
    MisbehaviourError,
    check_notes,
    load_state,
    main,
    verify_receipt,
)
from monitoring.audit.receipt import Consistency, build_receipt, parse_receipt

ROOT_DIR = Path(__file__).resolve().parents[2]
Edit = Callable[[str], str]
ORIGIN = "monitoring.local/audit/5eed5eed5eed5eed5eed5eed5eed5eed"


def envelope(origin: str, seq: int, text: str = "") -> bytes:
    return rfc8785.dumps({"v": 1, "origin": origin, "seq": seq, "ts": 1_700_000_000_000_000 + seq,
                          "category": "system", "action": f"act.{seq}{text}", "actor": None})


@dataclass
class Log:
    """A ledger in memory: envelopes, their tree, and signed checkpoints."""

    key: SigningKey
    origin: str = ORIGIN
    envelopes: list[bytes] = field(default_factory=list)

    def add(self, n: int, text: str = "") -> Log:
        start = len(self.envelopes)
        self.envelopes += [envelope(self.origin, s, text) for s in range(start, start + n)]
        return self

    def tree(self, size: int | None = None) -> MemoryTree:
        return MemoryTree([leaf_hash(e) for e in self.envelopes[:size]])

    def note(self, size: int | None = None, key: SigningKey | None = None) -> str:
        tree = self.tree(size)
        return sign_checkpoint(Checkpoint(self.origin, tree.size, tree.root()),
                               (key or self.key).signer())

    def receipt(self, seq: int, size: int | None = None, *, since: int | None = None,
                key: SigningKey | None = None) -> str:
        tree = self.tree(size)
        consistency = None
        if since is not None:
            full = self.tree()
            consistency = Consistency(since, tuple(consistency_proof(full, since, tree.size)))
        return build_receipt(self.envelopes[seq], seq, inclusion_proof(tree, seq, tree.size),
                             self.note(size, key), consistency=consistency)


KEY = SigningKey.from_seed(ORIGIN, bytes(range(32)))


@pytest.fixture
def log() -> Log:
    return Log(KEY).add(20)


# ---------------------------------------------------------------- round trips


def test_receipt_round_trips_and_has_the_tlog_proof_layout(log: Log) -> None:
    text = log.receipt(7)
    lines = text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert base64.b64decode(lines[1].removeprefix("extra ")) == log.envelopes[7]
    assert lines[2] == "index 7"
    r = parse_receipt(text)
    assert (r.envelope, r.index, r.checkpoint.size) == (log.envelopes[7], 7, 20)
    assert list(r.proof) == inclusion_proof(log.tree(), 7, 20)
    assert r.note == log.note() and r.consistency is None
    assert r.text() == text
    assert text.endswith("\n\n" + log.note())


def test_every_entry_of_small_trees_verifies(log: Log) -> None:
    for size in range(1, 21):
        for seq in range(size):
            entry = verify_receipt(log.receipt(seq, size), KEY.vkey())
            assert (entry.seq, entry.size, entry.origin) == (seq, size, ORIGIN)
            assert entry.envelope == log.envelopes[seq]
            assert entry.event["seq"] == seq
            assert entry.signed_by == KEY.verifier().key_hex


def test_receipt_with_consistency_round_trips(log: Log) -> None:
    text = log.receipt(3, since=5)
    r = parse_receipt(text)
    assert r.consistency == Consistency(5, tuple(consistency_proof(log.tree(), 5, 20)))
    assert r.envelope == log.envelopes[3] and r.text() == text


def test_witness_cosignatures_in_the_receipt_are_allowed(log: Log) -> None:
    witness = SigningKey.generate("witness.example/w1").cosigner()
    r = parse_receipt(log.receipt(4))
    cosigned = build_receipt(r.envelope, r.index, r.proof, add_signatures(r.note, [witness]))
    assert verify_receipt(cosigned, KEY.vkey()).seq == 4


# ---------------------------------------------------------------- T20 / T26: verifier state


def test_t26_state_rejects_a_smaller_checkpoint_after_a_larger_one(log: Log,
                                                                   tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert verify_receipt(log.receipt(3, 12), KEY.vkey(), state=state).state_updated
    with pytest.raises(VerifyFailure) as err:
        verify_receipt(log.receipt(3, 11), KEY.vkey(), state=state)
    assert err.value.reason == (f"rollback: checkpoint size 11 is smaller than size 12, which "
                                f"this verifier already saw for {ORIGIN}")
    assert load_state(state)[ORIGIN].size == 12


def test_t20_equivocation_outputs_both_notes(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    verify_receipt(log.receipt(2, 10), KEY.vkey(), state=state)
    fork = Log(KEY).add(9).add(1, text="-forged")  # same key, same origin, other entry 9
    with pytest.raises(MisbehaviourError) as err:
        verify_receipt(fork.receipt(2, 10), KEY.vkey(), state=state)
    exc = err.value
    assert exc.kind == "equivocation"
    assert exc.reason.startswith(f"equivocation: two signed checkpoints of {ORIGIN} at size 10 "
                                 "with different roots")
    assert exc.notes == (log.note(10), fork.note(10))
    assert log.note(10) in exc.evidence() and fork.note(10) in exc.evidence()
    assert load_state(state)[ORIGIN].root == log.tree(10).root()  # not overwritten


def test_t20_equivocation_from_two_notes(log: Log) -> None:
    fork = Log(KEY).add(5, text="-other")
    with pytest.raises(MisbehaviourError) as err:
        check_notes(log.note(5), fork.note(5), [KEY.verifier()])
    assert err.value.kind == "equivocation" and err.value.notes == (log.note(5), fork.note(5))
    check_notes(log.note(5), log.note(5), [KEY.verifier()])


def test_t20_fork_is_caught_by_the_consistency_proof(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    verify_receipt(log.receipt(2, 8), KEY.vkey(), state=state)
    fork = Log(KEY).add(6).add(14, text="-fork")  # diverges at entry 6 < 8
    with pytest.raises(MisbehaviourError) as err:
        verify_receipt(fork.receipt(2, 20, since=8), KEY.vkey(), state=state)
    assert err.value.kind == "fork"
    assert "does not extend the remembered size 8" in err.value.reason
    assert err.value.notes == (log.note(8), fork.note(20))
    with pytest.raises(MisbehaviourError, match="fork"):
        check_notes(fork.note(20), log.note(8), [KEY.verifier()],
                    consistency_proof(fork.tree(), 8, 20))


def test_state_advances_only_with_a_consistency_proof_from_its_size(log: Log,
                                                                     tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    verify_receipt(log.receipt(1, 8), KEY.vkey(), state=state)
    with pytest.raises(VerifyFailure, match="carries no consistency proof from 8 \\(none\\)"):
        verify_receipt(log.receipt(1, 20), KEY.vkey(), state=state)
    with pytest.raises(VerifyFailure, match="one from size 5"):
        verify_receipt(log.receipt(1, 20, since=5), KEY.vkey(), state=state)
    entry = verify_receipt(log.receipt(1, 20, since=8), KEY.vkey(), state=state)
    assert entry.state_updated and load_state(state)[ORIGIN].size == 20
    # the same checkpoint again: accepted, nothing to update
    assert not verify_receipt(log.receipt(19), KEY.vkey(), state=state).state_updated


def test_state_keeps_one_checkpoint_per_origin(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    other_origin = "monitoring.local/audit/0ther0ther0ther0ther0ther0ther00"
    other = Log(SigningKey.generate(other_origin), origin=other_origin).add(3)
    verify_receipt(Log(KEY).add(4).receipt(0), KEY.vkey(), state=state)
    verify_receipt(other.receipt(0), other.key.vkey(), state=state)
    assert {o: r.size for o, r in load_state(state).items()} == {ORIGIN: 4, other_origin: 3}


@pytest.mark.parametrize("content", ["{", "[]", '{"v": 2, "checkpoints": {}}',
                                     '{"v": 1, "checkpoints": {"o": {"size": -1}}}',
                                     '{"v": 1, "checkpoints": {"o": {"size": 1}}}',
                                     '{"v": 1, "checkpoints": {"o": {"size": 1, "root": "x"}}}'])
def test_malformed_state_file_is_named(tmp_path: Path, content: str) -> None:
    state = tmp_path / "state.json"
    state.write_text(content)
    with pytest.raises(AuditError, match=f"{state}: malformed verifier state"):
        verify_receipt(Log(KEY).add(1).receipt(0), KEY.vkey(), state=state)


# ---------------------------------------------------------------- T21 / T23: edited receipts


def test_t21_receipt_with_an_edited_checkpoint_size_fails_the_signature(log: Log) -> None:
    text = log.receipt(5).replace(f"{ORIGIN}\n20\n", f"{ORIGIN}\n21\n")
    with pytest.raises(VerifyFailure, match="checkpoint: invalid signature for key"):
        verify_receipt(text, KEY.vkey())


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda t: "unauthenticated\n" + t, "receipt line 1: expected 'c2sp.org/tlog-proof@v1'"),
    (lambda t: t + "unauthenticated\n", "signature line 2: expected"),
    (lambda t: t + "\n", "no signature lines after its last blank line"),
    (lambda t: t.replace("\nindex ", "\nnote: trust me\nindex "),
     "receipt line 3: expected 'index <number>'"),
    (lambda t: t.replace("\n\n", "\nunauthenticated\n\n", 1), "inclusion proof hash"),
    (lambda t: t.replace("\n\n", "\n\n\n", 1), "checkpoint line 1: empty origin|control|"
     "exactly 3 lines|origin"),
    (lambda t: t.replace("index 5", "index 05"), "leading zeros"),
    (lambda t: t.replace("index 5", "index  5"), "leading zeros"),
    (lambda t: t.replace("\nextra ", "\nextra  "), "not valid base64"),
    (lambda t: t.replace("\n", "\r\n"), "receipt has no blank line before its checkpoint"),
    (lambda t: "\n".join(line for line in t.split("\n") if not line.startswith("extra ")),
     "expected 'extra <base64 envelope>'"),
    (lambda t: t.replace("index 5\n", "index 5\nindex 5\n"), "inclusion proof hash"),
    (lambda t: t.replace("\n\n", "\n", 1), "receipt line 9 \\(inclusion proof hash\\): not "
     "valid base64"),
])
def test_t23_extra_or_altered_lines_in_a_receipt_are_rejected(log: Log, edit: Edit,
                                                              reason: str) -> None:
    text = edit(log.receipt(5))
    assert text != log.receipt(5)
    with pytest.raises(VerifyFailure, match="malformed receipt: .*(" + reason + ")"):
        verify_receipt(text, KEY.vkey())


def test_t23_unauthenticated_extra_after_the_envelope_is_rejected(log: Log) -> None:
    r = parse_receipt(log.receipt(5))
    smuggled = r.envelope + b"\nnote: this entry was approved"
    text = log.receipt(5).replace(base64.b64encode(r.envelope).decode(),
                                  base64.b64encode(smuggled).decode())
    with pytest.raises(VerifyFailure, match=re.escape(
            "only a 'consistency SIZE HASH...' line may follow")):
        verify_receipt(text, KEY.vkey())


# ---------------------------------------------------------------- T27: receipt X, envelope Y


def test_t27_receipt_for_x_carrying_envelope_y_is_rejected(log: Log) -> None:
    r = parse_receipt(log.receipt(5))
    swapped = build_receipt(log.envelopes[6], 5, r.proof, r.note)
    with pytest.raises(VerifyFailure) as err:
        verify_receipt(swapped, KEY.vkey())
    assert err.value.seq == 5
    assert err.value.reason.startswith(
        f"the envelope is not the entry the receipt proves (its leaf hash "
        f"{leaf_hash(log.envelopes[6]).hex()[:16]}... does not lead to the signed root)")


def test_t27_receipt_for_x_presented_with_the_entry_y_one_holds(log: Log) -> None:
    with pytest.raises(VerifyFailure, match="the receipt is for a different entry than the one "
                       "presented") as err:
        verify_receipt(log.receipt(5), KEY.vkey(), envelope=log.envelopes[6])
    assert err.value.seq == 5
    assert verify_receipt(log.receipt(5), KEY.vkey(), envelope=log.envelopes[5]).seq == 5


def test_t27_valid_receipt_of_y_relabelled_as_x_is_rejected(log: Log) -> None:
    r = parse_receipt(log.receipt(6))
    relabelled = build_receipt(r.envelope, 5, r.proof, r.note)
    with pytest.raises(VerifyFailure, match="is not the entry the receipt proves"):
        verify_receipt(relabelled, KEY.vkey())


def test_envelope_must_name_the_proven_seq_and_origin() -> None:
    bad = Log(KEY)
    bad.envelopes = [envelope(ORIGIN, 0), envelope(ORIGIN, 7)]  # entry 1 claims seq 7
    with pytest.raises(VerifyFailure, match="the envelope names seq 7, the receipt proves index "
                       "1"):
        verify_receipt(bad.receipt(1), KEY.vkey())
    spliced = Log(KEY)
    spliced.envelopes = [envelope("monitoring.local/audit/elsewhere", 0)]  # T12 via a receipt
    with pytest.raises(VerifyFailure, match=re.escape(
            "the envelope names origin 'monitoring.local/audit/elsewhere'")):
        verify_receipt(spliced.receipt(0), KEY.vkey())


# ---------------------------------------------------------------- T31: identity switch


def test_t31_unexpected_origin_is_rejected(log: Log) -> None:
    with pytest.raises(VerifyFailure, match=f"checkpoint: checkpoint is for origin '{ORIGIN}', "
                       "expected 'monitoring.local/audit/pinned'"):
        verify_receipt(log.receipt(1), KEY.vkey(), origin="monitoring.local/audit/pinned")


def test_t31_new_ledger_identity_with_its_own_key_is_rejected(log: Log) -> None:
    new_origin = "monitoring.local/audit/11111111111111111111111111111111"
    switched = Log(SigningKey.generate(new_origin), origin=new_origin).add(20)
    with pytest.raises(VerifyFailure, match="checkpoint: note has no valid signature from a "
                       f"known key \\(signed by: {new_origin}\\+"):
        verify_receipt(switched.receipt(1), KEY.vkey())


def test_t31_same_origin_other_public_key_is_rejected(log: Log) -> None:
    impostor = Log(SigningKey.generate(ORIGIN)).add(20)
    with pytest.raises(VerifyFailure, match="checkpoint: note has no valid signature from a "
                       "known key"):
        verify_receipt(impostor.receipt(1), KEY.vkey())


# ---------------------------------------------------------------- T25: key windows offline


def test_t25_key_windows_offline(log: Log) -> None:
    new = SigningKey.from_seed(ORIGIN, bytes(32))
    keys = [KEY.vkey() + "@1-10", new.vkey() + "@11-"]
    assert verify_receipt(log.receipt(3, 10), keys).signed_by == KEY.verifier().key_hex
    assert verify_receipt(log.receipt(3, 11, key=new), keys).signed_by == \
        new.verifier().key_hex
    with pytest.raises(VerifyFailure, match=re.escape(
            f"checkpoint of size 8 is signed by key {new.verifier().key_hex} outside its "
            "validity window (sizes 11..)")):
        verify_receipt(log.receipt(3, 8, key=new), keys)
    with pytest.raises(VerifyFailure, match=r"size 12 .* outside its validity window \(sizes "
                       r"1\.\.10\)"):
        verify_receipt(log.receipt(3, 12), keys)


def test_t25_key_history_object_offline(log: Log) -> None:
    new = SigningKey.from_seed(ORIGIN, bytes(32))
    history = KeyHistory.genesis(KEY.verifier())
    history.rotate(new.verifier(), 10)
    with pytest.raises(VerifyFailure, match="outside its validity window"):
        verify_receipt(log.receipt(3, 5, key=new), history)
    assert verify_receipt(log.receipt(3, 15, key=new), history, origin=ORIGIN).size == 15
    assert verify_receipt(log.receipt(3, 15, key=new), [KEY.verifier(), new.verifier()]).size \
        == 15


def test_bad_verifier_keys_are_usage_errors(log: Log) -> None:
    with pytest.raises(SigningKeyError, match="malformed verifier key"):
        verify_receipt(log.receipt(0), "nonsense")
    with pytest.raises(SigningKeyError, match="no verifier key given"):
        verify_receipt(log.receipt(0), [])


# ---------------------------------------------------------------- robustness


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_receipt_parser_raises_nothing_but_note_error(text: str | bytes) -> None:
    with contextlib.suppress(NoteError):
        parse_receipt(text)


RECEIPT = Log(KEY).add(20).receipt(9)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_single_character_edit_of_a_receipt_is_rejected(data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(RECEIPT) - 1))
    op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    ch = data.draw(st.characters(codec="utf-8"))
    edited = {"replace": RECEIPT[:pos] + ch + RECEIPT[pos + 1:],
              "insert": RECEIPT[:pos] + ch + RECEIPT[pos:],
              "delete": RECEIPT[:pos] + RECEIPT[pos + 1:]}[op]
    if edited == RECEIPT:
        return
    with pytest.raises(VerifyFailure):
        verify_receipt(edited, KEY.vkey())


def test_offline_module_does_not_import_duckdb() -> None:
    code = ("import sys, monitoring.audit.offline as m; "
            "m.main; print(sorted(k for k in sys.modules if k.split('.')[0] == 'duckdb'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT_DIR, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- command line


def test_cli_ok_failure_and_usage_exit_codes(log: Log, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "r.tlog-proof"
    good.write_text(log.receipt(4, 12))
    state = tmp_path / "state.json"
    assert main([str(good), "--vkey", KEY.vkey(), "--state", str(state)]) == 0
    assert capsys.readouterr().out == (f"OK seq=4 origin={ORIGIN} size=12 "
                                       f"key={KEY.verifier().key_hex} state=updated\n")
    older = tmp_path / "old.tlog-proof"
    older.write_text(log.receipt(4, 10))
    assert main([str(older), "--vkey", KEY.vkey(), "--state", str(state)]) == 1
    assert "FAIL: rollback: checkpoint size 10 is smaller than size 12" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "--vkey", KEY.vkey()]) == 2
    assert "missing" in capsys.readouterr().err
    assert main([str(good), "--vkey", "nonsense"]) == 2
    assert "malformed verifier key" in capsys.readouterr().err
    held = tmp_path / "held.json"
    held.write_bytes(log.envelopes[5])
    assert main([str(good), "--vkey", KEY.vkey(), "--envelope", str(held)]) == 1
    assert "different entry than the one presented" in capsys.readouterr().err


def test_cli_prints_both_notes_on_equivocation(log: Log, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.json"
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text(log.receipt(1, 6))
    second.write_text(Log(KEY).add(6, text="-x").receipt(1, 6))
    assert main([str(first), "--vkey", KEY.vkey(), "--state", str(state)]) == 0
    capsys.readouterr()
    assert main([str(second), "--vkey", KEY.vkey(), "--state", str(state)]) == 1
    err = capsys.readouterr().err
    assert "FAIL: equivocation:" in err and "proof of misbehaviour" in err
    assert log.note(6) in err and Log(KEY).add(6, text="-x").note(6) in err


def test_cli_runs_as_a_module(log: Log, tmp_path: Path) -> None:
    path = tmp_path / "r.tlog-proof"
    path.write_text(log.receipt(0))
    cmd = [sys.executable, "-m", "monitoring.audit.offline", str(path), "--vkey", KEY.vkey()]
    ok = subprocess.run(cmd, cwd=ROOT_DIR, capture_output=True, text=True)
    assert (ok.returncode, ok.stdout) == (0, f"OK seq=0 origin={ORIGIN} size=20 "
                                             f"key={KEY.verifier().key_hex}\n")
    path.write_text(log.receipt(0).replace("index 0", "index 1"))
    bad = subprocess.run(cmd, cwd=ROOT_DIR, capture_output=True, text=True)
    assert bad.returncode == 1 and "FAIL: seq 1: the envelope is not the entry" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_receipt_stdin(log: Log, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    class Stdin:
        buffer = __import__("io").BytesIO(log.receipt(2).encode())

    monkeypatch.setattr(sys, "stdin", Stdin)
    assert main(["-", "--vkey", KEY.vkey()]) == 0
    assert capsys.readouterr().out.startswith("OK seq=2 ")


def test_state_file_is_plain_json(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    verify_receipt(log.receipt(0), KEY.vkey(), state=state)
    doc = json.loads(state.read_text())
    assert doc["v"] == 1
    assert doc["checkpoints"][ORIGIN]["size"] == 20
    assert doc["checkpoints"][ORIGIN]["note"] == log.note()
