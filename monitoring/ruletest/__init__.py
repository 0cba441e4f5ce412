"""``monitoring test``: promtool-compatible unit tests for alerting and recording rules.

A test file (promtool's format, see ``docs/ruletest.md``) names rule files,
synthetic input series, and what some expressions should return and which
alerts should be firing at given times. The pieces:

    model      the parsed test file (plain dataclasses with source positions)
    parse      YAML -> model, strict, every error as ``file:line:col``
    durations  Prometheus's ``model.Duration`` (``0``, ``1d``, ``4m59s``) in and out
    histograms native histogram samples (``{{...}}``), kept opaque beside the float store
    ruleset    rule files (Prometheus YAML, our DSL, the seed's YAML) -> ordered groups
    runner     evaluates the groups step by step and checks the expectations
    compare    float/sample/alert comparison and promtool's failure wording
    report     terminal text in promtool's words, and JUnit XML
    coverage   which rules the tests exercised
    cli        ``monitoring test``
"""
