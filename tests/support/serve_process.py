"""``monitoring serve`` as a subprocess for end-to-end tests, and the ledger rows it left.

:class:`ServeProcess` starts ``python -m monitoring serve ... --port 0`` in its
own process group (so a test can SIGKILL it), reads the URL from its first line of output and
keeps the rest. The signing key and the key-encryption key go to a private
``XDG_CONFIG_HOME`` under the test's folder, never the user's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from tests.support.processes import Service, stop_process_group

REPO = Path(__file__).resolve().parents[2]
URL_LINE = re.compile(r"monitoring: serving (http://\S+)")
T = TypeVar("T")


def engine_env(home: Path) -> dict[str, str]:
    """The environment of a test engine: the repo importable, keys under ``home``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_CONFIG_HOME"] = str(home / "xdg")
    env.pop("MONITORING_AUDIT_KEY", None)
    env.pop("MONITORING_AUDIT_KEY_FILE", None)
    return env


def monitoring(args: Sequence[str], home: Path, *, cwd: Path | None = None,
               timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run a ``monitoring`` command to completion."""
    return subprocess.run([sys.executable, "-m", "monitoring", *args],
                          cwd=cwd or home, env=engine_env(home), capture_output=True,
                          text=True, timeout=timeout, check=False)


def audit_verify(db: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """``monitoring audit verify --full --db DB``."""
    return subprocess.run([sys.executable, "-m", "monitoring", "audit", "verify", "--full",
                           "--no-progress", "--db", str(db)], cwd=home, env=engine_env(home),
                          capture_output=True, text=True, timeout=120, check=False)


class ServeProcess(Service):
    """A running ``monitoring serve``; use as a context manager (stopped on exit)."""

    def __init__(self, home: Path, args: Sequence[str], *, cwd: Path | None = None) -> None:
        self.home = home
        self.args = list(args)
        self.cwd = cwd or home
        self.lines: list[str] = []
        self.url = ""
        self.stderr_path = home / f"serve-{time.monotonic_ns()}.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 120.0) -> None:
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitoring", "serve", *self.args,
                 "--port", "0"],
                cwd=self.cwd, env=engine_env(self.home), stdout=subprocess.PIPE, stderr=err,
                start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or not self.url:
            self.kill()
            self.stop()
            raise AssertionError(f"monitoring serve did not start; stderr:\n{self.stderr()}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            found = URL_LINE.search(line)
            if found and not self.url:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the exit code of a graceful stop."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        """Stop the process group if it runs; close the output pipe."""
        if self.proc is not None:
            stop_process_group(self.proc)
            if self._reader is not None:
                self._reader.join(30)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def wait_until(check: Callable[[], T | None], timeout: float, what: str,
               interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy (hang protection: ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def ledger_events(db: Path) -> list[dict[str, Any]]:
    """Every ledger envelope of a closed store, in order (clear-text fields)."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        rows = conn.execute("SELECT envelope FROM audit_entries ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [json.loads(bytes(r[0])) for r in rows]


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of a closed store."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return conn.execute(sql, list(params)).fetchall()
    finally:
        conn.close()
