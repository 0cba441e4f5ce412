"""Reporting test results: promtool's terminal text, and JUnit XML.

The text is promtool's (``Unit Testing:  FILE``, then ``SUCCESS`` or
``FAILED:`` and the failure messages), plus an ``UNSUPPORTED:`` block for
groups we could not check (never counted as passed or failed) and a summary
line. The JUnit XML has one ``<testsuite>`` per file and one ``<testcase>`` per
test group, with ``<failure>``, ``<skipped>`` (unsupported) and, for a file
that could not run, one ``<error>`` case.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TextIO

from monitoring.dsl.render import render_text
from monitoring.ruletest.runner import FileResult


def write_text(results: Sequence[FileResult], out: TextIO, err: TextIO,
               colour: bool = False) -> None:
    """Promtool's output: successes on ``out``, failure details on ``err``."""
    for r in results:
        out.write(f"Unit Testing:  {r.path}\n")
        for w in r.warnings:
            err.write(f"  WARNING: {w}\n")
        if r.failed:
            err.write("  FAILED:\n")
            if r.diagnostics:
                for d in r.diagnostics:
                    err.write(render_text(d, colour) + "\n\n")
            else:
                for e in r.errors:
                    err.write(e + "\n\n")
            for g in r.groups:
                for f in g.failures:
                    err.write(f + "\n\n")
        elif r.unsupported:
            out.write("  UNSUPPORTED (not passed, not failed):\n")
        else:
            out.write("  SUCCESS\n")
        for g in r.groups:
            for u in g.unsupported:
                out.write(f"    {g.name}: {u.strip()}\n")
        out.write("\n")
    out.write(summary(results) + "\n")


def summary(results: Sequence[FileResult]) -> str:
    """``3 files, 9 test groups: 8 passed, 1 failed, 0 unsupported``."""
    groups = [g for r in results for g in r.groups]
    counts = {s: sum(1 for g in groups if g.status == s)
              for s in ("passed", "failed", "unsupported")}
    broken = sum(1 for r in results if r.errors)
    text = (f"{len(results)} file{'s' if len(results) != 1 else ''}, {len(groups)} test "
            f"group{'s' if len(groups) != 1 else ''}: {counts['passed']} passed, "
            f"{counts['failed']} failed, {counts['unsupported']} unsupported")
    if broken:
        text += f"; {broken} file{'s' if broken != 1 else ''} could not run"
    return text


def junit_xml(results: Sequence[FileResult], now: dt.datetime | None = None) -> str:
    """The results as JUnit XML (``<testsuites>``)."""
    stamp = (now or dt.datetime.now()).strftime("%Y-%m-%dT%H:%M:%S")
    root = ET.Element("testsuites")
    for r in results:
        suite = ET.SubElement(root, "testsuite", name=r.path, timestamp=stamp)
        failures = errors = skipped = 0
        if r.errors:
            errors += 1
            case = ET.SubElement(suite, "testcase", name="(load)", classname=r.path)
            ET.SubElement(case, "error", message=r.errors[0]).text = "\n".join(r.errors)
        for g in r.groups:
            case = ET.SubElement(suite, "testcase", name=g.name, classname=r.path,
                                 time=f"{g.seconds:.3f}")
            if g.failures:
                failures += 1
                first = g.failures[0].strip().splitlines()[0]
                ET.SubElement(case, "failure", message=first).text = "\n\n".join(g.failures)
            elif g.unsupported:
                skipped += 1
                ET.SubElement(case, "skipped", message=g.unsupported[0].strip())
        total = len(r.groups) + (1 if r.errors else 0)
        suite.set("tests", str(total))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
        suite.set("skipped", str(skipped))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
