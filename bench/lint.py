"""Benchmark: `monitoring lint` against `promtool check rules` on the same rules.

Generates rule sets of 1k, 10k and 100k rules that mix the constructs of the
language (bench/gen_rules.py), writes each as a DSL file and as a Prometheus
rule file, and times, in the same run and pinned to the same single core:

  * `monitoring lint` on the DSL file,
  * `monitoring lint` on the Prometheus file,
  * `promtool check rules` (Debian package `prometheus`) on the Prometheus file.

Each measurement is the median of several runs of a fresh process; peak memory is
the child's maximum resident set size. Prints rules/s, the ratio against
promtool, and how cost grows with the number of rules.

Usage: python bench/lint.py [--sizes 1000,10000,100000] [--repeat 3] [--cpu 0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gen_rules import generate, to_dsl, to_prometheus


def measure(cmd: list[str], expect: set[int]) -> tuple[float, int]:
    """Wall time (s) and peak RSS (MiB) of one run of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in expect:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} exited with {code}:\n{err}")
    return elapsed, usage.ru_maxrss // 1024


def median_run(cmd: list[str], repeat: int, expect: set[int]) -> tuple[float, int]:
    runs = [measure(cmd, expect) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), max(m for _, m in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=0, help="core to pin every process to")
    args = parser.parse_args()
    promtool = shutil.which("promtool")
    if promtool is None:
        raise SystemExit("promtool not found: apt-get install prometheus")
    version = subprocess.run([promtool, "--version"], capture_output=True, text=True)
    pin = ["taskset", "-c", str(args.cpu)] if shutil.which("taskset") else []
    ours = [*pin, sys.executable, "-m", "monitoring", "lint", "--quiet", "--min-severity", "error"]
    print(f"peer: {version.stdout.splitlines()[0] if version.stdout else 'promtool'}")
    print(f"pinned to core {args.cpu}" if pin else "not pinned (taskset missing)")
    print(f"median of {args.repeat} runs, each a fresh process\n")
    header = (f"{'rules':>7}  {'ours DSL s':>10} {'rules/s':>8} {'MiB':>5}  "
              f"{'ours YAML s':>11} {'rules/s':>8} {'MiB':>5}  "
              f"{'promtool s':>10} {'rules/s':>8} {'MiB':>5}  {'ratio DSL':>9} {'ratio YAML':>10}")
    print(header)
    print("-" * len(header))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            groups = list(generate(n))
            dsl = Path(tmp) / f"bench{n}.rules"
            prom = Path(tmp) / f"bench{n}.yml"
            dsl.write_text(to_dsl(groups), "utf-8")
            prom.write_text(to_prometheus(groups), "utf-8")
            t_dsl, m_dsl = median_run([*ours, str(dsl)], args.repeat, {0})
            t_yaml, m_yaml = median_run([*ours, str(prom)], args.repeat, {0})
            t_prom, m_prom = median_run([*pin, promtool, "check", "rules", str(prom)],
                                        args.repeat, {0})
            rows.append((n, t_dsl, t_yaml, t_prom))
            print(f"{n:>7}  {t_dsl:>10.2f} {n / t_dsl:>8.0f} {m_dsl:>5}  "
                  f"{t_yaml:>11.2f} {n / t_yaml:>8.0f} {m_yaml:>5}  "
                  f"{t_prom:>10.2f} {n / t_prom:>8.0f} {m_prom:>5}  "
                  f"{t_prom / t_dsl:>8.2f}x {t_prom / t_yaml:>9.2f}x")
    if len(rows) > 1:
        print("\ngrowth (time per rule relative to the smallest size; 1.00 = linear):")
        base = {k: rows[0][k] / rows[0][0] for k in (1, 2, 3)}
        for row in rows:
            per = [row[k] / row[0] / base[k] for k in (1, 2, 3)]
            print(f"  {row[0]:>7} rules: ours DSL {per[0]:.2f}, ours YAML {per[1]:.2f}, "
                  f"promtool {per[2]:.2f}")
    print("\nratio = promtool time / our time (above 1: we are faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
