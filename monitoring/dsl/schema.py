"""JSON Schemas of the YAML formats, and their errors as located diagnostics.

The schemas in ``monitoring/dsl/schemas/*.json`` (draft 2020-12) are the single
description of each YAML format: ``monitoring schema NAME`` prints them for
editor completion, and :func:`validate` checks a loaded document against them
with ``jsonschema``, reporting every error (not only the first).

Each ``jsonschema`` error becomes a ``schema/`` diagnostic whose span is the
offending key or value in the file. ``oneOf``/``anyOf`` errors are collapsed
the way a reader wants them: when the alternatives are told apart by a
discriminating field (a condition's ``type``, a channel's ``type``), only the
errors of the selected alternative are reported; when they differ by type
(seconds as a number, or a duration string), the alternative whose type
matches is reported; when no alternative's type matches, one type error
lists them all.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from typing import TYPE_CHECKING, Any

import fastjsonschema

from monitoring.dsl.diagnostics import Diagnostic, Severity, did_you_mean
from monitoring.dsl.source import Span
from monitoring.dsl.yaml_source import YamlDocument, YamlPath

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

_NAMES = ("alert_rules", "audit_filters", "escalation_policies", "notification_config",
          "oncall", "prometheus_rules", "routing")

_TYPE_WORDS = {
    "string": "a string", "number": "a number", "integer": "an integer",
    "boolean": "a boolean (true or false)", "array": "a list", "object": "a mapping",
    "null": "empty",
}


def schema_names() -> list[str]:
    """The names of the shipped schemas, for ``monitoring schema``."""
    return list(_NAMES)


def schema_json(name: str) -> str:
    """The text of one schema, exactly as shipped."""
    if name not in _NAMES:
        hint = did_you_mean(name, _NAMES)
        raise ValueError(f"unknown schema {name!r}" + (f"; {hint}" if hint else "")
                         + "; available: " + ", ".join(_NAMES))
    return resources.files("monitoring.dsl").joinpath("schemas", f"{name}.json").read_text(
        "utf-8")


@functools.cache
def schema(name: str) -> dict[str, Any]:
    """One schema as a parsed JSON object (cached)."""
    loaded: dict[str, Any] = json.loads(schema_json(name))
    return loaded


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    # Imported here: only files that fail the fast check need jsonschema's report.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(name))


@functools.cache
def _fast_check(name: str) -> Callable[[Any], Any]:
    """The schema compiled to Python code: a yes/no answer, many times faster.

    Valid documents (the common case) are accepted by this alone; an invalid one
    is validated again with ``jsonschema``, which reports every error with its
    path. The schemas use only keywords both libraries implement alike, and the
    schema tests run every invalid example through both paths.
    """
    check: Callable[[Any], Any] = fastjsonschema.compile(_as_draft7(schema(name)),
                                                         use_default=False)
    return check


def _as_draft7(node: Any) -> Any:
    """The same schema in draft-7 terms, which fastjsonschema implements.

    Two 2020-12 features are spelt differently there: keywords beside ``$ref``
    (ignored in draft 7, so they move into an ``allOf``) and ``dependentRequired``
    (draft 7's ``dependencies``).
    """
    if isinstance(node, list):
        return [_as_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_draft7(value) for key, value in node.items()
           if key not in ("$schema", "$id")}
    if "dependentRequired" in out:
        out["dependencies"] = out.pop("dependentRequired")
    if "$ref" in out and len(out) > 1:
        ref = {"$ref": out.pop("$ref")}
        out = {"allOf": [ref, out]}
    return out


def validate(doc: YamlDocument, name: str) -> list[Diagnostic]:
    """Validate a loaded document against schema ``name``; one diagnostic per problem.

    Documents that did not load (YAML errors) or are empty are not validated:
    their problem has been reported already, or there is nothing to check.
    """
    if doc.root is None:
        return []
    try:
        _fast_check(name)(doc.data)
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    explainer = _Explainer(doc, schema(name))
    out: list[Diagnostic] = []
    seen: set[tuple[str, int, int, str]] = set()
    for error in _validator(name).iter_errors(doc.data):
        for d in explainer.explain(error):
            span = d.span
            key = (d.code, span.start if span else -1, span.end if span else -1, d.message)
            if key not in seen:
                seen.add(key)
                out.append(d)
    out.sort(key=Diagnostic.sort_key)
    return out


class _Explainer:
    """Turns ``jsonschema`` errors into diagnostics located in one YAML document."""

    def __init__(self, doc: YamlDocument, root: Mapping[str, Any]) -> None:
        self.doc = doc
        self.root = root

    def explain(self, error: ValidationError) -> Iterator[Diagnostic]:
        """The diagnostics for one error (several for oneOf/anyOf or unknown fields)."""
        handler = _HANDLERS.get(str(error.validator), _Explainer._generic)
        yield from handler(self, error)

    # ------------------------------------------------------------ helpers

    def _diag(self, code: str, message: str, span: Span, *hints: str | None) -> Diagnostic:
        return Diagnostic(code, Severity.ERROR, message, span, tuple(h for h in hints if h))

    def _deref(self, sub: Any) -> Mapping[str, Any]:
        """Follow local ``$ref``s (``#/$defs/Name``) to the schema they name."""
        seen = 0
        while isinstance(sub, Mapping) and "$ref" in sub and seen < 16:
            ref = str(sub["$ref"])
            target: Any = self.root
            for part in ref.lstrip("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, Mapping) else {}
            if "properties" in sub or "required" in sub:
                return {**target, **{k: v for k, v in sub.items() if k != "$ref"}}
            sub = target
            seen += 1
        return sub if isinstance(sub, Mapping) else {}

    def _where(self, error: ValidationError) -> str:
        """" in alert rule 'x'": what the offending object is, for messages."""
        title = error.schema.get("title") if isinstance(error.schema, Mapping) else None
        if not title:
            return ""
        text = str(title)
        first = text.split(" ", 1)[0]
        if first[1:].islower():
            text = text[0].lower() + text[1:]
        out = f" in {text}"
        instance = error.instance
        if isinstance(instance, dict) and isinstance(instance.get("name"), str):
            out += f" {instance['name']!r}"
        return out

    # ------------------------------------------------------------ handlers

    def _unknown_fields(self, error: ValidationError) -> Iterator[Diagnostic]:
        instance = error.instance
        sub = error.schema if isinstance(error.schema, Mapping) else {}
        allowed = sorted(sub.get("properties", {}))
        if not isinstance(instance, dict):
            return
        path = tuple(error.absolute_path)
        where = self._where(error)
        for key in instance:
            if key in allowed:
                continue
            hint = did_you_mean(key, allowed)
            listing = f"allowed fields: {', '.join(allowed)}" if allowed else None
            yield self._diag("schema/unknown-field", f"unknown field {key!r}{where}",
                             self.doc.key_span((*path, key)), hint, None if hint else listing)

    def _missing(self, error: ValidationError) -> Iterator[Diagnostic]:
        instance = error.instance
        if not isinstance(instance, dict):
            return
        path = tuple(error.absolute_path)
        where = self._where(error)
        for name in _rule(error):
            if name in instance:
                continue
            yield self._diag("schema/missing-field", f"missing required field {name!r}{where}",
                             self.doc.key_span(path), self._typo_hint(path))

    def _typo_hint(self, path: YamlPath) -> str | None:
        """For an object under a misspelt top-level key: the name it was probably meant as."""
        if len(path) != 1 or not isinstance(path[0], str):
            return None
        names = list(self.root.get("properties", {}))
        hint = did_you_mean(path[0], names)
        return f"or is {path[0]!r} misspelt? {hint}" if hint else None

    def _dependent(self, error: ValidationError) -> Iterator[Diagnostic]:
        instance = error.instance
        if not isinstance(instance, dict):
            return
        path = tuple(error.absolute_path)
        for name, needs in dict(_rule(error)).items():
            if name not in instance:
                continue
            for need in needs:
                if need not in instance:
                    yield self._diag("schema/missing-field",
                                     f"field {name!r} needs {need!r} as well",
                                     self.doc.key_span((*path, name)), f"add {need!r}")

    def _type(self, error: ValidationError) -> Iterator[Diagnostic]:
        wanted = _rule(error)
        types = [wanted] if isinstance(wanted, str) else list(wanted)
        yield self._type_error(tuple(error.absolute_path), types, error.instance)

    def _type_error(self, path: YamlPath, types: Iterable[str], instance: Any) -> Diagnostic:
        words = _alternatives(_TYPE_WORDS.get(t, t) for t in dict.fromkeys(types))
        return self._diag("schema/type", f"{_field(path)} must be {words}, not "
                          f"{_kind(instance)}", self.doc.value_span(path))

    def _enum(self, error: ValidationError) -> Iterator[Diagnostic]:
        allowed = [_rule(error)] if error.validator == "const" else \
            list(_rule(error))
        path = tuple(error.absolute_path)
        hint = did_you_mean(str(error.instance), [str(a) for a in allowed]) \
            if isinstance(error.instance, str) else None
        yield self._diag("schema/invalid-value",
                         f"invalid value {_show(error.instance)} for {_field(path)}; allowed: "
                         + ", ".join(_show(a) for a in allowed),
                         self.doc.value_span(path), hint)

    def _pattern(self, error: ValidationError) -> Iterator[Diagnostic]:
        path = tuple(error.absolute_path)
        sub = error.schema if isinstance(error.schema, Mapping) else {}
        expected = str(sub.get("description") or f"text matching {sub.get('pattern')}")
        yield self._diag("schema/invalid-value",
                         f"invalid value {_show(error.instance)} for {_field(path)}",
                         self.doc.value_span(path),
                         f"expected {expected[0].lower()}{expected[1:].rstrip('.')}")

    def _range(self, error: ValidationError) -> Iterator[Diagnostic]:
        path = tuple(error.absolute_path)
        words = {"minimum": "at least", "maximum": "at most",
                 "exclusiveMinimum": "greater than", "exclusiveMaximum": "less than"}
        bound = words[str(error.validator)]
        yield self._diag("schema/out-of-range",
                         f"{_field(path)} is {_show(error.instance)}; it must be {bound} "
                         f"{_show(_rule(error))}", self.doc.value_span(path))

    def _size(self, error: ValidationError) -> Iterator[Diagnostic]:
        path = tuple(error.absolute_path)
        n = _rule(error)
        what = {
            "minItems": f"must have at least {n} item{'s' if n != 1 else ''}",
            "maxItems": f"must have at most {n} item{'s' if n != 1 else ''}",
            "minLength": "must not be empty" if n == 1 else f"must be at least {n} characters",
            "maxLength": f"must be at most {n} characters",
            "uniqueItems": "must not list the same item twice",
        }[str(error.validator)]
        yield self._diag("schema/invalid-value", f"{_field(path)} {what}",
                         self.doc.value_span(path))

    def _generic(self, error: ValidationError) -> Iterator[Diagnostic]:
        path = tuple(error.absolute_path)
        yield self._diag("schema/invalid-value", f"invalid value for {_field(path)}: "
                         f"{error.message}", self.doc.value_span(path))

    # ------------------------------------------------------------ alternatives

    def _alternatives(self, error: ValidationError) -> Iterator[Diagnostic]:
        """Collapse a oneOf/anyOf error into the errors that matter to the reader."""
        branches = [self._deref(b) for b in _rule(error)]
        by_branch: dict[int, list[ValidationError]] = {}
        for sub in error.context or ():
            index = sub.relative_schema_path[0] if sub.relative_schema_path else -1
            by_branch.setdefault(int(index), []).append(sub)
        path = tuple(error.absolute_path)
        instance = error.instance
        picked = self._discriminate(branches, instance, path)
        if isinstance(picked, Diagnostic):
            yield picked
            return
        by_type = False
        if picked is None:
            picked = self._by_type(branches, by_branch, instance)
            by_type = picked is not None
        if picked is None:
            types = [t for b in branches for t in _branch_types(b)]
            if types and not any(_matches_type(instance, t) for t in types):
                yield self._type_error(path, types, instance)
                return
            if all(e.validator == "required" for errs in by_branch.values() for e in errs):
                yield self._any_required(error, by_branch)
                return
            candidates = [e for errs in by_branch.values() for e in errs]
            from jsonschema.exceptions import best_match

            chosen = best_match(candidates) if candidates else None
            if chosen is None:
                yield from self._generic(error)
                return
            yield from self.explain(chosen)
            return
        if not by_branch.get(picked):
            yield from self._generic(error)
            return
        others = [t for i, b in enumerate(branches) if i != picked for t in _branch_types(b)]
        for sub in by_branch[picked]:
            for d in self.explain(sub):
                if by_type and others and d.span == self.doc.value_span(path):
                    words = _alternatives(_TYPE_WORDS.get(t, t) for t in dict.fromkeys(others))
                    d = replace(d, hints=(*d.hints, f"{_field(path)} may also be {words}"))
                yield d

    def _discriminate(self, branches: Sequence[Mapping[str, Any]], instance: Any,
                      path: YamlPath) -> int | Diagnostic | None:
        """The branch selected by a field every branch fixes with ``const`` (e.g. ``type``)."""
        consts = [_consts(b) for b in branches]
        common = set(consts[0]) if consts else set()
        for c in consts[1:]:
            common &= set(c)
        if not common or not isinstance(instance, dict):
            return None
        field = sorted(common)[0]
        values = [c[field] for c in consts]
        allowed = ", ".join(_show(v) for v in values)
        if field not in instance:
            return self._diag("schema/missing-field", f"missing required field {field!r}",
                              self.doc.key_span(path), f"{field} is one of: {allowed}",
                              self._typo_hint(path))
        value = instance[field]
        for i, v in enumerate(values):
            if type(v) is type(value) and v == value:
                return i
        hint = did_you_mean(str(value), [str(v) for v in values]) \
            if isinstance(value, str) else None
        return self._diag("schema/invalid-value",
                          f"invalid value {_show(value)} for {field!r}; allowed: {allowed}",
                          self.doc.value_span((*path, field)), hint)

    def _by_type(self, branches: Sequence[Mapping[str, Any]],
                 by_branch: Mapping[int, list[ValidationError]], instance: Any) -> int | None:
        """The only branch whose type accepts the instance, if exactly one does."""
        fitting = [i for i, b in enumerate(branches)
                   if not _branch_types(b) or any(_matches_type(instance, t)
                                                  for t in _branch_types(b))]
        if len(fitting) == 1 and by_branch.get(fitting[0]):
            return fitting[0]
        return None

    def _any_required(self, error: ValidationError,
                      by_branch: Mapping[int, list[ValidationError]]) -> Diagnostic:
        names: list[str] = []
        present = error.instance if isinstance(error.instance, dict) else {}
        for errs in by_branch.values():
            for e in errs:
                names.extend(str(n) for n in _rule(e) if n not in present)
        path = tuple(error.absolute_path)
        listed = _alternatives(repr(n) for n in dict.fromkeys(names))
        return self._diag("schema/missing-field", f"missing field: needs {listed}"
                          f"{self._where(error)}", self.doc.key_span(path))


_HANDLERS = {
    "additionalProperties": _Explainer._unknown_fields,
    "unevaluatedProperties": _Explainer._unknown_fields,
    "required": _Explainer._missing,
    "dependentRequired": _Explainer._dependent,
    "type": _Explainer._type,
    "enum": _Explainer._enum,
    "const": _Explainer._enum,
    "pattern": _Explainer._pattern,
    "minimum": _Explainer._range,
    "maximum": _Explainer._range,
    "exclusiveMinimum": _Explainer._range,
    "exclusiveMaximum": _Explainer._range,
    "minItems": _Explainer._size,
    "maxItems": _Explainer._size,
    "minLength": _Explainer._size,
    "maxLength": _Explainer._size,
    "uniqueItems": _Explainer._size,
    "oneOf": _Explainer._alternatives,
    "anyOf": _Explainer._alternatives,
}


def _rule(error: ValidationError) -> Any:
    """The value of the keyword that failed (``required``'s list, ``enum``'s values, ...)."""
    value: Any = getattr(error, "validator_value", None)
    return value


def _consts(branch: Mapping[str, Any]) -> dict[str, Any]:
    """Fields a branch pins to one value (``properties.type.const``)."""
    props = branch.get("properties", {})
    return {name: sub["const"] for name, sub in props.items()
            if isinstance(sub, Mapping) and "const" in sub}


def _branch_types(branch: Mapping[str, Any]) -> list[str]:
    """The JSON types a branch accepts (empty when it does not say)."""
    t = branch.get("type")
    if t is None:
        return []
    return [t] if isinstance(t, str) else list(t)


def _matches_type(value: Any, json_type: str) -> bool:
    """Whether a plain YAML value has a JSON Schema type (booleans are not numbers)."""
    if json_type == "null":
        return value is None
    if json_type == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if json_type == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if json_type == "number":
        return isinstance(value, int | float)
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "array":
        return isinstance(value, list)
    return json_type == "object" and isinstance(value, dict)


def _field(path: YamlPath) -> str:
    """How a path is named in messages: its last key, or the list it indexes."""
    for i in range(len(path) - 1, -1, -1):
        part = path[i]
        if isinstance(part, str):
            suffix = "" if i == len(path) - 1 else f" (item {int(path[i + 1]) + 1})"
            return f"{part!r}{suffix}"
    return "the document" if not path else f"item {int(path[-1]) + 1}"


def _kind(value: Any) -> str:
    """What a value is, for "must be X, not Y"."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"a boolean ({_show(value)})"
    if isinstance(value, int | float):
        return f"a number ({_show(value)})"
    if isinstance(value, str):
        return f"a string ({_show(value)})"
    return "a list" if isinstance(value, list) else "a mapping"


def _show(value: Any) -> str:
    """A value as YAML users write it (``true``, ``null``, ``'text'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return repr(value)
    return "a list" if isinstance(value, list) else "a mapping"


def _alternatives(words: Iterable[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    items = list(words)
    if len(items) <= 1:
        return items[0] if items else "something else"
    return ", ".join(items[:-1]) + " or " + items[-1]
