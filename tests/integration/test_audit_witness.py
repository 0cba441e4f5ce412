"""The witness as a real server process, real ledgers, and the attacks anchors exist for.

The witness runs as ``python -m monitoring audit witness serve`` on a free 127.0.0.1 port
(it prints its URL and key), in its own process group, stopped by PID. Ledgers are real
DuckDB files. Rollbacks are made the way an attacker (A2: may rewrite the store and the
sidecar, has no key) would: the ledger's files are copied at one point and copied back later.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
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
)
from monitoring.audit.errors import AnchorError, LedgerAlarmError
from monitoring.audit.keys import SigningKey, write_key_file, write_secret_file
from monitoring.audit.ledger import Ledger
from monitoring.audit.note import Checkpoint, CosignatureVerifier, sign_checkpoint
from monitoring.audit.note import verify_cosignature as open_cosigned
from monitoring.audit.witness import EVIDENCE_FILE, SIZE_CONTENT_TYPE
from tests.support.processes import stop_process_group

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "monitoring.local/audit/feedc0de00000000feedc0de00000000"
KEK = bytes(range(32))


class WitnessProcess:
    """``monitoring audit witness serve`` in a subprocess."""

    def __init__(self, state: Path, logs: list[str]) -> None:
        self.state = state
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.vkey = ""

    def start(self, timeout: float = 30.0) -> WitnessProcess:
        cmd = [sys.executable, "-m", "monitoring", "audit", "witness", "serve", "--port", "0",
               "--state", str(self.state), *(f"--log={spec}" for spec in self.logs)]
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})
        lines = self._read_lines(3, timeout)
        assert lines[0].startswith("witness monitoring.local/witness listening on "), lines
        self.url = lines[0].rsplit(" ", 1)[1]
        assert lines[1].startswith("vkey ")
        self.vkey = lines[1].split(" ", 1)[1]
        return self

    def _read_lines(self, n: int, timeout: float) -> list[str]:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        while buf.count(b"\n") < n:
            if not sel.select(timeout):
                self.stop()
                raise AssertionError(f"witness did not start: {self.stderr()}")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"witness exited: {self.stderr()}")
            buf += chunk
        return buf.decode().splitlines()

    def stderr(self) -> str:
        return (self.state / "stderr.log").read_text(errors="replace")[-3000:]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_process_group(proc)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture()
def witness(tmp_path: Path, key: SigningKey) -> Iterator[WitnessProcess]:
    proc = WitnessProcess(tmp_path / "witness", [f"{ORIGIN}={key.vkey()}"]).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(autouse=True)
def _no_user_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("MONITORING_AUDIT_KEY", "MONITORING_AUDIT_KEY_FILE", "MONITORING_AUDIT_KEK",
                 "MONITORING_AUDIT_KEK_FILE", "MONITORING_AUDIT_FAULT"):
        monkeypatch.delenv(name, raising=False)


def open_ledger(db: Path, key: SigningKey, **options: Any) -> Ledger:
    return Ledger.open(db, key=key, kek=KEK, origin=ORIGIN, **options)


def append(ledger: Ledger, n: int, tag: str = "event") -> None:
    ledger.append_many([{"event_type": "configuration_change", "action": f"{tag}.{i}",
                         "resource": f"rule/{i}"} for i in range(n)])


def newest(ledger: Ledger) -> tuple[str, Checkpoint, Any]:
    stored = ledger.storage.latest_checkpoint()
    assert stored is not None
    cp = Checkpoint(ledger.origin, stored.size, stored.root)

    def proof_from(old: int) -> list[bytes]:
        return ledger.consistency_proof(old, cp.size) if 0 < old < cp.size else []
    return stored.note, cp, proof_from


def ledger_files(db: Path) -> list[Path]:
    return [p for p in db.parent.iterdir()
            if p.name.startswith(db.name) and not p.name.endswith(".lock")]


def backup(db: Path, to: Path) -> None:
    """Copy the ledger's files (store, WAL, sidecar, vault) as they are now."""
    to.mkdir()
    for p in ledger_files(db):
        if p.is_dir():
            shutil.copytree(p, to / p.name)
        else:
            shutil.copy2(p, to / p.name)


