"""Stopping the services tests start: by PID, with their whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from typing import Self


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop ``proc`` (started with ``start_new_session=True``) and its children, if running.

    SIGCONT first, so that a group a test paused with SIGSTOP can act on SIGTERM; SIGKILL if
    it has not exited within ``timeout`` seconds.
    """
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGCONT)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def wait_ready(proc: subprocess.Popen[bytes], ready_url: str, timeout: float) -> str:
    """Poll ``ready_url`` until it answers 200: "" then, else what went wrong.

    "exited" when the process ended first, "did not become ready" after ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited"
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as r:
                if r.status == 200:
                    return ""
        except OSError:
            pass
        time.sleep(0.2)
    return "did not become ready"


class Service:
    """A service a test starts and stops, also as ``with service: ...``."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
