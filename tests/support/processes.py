"""Stopping the services tests start: by PID, with their whole process group."""

from __future__ import annotations

import os
import signal
import subprocess


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
