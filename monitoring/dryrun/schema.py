"""JSON Schema (draft 2020-12) of ``monitoring dry-run --format json``.

The schema is the contract: keys are stable, new keys may be added (objects
are open), existing ones keep their meaning. Tests validate real output
against it; docs/dryrun.md describes the fields.
"""

from __future__ import annotations

from typing import Any

_MS = {"type": "integer"}
_OPT_MS = {"type": ["integer", "null"]}
_FLOAT = {"oneOf": [{"type": "number"}, {"enum": ["NaN", "+Inf", "-Inf"]}]}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_STRINGS = {"type": "array", "items": {"type": "string"}}

_INTERVAL = {
    "type": "object",
    "required": ["labels", "active_ms", "start_ms", "end_ms", "duration_ms", "peak",
                 "start_value"],
    "properties": {
        "labels": _LABELS, "active_ms": _MS, "start_ms": _MS, "end_ms": _OPT_MS,
        "duration_ms": _MS, "peak": _FLOAT, "start_value": _FLOAT,
    },
}

_NOTIFICATION = {
    "type": "object",
    "required": ["time_ms", "channel", "kind", "labels", "value", "summary"],
    "properties": {
        "time_ms": _MS, "channel": {"type": "string"},
        "kind": {"enum": ["firing", "resolved"]}, "labels": _LABELS, "value": _FLOAT,
        "summary": {"type": "string"},
    },
}

_PLOT = {
    "type": ["object", "null"],
    "required": ["expr", "threshold", "op", "total_series", "bucket_ms", "times_ms", "series"],
    "properties": {
        "expr": {"type": "string"},
        "threshold": {"oneOf": [_FLOAT, {"type": "null"}]},
        "op": {"enum": [None, "==", "!=", ">", "<", ">=", "<="]},
        "total_series": _MS,
        "bucket_ms": _MS,
        "times_ms": {"type": "array", "items": _MS},
        "series": {"type": "array", "items": {
            "type": "object", "required": ["labels", "fired", "values"],
            "properties": {"labels": _LABELS, "fired": {"type": "boolean"},
                           "values": {"type": "array",
                                      "items": {"oneOf": [_FLOAT, {"type": "null"}]}}},
        }},
    },
}

_RULE = {
    "type": "object",
    "required": ["name", "group", "file", "kind", "expr", "interval_ms", "for_ms",
                 "keep_firing_for_ms", "severity", "channels", "cooldown_ms", "status",
                 "reason", "warnings", "errors", "series", "firings", "firing_ms", "flaps",
                 "first_firing_ms", "last_firing_ms", "median_firing_ms", "intervals",
                 "notifications", "suppressed", "plot"],
    "properties": {
        "name": {"type": "string"}, "group": {"type": "string"}, "file": {"type": "string"},
        "kind": {"enum": ["alert", "record"]}, "expr": {"type": "string"},
        "interval_ms": _MS, "for_ms": _MS, "keep_firing_for_ms": _MS,
        "severity": {"type": ["string", "null"]}, "channels": _STRINGS, "cooldown_ms": _MS,
        "status": {"enum": ["ok", "not_evaluated", "no_data"]},
        "reason": {"type": ["string", "null"]}, "warnings": _STRINGS, "errors": _STRINGS,
        "series": _MS, "firings": _MS, "firing_ms": _MS, "flaps": _MS,
        "first_firing_ms": _OPT_MS, "last_firing_ms": _OPT_MS,
        "median_firing_ms": {"type": ["number", "null"]},
        "intervals": {"type": "array", "items": _INTERVAL},
        "notifications": {"type": "array", "items": _NOTIFICATION},
        "suppressed": _MS,
        "plot": _PLOT,
    },
}

_GROUP = {
    "type": "object",
    "required": ["name", "file", "interval_ms", "phase_ms", "query_offset_ms", "steps",
                 "first_eval_ms", "last_eval_ms"],
    "properties": {"name": {"type": "string"}, "file": {"type": "string"},
                   "interval_ms": _MS, "phase_ms": _MS, "query_offset_ms": _MS,
                   "steps": _MS, "first_eval_ms": _OPT_MS, "last_eval_ms": _OPT_MS},
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "monitoring dry-run report",
    "type": "object",
    "required": ["kind", "info", "warnings", "rules"],
    "properties": {
        "kind": {"const": "dry-run"},
        "info": {
            "type": "object",
            "required": ["paths", "store", "start_ms", "end_ms", "elapsed_s", "chunk_steps",
                         "groups"],
            "properties": {"paths": _STRINGS, "store": {"type": "string"}, "start_ms": _MS,
                           "end_ms": _MS, "elapsed_s": {"type": "number"},
                           "chunk_steps": _MS, "groups": {"type": "array", "items": _GROUP}},
        },
        "warnings": _STRINGS,
        "rules": {"type": "array", "items": _RULE},
    },
}

_CHANGE = {
    "type": "object",
    "required": ["kind", "labels", "old", "new"],
    "properties": {"kind": {"enum": ["new", "gone", "changed"]}, "labels": _LABELS,
                   "old": {"oneOf": [_INTERVAL, {"type": "null"}]},
                   "new": {"oneOf": [_INTERVAL, {"type": "null"}]}},
}

COMPARE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "monitoring dry-run --compare report",
    "type": "object",
    "required": ["kind", "old", "new", "shared_nodes", "rules"],
    "properties": {
        "kind": {"const": "dry-run-compare"},
        "old": REPORT_SCHEMA, "new": REPORT_SCHEMA,
        "shared_nodes": _MS,
        "rules": {"type": "array", "items": {
            "type": "object",
            "required": ["rule", "change", "old_firings", "new_firings", "old_firing_ms",
                         "new_firing_ms", "old_status", "new_status", "intervals"],
            "properties": {
                "rule": {"type": "string"},
                "change": {"enum": ["added", "removed", "changed", "unchanged"]},
                "old_firings": _MS, "new_firings": _MS, "old_firing_ms": _MS,
                "new_firing_ms": _MS,
                "old_status": {"type": ["string", "null"]},
                "new_status": {"type": ["string", "null"]},
                "intervals": {"type": "array", "items": _CHANGE},
            },
        }},
    },
}
