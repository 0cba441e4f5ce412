"""System metrics of the machine the engine runs on (psutil), for the embedded default.

Why: ``monitoring serve`` without a Prometheus should still have something to
alert on, and the shipped rules in ``rules/`` read ``cpu_usage_ratio``,
``memory_usage_ratio`` and ``disk_used_ratio``: those three are emitted with
exactly the meaning the rules give them (a 0-1 share, per ``instance``), so
``CpuSaturated``, ``Degraded``, ``NodeOverloaded`` and the disk forecasts run
on this machine. Everything else uses node_exporter's names and meanings
(``node_cpu_seconds_total``, ``node_disk_read_bytes_total``...), so rules
written for node_exporter work unchanged. Every series carries
``instance`` = the host name (or the name given). docs/live.md, section
"Collection", lists every name.

Counters are psutil's counters since boot (a reboot is a counter reset, which
``rate()`` handles). ``cpu_usage_ratio`` is the busy share of all CPUs since the
previous :meth:`SystemCollector.collect` (since boot on a first call made
before any CPU time has passed).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable
from typing import Protocol

import psutil  # type: ignore[import-untyped, unused-ignore]  # stubs: types-psutil

Sample = tuple[dict[str, str], int, float]

DISK_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
"""Block devices left out of disk I/O: node_exporter's default (partitions, loop, ram)."""
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
"""``node_cpu_seconds_total`` modes (psutil's ``guest`` time is already inside ``user``)."""
IDLE_MODES = ("idle", "iowait")

DISK_COUNTERS = (
    ("node_disk_reads_completed_total", "read_count", 1.0),
    ("node_disk_writes_completed_total", "write_count", 1.0),
    ("node_disk_read_bytes_total", "read_bytes", 1.0),
    ("node_disk_written_bytes_total", "write_bytes", 1.0),
    ("node_disk_read_time_seconds_total", "read_time", 0.001),
    ("node_disk_write_time_seconds_total", "write_time", 0.001),
    ("node_disk_io_time_seconds_total", "busy_time", 0.001),
)
"""(metric, psutil field, factor): per-device disk I/O counters."""
NET_COUNTERS = (
    ("node_network_receive_bytes_total", "bytes_recv"),
    ("node_network_transmit_bytes_total", "bytes_sent"),
    ("node_network_receive_packets_total", "packets_recv"),
    ("node_network_transmit_packets_total", "packets_sent"),
    ("node_network_receive_errs_total", "errin"),
    ("node_network_transmit_errs_total", "errout"),
    ("node_network_receive_drop_total", "dropin"),
    ("node_network_transmit_drop_total", "dropout"),
)
"""(metric, psutil field): per-interface network counters."""


class _Add(Protocol):
    """``collect``'s sample adder: one sample of ``name`` with extra labels."""

    def __call__(self, name: str, value: float, **labels: str) -> None: ...


def _cpu_total(times: object) -> float:
    return sum(float(getattr(times, m, 0.0)) for m in CPU_MODES)


class SystemCollector:
    """Collects one sample of every system series per :meth:`collect` call."""

    def __init__(self, instance: str | None = None, *, disk_exclude: str = DISK_EXCLUDE) -> None:
        self.instance = instance or socket.gethostname()
        self._disk_exclude = re.compile(disk_exclude)
        self._cpu_prev = psutil.cpu_times()

    def collect(self, now_ms: int) -> list[Sample]:
        """Every series' current value, stamped ``now_ms``."""
        out: list[Sample] = []

        def add(name: str, value: float, **labels: str) -> None:
            out.append(({"__name__": name, "instance": self.instance, **labels}, now_ms,
                        float(value)))

        self._cpu(add)
        self._memory(add)
        self._disks(add)
        self._filesystems(add)
        self._network(add)
        return out

    # ------------------------------------------------------------ parts

    def _cpu(self, add: _Add) -> None:
        now = psutil.cpu_times()
        prev, self._cpu_prev = self._cpu_prev, now
        total = _cpu_total(now) - _cpu_total(prev)
        idle = sum(float(getattr(now, m)) - float(getattr(prev, m)) for m in IDLE_MODES)
        if total <= 0:  # no CPU time passed since the previous call: the average since boot
            total = _cpu_total(now)
            idle = sum(float(getattr(now, m)) for m in IDLE_MODES)
        add("cpu_usage_ratio", min(max(1.0 - idle / total, 0.0), 1.0) if total > 0 else 0.0)
        for cpu, times in enumerate(psutil.cpu_times(percpu=True)):
            for mode in CPU_MODES:
                add("node_cpu_seconds_total", float(getattr(times, mode, 0.0)),
                    cpu=str(cpu), mode=mode)
        for minutes, load in zip((1, 5, 15), os.getloadavg(), strict=True):
            add(f"node_load{minutes}", load)

    def _memory(self, add: _Add) -> None:
        mem = psutil.virtual_memory()
        add("memory_usage_ratio", (mem.total - mem.available) / mem.total if mem.total else 0.0)
        add("node_memory_MemTotal_bytes", mem.total)
        add("node_memory_MemAvailable_bytes", mem.available)
        swap = psutil.swap_memory()
        add("node_memory_SwapTotal_bytes", swap.total)
        add("node_memory_SwapFree_bytes", swap.free)

    def _disks(self, add: _Add) -> None:
        for device, io in sorted((psutil.disk_io_counters(perdisk=True) or {}).items()):
            if self._disk_exclude.match(device):
                continue
            for name, field, factor in DISK_COUNTERS:
                if hasattr(io, field):
                    add(name, getattr(io, field) * factor, device=device)

    def _filesystems(self, add: _Add) -> None:
        seen: set[str] = set()
        for part in psutil.disk_partitions(all=False):
            if part.mountpoint in seen:
                continue
            seen.add(part.mountpoint)
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:  # unmounted meanwhile, or not readable by this user
                continue
            labels = {"device": part.device, "fstype": part.fstype,
                      "mountpoint": part.mountpoint}
            add("node_filesystem_size_bytes", usage.total, **labels)
            add("node_filesystem_avail_bytes", usage.free, **labels)
            capacity = usage.used + usage.free  # what df shows: reserved blocks left out
            add("disk_used_ratio", usage.used / capacity if capacity else 0.0,
                mountpoint=part.mountpoint)

    def _network(self, add: _Add) -> None:
        for nic, io in sorted(psutil.net_io_counters(pernic=True).items()):
            for name, field in NET_COUNTERS:
                add(name, getattr(io, field), device=nic)


def metric_names() -> Iterable[str]:
    """Every metric name the collector can emit (documentation and tests)."""
    yield from ("cpu_usage_ratio", "node_cpu_seconds_total", "node_load1", "node_load5",
                "node_load15", "memory_usage_ratio", "node_memory_MemTotal_bytes",
                "node_memory_MemAvailable_bytes", "node_memory_SwapTotal_bytes",
                "node_memory_SwapFree_bytes")
    yield from (name for name, _, _ in DISK_COUNTERS)
    yield from ("node_filesystem_size_bytes", "node_filesystem_avail_bytes", "disk_used_ratio")
    yield from (name for name, _ in NET_COUNTERS)
