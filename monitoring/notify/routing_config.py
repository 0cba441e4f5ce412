"""``routing.yaml``: the routing tree, inhibition rules and time intervals, read and checked.

The format is a subset of Alertmanager's configuration (``route``,
``inhibit_rules``, ``time_intervals``) whose receivers are the channels of
``notification_config.yaml``. Reading it validates the JSON Schema
(``monitoring schema routing``), then everything the schema cannot say, each
problem a diagnostic at ``file:line:col``: matchers that do not parse (the caret
on the offending character), durations, time interval fields, names of time
intervals that are not defined, and (:func:`check_receivers`, once the channels
are known) receivers that are not configured, with a did-you-mean hint.

Settings are inherited down the tree when the config is read, so every
:class:`~monitoring.notify.routing.Route` carries its effective settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from monitoring.dsl.diagnostics import Diagnostic, Severity, did_you_mean
from monitoring.dsl.schema import validate
from monitoring.dsl.source import SourceFile, Span
from monitoring.dsl.yaml_rules import YamlAstBuilder
from monitoring.dsl.yaml_source import NodeKind, YamlDocument, YamlPath, load_yaml
from monitoring.notify.inhibit import InhibitRule
from monitoring.notify.matchers import Matcher, MatcherError, parse_matchers
from monitoring.notify.routing import GROUP_BY_ALL, GroupSettings, Route
from monitoring.notify.timeintervals import TimeInterval, TimeIntervalError, parse_time_interval

BUILTIN_RECEIVERS = ("console",)
"""Channels that exist without configuration."""
_DURATIONS = {"group_wait": "group_wait_ms", "group_interval": "group_interval_ms",
              "repeat_interval": "repeat_interval_ms",
              "max_repeat_interval": "max_repeat_interval_ms"}
_POSITIVE = ("group_interval", "repeat_interval", "max_repeat_interval")


class RoutingConfigError(ValueError):
    """``routing.yaml`` has errors; ``diagnostics`` locates each one."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        first = next((d for d in self.diagnostics if d.severity is Severity.ERROR),
                     self.diagnostics[0] if self.diagnostics else None)
        text = f"{first.location()}: {first.message}" if first else "invalid routing config"
        more = len(self.diagnostics) - 1
        super().__init__(text + (f" (and {more} more)" if more > 0 else ""))


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """The routing tree, the inhibition rules and the named time intervals."""

    route: Route
    inhibit_rules: tuple[InhibitRule, ...] = ()
    time_intervals: Mapping[str, TimeInterval] = field(default_factory=dict)
    receiver_refs: tuple[tuple[str, Span | None], ...] = field(default=(), compare=False,
                                                                 repr=False)
    """Every receiver name written in the file, with where it was written."""

    @classmethod
    def default(cls, receivers: Sequence[str] = ()) -> RoutingConfig:
        """No ``routing.yaml``: Alertmanager's default timings, every alert to ``receivers``.

        Alerts go to their rule's channels in any case; ``receivers`` (say
        ``["console"]``) get every alert besides. Alerts are grouped by ``alertname``
        (one group per rule), not all in one group as Alertmanager's default would.
        """
        return cls(Route("{}", GroupSettings(receivers=tuple(receivers),
                                             group_by=("alertname",))))

    def receivers(self) -> list[str]:
        """Every receiver the tree names, once each, in tree order."""
        return list(dict.fromkeys(r for route in self.route.walk() for r in route.receivers))


def parse_routing(doc: YamlDocument) -> tuple[RoutingConfig | None, list[Diagnostic]]:
    """Validate and read a loaded ``routing.yaml``; ``None`` when it has errors.

    The document's own YAML diagnostics are not repeated. Receivers are not
    checked here (the channels may live in another file): see :func:`check_receivers`.
    """
    config, diagnostics = read_routing(doc)
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return None, diagnostics
    return config, diagnostics


def read_routing(doc: YamlDocument) -> tuple[RoutingConfig | None, list[Diagnostic]]:
    """As :func:`parse_routing`, but the config as far as it could be read despite errors.

    ``None`` only when the file is empty or breaks the schema. The linter uses it to
    check the receivers of a file that has other errors too.
    """
    if doc.root is None:
        return None, []
    diagnostics = _schema_diagnostics(doc)
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return None, diagnostics
    builder = _RoutingBuilder(doc)
    config = builder.build()
    return config, sorted([*diagnostics, *builder.diagnostics], key=Diagnostic.sort_key)