def restore(db: Path, frm: Path) -> None:
    """Put the copied files back, as an attacker who can rewrite the host's files would."""
    for p in ledger_files(db):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in frm.iterdir():
        if p.is_dir():
            shutil.copytree(p, db.parent / p.name)
        else:
            shutil.copy2(p, db.parent / p.name)


def witness_anchor(witness: WitnessProcess, state: Path | None = None,
                   timeout: float = 10.0) -> WitnessAnchor:
    return WitnessAnchor(witness.url, witness.vkey, timeout, state=state, origin=ORIGIN)


# -- honest operation --------------------------------------------------------------------------


def test_witness_cosigns_an_honest_ledger_over_http(tmp_path: Path, key: SigningKey,
                                                    witness: WitnessProcess) -> None:
    cosigner = CosignatureVerifier.from_vkey(witness.vkey)
    state = tmp_path / "db.duckdb.checkpoints.witness.json"
    with open_ledger(tmp_path / "db.duckdb", key) as ledger:
        append(ledger, 3)
        anchor = witness_anchor(witness, state)
        first = anchor.submit(*newest(ledger))
        assert (first.size, first.previous_size) == (ledger.size, 0)
        append(ledger, 40)
        second = anchor.submit(*newest(ledger))
        assert (second.size, second.previous_size) == (ledger.size, first.size)
        assert json.loads(state.read_text())[ORIGIN]["size"] == ledger.size
        note = anchor.latest()
        assert note is not None
        cp, _ = open_cosigned(note, [key.verifier()], cosigner, ORIGIN)
        assert cp.size == ledger.size
        assert anchor.origins() == [ORIGIN]
        size = ledger.size
        # A restarted witness keeps its state; a client without state learns it from the 409.
        witness.stop()
        witness.start()
        append(ledger, 2)
        fresh = witness_anchor(witness)
        third = fresh.submit(*newest(ledger))
        assert (third.previous_size, third.size) == (size, ledger.size)


