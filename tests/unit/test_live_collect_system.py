"""System metrics (monitoring.live.collect_system): names, labels and sane values from psutil."""

from __future__ import annotations

import math
import re
import socket
from collections import Counter
from pathlib import Path

from monitoring.dryrun.ruleset import load_rule_set, reads
from monitoring.live.collect_system import DISK_EXCLUDE, SystemCollector, metric_names

NOW = 1_767_225_600_000
RULES = str(Path(__file__).resolve().parents[2] / "rules")


def test_every_sample_is_stamped_labelled_and_sane() -> None:
    samples = SystemCollector().collect(NOW)
    names = Counter(labels["__name__"] for labels, _, _ in samples)
    for name in ("cpu_usage_ratio", "memory_usage_ratio", "node_load1",
                 "node_memory_MemTotal_bytes", "node_cpu_seconds_total",
                 "node_network_receive_bytes_total", "disk_used_ratio"):
        assert names[name] >= 1, name
    assert names["cpu_usage_ratio"] == names["memory_usage_ratio"] == 1
    assert set(names) <= set(metric_names())
    hostname = socket.gethostname()
    for labels, ts, value in samples:
        assert ts == NOW
        assert labels["instance"] == hostname
        assert math.isfinite(value) and value >= 0, (labels, value)
        if labels["__name__"].endswith("_ratio"):
            assert 0 <= value <= 1, (labels, value)


def test_series_are_unique_and_stable_between_collections() -> None:
    c = SystemCollector(instance="box-1")
    first = c.collect(NOW)
    second = c.collect(NOW + 15_000)
    keys = [tuple(sorted(labels.items())) for labels, _, _ in first]
    assert len(keys) == len(set(keys))
    assert {labels["instance"] for labels, _, _ in first} == {"box-1"}
    # Counters never go down between two collections a moment apart.
    before = {tuple(sorted(labels.items())): v for labels, _, v in first}
    for labels, ts, value in second:
        assert ts == NOW + 15_000
        key = tuple(sorted(labels.items()))
        if labels["__name__"].endswith("_total") and key in before:
            assert value >= before[key], labels


def test_cpu_modes_are_node_exporters() -> None:
    samples = SystemCollector().collect(NOW)
    modes = {labels["mode"] for labels, _, _ in samples
             if labels["__name__"] == "node_cpu_seconds_total"}
    assert modes == {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}
    cpus = {labels["cpu"] for labels, _, _ in samples
            if labels["__name__"] == "node_cpu_seconds_total"}
    assert cpus == {str(i) for i in range(len(cpus))}


def test_partitions_and_loop_devices_are_left_out_as_node_exporter_does() -> None:
    exclude = re.compile(DISK_EXCLUDE)
    for device in ("sda1", "vda2", "nvme0n1p1", "loop0", "ram3", "zram0"):
        assert exclude.match(device), device
    for device in ("sda", "vda", "nvme0n1", "dm-0", "md0"):
        assert not exclude.match(device), device


def test_the_shipped_rules_read_the_ratio_names() -> None:
    rule_set = load_rule_set([RULES])
    for name in ("cpu_usage_ratio", "memory_usage_ratio", "disk_used_ratio"):
        assert any(reads(r, name) for r in rule_set.rules), name
