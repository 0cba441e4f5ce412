"""Prometheus rule files compiled into the typed AST, validated as ``rulefmt`` does.

A Prometheus 3.x rule file (``groups:`` of alerting and recording rules) loads
unchanged into :class:`ast.RuleFile` with ``kind=FileKind.PROMETHEUS``. The
checks are those of Prometheus's ``model/rulefmt`` (its messages are kept, so
they can be searched for), each located in the file:

* exactly one of ``alert`` and ``record`` (both set: the finding points at
  ``record`` and names ``alert`` as related, as rulefmt's ``WrappedError``
  points at both nodes);
* a non-empty ``expr`` that parses; any scalar is expression text (``expr: 1``);
* recording rules: a valid metric name without braces, and no ``for``,
  ``keep_firing_for`` or ``annotations``;
* valid label and annotation names (``__name__`` is not a label);
* unique, non-empty group names;
* durations in Prometheus syntax (``5m``, ``1h30m``, or ``0``).

Structure (unknown fields, wrong types) is checked by the
``prometheus_rules`` JSON Schema before this module runs.
"""

from __future__ import annotations

from typing import Any

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic
from monitoring.dsl.lexical import is_metric_name
from monitoring.dsl.source import SourceFile, Span
from monitoring.dsl.yaml_rules import YamlAstBuilder, load_rule_document
from monitoring.dsl.yaml_source import YamlDocument, YamlPath


class PrometheusRulesBuilder(YamlAstBuilder):
    """Builds the rule file of a Prometheus rule document."""

    def rule_file(self) -> ast.RuleFile:
        """All groups of the file, in order."""
        source = self.doc.source
        data = self.doc.data
        items = data.get("groups") if isinstance(data, dict) else None
        seen: dict[str, Span] = {}
        groups: list[ast.Group] = []
        for j, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                groups.append(self.group(("groups", j), item, seen))
        return ast.RuleFile(ast.FileKind.PROMETHEUS, tuple(groups),
                            span=Span(source, 0, len(source.text)))

    def group(self, path: YamlPath, item: dict[str, Any], seen: dict[str, Span]) -> ast.Group:
        """One group: its name is checked for emptiness and uniqueness in the file."""
        name = self.name((*path, "name"), any_scalar=True)
        if name is None or not name.value:
            self.error("rule/empty-group-name", "Groupname must not be empty",
                       self.doc.key_span((*path, "name")))
            name = ast.Name("", self.span(path))
        elif name.value in seen and name.span is not None:
            self.error("rule/duplicate-group",
                       f'groupname: "{name.value}" is repeated in the same file', name.span,
                       "give each group of a file its own name",
                       related=(("first used here", seen[name.value]),))
        elif name.span is not None:
            seen[name.value] = name.span
        limit = item.get("limit")
        rules_data = item.get("rules")
        rules = [
            rule for i, r in enumerate(rules_data if isinstance(rules_data, list) else [])
            if isinstance(r, dict) and (rule := self.rule((*path, "rules", i), r)) is not None
        ]
        return ast.Group(
            name, tuple(rules),
            interval=self.duration((*path, "interval")),
            labels=self.label_pairs((*path, "labels"), "label"),
            limit=limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
            query_offset=self.duration((*path, "query_offset")),
            span=self.full_span(path),
        )

    def duration(self, path: YamlPath) -> ast.Duration | None:
        """A Prometheus duration; numbers are read as text, as rulefmt does (only 0 is valid)."""
        value = self.get(path)
        if value is None or isinstance(value, bool | list | dict):
            return None
        text = value if isinstance(value, str) else self.doc.text(path)
        return self.duration_text(path, text) if text is not None else None

    def _text(self, path: YamlPath) -> str:
        """A string field's value as rulefmt reads it ("" when absent or null)."""
        value = self.get(path)
        if value is None or isinstance(value, list | dict):
            return ""
        return value if isinstance(value, str) else (self.doc.text(path) or "")

    def rule(self, path: YamlPath, item: dict[str, Any]) -> ast.Rule | None:
        """One rule; ``None`` when it is neither (or both) an alert and a record."""
        record = self._text((*path, "record"))
        alert = self._text((*path, "alert"))
        expr = self._expr(path)
        for_ = self.duration((*path, "for"))
        keep = self.duration((*path, "keep_firing_for"))
        labels = self.label_pairs((*path, "labels"), "label")
        annotations = self.label_pairs((*path, "annotations"), "annotation")
        span = self.full_span(path)
        if record and alert:
            self.error("rule/alert-and-record", "only one of 'record' and 'alert' must be set",
                       self.doc.key_span((*path, "record")),
                       "a rule either records a series or raises an alert",
                       related=(("'alert' is set here", self.doc.key_span((*path, "alert"))),))
            return None
        if not record and not alert:
            self.error("rule/missing-alert-or-record", "one of 'record' or 'alert' must be set",
                       self.span(path), "add alert: <name> or record: <metric name>")
            return None
        if record:
            self._check_recording(path, record, item, for_, keep)
            return ast.RecordingRule(ast.Name(record, self.span((*path, "record"))), expr,
                                     labels, span)
        return ast.AlertRule(ast.Name(alert, self.span((*path, "alert"))), expr,
                             for_=for_, keep_firing_for=keep, labels=labels,
                             annotations=annotations, span=span)

    def _expr(self, path: YamlPath) -> ast.Expr | None:
        """The rule's expression; an absent or empty one is reported as rulefmt does."""
        if not self._text((*path, "expr")).strip():
            where = self.doc.key_span((*path, "expr")) \
                if self.doc.key_node((*path, "expr")) is not None else self.span(path)
            self.error("rule/missing-expr", "field 'expr' must be set in rule", where)
            return None
        return self.expression((*path, "expr"), any_scalar=True)

    def _check_recording(self, path: YamlPath, record: str, item: dict[str, Any],
                         for_: ast.Duration | None, keep: ast.Duration | None) -> None:
        """The fields a recording rule may not have, and its name."""
        invalid = [("annotations", bool(item.get("annotations"))),
                   ("for", for_ is not None and for_.ms != 0),
                   ("keep_firing_for", keep is not None and keep.ms != 0)]
        for key, bad in invalid:
            if bad:
                self.error("rule/invalid-field", f"invalid field '{key}' in recording rule",
                           self.doc.key_span((*path, key)),
                           f"only alerting rules take '{key}'")
        span = self.span((*path, "record"))
        if "{" in record or "}" in record:
            self.error("rule/invalid-record-name",
                       f"braces present in the recording rule name; should it be in expr?: "
                       f"{record}", span)
        elif not is_metric_name(record):
            self.error("rule/invalid-record-name", f"invalid recording rule name: {record}",
                       span, "metric names must match [a-zA-Z_:][a-zA-Z0-9_:]*")


def prometheus_rule_file(doc: YamlDocument) -> tuple[ast.RuleFile, list[Diagnostic]]:
    """Compile a loaded Prometheus rule document (already schema-checked) into the AST."""
    builder = PrometheusRulesBuilder(doc)
    return builder.rule_file(), builder.diagnostics


def load_prometheus_rules(source: SourceFile) -> tuple[ast.RuleFile, list[Diagnostic]]:
    """Load, validate and compile a Prometheus rule file; every problem is a diagnostic."""
    return load_rule_document(source, ast.FileKind.PROMETHEUS, "prometheus_rules",
                              prometheus_rule_file)
