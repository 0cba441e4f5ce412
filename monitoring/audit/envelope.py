"""Audit events and their canonical envelopes: the exact bytes the Merkle tree commits to.

A leaf hash is only as good as the bytes under it: two writers (or a writer and a verifier
years later) must turn the same event into the same bytes, and different events into
different bytes. So an envelope is RFC 8785 canonical JSON (sorted keys, no whitespace, one
spelling per string), strings are NFC-normalised first (``é`` typed as one or two code points
is one event), and floats are refused outright: ``1.0`` vs ``1`` vs ``1e0`` and rounding are
exactly the ambiguities a tamper-evident record cannot afford.

The envelope never holds personal data of an event with a data subject: the plain user id,
the origination (``source``) and the whole ``details`` object are sealed per subject by the
vault (:mod:`monitoring.audit.vault`) and the envelope commits to the ciphertext's hash only
(``pii``), so erasing the subject's key never changes a leaf. Every problem is an
:class:`EventError` naming the field as a dotted path (``details.latency``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from monitoring.audit.context import check_correlation_id
from monitoring.audit.errors import EventError
from monitoring.audit.vault import PiiCommitment
from monitoring.dsl.config import AUDIT_CATEGORIES, AUDIT_SEVERITIES
from monitoring.dsl.diagnostics import did_you_mean

SCHEMA_VERSION = 1
MAX_ENVELOPE_BYTES = 64 * 1024
"""Largest envelope (fits a tlog-tiles entry bundle's uint16 length prefix)."""
MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest personal payload (user id, source and details) sealed for a subject."""
MAX_DEPTH = 16
"""Deepest nesting of objects and lists, ``details`` itself being level 1."""
MAX_TEXT = 1024
"""Longest text field (action, resource, user id...), in characters."""
SAFE_INTEGER = 2**53 - 1
"""Integers beyond this lose precision in JSON readers that use doubles (I-JSON, RFC 7493)."""
OUTCOMES = ("success", "failure")

ENVELOPE_FIELDS = ("v", "origin", "seq", "ts", "category", "action", "severity", "resource",
                   "outcome", "actor", "correlation_id", "retention", "data", "pii")
"""Every envelope has exactly these keys (null when absent)."""
EVENT_FIELDS = ("event_type", "action", "user_id", "severity", "resource", "outcome",
                "details", "source", "correlation_id", "subject", "retention")
"""The fields an event may have: the seed's ``log_audit_event`` ones and more."""
_HINTS = {
    "category": "the category field is called 'event_type'",
    "type": "the category field is called 'event_type'",
    "user": "did you mean 'user_id'?",
    "ip": "the origination (an IP address) goes in 'source'",
    "ip_address": "the origination (an IP address) goes in 'source'",
    "timestamp": "timestamps are set by the ledger when it records the event",
    "ts": "timestamps are set by the ledger when it records the event",
    "time": "timestamps are set by the ledger when it records the event",
}
_EMPTY: Mapping[str, Any] = {}


def _nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "a list", dict: "an object", bytes: "bytes", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


class _Walk:
    """One pass over a JSON value: checks it, NFC-normalises it, estimates its size.

    ``astral_keys`` records whether any object key holds a character beyond U+FFFF: only
    then can Python's code-point key order differ from RFC 8785's UTF-16 order.
    """

    __slots__ = ("astral_keys", "size")

    def __init__(self) -> None:
        self.size = 0
        self.astral_keys = False

    def value(self, value: Any, path: str, depth: int) -> Any:
        if value is None or isinstance(value, bool):
            self.size += 5
            return value
        if isinstance(value, int):
            if not -SAFE_INTEGER <= value <= SAFE_INTEGER:
                raise EventError(path, f"the integer {value} is too large for JSON readers "
                                       f"(at most ±{SAFE_INTEGER}); write it as a string")
            self.size += 20
            return value
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, float):
            raise EventError(path, f"floats are not allowed in audit events (got {value!r}): "
                                   "they have no single canonical form; use a string or an "
                                   "integer (e.g. milliseconds instead of seconds)")
        if isinstance(value, bytes | bytearray | memoryview):
            raise EventError(path, "bytes are not allowed in audit events; encode them as a "
                                   "string (hex or base64)")
        if depth >= MAX_DEPTH:
            raise EventError(path, f"nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(value, Mapping):
            return self.mapping(value, path, depth + 1)
        if isinstance(value, list | tuple):
            self.size += 2
            return [self.value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        raise EventError(path, f"{_type_name(value)} is not a JSON value; use a string, an "
                               "integer, a boolean, null, a list or an object")

    def mapping(self, value: Mapping[Any, Any], path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.size += 2
        for key, item in value.items():
            if not isinstance(key, str):
                raise EventError(f"{path}.{key}" if path else str(key),
                                 f"object keys must be strings, not {_type_name(key)}")
            name = self.text(key, f"{path}.{key}" if path else key)
            where = f"{path}.{name}" if path else name
            if name in out:
                raise EventError(where, "two keys are the same once Unicode-normalised (NFC)")
            if (not self.astral_keys and not name.isascii()
                    and any(ord(c) > 0xFFFF for c in name)):
                self.astral_keys = True
            out[name] = self.value(item, where, depth)
        return out

    def text(self, value: str, path: str) -> str:
        if value.isascii():  # one byte per character, no surrogates, already NFC
            self.size += len(value) + 2
        else:
            try:
                self.size += len(value.encode("utf-8")) + 2
            except UnicodeEncodeError:
                raise EventError(path, "not valid Unicode (it holds a lone surrogate)") \
                    from None
            value = _nfc(value)
        if self.size > 2 * MAX_PAYLOAD_BYTES:
            raise EventError(path, f"the event is too large (more than {MAX_PAYLOAD_BYTES} "
                                   "bytes)")
        return value


def normalise_json(value: Any, path: str) -> Any:
    """``value`` checked and NFC-normalised (a copy): plain dicts, lists, str, int, bool, None.

    Raises :class:`EventError` naming the dotted path of the first bad part: floats, NaN,
    bytes, non-string keys, integers beyond ±(2**53 - 1), lone surrogates, nesting deeper
    than :data:`MAX_DEPTH`, grossly oversized values.
    """
    return _Walk().value(value, path, 0)


def check_json_value(value: Any, path: str) -> None:
    """Check that ``value`` can go into an envelope (see :func:`normalise_json`)."""
    normalise_json(value, path)


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 bytes of a value that passed :func:`normalise_json`.

    For such values (no floats, safe integers, valid Unicode) Python's compact, sorted,
    non-ASCII-escaping ``json.dumps`` writes exactly the RFC 8785 bytes, about four times
    faster than ``rfc8785`` (a pure-Python encoder), except that it orders keys by code point
    where RFC 8785 orders by UTF-16 code unit; the two orders differ only for keys holding
    characters beyond U+FFFF, which go through ``rfc8785`` itself. A property test checks
    the equivalence.
    """
    walk = _Walk()
    checked = walk.value(value, "", 0)
    return _encode(checked, walk.astral_keys)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)
"""The compact, sorted encoder (one instance: ``json.dumps`` with options builds one per call)."""
_json_str: Callable[[str], str] = json.encoder.encode_basestring
"""A string as a JSON string literal, exactly as :data:`_ENCODER` writes it inside an object."""


def _encode(value: Any, astral_keys: bool) -> bytes:
    if astral_keys:
        return rfc8785.dumps(value)
    return _ENCODER.encode(value).encode("utf-8")


def _text(name: str, value: Any, *, required: bool = False) -> str | None:
    """A short text field: a string without control characters, NFC, not too long."""
    if value is None:
        if required:
            raise EventError(name, "missing required field")
        return None
    if not isinstance(value, str):
        raise EventError(name, f"expected a string, got {_type_name(value)}")
    if value.isascii() and value.isprintable() and len(value) <= MAX_TEXT:
        if required and not value.strip():
            raise EventError(name, "must not be empty")
        return value  # the common case: nothing below can fail or change it
    if required and not value.strip():
        raise EventError(name, "must not be empty")
    if len(value) > MAX_TEXT:
        raise EventError(name, f"is {len(value)} characters long, at most {MAX_TEXT} "
                               "are allowed")
    if not value.isprintable() and any(unicodedata.category(c) == "Cc" for c in value):
        raise EventError(name, "must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError(name, "not valid Unicode (it holds a lone surrogate)") from None
    return _nfc(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise EventError(name, f"expected one of {', '.join(allowed)}; got {_type_name(value)}")
    if value not in allowed:
        hint = did_you_mean(value, allowed)
        raise EventError(name, f"unknown value {value!r}" + (f"; {hint}" if hint else "")
                         + f" (one of {', '.join(allowed)})")
    return value


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One event to record: the seed's ``log_audit_event`` fields and a few more.

    Construction checks and normalises every field (an invalid event cannot exist);
    ``details`` becomes the event's own normalised copy (plain dicts and lists), which the
    envelope is built from without checking it again: do not mutate it.
    ``outcome`` defaults from ``details["success"]`` (True -> "success", False -> "failure").
    ``subject`` names the data subject when it is not ``user_id`` (a patient whose record a
    clerk read); without either, a ``source`` (an IP address is personal data) is the subject,
    so origination is never stored in the clear. ``retention`` asks for a retention class;
    the policy may pick a longer one.
    """

    event_type: str
    action: str
    user_id: str | None = None
    severity: str = "info"
    resource: str | None = None
    outcome: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)
    source: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    retention: str | None = None
    _astral: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _choice("event_type", self.event_type, AUDIT_CATEGORIES)
        set_(self, "action", _text("action", self.action, required=True))
        _choice("severity", self.severity, AUDIT_SEVERITIES)
        for name in ("user_id", "resource", "source", "subject", "retention"):
            value = getattr(self, name)
            if value is not None:
                checked = _text(name, value)
                if checked is not value:
                    set_(self, name, checked)
        if self.correlation_id is not None:
            set_(self, "correlation_id", _nfc(check_correlation_id(self.correlation_id)))
        details = _EMPTY if self.details is None else self.details
        if not isinstance(details, Mapping):
            raise EventError("details", f"expected an object, got {_type_name(details)}")
        walk = _Walk()
        set_(self, "details", walk.mapping(details, "details", 1))
        set_(self, "_astral", walk.astral_keys)
        outcome = self.outcome
        if outcome is None:
            success = self.details.get("success")
            if isinstance(success, bool):
                outcome = "success" if success else "failure"
        set_(self, "outcome", None if outcome is None else _choice("outcome", outcome,
                                                                    OUTCOMES))

    @property
    def data_subject(self) -> str | None:
        """Whose personal data this event holds: ``subject``, else ``user_id``, else ``source``.

        ``None`` means the event has no personal fields and keeps ``details`` in the clear.
        """
        return self.subject or self.user_id or self.source


_EVENT_SLOTS = ("event_type", "action", "user_id", "severity", "resource", "outcome",
                "details", "source", "correlation_id", "subject", "retention", "_astral")


def with_correlation_id(ev: AuditEvent, correlation_id: str) -> AuditEvent:
    """A copy of ``ev`` with ``correlation_id`` set (checked); nothing else is checked again.

    The ledger fills a missing id from the producer's context with this: the copy shares the
    already normalised ``details``, so it costs a few attribute copies, not a validation.
    """
    checked = _nfc(check_correlation_id(correlation_id))
    copy = object.__new__(AuditEvent)
    for name in _EVENT_SLOTS:
        object.__setattr__(copy, name, getattr(ev, name))
    object.__setattr__(copy, "correlation_id", checked)
    return copy


def event_from_mapping(raw: Mapping[str, Any], where: str = "") -> AuditEvent:
    """An event from a decoded JSON object (a line of ``monitoring audit append``, say).

    Unknown fields are refused by name (with a did-you-mean); ``where`` (``"line 3"``)
    prefixes every message.
    """
    try:
        if not isinstance(raw, Mapping):
            raise EventError("", f"an event must be a JSON object, not {_type_name(raw)}")
        unknown = [k for k in raw if k not in EVENT_FIELDS]
        if unknown:
            raise EventError(str(unknown[0]), _unknown_message(unknown))
        values = {k: v for k, v in raw.items() if k in EVENT_FIELDS}
        for name in ("event_type", "action"):
            if values.get(name) is None:
                raise EventError(name, "missing required field")
        if values.get("severity") is None:
            values.pop("severity", None)
        return AuditEvent(**values)
    except EventError as exc:
        if where:
            exc.args = (f"{where}: {exc}",)
        raise


def _unknown_message(unknown: list[Any]) -> str:
    notes = []
    for key in unknown:
        hint = _HINTS.get(str(key)) or did_you_mean(str(key), EVENT_FIELDS)
        notes.append(f"{str(key)!r}" + (f" ({hint})" if hint else ""))
    word = "field" if len(unknown) == 1 else "fields"
    return (f"unknown {word} {', '.join(notes)}; an event has "
            + ", ".join(EVENT_FIELDS))


def personal_payload(ev: AuditEvent) -> bytes | None:
    """The canonical JSON of an event's personal fields (to be sealed), or None.

    ``None`` when the event has no data subject; otherwise ``{"details", "source",
    "user_id"}`` as RFC 8785 bytes.
    """
    if ev.data_subject is None:
        return None
    payload = {"user_id": ev.user_id, "source": ev.source, "details": ev.details}
    data = _encode(payload, ev._astral)  # every part was checked when the event was built
    if len(data) > MAX_PAYLOAD_BYTES:
        raise EventError("details", f"the personal data of this event is {len(data)} bytes "
                                    f"long, at most {MAX_PAYLOAD_BYTES} are allowed")
    return data


def build_envelope(ev: AuditEvent, *, origin: str, seq: int, ts_us: int, actor: str | None,
                   retention: str, pii: PiiCommitment | None) -> bytes:
    """The canonical envelope of ``ev`` recorded as entry ``seq`` of ledger ``origin``.

    An event with a data subject must come with ``pii`` (the commitment to its sealed
    personal payload) and its details stay out of the envelope; one without must not.
    """
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise EventError("seq", f"expected a non-negative integer, got {seq!r}")
    if not isinstance(ts_us, int) or isinstance(ts_us, bool) or ts_us < 0:
        raise EventError("ts", f"expected a non-negative integer of microseconds, got "
                               f"{ts_us!r}")
    has_subject = ev.data_subject is not None
    if has_subject and pii is None:
        raise EventError("pii", "this event has personal data (a data subject): seal it and "
                                "pass its commitment")
    if not has_subject and pii is not None:
        raise EventError("pii", "this event has no data subject, so nothing to commit to")
    envelope: dict[str, Any] = {
        "v": SCHEMA_VERSION, "origin": origin, "seq": seq, "ts": ts_us,
        "category": ev.event_type, "action": ev.action, "severity": ev.severity,
        "resource": ev.resource, "outcome": ev.outcome, "actor": actor,
        "correlation_id": ev.correlation_id, "retention": retention,
        "data": None if has_subject or not ev.details else ev.details,
        "pii": None if pii is None else {"ref": pii.ref, "sha256": pii.sha256},
    }
    for name in ("origin", "actor", "retention"):
        envelope[name] = _text(name, envelope[name], required=name != "actor")
    data = _encode(envelope, ev._astral)
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EventError("details", f"the envelope is {len(data)} bytes long, at most "
                                    f"{MAX_ENVELOPE_BYTES} are allowed")
    return data


class EnvelopeBuilder:
    """:func:`build_envelope` for the writer of one ledger, several times faster.

    The writer builds every envelope, so this is its hottest path. The bytes are the same as
    :func:`build_envelope`'s (a property test checks it): the canonical form's keys are
    sorted, so the envelope is its fixed key sequence with each value written as
    :data:`_ENCODER` writes it inside an object, and the parts that never change (the
    origin, the schema version) or rarely do (retention class names) are encoded once.
    What :func:`build_envelope` checks on every call is checked once here: the origin and
    each retention class name the first time they are seen; ``seq``, ``ts_us`` and the
    actor reference are the writer's own values. An event whose details hold object keys
    beyond U+FFFF (RFC 8785 orders those differently) and any inconsistent call (personal
    data without a commitment) go through :func:`build_envelope` itself.
    """

    def __init__(self, origin: str) -> None:
        checked = _text("origin", origin, required=True)
        assert checked is not None
        self.origin = checked
        self._origin_json = _json_str(checked)
        self._retention_json: dict[str, str] = {}

    def build(self, ev: AuditEvent, *, seq: int, ts_us: int, actor: str | None,
              retention: str, pii: PiiCommitment | None) -> bytes:
        """The canonical envelope of ``ev`` as entry ``seq`` (see :func:`build_envelope`)."""
        has_subject = ev.data_subject is not None
        retention_json = self._retention_json.get(retention)
        if ev._astral or has_subject is (pii is None) or retention_json is None:
            data = build_envelope(ev, origin=self.origin, seq=seq, ts_us=ts_us, actor=actor,
                                  retention=retention, pii=pii)
            self._retention_json[retention] = _json_str(str(_text("retention", retention)))
            return data
        js = _json_str
        if pii is not None:
            pii_json = f'{{"ref":{js(pii.ref)},"sha256":{js(pii.sha256)}}}'
            data_json = "null"
        else:
            pii_json = "null"
            data_json = _ENCODER.encode(ev.details) if ev.details else "null"
        text = (f'{{"action":{js(ev.action)},"actor":{"null" if actor is None else js(actor)},'
                f'"category":{js(ev.event_type)},"correlation_id":'
                f'{"null" if ev.correlation_id is None else js(ev.correlation_id)},'
                f'"data":{data_json},"origin":{self._origin_json},"outcome":'
                f'{"null" if ev.outcome is None else js(ev.outcome)},"pii":{pii_json},'
                f'"resource":{"null" if ev.resource is None else js(ev.resource)},'
                f'"retention":{retention_json},"seq":{seq},"severity":{js(ev.severity)},'
                f'"ts":{ts_us},"v":{SCHEMA_VERSION}}}')
        out = text.encode("utf-8")
        if len(out) > MAX_ENVELOPE_BYTES:
            raise EventError("details", f"the envelope is {len(out)} bytes long, at most "
                                        f"{MAX_ENVELOPE_BYTES} are allowed")
        return out


def _reject_float(text: str) -> Any:
    raise EventError("envelope", f"holds a number with a fraction or exponent ({text})")


def _reject_constant(text: str) -> Any:
    raise EventError("envelope", f"holds {text}, which is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise EventError(f"envelope.{key}", "the key appears twice")
        out[key] = value
    return out


def parse_envelope(data: bytes) -> dict[str, Any]:
    """The fields of a stored envelope, after checking it is one this module could write.

    Strict: exactly the envelope's keys, their types and enumerations, schema version 1, and
    the bytes must be canonical (re-encoding gives the same bytes). Raises
    :class:`EventError` naming the field.
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EventError("envelope", f"is {len(data)} bytes long, at most "
                                     f"{MAX_ENVELOPE_BYTES} are allowed")
    try:
        text = bytes(data).decode("utf-8")
        obj = json.loads(text, parse_float=_reject_float, parse_constant=_reject_constant,
                         object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as exc:
        raise EventError("envelope", f"is not UTF-8 ({exc.reason} at byte {exc.start})") \
            from None
    except json.JSONDecodeError as exc:
        raise EventError("envelope", f"is not JSON ({exc.msg} at byte {exc.pos})") from None
    except RecursionError:
        raise EventError("envelope", "nested too deeply") from None
    if not isinstance(obj, dict):
        raise EventError("envelope", f"must be a JSON object, not {_type_name(obj)}")
    _check_fields(obj)
    if _not_canonical(obj, text, bytes(data)):
        raise EventError("envelope", "is not in canonical form (RFC 8785, NFC strings)")
    return obj


_SLOW_PATH = re.compile("[\U00010000-\U0010FFFF]|[0-9]{16}")
"""Text that needs the full canonical walk: astral characters (key order) or long numbers."""


def _not_canonical(obj: Any, text: str, data: bytes) -> bool:
    """Whether re-encoding the decoded ``obj`` canonically gives other bytes than ``data``.

    Strings must be NFC: checking the whole text is equivalent, since every string sits
    between quotes, which compose with nothing.
    """
    if not unicodedata.is_normalized("NFC", text):
        return True
    try:
        if _SLOW_PATH.search(text):
            again = canonical_json(obj)
        else:
            again = _encode(obj, False)
    except (EventError, UnicodeEncodeError):
        return True
    return again != data


def _check_fields(obj: dict[str, Any]) -> None:
    missing = [k for k in ENVELOPE_FIELDS if k not in obj]
    extra = [k for k in obj if k not in ENVELOPE_FIELDS]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else [])
        raise EventError("envelope", "; ".join(parts))
    if obj["v"] != SCHEMA_VERSION or isinstance(obj["v"], bool):
        raise EventError("envelope.v", f"unsupported schema version {obj['v']!r} (this "
                                       f"reader knows {SCHEMA_VERSION})")
    for name in ("seq", "ts"):
        value = obj[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise EventError(f"envelope.{name}", f"expected a non-negative integer, got "
                                                 f"{value!r}")
    checks: tuple[tuple[str, tuple[str, ...] | None, bool], ...] = (
        ("origin", None, True), ("category", AUDIT_CATEGORIES, True), ("action", None, True),
        ("severity", AUDIT_SEVERITIES, True), ("resource", None, False),
        ("outcome", OUTCOMES, False), ("actor", None, False), ("correlation_id", None, False),
        ("retention", None, True))
    for name, allowed, required in checks:
        value = obj[name]
        if value is None and not required:
            continue
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            raise EventError(f"envelope.{name}", f"unexpected value {value!r}")
    if obj["data"] is not None and not isinstance(obj["data"], dict):
        raise EventError("envelope.data", f"expected an object or null, got "
                                          f"{_type_name(obj['data'])}")
    pii = obj["pii"]
    if pii is not None:
        if (not isinstance(pii, dict) or sorted(pii) != ["ref", "sha256"]
                or not isinstance(pii["ref"], str) or not _is_sha256_hex(pii["sha256"])):
            raise EventError("envelope.pii", "expected {\"ref\": text, \"sha256\": 64 hex "
                                             "digits}")
        if obj["data"] is not None:
            raise EventError("envelope.data", "must be null when personal data is sealed")


def _is_sha256_hex(value: Any) -> bool:
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value))
