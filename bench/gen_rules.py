"""Generate large rule sets that mix every construct, as DSL and as Prometheus YAML.

The same rules are written in both formats so that our linter and promtool
check exactly the same work. Metric names and thresholds vary with the rule
index (no two rules are textually identical), and a fixed seed makes runs
repeatable.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One generated rule in a format-neutral form."""

    kind: str  # "alert" | "record"
    name: str
    expr: str
    for_: str | None
    labels: dict[str, str]
    annotations: dict[str, str]


def _templates(i: int, r: random.Random) -> list[str]:
    m = f"app{i % 997}"
    job = f"job{r.randrange(50)}"
    thr = round(r.uniform(0.01, 100), 2)
    return [
        f'sum by (job, instance) (rate({m}_requests_total{{job="{job}", code=~"5.."}}[5m]))'
        f" > {thr}",
        f"histogram_quantile(0.99, sum by (le, job) (rate({m}_duration_seconds_bucket[10m])))"
        f" > {thr}",
        f'avg_over_time({m}_queue_depth{{job="{job}"}}[15m]) > {thr} and on(job) {m}_up == 1',
        f"{m}_errors_total / ignoring(code) group_left {m}_requests_total > {thr / 100:.4f}",
        f"max_over_time(rate({m}_cpu_seconds_total[5m])[1h:1m]) > {thr}",
        f'absent({m}_up{{job="{job}"}})',
        f"predict_linear({m}_disk_free_bytes[6h], 4 * 3600) < 0",
        f'count by (job) ({m}_up{{job=~"{job}|{job}b"}} == 0) > bool 1',
        f"delta({m}_temperature_celsius[30m] offset 1h) > {thr}",
        f'topk(5, sum without (instance) (rate({m}_bytes_total{{dir!="in"}}[5m]))) < {thr}',
        f"-{m}_balance < -({thr} ^ 2) or {m}_balance > {thr} * 2",
        f'label_replace(rate({m}_requests_total[5m]), "svc", "$1", "job", "(.*)-.*") > {thr}',
    ]


def generate(n: int, seed: int = 42) -> Iterator[tuple[str, list[Rule]]]:
    """Yield groups of rules, ``n`` rules in all (about 20 per group)."""
    r = random.Random(seed)
    group: list[Rule] = []
    g = 0
    for i in range(n):
        expr = r.choice(_templates(i, r))
        if i % 5 == 4:
            rule = Rule("record", f"job:app{i}:rate5m", expr.split(" > ")[0].split(" < ")[0],
                        None, {"source": "bench"}, {})
        else:
            rule = Rule(
                "alert", f"Alert{i}", expr, r.choice(["1m", "5m", "10m", "30m"]),
                {"severity": r.choice(["warning", "critical", "info"]), "team": f"t{i % 13}"},
                {"summary": f"{{{{ $labels.job }}}} alert {i}: {{{{ $value | humanize }}}}",
                 "description": "Instance {{ $labels.instance }} of {{ $labels.job }}."},
            )
        group.append(rule)
        if len(group) == 20:
            yield f"group{g}", group
            group, g = [], g + 1
    if group:
        yield f"group{g}", group


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dsl(groups: list[tuple[str, list[Rule]]]) -> str:
    """The rules as a `.rules` file."""
    out = []
    for name, rules in groups:
        out.append(f'group "{name}" every 1m {{')
        for rule in rules:
            if rule.kind == "record":
                labels = " ".join(f"{k} = {_q(v)}" for k, v in rule.labels.items())
                out.append(f"  record {rule.name} = {rule.expr} labels {{ {labels} }}")
                continue
            out.append(f"  alert {rule.name} {{")
            out.append(f"    when {rule.expr}")
            if rule.for_:
                out.append(f"    for {rule.for_}")
            out.append(f"    severity {rule.labels['severity']}")
            out.append(f"    labels {{ team = {_q(rule.labels['team'])} }}")
            out.append(f"    summary {_q(rule.annotations['summary'])}")
            out.append(f"    description {_q(rule.annotations['description'])}")
            out.append("  }")
        out.append("}")
        out.append("")
    return "\n".join(out)


def to_prometheus(groups: list[tuple[str, list[Rule]]]) -> str:
    """The same rules as a Prometheus rule file."""
    out = ["groups:"]
    for name, rules in groups:
        out += [f"  - name: {name}", "    interval: 1m", "    rules:"]
        for rule in rules:
            key = "record" if rule.kind == "record" else "alert"
            out.append(f"      - {key}: {rule.name}")
            out.append(f"        expr: {_q(rule.expr)}")
            if rule.for_:
                out.append(f"        for: {rule.for_}")
            if rule.labels:
                out.append("        labels:")
                out += [f"          {k}: {_q(v)}" for k, v in rule.labels.items()]
            if rule.annotations:
                out.append("        annotations:")
                out += [f"          {k}: {_q(v)}" for k, v in rule.annotations.items()]
    return "\n".join(out) + "\n"
