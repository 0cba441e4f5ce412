"""A real Prometheus server for tests and benchmarks: start on a free port, stop by PID.

Data is loaded the way an operator would backfill: our store is exported to
OpenMetrics, ``promtool tsdb create-blocks-from openmetrics`` turns it into TSDB
blocks inside a temporary storage folder, and Prometheus is started on that
folder listening on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from monitoring.engine.export import export_openmetrics
from monitoring.engine.store import Store
from tests.support.processes import Service, stop_process_group, wait_ready


class PeerMissing(RuntimeError):
    """Prometheus or promtool is not installed."""


def require(binary: str) -> str:
    """The path of a binary, or an error naming the Debian package to install."""
    path = shutil.which(binary)
    if path is None:
        raise PeerMissing(f"{binary} not found: install the Debian package 'prometheus'")
    return path


def peer(find: Callable[[], str]) -> str:
    """``find()``'s binary; without it the test is skipped, or fails under ``CI=true``."""
    try:
        return find()
    except PeerMissing as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{e}; required under CI")
        pytest.skip(str(e))


def peer_binary(name: str) -> str:
    """The peer binary ``name`` (prometheus, promtool), as :func:`peer` finds it."""
    return peer(lambda: require(name))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def create_blocks(openmetrics: Path, storage: Path, max_block_duration: str | None = None
                  ) -> None:
    """Backfill TSDB blocks from an OpenMetrics file with promtool.

    ``max_block_duration`` (e.g. ``"162h"``) lets promtool write blocks longer than
    its default 2h, as a long-running server would have compacted them; start the
    server with the same ``--storage.tsdb.max-block-duration`` so that it does not
    compact them again in the background.
    """
    promtool = require("promtool")
    storage.mkdir(parents=True, exist_ok=True)
    extra = [f"--max-block-duration={max_block_duration}"] if max_block_duration else []
    result = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                             *extra, str(openmetrics), str(storage)], capture_output=True,
                            text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from failed: {result.stderr[-2000:]}")


@contextmanager
def serving(store: Store, root: Path) -> Iterator[PrometheusServer]:
    """A Prometheus serving ``store``'s samples (OpenMetrics export, promtool blocks in ``root``).

    The peer binaries are required as :func:`peer_binary` requires them.
    """
    peer_binary("prometheus")
    peer_binary("promtool")
    om = root / "history.om"
    with om.open("w", encoding="utf-8") as f:
        export_openmetrics(store, f)
    storage = root / "tsdb"
    create_blocks(om, storage)
    with PrometheusServer(storage) as server:
        yield server


@dataclass
class PrometheusServer(Service):
    """A running Prometheus; use as a context manager."""

    storage: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    flags: tuple[str, ...] = ()
    """Extra command-line flags, after the defaults (a repeated flag: the last one wins)."""
    self_scrape_s: float | None = None
    """Scrape itself at this interval (seconds), as job ``prometheus``; default: no scraping."""
    _log: BinaryIO | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it answers /-/ready."""
        binary = require("prometheus")
        self.port = self.port or free_port()
        config = self.storage / "prometheus.yml"
        text = "global:\n  scrape_interval: 1h\n  evaluation_interval: 1h\n"
        if self.self_scrape_s is not None:
            text += ("scrape_configs:\n  - job_name: prometheus\n"
                     f"    scrape_interval: {self.self_scrape_s:g}s\n"
                     f"    static_configs:\n      - targets: ['127.0.0.1:{self.port}']\n")
        config.write_text(text)
        self._log = log = open(self.storage / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.storage}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=100y", "--query.max-samples=500000000",
             "--query.timeout=10m", "--log.level=warn", *self.flags],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        problem = wait_ready(self.process, f"{self.url}/-/ready", timeout)
        if problem:
            self.stop()
            raise RuntimeError(f"prometheus {problem}: "
                               + (self.storage / "prometheus.log").read_text()[-2000:])

    def stop(self) -> None:
        """Stop the server by its PID (and its process group)."""
        proc = self.process
        try:
            if proc is not None:
                stop_process_group(proc)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float) -> Any:
        """``/api/v1/query_range``; returns the decoded ``data`` or raises with the error."""
        params = urllib.parse.urlencode({"query": expr, "start": f"{start_s:.3f}",
                                         "end": f"{end_s:.3f}", "step": f"{step_s:g}"})
        return self._get(f"/api/v1/query_range?{params}")

    def query(self, expr: str, time_s: float) -> Any:
        """``/api/v1/query`` (an instant query)."""
        params = urllib.parse.urlencode({"query": expr, "time": f"{time_s:.3f}"})
        return self._get(f"/api/v1/query?{params}")

    def _get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.url + path, timeout=600) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
        if body.get("status") != "success":
            raise PrometheusError(body.get("error", "unknown error"))
        return body["data"]

    def peak_rss_mib(self) -> float:
        """Peak resident memory of the server so far (VmHWM)."""
        if self.process is None:
            return 0.0
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


class PrometheusError(RuntimeError):
    """A query Prometheus refused or failed."""
