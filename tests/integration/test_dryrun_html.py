"""The HTML dry-run report, opened in a real headless Chromium (Playwright).

The report is built end to end: a demo store (monitoring.demo), a small rule
set with a hostile rule name and label value, the dry-run engine, then
``monitoring.dryrun.html.render``. The browser checks what a reader sees: no
console or page errors, every rule's section and every plot visible, one
shaded firing span per firing interval, and ``<script>`` in a label shown as
text (no script element in the page at all).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitoring.demo import write_demo
from monitoring.dryrun.engine import run_dry_run
from monitoring.dryrun.html import guess_unit, render
from monitoring.dryrun.report import DryRunReport
from monitoring.engine.store import Store

CHROMIUM = "/usr/bin/chromium"
HOSTILE = "<script>alert(1)</script>"
RULES = """
group demo every 1m {
  alert "Hot<script>Rack" {
    when temperature_celsius > 24
    for 5m
    severity warning
    notify console
    summary "{{ $labels.sensor }} is hot"
    labels {
      note = "<script>alert(1)</script>"
    }
  }

  alert QueueBacklog {
    when queue_depth > 1000
    keep_firing_for 5m
    severity info
    notify console
    summary "queue {{ $labels.queue }} is backed up"
  }

  alert DiskTrend {
    when trend(disk_used_ratio[6h]) == increasing
    severity info
    notify console
    summary "disk grows"
  }

  alert NeedsInfo {
    when info(disk_used_ratio) > 0.9
    severity info
    notify console
    summary "no evaluator runs info()"
  }

  record queue:depth:max = max(queue_depth)
}
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> DryRunReport:
    root = tmp_path_factory.mktemp("html")
    (root / "demo.rules").write_text(RULES)
    db = root / "demo.duckdb"
    with Store(db) as store:
        write_demo(store, days=2, seed=3, only=["temperature_celsius", "queue_depth",
                                                "disk_used_ratio"])
    return run_dry_run([str(root / "demo.rules")], str(db))


@pytest.fixture(scope="module")
def page_file(report: DryRunReport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("page") / "report.html"
    path.write_text(render(report), encoding="utf-8")
    return path


def test_report_has_what_the_browser_test_needs(report: DryRunReport) -> None:
    # Guards the premises of the checks below: several intervals, pending spans, a skipped rule.
    by_name = {r.name: r for r in report.rules}
    hot = by_name["Hot<script>Rack"]
    assert hot.status == "ok" and len(hot.intervals) >= 2
    assert any(iv.active_ms < iv.start_ms for iv in hot.intervals)  # for 5m: pending spans
    assert all(iv.labels["note"] == HOSTILE for iv in hot.intervals)
    assert by_name["QueueBacklog"].intervals
    assert by_name["DiskTrend"].status == "ok"
    assert by_name["NeedsInfo"].status == "not_evaluated"


def test_page_is_self_contained_and_escaped(page_file: Path) -> None:
    text = page_file.read_text(encoding="utf-8")
    assert HOSTILE not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()
    # Nothing is fetched at view time: no external stylesheet, image, font or script.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<link" not in text and "@import" not in text and "url(http" not in text


def test_guess_unit() -> None:
    units = {"error_rate": "percent"}
    assert guess_unit('avg_over_time(error_rate{job="api"}[5m])', units) == "percent"
    assert guess_unit("histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m])))",
                      {}) == "seconds"
    assert guess_unit("job:http_errors:ratio5m", {}) is None
    assert guess_unit("cpu_usage_ratio", {}) == "ratio"
    assert guess_unit("sum(rate(http_requests_total[5m]))", {}) == "per second"
    assert guess_unit("queue_depth", {}) is None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (apt-get install chromium); required under CI")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is not installed (pip install -e '.[dev]'); required under CI")
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists()
                              else shutil.which("chromium"))
        try:
            yield b
        finally:
            b.close()


def test_page_in_chromium(browser: object, page_file: Path, report: DryRunReport) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")

    assert problems == []
    assert requests == [page_file.as_uri()]  # nothing else was fetched
    assert page.evaluate("document.querySelectorAll('script').length") == 0

    sections = page.locator("section.rule")
    assert sections.count() == len(report.rules)
    for n, rule in enumerate(report.rules, start=1):
        section = page.locator(f"#rule-{n}")
        section.scroll_into_view_if_needed()
        assert section.is_visible(), rule.key
        assert section.get_attribute("data-rule") == rule.key
        plots = section.locator("svg.plot")
        if rule.kind == "alert" and rule.status == "ok":
            assert plots.count() == 1, rule.key
            assert plots.first.is_visible(), rule.key
            box = plots.first.bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 150
            firing = section.locator(f'svg.plot g[id^="rule-{n}-firing-"]')
            assert firing.count() == len(rule.intervals), rule.key
            assert section.locator("table.alerts tr").count() == len(rule.intervals) + 1
            pending = section.locator(f'svg.plot g[id^="rule-{n}-pending-"]')
            assert pending.count() == sum(iv.active_ms < iv.start_ms for iv in rule.intervals)
            assert section.locator("svg.plot text", has_text="time (UTC)").count() == 1
        elif rule.status != "ok":
            assert plots.count() == 0
            assert section.get_by_text("Not evaluated").is_visible()
            assert rule.reason is not None
            assert rule.reason in section.inner_text()

    # The hostile rule name and label value are shown as text, verbatim.
    hot = page.locator('section[data-rule="demo/Hot<script>Rack"]')
    assert hot.locator("h2").inner_text().startswith("Hot<script>Rack")
    assert HOSTILE in hot.locator("table.alerts").inner_text()
    page.close()


def test_render_model_edge_cases() -> None:
    # Built directly: a rule still firing at the end (for 0: no pending span), a NaN peak,
    # a rule without data, and a recording rule.
    from monitoring.dryrun.report import Interval, PlotSeries, RulePlot, RuleReport, RunInfo

    start, step = 1_767_225_600_000, 60_000
    times = tuple(start + k * step for k in range(10))
    plot = RulePlot("x", times, (PlotSeries({"a": "1"}, (0.0,) * 9 + (float("nan"),), True),),
                    None, None, 1, step)
    still = Interval({"a": "1"}, start + 5 * step, start + 5 * step, None, 4 * step, float("nan"))
    report = DryRunReport(RunInfo(("r.rules",), "s.duckdb", start, times[-1]), [
        RuleReport("A", "g", "r.rules", "alert", "x", step, intervals=[still], firings=1,
                   plot=plot),
        RuleReport("B", "g", "r.rules", "alert", "y > 1", step, status="no_data",
                   reason="no series of y in the range"),
        RuleReport("c:d", "g", "r.rules", "record", "sum(x)", step, series=3),
    ])
    text = render(report, units={})
    assert text.count('<section class="rule"') == 3
    assert text.count('id="rule-1-firing-0"') == 1 and "rule-1-pending-" not in text
    assert "still firing" in text
    assert "No data</strong>:\nno series of y in the range" in text
    assert "3 series\nrecorded" in text
    assert text.count("<svg") == 1
