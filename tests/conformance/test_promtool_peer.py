"""promtool's own rule unit-test files, run with `monitoring test` and with real promtool.

The files live next to the checkout (``../shared/peer/promtool``, copied
unmodified from Prometheus 3.14's ``cmd/promtool/testdata``; the README there
states each file's outcome). Our CLI must give those outcomes, failing for the
stated reasons.

The installed promtool is 2.42 (Debian). It is run on the same files where 2.42
supports the format: ``failing.yml`` and ``bad-rules-error-test.yml`` as they
are, and ``unittest.yml`` with its native-histogram parts removed (2.42 knows
no ``histogram:`` field); our messages must contain promtool's. 2.42 rejects
``start-time-test.yml`` (no ``start_timestamp``) and ``rules_run_fuzzy.yml``
(no ``fuzzy_compare``) as unknown fields, so those are compared with the
README only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).resolve().parents[2].parent / "shared" / "peer" / "promtool"


def _peer(name: str) -> Path:
    path = PEER / name
    if not path.is_file():
        message = f"the promtool test files are missing: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_promtool() -> str:
    """promtool's path; missing: skip, or fail under CI."""
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found: install the Debian package 'prometheus'"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def ours(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitoring", "test", "--color", "never",
                           *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def promtool(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_promtool(), "test", "rules", path.name], capture_output=True,
                          text=True, cwd=path.parent, timeout=600)


_STARTS = ("    name: ", "    alertname: ", "    expr: ", "    rule: ")


def failure_messages(stderr: str) -> list[str]:
    """promtool's failure messages: each starts with a 4-space ``name:``/``alertname:``/...."""
    messages: list[list[str]] = []
    previous = ""
    for line in stderr.splitlines():
        if not line.strip() or line.strip() == "FAILED:":
            continue
        if line.startswith(_STARTS) and not previous.startswith("    name: "):
            messages.append([])
        if messages:
            messages[-1].append(line)
        previous = line
    return ["\n".join(m) for m in messages]


def test_unittest_passes() -> None:
    res = ours(_peer("unittest.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout and "UNSUPPORTED" not in res.stdout
    assert "5 test groups: 5 passed, 0 failed, 0 unsupported" in res.stdout


def test_start_time_passes() -> None:
    res = ours(_peer("start-time-test.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 test groups: 4 passed" in res.stdout


def test_fuzzy_groups() -> None:
    path = _peer("rules_run_fuzzy.yml")
    good = ours(path, "--run", "correct fuzzy match")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "1 test group: 1 passed" in good.stdout
    bad = ours(path, "--run", "wrong fuzzy match")
    assert bad.returncode == 1
    assert 'expr: "test_low", time: 0s,' in bad.stderr
    assert "got: {__name__=\"test_low\"} 2.9999999999999987E+00" in bad.stderr
    assert "got: {__name__=\"test_high\"} 3.0000000000000013E+00" in bad.stderr
    both = ours(path)
    assert both.returncode == 1 and "1 passed, 1 failed" in both.stdout


def test_failing_fails_for_the_stated_reasons() -> None:
    path = _peer("failing.yml")
    res = ours(path)
    assert res.returncode == 1
    err = res.stderr
    # The wrong value: 0 where the test expects 1.
    assert ('expr: "test", time: 0s,\n        exp: {__name__="test"} 1E+00\n'
            '        got: {__name__="test"} 0E+00') in err
    # An alert expected that never fires.
    assert "alertname: Test, time: 0s, \n        exp:[\n            0:\n" in err
    assert "        got:[]" in err
    # Firing alerts the test says should not fire.
    assert "alertname: InstanceDown, time: 5m" in err
    assert "alertname: AlwaysFiring, time: 5m" in err
    assert 'Labels:{alertname="InstanceDown", job="test", severity="page"}' in err
    assert "2 test groups: 0 passed, 2 failed" in res.stdout
    # promtool 2.42 reads this file: each of its messages is ours too.
    real = promtool(path)
    assert real.returncode == 1
    for message in failure_messages(real.stderr):
        assert message in err, message


def test_bad_rules_error_fails_with_the_evaluation_error() -> None:
    path = _peer("bad-rules-error-test.yml")
    res = ours(path)
    assert res.returncode == 1
    assert "rule: joined, time: 0s, err: found duplicate series for the match group" in res.stderr
    assert "many-to-many matching not allowed" in res.stderr
    real = promtool(path)
    assert real.returncode == 1
    for message in failure_messages(real.stderr):
        assert _unordered_pair(message) in _unordered_pair(res.stderr), message


def _unordered_pair(text: str) -> str:
    """The two series of a many-to-many error in a fixed order (promtool's order varies)."""
    return re.sub(r"operation: \[(\{[^}]*\}), (\{[^}]*\})\]",
                  lambda m: "operation: [" + ", ".join(sorted(m.groups())) + "]", text)


def test_unittest_without_histograms_against_promtool_2(tmp_path: Path) -> None:
    """unittest.yml minus its native-histogram parts, with promtool 2.42 and with us.

    We pass, as promtool 3 does. promtool 2.42 fails exactly the four checks
    with a sample on the left edge of a window: Prometheus 2 selected ``[t-r, t]``
    (and looked back ``[t-5m, t]``), Prometheus 3 selects ``(t-r, t]``, so 2.42
    counts 61 samples where the file (written for 3.x) expects 60, and still
    sees ``test_missing`` exactly 5m after its last sample.
    """
    source = _peer("unittest.yml")
    data = yaml.safe_load(source.read_text())
    for group in data["tests"]:
        group["input_series"] = [s for s in group.get("input_series", [])
                                 if "{{" not in str(s["values"])]
        group["promql_expr_test"] = [t for t in group.get("promql_expr_test", [])
                                     if not any("histogram" in s for s in t["exp_samples"])]
    shutil.copy(_peer("rules.yml"), tmp_path / "rules.yml")
    path = tmp_path / "unittest.yml"
    path.write_text(yaml.safe_dump(data))
    res = ours(path)
    assert res.returncode == 0, res.stdout + res.stderr
    real = promtool(path)
    heads = [m.splitlines()[0] for m in failure_messages(real.stderr)]
    assert real.returncode == 1
    assert heads == ['    expr: "timestamp(test_missing)", time: 5m,',
                     '    expr: "count_over_time(fixed_data[1h])", time: 1h,',
                     '    expr: "job:test:count_over_time1m", time: 1m,',
                     '    expr: "job:test:count_over_time1m", time: 2m,'], real.stderr


def test_junit_for_the_peer_files(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    out = tmp_path / "junit.xml"
    res = ours(_peer("unittest.yml"), _peer("failing.yml"), "--junit", out)
    assert res.returncode == 1
    root = ET.parse(out).getroot()
    suites = root.findall("testsuite")
    assert [s.get("tests") for s in suites] == ["5", "2"]
    assert [s.get("failures") for s in suites] == ["0", "2"]
    assert len(suites[1].findall("testcase/failure")) == 2