def check_receivers(config: RoutingConfig, channels: Iterable[str]) -> list[Diagnostic]:
    """One error per receiver that is not a configured channel (with did-you-mean)."""
    known = sorted({*channels, *BUILTIN_RECEIVERS})
    out: list[Diagnostic] = []
    for name, span in config.receiver_refs:
        if name in known:
            continue
        hint = did_you_mean(name, known) or "configured channels: " + ", ".join(known)
        out.append(Diagnostic("routing/unknown-receiver", Severity.ERROR,
                              f"unknown receiver {name!r}: no such notification channel",
                              span, (hint,)))
    return out


def load_routing_config(path: str | Path,
                        channels: Iterable[str] | None = None) -> RoutingConfig:
    """Read ``routing.yaml``; raises :class:`RoutingConfigError` (located diagnostics).

    With ``channels`` (the names in ``notification_config.yaml``) receivers are checked too.
    """
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RoutingConfigError([Diagnostic("io/unreadable", Severity.ERROR,
                                             f"cannot read file: {e}", None,
                                             path=str(path))]) from None
    doc = load_yaml(SourceFile(str(path), text.removeprefix("\ufeff")))
    config, diagnostics = parse_routing(doc)
    diagnostics = [*doc.diagnostics, *diagnostics]
    if config is not None and channels is not None:
        diagnostics.extend(check_receivers(config, channels))
    if config is None or any(d.severity is Severity.ERROR for d in diagnostics):
        if not diagnostics:
            return RoutingConfig.default()  # an empty file
        raise RoutingConfigError(diagnostics)
    return config


# ---------------------------------------------------------------- schema


def _schema_diagnostics(doc: YamlDocument) -> list[Diagnostic]:
    """The schema errors of the document (``monitoring schema routing`` prints the schema)."""
    return validate(doc, "routing")


# ---------------------------------------------------------------- builder