def test_witness_vkey_command_prints_the_served_key(witness: WitnessProcess) -> None:
    witness.stop()  # the key file is the witness's; read it while it is not serving
    out = subprocess.run([sys.executable, "-m", "monitoring", "audit", "witness", "vkey",
                          "--state", str(witness.state)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == witness.vkey
    assert witness.vkey.startswith("monitoring.local/witness+")
    assert base64.b64decode(witness.vkey.split("+", 2)[2])[0] == 0x04


def test_a_ledger_with_anchors_publishes_each_commit_in_the_background(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    folder = FileAnchor(tmp_path / "other-volume")
    remote = witness_anchor(witness)
    alarms: list[Alarm] = []
    with open_ledger(tmp_path / "db.duckdb", key, anchors=[folder, remote],
                     anchor_options={"interval_s": 60, "on_alarm": alarms.append}) as ledger:
        for n in (3, 1, 7):
            append(ledger, n)
            size = ledger.size

            def anchored(size: int = size) -> bool:
                held = folder.held(ORIGIN)
                return held is not None and held.size == size \
                    and remote.cosigned_size(ORIGIN) == size
            # The interval is 60 s: only the commit's notify() gets it there in time.
            deadline = time.monotonic() + 20
            while not anchored() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert anchored(), (folder.held(ORIGIN), remote.cosigned_size(ORIGIN), size)
        service = ledger.anchor_service
        assert service is not None and service.unanchored_age_s() == 0
    assert alarms == []


# -- T15, T16, T18, T20 ----------------------------------------------------------------------


def cut_back(tmp_path: Path, key: SigningKey, witness: WitnessProcess, keep: int,
             more: int) -> tuple[Path, int, list[Any]]:
    """A ledger of ``keep`` + ``more`` events, anchored, then cut back to its first ``keep``
    (A2 restores old copies of the store and the sidecar together). Returns the store, the
    anchored size and the anchors (a witness with client state, one without, a folder)."""
    db = tmp_path / "db.duckdb"
    folder = FileAnchor(tmp_path / "other-volume")
    with open_ledger(db, key) as ledger:
        append(ledger, keep)
    backup(db, tmp_path / "old")
    with open_ledger(db, key) as ledger:
        append(ledger, more)
        anchored = ledger.size
        witness_anchor(witness, tmp_path / "w.json").publish(*newest(ledger))
        folder.publish(*newest(ledger))
    restore(db, tmp_path / "old")
    return db, anchored, [witness_anchor(witness, tmp_path / "w.json"),
                          witness_anchor(witness), folder]


def test_t15_each_anchor_refuses_the_rolled_back_checkpoint_as_rollback(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    db, anchored, anchors = cut_back(tmp_path, key, witness, keep=5, more=20)
    with open_ledger(db, key) as ledger:
        assert ledger.size < anchored
        for anchor in anchors:
            with pytest.raises(AnchorConflict) as conflict:
                anchor.publish(*newest(ledger))
            assert conflict.value.kind == "ROLLBACK"
            assert conflict.value.anchored_size == anchored
            assert f"holds size {anchored}, larger than the log's newest checkpoint (size " \
                   f"{ledger.size})" in str(conflict.value)


def test_t15_startup_check_raises_rollback_from_each_anchor(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    db, anchored, anchors = cut_back(tmp_path, key, witness, keep=5, more=20)
    for anchor in anchors[1:]:
        with pytest.raises(LedgerAlarmError) as err:
            open_ledger(db, key, anchors=[anchor])
        assert [a.kind for a in err.value.alarms] == [AlarmKind.ROLLBACK]
        assert str(anchored) in err.value.alarms[0].message


def test_t16_truncate_and_continue_is_refused_as_fork_by_each_anchor(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    db, anchored, anchors = cut_back(tmp_path, key, witness, keep=6, more=10)
    with open_ledger(db, key) as ledger:  # A3 (has the key) goes on from the cut
        append(ledger, 30, tag="rewritten")
        assert ledger.size > anchored
        for anchor in anchors[:2]:
            with pytest.raises(AnchorConflict) as conflict:
                anchor.publish(*newest(ledger))
            assert conflict.value.kind == "FORK"
            assert f"not consistent with the checkpoint of size {anchored} it cosigned " \
                   "(422: consistency proof" in str(conflict.value)
        with pytest.raises(AnchorConflict) as conflict:
            anchors[2].publish(*newest(ledger))
        assert conflict.value.kind == "FORK"
        assert f"anchored checkpoint of size {anchored}" in str(conflict.value)
    evidence = [json.loads(line)
                for line in (witness.state / EVIDENCE_FILE).read_text().splitlines()]
    assert [e["kind"] for e in evidence] == ["inconsistent"] * 2
    assert evidence[0]["held_note"].split("\n")[1] == str(anchored)


def test_t16_startup_check_raises_fork_from_each_anchor(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    db, anchored, anchors = cut_back(tmp_path, key, witness, keep=6, more=10)
    with open_ledger(db, key) as ledger:
        append(ledger, 30, tag="rewritten")
    for anchor in anchors[1:]:
        with pytest.raises(LedgerAlarmError) as err:
            open_ledger(db, key, anchors=[anchor])
        forks = [a for a in err.value.alarms if a.kind == AlarmKind.FORK]
        assert forks, err.value.alarms
        assert str(anchored) in forks[0].message + " ".join(forks[0].evidence.values())


def test_t18_anchors_report_a_missing_log(tmp_path: Path, key: SigningKey,
                                          witness: WitnessProcess) -> None:
    db = tmp_path / "db.duckdb"
    folder = FileAnchor(tmp_path / "other-volume")
    with open_ledger(db, key) as ledger:
        append(ledger, 3)
        witness_anchor(witness).publish(*newest(ledger))
        folder.publish(*newest(ledger))
    for p in ledger_files(db):  # A2 deletes the store and the sidecar
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for anchor in (WitnessAnchor(witness.url, witness.vkey), FileAnchor(folder.folder)):
        with pytest.raises(LedgerAlarmError) as err:
            open_ledger(db, key, anchors=[anchor])
        assert [a.kind for a in err.value.alarms] == [AlarmKind.MISSING_LOG]
        assert ORIGIN in err.value.alarms[0].message


def test_t20_witness_refuses_a_second_root_for_a_cosigned_size(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    with open_ledger(tmp_path / "db.duckdb", key) as ledger:
        append(ledger, 7)
        note, cp, proof_from = newest(ledger)
        witness_anchor(witness).publish(note, cp, proof_from)
    # A3 signs another tree of the same size with the ledger's key: equivocation.
    other = Checkpoint(ORIGIN, cp.size, bytes(32))
    other_note = sign_checkpoint(other, key.signer())
    request = urllib.request.Request(
        witness.url + "/add-checkpoint",
        data=format_add_checkpoint(cp.size, [], other_note), method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 409
    assert err.value.headers["Content-Type"] == SIZE_CONTENT_TYPE
    with err.value:
        assert err.value.read() == f"{cp.size}\n".encode()
    with pytest.raises(AnchorConflict) as conflict:
        witness_anchor(witness).publish(other_note, other, lambda old: [])
    assert conflict.value.kind == "FORK"
    assert f"it holds another root for size {cp.size}" in str(conflict.value)
    evidence = [json.loads(line)
                for line in (witness.state / EVIDENCE_FILE).read_text().splitlines()]
    # Each refused submission is kept: the raw one, then the anchor's "old 0" and its retry.
    assert [e["kind"] for e in evidence] == ["equivocation"] * 3
    assert evidence[0]["held_note"].startswith(note)  # both signed notes: proof of misbehaviour
    assert evidence[0]["presented_note"] == other_note


# -- T43: a blocked witness ------------------------------------------------------------------


def test_t43_blocked_witness_raises_unanchored_after_max_age_then_clears(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    now, alarms = [0.0], list[Alarm]()
    with open_ledger(tmp_path / "db.duckdb", key) as ledger:
        anchor = witness_anchor(witness, timeout=0.5)
        svc = AnchorService(ledger, [anchor], interval_s=5, max_unanchored_age_s=300,
                            max_backoff_s=30, clock=lambda: now[0],
                            on_alarm=alarms.append)
        svc.tick()
        assert svc.unanchored_age_s() == 0
        append(ledger, 2)
        witness.signal(signal.SIGSTOP)  # the witness hangs: every request times out
        try:
            for t in (10, 100, 200, 300):
                now[0] = float(t)
                svc.tick()
            assert alarms == [] and svc.unanchored_age_s() == 290
            for t in (311, 350, 390):
                now[0] = float(t)
                svc.tick()
        finally:
            witness.signal(signal.SIGCONT)
        assert [a.kind for a in alarms] == [AlarmKind.UNANCHORED]
        assert "for 301 s (limit 300 s)" in alarms[0].message
        assert "timed out" in alarms[0].message
        now[0] = 430.0
        svc.tick()
        assert not svc.alarm_active and svc.unanchored_age_s() == 0
        assert len(alarms) == 1
        actions = [(e.category, e.action, e.severity)
                   for e in ledger.storage.entries(0, ledger.size)]
        assert ("security", "anchor.stale", "warning") in actions
        assert actions[-1] == ("security", "anchor.resumed", "info")
        assert svc.status[anchor.name].anchored_size == ledger.size - 1


# -- malformed requests ------------------------------------------------------------------------


def raw_exchange(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_requests_get_a_reason_and_never_crash_the_witness(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    host_port = witness.url.removeprefix("http://")

    def post(path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection(host_port, timeout=10)
        try:
            conn.request("POST", path, body, headers or {})
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()

    assert post("/add-checkpoint", b"garbage") == (
        400, "line 1: missing the old size line (every line must end with a newline)\n")
    assert post("/add-checkpoint", b"old 1\nnot-a-hash\n\n")[0] == 400
    assert post("/add-checkpoint", os.urandom(2000))[0] == 400
    status, text = post("/add-checkpoint", b"old 0\n\n" + b"x" * 300_000)
    assert status == 413 and "over the limit" in text
    assert post("/elsewhere", b"old 0\n\n") == (404, "no such endpoint: POST /elsewhere\n")
    reply = raw_exchange(witness.url, b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400") and b"missing or invalid Content-Length" in reply
    reply = raw_exchange(witness.url, b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400") and b"chunked" in reply
    reply = raw_exchange(witness.url, b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: 99999999999\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413")
    for junk in (b"\x00\x01 nonsense\r\n\r\n", b"\xff GET / HTTP/9\r\n\r\n"):
        reply = raw_exchange(witness.url, junk)
        assert b"400" in reply and b"Bad request" in reply, reply
    assert raw_exchange(witness.url, b"\r\n" * 3) == b""  # an empty request: hung up on
    assert raw_exchange(witness.url, b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 501")
    with socket.create_connection(tuple(host_port.split(":")), timeout=10):  # type: ignore[arg-type]
        pass  # connect and hang up
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(witness.url + "/checkpoint/nobody", timeout=10)
    with err.value:
        assert err.value.code == 404
    # Still serving: an honest checkpoint is cosigned.
    assert witness.alive()
    with open_ledger(tmp_path / "db.duckdb", key) as ledger:
        assert witness_anchor(witness).submit(*newest(ledger)).size == ledger.size


def test_a_witness_that_does_not_know_the_log_or_its_key_refuses(
        tmp_path: Path, witness: WitnessProcess) -> None:
    stranger = SigningKey.generate("example.org/stranger")
    note = sign_checkpoint(Checkpoint(stranger.name, 1, bytes(32)), stranger.signer())
    with pytest.raises(AnchorError, match=r"404 the witness does not know this log: unknown "
                                          r"log origin 'example.org/stranger'"):
        witness_anchor(witness).publish(note, Checkpoint(stranger.name, 1, bytes(32)),
                                        lambda old: [])
    impostor = SigningKey.generate(ORIGIN)
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, bytes(32)), impostor.signer())
    with pytest.raises(AnchorError, match="403 no signature the witness trusts"):
        witness_anchor(witness).publish(note, Checkpoint(ORIGIN, 1, bytes(32)), lambda old: [])


def test_a_wrong_witness_key_fails_the_cosignature_check(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    other = SigningKey.generate("monitoring.local/witness").cosignature_verifier().vkey()
    with open_ledger(tmp_path / "db.duckdb", key) as ledger, \
            pytest.raises(AnchorError, match="no valid cosignature of the checkpoint"):
        WitnessAnchor(witness.url, other).publish(*newest(ledger))


def test_an_unreachable_witness_is_a_plain_anchor_error(tmp_path: Path, key: SigningKey,
                                                        witness: WitnessProcess) -> None:
    url = witness.url
    witness.stop()
    anchor = WitnessAnchor(url, witness.vkey, timeout=2)
    with open_ledger(tmp_path / "db.duckdb", key) as ledger:
        with pytest.raises(AnchorError, match="unreachable") as err:
            anchor.publish(*newest(ledger))
        assert not isinstance(err.value, AnchorConflict)
    assert anchor.latest() is None and anchor.origins() == []


# -- the CLI -------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitoring", "audit", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_anchor_command_publishes_then_reports_a_rollback(
        tmp_path: Path, key: SigningKey, witness: WitnessProcess) -> None:
    db = tmp_path / "db.duckdb"
    write_key_file(tmp_path / "key", key)
    write_secret_file(tmp_path / "kek", base64.b64encode(KEK))
    with open_ledger(db, key) as ledger:
        append(ledger, 4)
    backup(db, tmp_path / "old")
    common = ["--db", str(db), "--key", str(tmp_path / "key"), "--kek", str(tmp_path / "kek")]
    targets = ["--to-folder", str(tmp_path / "anchor"), "--witness", witness.url,
               "--witness-vkey", witness.vkey]
    with open_ledger(db, key) as ledger:
        append(ledger, 9)
        size = ledger.size
    out = run_cli("anchor", *common, *targets)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"folder {tmp_path / 'anchor'}: holds size {size} of {ORIGIN}")
    assert lines[1].startswith(f"witness {witness.url}: cosigned size {size} of {ORIGIN} at ")
    assert lines[1].endswith("(it held size 0)")
    restore(db, tmp_path / "old")
    out = run_cli("anchor", *common, *targets)
    assert out.returncode == 1
    errors = out.stderr.splitlines()
    assert len(errors) == 2 and all(line.startswith("monitoring audit: error: ROLLBACK: ")
                                    for line in errors), out.stderr
    assert run_cli("anchor", *common).returncode == 2
    out = run_cli("anchor", *common, "--witness", witness.url, "--witness-vkey", "junk")
    assert out.returncode == 2 and "malformed verifier key 'junk'" in out.stderr
    assert run_cli("witness", "serve", "--state", str(tmp_path / "w2")).returncode == 2


def test_the_witness_refuses_a_malformed_log_option(tmp_path: Path) -> None:
    out = run_cli("witness", "serve", "--state", str(tmp_path / "w"), "--log", "a=b")
    assert out.returncode == 2
    assert "--log a=b: malformed verifier key 'b'" in out.stderr
    assert "Traceback" not in out.stderr
