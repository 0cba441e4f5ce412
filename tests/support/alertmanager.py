"""A real Alertmanager (the Debian package ``prometheus-alertmanager``) for tests.

Started on free 127.0.0.1 ports with clustering off (``--cluster.listen-address=``),
its own storage folder and a configuration whose only receiver is a webhook (a
:class:`~tests.support.loopback.LoopbackReceiver`), grouping by ``alertname`` with
``group_wait`` 0s and ``group_interval`` 1s so that what we post arrives at once.
Stopped by PID with its process group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tests.support.processes import Service, stop_process_group, wait_ready
from tests.support.prometheus import PeerMissing, free_port

BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")

CONFIG = """\
route:
  receiver: loopback
  group_by: [alertname]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: 1h
receivers:
  - name: loopback
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""


def require_alertmanager() -> str:
    """The Alertmanager binary, or PeerMissing naming the Debian package."""
    for name in BINARY_NAMES:
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}",
                                                                      os.X_OK) else None)
        if path:
            return path
    raise PeerMissing("prometheus-alertmanager not found: install the Debian package "
                      "'prometheus-alertmanager'")


@dataclass
class AlertmanagerServer(Service):
    """A running Alertmanager sending every notification to ``webhook_url``."""

    workdir: Path
    webhook_url: str
    group_wait: str = "0s"
    group_interval: str = "1s"
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _log: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_text(self) -> str:
        path = self.workdir / "alertmanager.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 60.0) -> None:
        """Write the config, start the server and wait until it answers ``/-/ready``."""
        binary = require_alertmanager()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.workdir / "alertmanager.yml"
        config.write_text(CONFIG.format(webhook_url=self.webhook_url,
                                        group_wait=self.group_wait,
                                        group_interval=self.group_interval))
        self._log = log = open(self.workdir / "alertmanager.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             f"--web.external-url={self.url}", "--log.level=info"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        problem = wait_ready(self.process, f"{self.url}/-/ready", timeout)
        if problem:
            self.stop()
            raise RuntimeError(f"alertmanager {problem}: {self.log_text[-2000:]}")

    def stop(self) -> None:
        """Stop the server by its PID (and its process group)."""
        try:
            if self.process is not None:
                stop_process_group(self.process)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