class _RoutingBuilder(YamlAstBuilder):
    """Reads a schema-valid ``routing.yaml`` into a :class:`RoutingConfig`."""

    def __init__(self, doc: YamlDocument) -> None:
        super().__init__(doc)
        self.receiver_refs: list[tuple[str, Span | None]] = []
        self.interval_refs: list[tuple[str, YamlPath]] = []
        self.bad_intervals: set[str] = set()  # defined, but with errors (reported already)

    def build(self) -> RoutingConfig:
        intervals = self._time_intervals()
        data = self.get(("route",))
        root_body = data if isinstance(data, dict) else {}
        if root_body.get("matchers") is not None:
            self.error("routing/root-matchers", "the root route cannot have matchers",
                       self.doc.key_span(("route", "matchers")),
                       "every alert enters at the root; put the matchers on a child route")
        root = self._route(("route",), root_body, GroupSettings(group_by=()), "{}")
        for name, path in self.interval_refs:
            if name not in intervals and name not in self.bad_intervals:
                self.error("routing/unknown-time-interval",
                           f"time interval {name!r} is not defined", self.span(path),
                           did_you_mean(name, intervals) or (
                               "defined: " + ", ".join(sorted(intervals)) if intervals else
                               "define it under time_intervals"))
        inhibit = tuple(rule for i, item in enumerate(self._list(("inhibit_rules",)))
                        if (rule := self._inhibit(("inhibit_rules", i), item)) is not None)
        return RoutingConfig(root, inhibit, intervals, tuple(self.receiver_refs))

    def _list(self, path: YamlPath) -> list[Any]:
        value = self.get(path)
        return value if isinstance(value, list) else []

    def _route(self, path: YamlPath, body: dict[str, Any], parent: GroupSettings,
               key: str) -> Route:
        settings = self._settings(path, body, parent)
        children = tuple(
            self._route((*path, "routes", i), child, settings, f"{key}/{i}")
            for i, child in enumerate(self._list((*path, "routes"))) if isinstance(child, dict))
        return Route(key, settings, self._matchers((*path, "matchers")),
                     bool(body.get("continue", False)),
                     self._interval_names(path, body, "mute_time_intervals"),
                     self._interval_names(path, body, "active_time_intervals"), children)

    def _settings(self, path: YamlPath, body: dict[str, Any],
                  parent: GroupSettings) -> GroupSettings:
        changes: dict[str, Any] = {}
        if "receiver" in body and "receivers" in body:
            self.error("routing/conflicting-fields", "give either 'receiver' or 'receivers'",
                       self.doc.key_span((*path, "receivers")))
        if isinstance(body.get("receiver"), str):
            changes["receivers"] = (self._receiver((*path, "receiver")),)
        elif isinstance(body.get("receivers"), list):
            changes["receivers"] = tuple(self._receiver((*path, "receivers", i))
                                         for i in range(len(body["receivers"])))
        if isinstance(body.get("group_by"), list):
            changes["group_by"] = self._group_by((*path, "group_by"), body["group_by"])
        for name, attr in _DURATIONS.items():
            if name not in body:
                continue
            duration = self.seconds_or_duration((*path, name))
            if duration is None:
                continue
            if duration.ms <= 0 and name in _POSITIVE:
                self.error("routing/invalid-value", f"{name} must be longer than 0",
                           self.span((*path, name)))
                continue
            changes[attr] = duration.ms
        if "repeat_backoff" in body:
            changes["repeat_backoff"] = float(body["repeat_backoff"])
        if isinstance(body.get("send_resolved"), bool):
            changes["send_resolved"] = body["send_resolved"]
        return replace(parent, **changes)

    def _receiver(self, path: YamlPath) -> str:
        name = str(self.get(path))
        self.receiver_refs.append((name, self.span(path)))
        return name

    def _group_by(self, path: YamlPath, values: list[Any]) -> tuple[str, ...]:
        out: list[str] = []
        for i, value in enumerate(values):
            if value == GROUP_BY_ALL:
                if len(values) > 1:
                    self.error("routing/invalid-group-by", "'...' groups by every label and "
                               "cannot be combined with label names", self.span((*path, i)))
                out.append(value)
            elif self.check_label_name(str(value), (*path, i), "label"):
                out.append(str(value))
        return tuple(out)

    def _interval_names(self, path: YamlPath, body: dict[str, Any], key: str) -> tuple[str, ...]:
        names = body.get(key)
        if not isinstance(names, list):
            return ()
        for i, name in enumerate(names):
            self.interval_refs.append((str(name), (*path, key, i)))
        return tuple(str(n) for n in names)

    def _matchers(self, path: YamlPath) -> tuple[Matcher, ...]:
        value = self.get(path)
        if value is None:
            return ()
        items: list[tuple[YamlPath, str]] = (
            [(path, value)] if isinstance(value, str) else
            [((*path, i), v) for i, v in enumerate(value) if isinstance(v, str)])
        out: list[Matcher] = []
        for item_path, text in items:
            try:
                out.extend(parse_matchers(text))
            except MatcherError as e:
                self.error("routing/invalid-matcher", e.message,
                           self._char_span(item_path, text, e.position),
                           'matchers look like severity="critical", team!="db", '
                           'service=~"api|web"')
        return tuple(out)

    def _char_span(self, path: YamlPath, text: str, position: int) -> Span:
        """The span of one character of a scalar's value (the whole value if unmapped)."""
        node = self.doc.node(path)
        if node is None or node.kind is not NodeKind.SCALAR or node.value != text:
            return self.span(path)
        offsets = self.doc.offsets(node)
        start = offsets(min(position, max(len(text) - 1, 0)))
        return Span(self.doc.source, start, start + 1)

    def _inhibit(self, path: YamlPath, item: Any) -> InhibitRule | None:
        if not isinstance(item, dict):
            return None
        errors = len(self.diagnostics)
        source = self._matchers((*path, "source_matchers"))
        target = self._matchers((*path, "target_matchers"))
        equal = tuple(str(v) for i, v in enumerate(self._list((*path, "equal")))
                      if self.check_label_name(str(v), (*path, "equal", i), "label"))
        if len(self.diagnostics) > errors:
            return None
        return InhibitRule(source, target, equal)

    def _time_intervals(self) -> dict[str, TimeInterval]:
        out: dict[str, TimeInterval] = {}
        first: dict[str, Span] = {}
        for i, item in enumerate(self._list(("time_intervals",))):
            if not isinstance(item, dict):
                continue
            path: YamlPath = ("time_intervals", i)
            name = str(item.get("name"))
            if name in first:
                self.error("routing/duplicate-time-interval",
                           f"time interval {name!r} is defined twice",
                           self.span((*path, "name")), "keep one definition",
                           related=(("first defined here", first[name]),))
                continue
            first[name] = self.span((*path, "name"))
            try:
                out[name] = parse_time_interval(name, item.get("time_intervals"))
            except TimeIntervalError as e:
                self.bad_intervals.add(name)
                self.error("routing/invalid-time-interval", e.message,
                           self.span((*path, "time_intervals", *e.path)))
        return out
