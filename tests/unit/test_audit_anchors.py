"""Anchors, the witness's logic and the unanchored-age alarm, without a network or a ledger.

Logs here are in-memory Merkle trees whose checkpoints are signed with a real Ed25519 key, so
every check the anchors and the witness make (signatures, consistency proofs) runs for real.
The HTTP side and the real ledger are in tests/integration/test_audit_witness.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from monitoring.audit.alarms import Alarm, AlarmKind
from monitoring.audit.anchors import (
    AnchorConflict,
    AnchorService,
    FileAnchor,
    WitnessAnchor,
    format_add_checkpoint,
    origin_file_stem,
)
from monitoring.audit.errors import AnchorError, AuditError
from monitoring.audit.keys import SigningKey
from monitoring.audit.merkle import MemoryTree, consistency_proof, leaf_hash
from monitoring.audit.note import (
    Checkpoint,
    CosignatureVerifier,
    cosignature_time,
    sign_checkpoint,
    verify_cosignature,
)
from monitoring.audit.witness import (
    EVIDENCE_FILE,
    MAX_REQUEST_BYTES,
    SIZE_CONTENT_TYPE,
    Witness,
    parse_add_checkpoint,
    parse_log_spec,
    read_logs_file,
)

ORIGIN = "monitoring.local/audit/0123456789abcdef0123456789abcdef"


class Log:
    """A log: leaves in a Merkle tree, checkpoints signed by ``key``."""

    def __init__(self, key: SigningKey, entries: list[bytes]) -> None:
        self.key = key
        self.tree = MemoryTree([leaf_hash(e) for e in entries])

    @classmethod
    def honest(cls, key: SigningKey, n: int, tag: str = "event") -> Log:
        return cls(key, [f"{tag} {i}".encode() for i in range(n)])

    def checkpoint(self, size: int) -> tuple[str, Checkpoint]:
        cp = Checkpoint(self.key.name, size, MemoryTree(
            [self.tree.node(0, i) for i in range(size)]).root())
        return sign_checkpoint(cp, self.key.signer()), cp

    def proof_from(self, size: int) -> Any:
        def proof(old: int) -> list[bytes]:
            return consistency_proof(self.tree, old, size) if 0 < old < size else []
        return proof


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture(scope="module")
def log(key: SigningKey) -> Log:
    return Log.honest(key, 20)


@pytest.fixture(scope="module")
def forked(key: SigningKey) -> Log:
    """The first 5 entries of ``log``, then other entries: a truncated-and-continued log."""
    return Log(key, [f"event {i}".encode() for i in range(5)]
               + [f"forged {i}".encode() for i in range(5, 20)])


# -- FileAnchor ------------------------------------------------------------------------------


def publish(anchor: FileAnchor, log: Log, size: int) -> None:
    note, cp = log.checkpoint(size)
    anchor.publish(note, cp, log.proof_from(size))


def test_file_anchor_appends_each_newer_checkpoint_and_reports_the_latest(
        tmp_path: Path, log: Log) -> None:
    anchor = FileAnchor(tmp_path / "anchor")
    assert anchor.latest() is None and anchor.origins() == []
    for size in (1, 3, 3, 7):  # the repeated size is not written twice
        publish(anchor, log, size)
    lines = anchor.path_for(ORIGIN).read_text().splitlines()
    assert [json.loads(line)["size"] for line in lines] == [1, 3, 7]
    assert anchor.latest() == log.checkpoint(7)[0]
    assert anchor.latest(ORIGIN) == log.checkpoint(7)[0]
    assert anchor.origins() == [ORIGIN]
    held = anchor.held(ORIGIN)
    assert held is not None and (held.size, held.root) == (7, log.checkpoint(7)[1].root)


def test_t15_file_anchor_refuses_a_smaller_checkpoint_as_rollback(
        tmp_path: Path, log: Log) -> None:
    anchor = FileAnchor(tmp_path)
    publish(anchor, log, 12)
    with pytest.raises(AnchorConflict) as err:
        publish(anchor, log, 9)
    assert err.value.kind == "ROLLBACK"
    assert err.value.anchored_size == 12
    assert str(err.value).startswith("ROLLBACK: folder ")
    assert "holds size 12, larger than the log's newest checkpoint (size 9)" in str(err.value)
    assert anchor.held(ORIGIN).size == 12  # type: ignore[union-attr]


def test_t16_file_anchor_refuses_a_truncated_and_continued_log_as_fork(
        tmp_path: Path, log: Log, forked: Log) -> None:
    anchor = FileAnchor(tmp_path)
    publish(anchor, log, 8)
    with pytest.raises(AnchorConflict) as err:
        publish(anchor, forked, 15)
    assert err.value.kind == "FORK"
    assert "not consistent with the anchored checkpoint of size 8" in str(err.value)
    assert "mismatch (the proof leads to" in str(err.value)
    assert err.value.evidence["anchored_note"] == log.checkpoint(8)[0]
    publish(anchor, log, 15)  # the honest log still extends what the folder holds


def test_t20_file_anchor_refuses_another_root_at_the_same_size(
        tmp_path: Path, log: Log, forked: Log) -> None:
    anchor = FileAnchor(tmp_path)
    publish(anchor, log, 10)
    with pytest.raises(AnchorConflict) as err:
        publish(anchor, forked, 10)
    assert err.value.kind == "FORK"
    assert "holds another root for size 10" in str(err.value)


def test_file_anchor_ignores_a_torn_final_line_and_cuts_it_before_appending(
        tmp_path: Path, log: Log) -> None:
    anchor = FileAnchor(tmp_path)
    publish(anchor, log, 4)
    path = anchor.path_for(ORIGIN)
    with open(path, "ab") as f:
        f.write(b'{"size": 9, "root": "AAAA')  # a crash in the middle of a write
    assert anchor.held(ORIGIN).size == 4  # type: ignore[union-attr]
    publish(anchor, log, 6)
    assert [json.loads(line)["size"] for line in path.read_text().splitlines()] == [4, 6]


def test_file_anchor_names_the_line_of_a_corrupt_record(tmp_path: Path, log: Log) -> None:
    anchor = FileAnchor(tmp_path)
    publish(anchor, log, 2)
    path = anchor.path_for(ORIGIN)
    with open(path, "a") as f:
        f.write('{"size": 3, "root": "not base64!", "note": "x"}\n')
    with pytest.raises(AnchorError, match=rf"{path.name}:2: root: not valid base64"):
        anchor.latest()


def test_file_anchor_reads_only_the_end_of_a_long_file(tmp_path: Path, log: Log) -> None:
    anchor = FileAnchor(tmp_path)
    publish(anchor, log, 1)
    path = anchor.path_for(ORIGIN)
    line = path.read_bytes()
    path.write_bytes(line * 6000)  # > 1 MiB: line numbers are not counted
    publish(anchor, log, 2)
    assert anchor.held(ORIGIN).size == 2  # type: ignore[union-attr]
    path.write_bytes(path.read_bytes() + b"garbage\n")
    with pytest.raises(AnchorError, match="last line: not a JSON object"):
        anchor.held(ORIGIN)


def test_file_anchor_with_several_logs_needs_the_origin(tmp_path: Path, log: Log) -> None:
    other = Log.honest(SigningKey.generate("example.org/other-log"), 3)
    anchor = FileAnchor(tmp_path)
    publish(anchor, log, 2)
    publish(anchor, other, 3)
    assert anchor.origins() == sorted([ORIGIN, "example.org/other-log"])
    with pytest.raises(AnchorError, match="holds checkpoints of 2 logs"):
        anchor.latest()
    assert anchor.latest("example.org/other-log") == other.checkpoint(3)[0]
    assert FileAnchor(tmp_path, origin=ORIGIN).latest() == log.checkpoint(2)[0]


def test_file_anchor_refuses_a_note_of_another_checkpoint(tmp_path: Path, log: Log) -> None:
    note, _ = log.checkpoint(3)
    _, cp = log.checkpoint(4)
    with pytest.raises(AnchorError, match="not signed over the checkpoint of size 4"):
        FileAnchor(tmp_path).publish(note, cp, log.proof_from(4))


@pytest.mark.parametrize("origin", [
    ORIGIN, "a/b", "a_b", "../../etc/passwd", "x" * 300, "ünïcode/log", "..", "-",
])
def test_origin_file_names_are_safe_and_distinct(origin: str) -> None:
    stem = origin_file_stem(origin)
    assert "/" not in stem and not stem.startswith(".") and len(stem) <= 100
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in stem)
    assert stem != origin_file_stem(origin + "x")
    assert origin_file_stem("a/b") != origin_file_stem("a_b")


# -- the witness, without HTTP ---------------------------------------------------------------


@pytest.fixture()
def witness_key() -> SigningKey:
    return SigningKey.generate("witness.test/w1")


def make_witness(path: Path, witness_key: SigningKey, key: SigningKey,
                 clock: Any = lambda: 1_700_000_000.0) -> Witness:
    return Witness(witness_key, [(ORIGIN, key.verifier())], path, clock)


def add(witness: Witness, log: Log, old: int, size: int,
        proof: list[bytes] | None = None) -> tuple[int, str, str]:
    note, _ = log.checkpoint(size)
    if proof is None:
        proof = log.proof_from(size)(old)
    reply = witness.add_checkpoint(format_add_checkpoint(old, proof, note))
    return reply.status, reply.body.decode(), reply.content_type


def test_witness_cosigns_an_honest_sequence_and_keeps_it_across_restarts(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    cosigner = CosignatureVerifier.from_vkey(witness.vkey)
    for old, size in [(0, 1), (1, 2), (2, 7), (7, 7), (7, 20)]:
        status, body, _ = add(witness, log, old, size)
        assert status == 200, body
        note = log.checkpoint(size)[0]
        assert cosignature_time(log.checkpoint(size)[1].body() + "\n" + body,
                                cosigner) == 1_700_000_000
        cp, ts = verify_cosignature(witness.held(ORIGIN).note,  # type: ignore[union-attr]
                                    [key.verifier()], cosigner, ORIGIN)
        assert (cp.size, ts) == (size, 1_700_000_000)
        assert witness.held(ORIGIN).note.startswith(note)  # type: ignore[union-attr]
    again = make_witness(tmp_path, witness_key, key)
    assert again.held_logs() == [{"origin": ORIGIN, "size": 20}]
    assert add(again, log, 7, 20)[0] == 409


def test_witness_answers_409_with_its_size_to_a_stale_old_size(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    assert add(witness, log, 0, 9)[0] == 200
    assert add(witness, log, 0, 12) == (409, "9\n", SIZE_CONTENT_TYPE)
    assert add(witness, log, 4, 12) == (409, "9\n", SIZE_CONTENT_TYPE)
    assert add(witness, log, 9, 12)[0] == 200


def test_t15_witness_refuses_a_rolled_back_log(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    assert add(witness, log, 0, 15)[0] == 200
    # The log lost its tail: it can only offer a smaller checkpoint, from any old size.
    assert add(witness, log, 0, 10) == (409, "15\n", SIZE_CONTENT_TYPE)
    assert add(witness, log, 10, 10) == (409, "15\n", SIZE_CONTENT_TYPE)
    status, body, _ = add(witness, log, 15, 10)
    assert (status, body) == (400, "old size 15 is larger than the checkpoint's size 10\n")


def test_t16_witness_refuses_a_truncated_and_continued_log_with_422(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log,
        forked: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    assert add(witness, log, 0, 8)[0] == 200
    status, body, _ = add(witness, forked, 8, 16)
    assert status == 422
    assert body.startswith("consistency proof from size 8 to 16 does not verify")
    evidence = [json.loads(line) for line in (tmp_path / EVIDENCE_FILE).read_text().splitlines()]
    assert [e["kind"] for e in evidence] == ["inconsistent"]
    assert evidence[0]["presented_note"] == forked.checkpoint(16)[0]
    assert witness.held(ORIGIN).size == 8  # type: ignore[union-attr]


def test_t20_witness_refuses_a_second_root_for_the_same_size_and_keeps_both_notes(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log,
        forked: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    assert add(witness, log, 0, 10)[0] == 200
    assert add(witness, forked, 10, 10) == (409, "10\n", SIZE_CONTENT_TYPE)
    assert add(witness, forked, 0, 10) == (409, "10\n", SIZE_CONTENT_TYPE)
    evidence = [json.loads(line) for line in (tmp_path / EVIDENCE_FILE).read_text().splitlines()]
    assert [e["kind"] for e in evidence] == ["equivocation", "equivocation"]
    assert evidence[0]["held_note"].startswith(log.checkpoint(10)[0])
    assert evidence[0]["presented_note"] == forked.checkpoint(10)[0]
    assert evidence[0]["reason"] == "same size, different root"


def test_witness_refuses_unknown_logs_and_foreign_signatures(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    stranger = Log.honest(SigningKey.generate("example.org/stranger"), 3)
    status, body, _ = add(witness, stranger, 0, 3)
    assert (status, body) == (404, "unknown log origin 'example.org/stranger'\n")
    impostor = Log.honest(SigningKey.generate(ORIGIN), 3)  # right name, other key
    status, body, _ = add(witness, impostor, 0, 3)
    assert status == 403 and body.startswith(f"no valid signature by a key trusted for {ORIGIN}")
    assert witness.held(ORIGIN) is None


def test_witness_refuses_a_nonempty_proof_from_size_zero(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    status, body, _ = add(witness, log, 0, 4, proof=[b"\x00" * 32])
    assert status == 422 and "wrong proof length" in body


def test_witness_refuses_a_tampered_middle_hash(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    assert add(witness, log, 0, 6)[0] == 200
    proof = log.proof_from(19)(6)
    proof[1] = bytes([proof[1][0] ^ 1]) + proof[1][1:]
    assert add(witness, log, 6, 19, proof)[0] == 422
    assert add(witness, log, 6, 19)[0] == 200


def test_witness_check_and_store_are_atomic_under_racing_requests(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    assert add(witness, log, 0, 2)[0] == 200
    results: dict[int, int] = {}
    start = threading.Barrier(8)

    def submit(size: int) -> None:
        start.wait()
        results[size] = add(witness, log, 2, size)[0]

    threads = [threading.Thread(target=submit, args=(s,)) for s in range(3, 11)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [200] + [409] * 7
    winner = next(s for s, status in results.items() if status == 200)
    assert witness.held(ORIGIN).size == winner  # type: ignore[union-attr]
    assert make_witness(tmp_path, witness_key, key).held(ORIGIN).size == winner  # type: ignore[union-attr]


GOOD_HASH = "A" * 43 + "="


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "line 1: missing the old size line"),
    (b"old 1", "line 1: missing the old size line"),
    (b"old 01\n\n", "line 1: expected 'old <tree size>'"),
    (b"old -1\n\n", "line 1: expected 'old <tree size>'"),
    (b"old  1\n\n", "line 1: expected 'old <tree size>'"),
    (b"olds 1\n\n", "line 1: expected 'old <tree size>'"),
    (b"old 99999999999999999999\n\n", "line 1: expected 'old <tree size>'"),
    (b"old 1\n", "line 2: missing the empty line before the checkpoint"),
    (b"old 1\nnot base64\n\n", "line 2: consistency proof hash: not valid base64"),
    (b"old 1\n" + b"AAAA\n\n", "line 2: consistency proof hash: expected 32 bytes, got 3"),
    (b"old 1\n" + (GOOD_HASH + "\n").encode() * 64 + b"\n",
     "line 65: more than 63 consistency proof lines"),
    (b"old 1\n\xff\n\n", "request body is not UTF-8 (byte 6)"),
])
def test_malformed_add_checkpoint_bodies_get_400_with_the_reason(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, body: bytes,
        reason: str) -> None:
    reply = make_witness(tmp_path, witness_key, key).add_checkpoint(body)
    assert reply.status == 400
    assert reply.body.decode().startswith(reason)


@pytest.mark.parametrize(("note", "reason"), [
    ("", "checkpoint note: note has no blank line"),
    (f"{ORIGIN}\n3\n{GOOD_HASH}\n\n", "checkpoint note: note has no signature lines"),
    (f"{ORIGIN}\n03\n{GOOD_HASH}\n\n\u2014 {ORIGIN} AAAAAAAA\n", "checkpoint: checkpoint line 2"),
    (f"{ORIGIN}\n3\n\n\u2014 {ORIGIN} AAAAAAAA\n",
     "checkpoint: expected origin, size and root hash lines, got 2 line(s)"),
    (f"{ORIGIN}\x07\n3\n{GOOD_HASH}\n\n\u2014 {ORIGIN} AAAAAAAA\n",
     "checkpoint note: note contains the control character U+0007"),
])
def test_malformed_checkpoint_notes_get_400(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, note: str,
        reason: str) -> None:
    reply = make_witness(tmp_path, witness_key, key).add_checkpoint(
        format_add_checkpoint(0, [], note))
    assert reply.status == 400, reply.body
    assert reply.body.decode().startswith(reason)


def test_an_oversized_body_gets_413(tmp_path: Path, witness_key: SigningKey,
                                    key: SigningKey) -> None:
    body = b"old 0\n\n" + b"x" * MAX_REQUEST_BYTES
    assert make_witness(tmp_path, witness_key, key).add_checkpoint(body).status == 413


def test_parse_add_checkpoint_splits_the_parts() -> None:
    req = parse_add_checkpoint(f"old 5\n{GOOD_HASH}\n{GOOD_HASH}\n\nnote text\n".encode())
    assert (req.old, len(req.proof), req.note) == (5, 2, "note text\n")


def test_log_specs_name_the_origin_or_take_the_key_name(key: SigningKey) -> None:
    assert parse_log_spec(f"{ORIGIN}={key.vkey()}", "x") == (ORIGIN, key.verifier())
    assert parse_log_spec(f"example.org/log {key.vkey()}", "x")[0] == "example.org/log"
    assert parse_log_spec(key.vkey(), "x")[0] == ORIGIN
    with pytest.raises(AuditError, match=r"logs\.txt:3: malformed verifier key"):
        parse_log_spec(f"{ORIGIN}=nonsense", "logs.txt:3")


def test_a_logs_file_lists_origins_and_keys_with_comments(tmp_path: Path,
                                                         key: SigningKey) -> None:
    other = SigningKey.generate("example.org/other-log")
    path = tmp_path / "logs.txt"
    path.write_text(f"# the ledgers\n{ORIGIN} {key.vkey()}\n\n{other.vkey()}  # bare\n"
                    "example.org/x=nonsense\n")
    with pytest.raises(AuditError, match=r"logs\.txt:5: malformed verifier key 'nonsense'"):
        read_logs_file(path)
    path.write_text(path.read_text().replace("example.org/x=nonsense\n", ""))
    assert read_logs_file(path) == [(ORIGIN, key.verifier()),
                                    ("example.org/other-log", other.verifier())]


def test_a_corrupt_witness_state_file_stops_the_witness(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    assert add(witness, log, 0, 3)[0] == 200
    (state,) = (tmp_path / "logs").glob("*.json")
    state.write_text('{"origin": "x"}')
    with pytest.raises(AuditError, match=rf"{state.name}: size: expected int"):
        make_witness(tmp_path, witness_key, key)


# -- WitnessAnchor against the witness's logic (no sockets) ----------------------------------


class DirectWitness(WitnessAnchor):
    """A WitnessAnchor whose HTTP exchange is answered in-process, by a Witness or a script."""

    def __init__(self, witness: Witness | None, *replies: tuple[int, bytes],
                 state: Path | None = None) -> None:
        key = witness.key if witness else SigningKey.generate("witness.test/w1")
        super().__init__("http://witness.test", key.cosignature_verifier().vkey(), state=state)
        self.witness = witness
        self.replies = list(replies)
        self.sent: list[bytes] = []

    def _exchange(self, request: Any) -> tuple[int, bytes]:
        self.sent.append(request.data)
        if self.replies:
            return self.replies.pop(0)
        assert self.witness is not None
        reply = self.witness.add_checkpoint(request.data)
        return reply.status, reply.body


def test_witness_anchor_keeps_the_cosigned_size_and_sends_the_right_proof(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path / "w", witness_key, key)
    state = tmp_path / "state.json"
    anchor = DirectWitness(witness, state=state)
    result = anchor.submit(*log.checkpoint(4), log.proof_from(4))
    assert (result.size, result.previous_size, result.timestamp) == (4, 0, 1_700_000_000)
    assert anchor.sent[-1].startswith(b"old 0\n\n")
    anchor = DirectWitness(witness, state=state)  # a restarted client reads its state
    assert anchor.cosigned_size(ORIGIN) == 4
    anchor.submit(*log.checkpoint(11), log.proof_from(11))
    proof = log.proof_from(11)(4)
    assert anchor.sent == [format_add_checkpoint(4, proof, log.checkpoint(11)[0])]
    assert json.loads(state.read_text())[ORIGIN]["size"] == 11


def test_witness_anchor_without_state_learns_the_size_from_409(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key)
    DirectWitness(witness).submit(*log.checkpoint(6), log.proof_from(6))
    anchor = DirectWitness(witness)
    result = anchor.submit(*log.checkpoint(9), log.proof_from(9))
    assert result.previous_size == 6
    assert [b.split(b"\n", 1)[0] for b in anchor.sent] == [b"old 0", b"old 6"]


def test_t15_witness_anchor_state_alone_shows_a_rollback(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    state = tmp_path / "state.json"
    DirectWitness(make_witness(tmp_path, witness_key, key), state=state).submit(
        *log.checkpoint(12), log.proof_from(12))
    anchor = DirectWitness(None, state=state)
    with pytest.raises(AnchorConflict) as err:
        anchor.submit(*log.checkpoint(5), log.proof_from(5))
    assert err.value.kind == "ROLLBACK" and err.value.anchored_size == 12
    assert anchor.sent == []  # refused before asking the witness


@pytest.mark.parametrize(("replies", "message"), [
    ([(409, b"3\n"), (409, b"4\n")], "its size changed while publishing (now 4)"),
    ([(409, b"0\n")], "answered 409 with the old size sent (0)"),
    ([(409, b"three\n")], "a 409 answer must be a tree size line, got 'three\\n'"),
    ([(200, b"cosigned!\n")], "expected note signature lines, got 'cosigned!\\n'"),
    ([(200, "\u2014 witness.test/w1 AAAAAAAAAA==\n".encode())],
     "no valid cosignature of the checkpoint of size 8"),
    ([(400, b"line 1: nonsense\n")], "400 malformed request: line 1: nonsense"),
    ([(500, b"internal error\n")], "refused the checkpoint of size 8: 500 : internal error"),
])
def test_witness_anchor_refuses_answers_outside_the_protocol(
        log: Log, replies: list[tuple[int, bytes]], message: str) -> None:
    anchor = DirectWitness(None, *replies)
    with pytest.raises(AnchorError) as err:
        anchor.submit(*log.checkpoint(8), log.proof_from(8))
    assert message in str(err.value)
    assert not isinstance(err.value, AnchorConflict)
    assert anchor.cosigned_size(ORIGIN) == 0


def test_witness_anchor_refuses_a_cosignature_from_the_future(
        tmp_path: Path, witness_key: SigningKey, key: SigningKey, log: Log) -> None:
    witness = make_witness(tmp_path, witness_key, key, clock=lambda: 2_000_000_000.0)
    with pytest.raises(AnchorError, match="the cosignature's time 2000000000 is in the future"):
        DirectWitness(witness).submit(*log.checkpoint(3), log.proof_from(3))


def test_witness_anchor_settings_are_checked(tmp_path: Path, key: SigningKey) -> None:
    vkey = key.cosignature_verifier().vkey()
    with pytest.raises(AnchorError, match="expected http://HOST:PORT"):
        WitnessAnchor("ftp://x", vkey)
    with pytest.raises(AnchorError, match="signature type 0x01, expected 0x04"):
        WitnessAnchor("http://x", key.vkey())  # a log key is not a cosigner key
    (tmp_path / "s.json").write_text('{"o": {"size": -1, "root": ""}}')
    with pytest.raises(AnchorError, match=r"s\.json: o: expected"):
        WitnessAnchor("http://x", vkey, state=tmp_path / "s.json")


# -- AnchorService: back-off, the unanchored-age alarm (T43) ---------------------------------


@dataclass
class StoredCheckpoint:
    size: int
    root: bytes
    note: str


@dataclass
class FakeLedger:
    """A ledger as the service sees it: newest checkpoint, proofs, append."""

    log: Log
    size: int = 1
    events: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return ORIGIN

    @property
    def storage(self) -> FakeLedger:
        return self

    def latest_checkpoint(self) -> StoredCheckpoint:
        note, cp = self.log.checkpoint(self.size)
        return StoredCheckpoint(cp.size, cp.root, note)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return consistency_proof(self.log.tree, size1, size2)

    def append(self, event: Mapping[str, Any]) -> object:
        self.events.append(event)
        self.size += 1
        return None


class SwitchAnchor:
    """An anchor that is up or down, recording the times it was tried."""

    def __init__(self, name: str, clock: list[float]) -> None:
        self.name = name
        self.clock = clock
        self.up = True
        self.tried: list[float] = []
        self.sizes: list[int] = []

    def publish(self, note: str, cp: Checkpoint, proof_from: Any) -> None:
        self.tried.append(self.clock[0])
        if not self.up:
            raise AnchorError(f"{self.name}: unreachable: connection refused")
        self.sizes.append(cp.size)

    def latest(self) -> str | None:
        return None


def service(ledger: FakeLedger, anchors: list[Any], now: list[float],
            alarms: list[Alarm]) -> AnchorService:
    return AnchorService(ledger, anchors, interval_s=5, max_unanchored_age_s=300,
                         max_backoff_s=60, clock=lambda: now[0], on_alarm=alarms.append)


def test_t43_unanchored_alarm_fires_once_after_max_age_and_clears_when_anchoring_resumes(
        log: Log) -> None:
    now, alarms = [0.0], []
    ledger = FakeLedger(log, size=3)
    down = SwitchAnchor("witness w", now)
    down.up = False
    svc = service(ledger, [down], now, alarms)
    for t in range(0, 301, 5):
        now[0] = float(t)
        svc.tick()
    assert alarms == [] and svc.unanchored_age_s() == 300 and not svc.alarm_active
    for t in range(301, 1000, 7):  # past the limit: one alarm and one event per episode
        now[0] = float(t)
        svc.tick()
    assert [a.kind for a in alarms] == [AlarmKind.UNANCHORED]
    assert "has not been anchored to witness w for 301 s (limit 300 s)" in alarms[0].message
    assert "witness w: unreachable: connection refused" in alarms[0].message
    assert alarms[0].evidence["anchors"] == "witness w"
    assert [(e["event_type"], e["action"]) for e in ledger.events] == [("security",
                                                                         "anchor.stale")]
    assert ledger.events[0]["details"]["unanchored_age_s"] == 301
    assert svc.alarm_active
    down.up = True
    now[0] = 1100.0
    svc.tick()
    assert svc.unanchored_age_s() == 0 and not svc.alarm_active
    assert down.sizes == [ledger.size - 1]  # the stale event's own checkpoint came later
    assert [e["action"] for e in ledger.events] == ["anchor.stale", "anchor.resumed"]
    assert len(alarms) == 1
    now[0] = 1105.0
    svc.tick()  # the checkpoint of the resumed event is anchored too
    assert down.sizes[-1] == ledger.size and svc.unanchored_age_s() == 0
    # A second outage is a second episode: one more alarm.
    down.up = False
    ledger.size += 1
    for t in range(1110, 1500, 10):
        now[0] = float(t)
        svc.tick()
    assert [a.kind for a in alarms] == [AlarmKind.UNANCHORED] * 2


def test_failed_anchors_back_off_doubling_up_to_the_cap(log: Log) -> None:
    now, alarms = [0.0], []
    down = SwitchAnchor("folder f", now)
    down.up = False
    svc = service(FakeLedger(log), [down], now, alarms)
    for t in range(0, 400):
        now[0] = float(t)
        svc.tick()
    assert down.tried[:6] == [0, 5, 15, 35, 75, 135]  # 5, 10, 20, 40, then the 60 s cap
    assert down.tried[6] == 195


def test_one_stale_anchor_alarms_although_another_is_current(log: Log) -> None:
    now, alarms = [0.0], []
    up, down = SwitchAnchor("folder f", now), SwitchAnchor("witness w", now)
    down.up = False
    ledger = FakeLedger(log, size=2)
    svc = service(ledger, [up, down], now, alarms)
    for t in (0, 200, 301, 305):
        now[0] = float(t)
        svc.tick()
    assert up.sizes == [2, 3]  # the anchor.stale event's checkpoint reaches the live anchor
    assert [a.evidence["anchors"] for a in alarms] == ["witness w"]
    assert svc.status["folder f"].pending_since is None
    assert svc.status["witness w"].last_error == "witness w: unreachable: connection refused"


def test_a_conflicting_anchor_raises_its_rollback_alarm_once(tmp_path: Path, log: Log) -> None:
    now, alarms = [0.0], []
    folder = FileAnchor(tmp_path)
    publish(folder, log, 15)
    svc = service(FakeLedger(log, size=9), [folder], now, alarms)
    for t in range(0, 100, 5):
        now[0] = float(t)
        svc.tick()
    assert [a.kind for a in alarms] == [AlarmKind.ROLLBACK]
    assert alarms[0].evidence["anchored_size"] == "15"
    assert alarms[0].evidence["anchor"] == folder.name


class BrokenLedger(FakeLedger):
    broken = False

    def latest_checkpoint(self) -> StoredCheckpoint:
        if self.broken:
            raise AuditError("IO Error: could not read block 7")
        return super().latest_checkpoint()


def test_an_unreadable_store_counts_as_unanchored(log: Log) -> None:
    now, alarms = [0.0], list[Alarm]()
    ledger = BrokenLedger(log, size=5)
    up = SwitchAnchor("folder f", now)
    svc = service(ledger, [up], now, alarms)
    svc.run_once()
    ledger.broken = True
    for t in (10.0, 200.0, 311.0):
        now[0] = t
        svc.run_once()  # never raises
    assert [a.kind for a in alarms] == [AlarmKind.UNANCHORED]
    assert "anchoring failed: AuditError('IO Error: could not read block 7')" in alarms[0].message
    assert "newest checkpoint (size 5)" in alarms[0].message
    ledger.broken = False
    now[0] = 320.0
    svc.run_once()
    assert not svc.alarm_active


def wait_for(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_service_thread_publishes_at_start_and_after_notify(tmp_path: Path,
                                                                 log: Log) -> None:
    ledger = FakeLedger(log, size=4)
    folder = FileAnchor(tmp_path)
    svc = AnchorService(ledger, [folder], interval_s=30, max_unanchored_age_s=60)
    with svc:
        assert wait_for(lambda: folder.latest() == log.checkpoint(4)[0])
        ledger.size = 6
        svc.notify()  # the next tick is 30 s away: only notify() makes it happen now
        assert wait_for(lambda: folder.latest() == log.checkpoint(6)[0])
    assert svc._thread is None


def test_service_settings_are_checked(log: Log) -> None:
    with pytest.raises(AnchorError, match="must be positive"):
        AnchorService(FakeLedger(log), [], interval_s=0)
