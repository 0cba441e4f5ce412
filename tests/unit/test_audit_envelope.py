"""Audit events and canonical envelopes: validation, RFC 8785 bytes, PII never in the clear.

Tamper catalogue cases here: T06 (canonicalisation), T38 (no plain or hashed PII in any
envelope or leaf), T39 (envelope-level PII scan).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.audit.envelope import (
    ENVELOPE_FIELDS,
    MAX_DEPTH,
    MAX_ENVELOPE_BYTES,
    AuditEvent,
    EnvelopeBuilder,
    build_envelope,
    canonical_json,
    check_json_value,
    event_from_mapping,
    normalise_json,
    parse_envelope,
    personal_payload,
)
from monitoring.audit.errors import AuditError, EventError
from monitoring.audit.merkle import leaf_hash
from monitoring.audit.vault import PiiCommitment, SubjectVault

ORIGIN = "monitoring.local/audit/0123456789abcdef0123456789abcdef"
SEED_EVENT = {"event_type": "authentication", "action": "login", "user_id": "user123",
              "severity": "info", "details": {"ip_address": "192.168.1.1", "success": True}}


def envelope(ev: AuditEvent, seq: int = 7, pii: PiiCommitment | None = None,
             actor: str | None = None) -> bytes:
    return build_envelope(ev, origin=ORIGIN, seq=seq, ts_us=1_700_000_000_000_000,
                          actor=actor, retention="standard", pii=pii)


def plain(details: dict[str, Any], **fields: Any) -> bytes:
    """The envelope of a subject-less system event (details stay in the envelope)."""
    return envelope(event_from_mapping({"event_type": "system", "action": "rule.evaluated",
                                        "details": details, **fields}))


def error_of(raw: Any, where: str = "") -> EventError:
    with pytest.raises(EventError) as info:
        event_from_mapping(raw, where)
    return info.value


# ------------------------------------------------------------------ events


def test_seed_example_is_an_event_with_outcome_from_success() -> None:
    ev = event_from_mapping(SEED_EVENT)
    assert (ev.event_type, ev.action, ev.user_id, ev.severity) == (
        "authentication", "login", "user123", "info")
    assert ev.outcome == "success"
    assert ev.data_subject == "user123"
    failed = event_from_mapping({**SEED_EVENT, "details": {"success": False}})
    assert failed.outcome == "failure"
    explicit = event_from_mapping({**SEED_EVENT, "outcome": "failure"})
    assert explicit.outcome == "failure"
    assert event_from_mapping({"event_type": "system", "action": "x",
                               "details": {"success": 1}}).outcome is None


def test_data_subject_is_subject_then_user_then_source() -> None:
    base = {"event_type": "data_access", "action": "read"}
    assert event_from_mapping(base).data_subject is None
    assert event_from_mapping({**base, "source": "10.0.0.1"}).data_subject == "10.0.0.1"
    assert event_from_mapping({**base, "source": "10.0.0.1", "user_id": "u"}).data_subject == "u"
    assert event_from_mapping({**base, "user_id": "u", "subject": "patient-9"}).data_subject \
        == "patient-9"


@pytest.mark.parametrize(("raw", "field", "fragment"), [
    ({"event_type": "authentication"}, "action", "missing required field"),
    ({"action": "login"}, "event_type", "missing required field"),
    ({"event_type": "authentcation", "action": "x"}, "event_type",
     "did you mean 'authentication'?"),
    ({"event_type": "system", "action": "x", "severity": "warn"}, "severity",
     "did you mean 'warning'?"),
    ({"event_type": "system", "action": "x", "outcome": "ok"}, "outcome",
     "one of success, failure"),
    ({"event_type": "system", "action": "x", "usr_id": "a"}, "usr_id",
     "did you mean 'user_id'?"),
    ({"event_type": "system", "action": "x", "category": "a"}, "category",
     "the category field is called 'event_type'"),
    ({"event_type": "system", "action": "x", "timestamp": 5}, "timestamp",
     "timestamps are set by the ledger"),
    ({"event_type": "system", "action": "x", "user_id": 123}, "user_id",
     "expected a string, got an integer"),
    ({"event_type": "system", "action": "  "}, "action", "must not be empty"),
    ({"event_type": "system", "action": "a\nb"}, "action", "control characters"),
    ({"event_type": "system", "action": "x" * 1025}, "action", "at most 1024"),
    ({"event_type": "system", "action": "x", "details": [1]}, "details",
     "expected an object, got a list"),
    ({"event_type": "system", "action": "x", "correlation_id": "a\tb"}, "correlation_id",
     "control characters"),
])
def test_bad_events_name_the_field(raw: dict[str, Any], field: str, fragment: str) -> None:
    err = error_of(raw)
    assert err.field == field
    assert fragment in str(err)
    assert str(err).startswith(f"{field}: ")


def test_location_prefixes_the_message() -> None:
    err = error_of({"event_type": "system"}, "line 3")
    assert str(err) == "line 3: action: missing required field"
    assert err.field == "action"
    assert "an event must be a JSON object, not a list" in str(error_of([1], "line 9"))


def test_several_unknown_fields_are_all_named() -> None:
    err = error_of({"event_type": "system", "action": "x", "detail": {}, "ip": "1.2.3.4"})
    assert "unknown fields 'detail' (did you mean 'details'?), 'ip' (the origination" in str(err)


@pytest.mark.parametrize(("details", "path", "fragment"), [
    ({"latency": 1.5}, "details.latency", "floats are not allowed in audit events"),
    ({"a": [1, 2.0]}, "details.a[1]", "use a string or an integer"),
    ({"a": {"b": float("nan")}}, "details.a.b", "floats are not allowed"),
    ({"a": float("inf")}, "details.a", "floats are not allowed"),
    ({"raw": b"\x00\x01"}, "details.raw", "bytes are not allowed"),
    ({"n": 2**53}, "details.n", "too large for JSON readers"),
    ({"n": -(2**53)}, "details.n", "too large for JSON readers"),
    ({"s": "\ud800"}, "details.s", "lone surrogate"),
    ({"x": {1, 2}}, "details.x", "a set is not a JSON value"),
    ({"x": {3: "a"}}, "details.x.3", "object keys must be strings, not an integer"),
    ({"e\u0301": 1, "\u00e9": 2}, "details.\u00e9", "same once Unicode-normalised"),
])
def test_details_values_are_checked_with_dotted_paths(details: dict[Any, Any], path: str,
                                                      fragment: str) -> None:
    err = error_of({"event_type": "system", "action": "x", "details": details})
    assert err.field == path
    assert fragment in err.message


def test_integers_at_the_safe_limit_are_accepted() -> None:
    ev = event_from_mapping({"event_type": "system", "action": "x",
                             "details": {"a": 2**53 - 1, "b": -(2**53 - 1)}})
    assert json.loads(envelope(ev))["data"] == {"a": 2**53 - 1, "b": -(2**53 - 1)}


def test_depth_limit() -> None:
    nested: Any = 1
    for _ in range(MAX_DEPTH):
        nested = {"a": nested}
    event_from_mapping({"event_type": "system", "action": "x", "details": nested})
    err = error_of({"event_type": "system", "action": "x", "details": {"a": nested}})
    assert "nested too deeply" in err.message
    assert err.field.startswith("details.a.a.")


def test_size_limits() -> None:
    big = {"blob": "x" * (MAX_ENVELOPE_BYTES - 400)}
    plain(big)  # fits
    with pytest.raises(EventError, match=r"the envelope is .* bytes long, at most 65536"):
        plain({"blob": "x" * MAX_ENVELOPE_BYTES})
    ev = event_from_mapping({**SEED_EVENT, "details": {"blob": "y" * MAX_ENVELOPE_BYTES}})
    with pytest.raises(EventError, match=r"personal data of this event is .* at most 65536"):
        personal_payload(ev)
    err = error_of({"event_type": "system", "action": "x",
                    "details": {"blob": "z" * (3 * MAX_ENVELOPE_BYTES)}})
    assert "too large" in err.message


def test_check_json_value_is_the_same_check() -> None:
    check_json_value({"a": [1, "b", None, True, {"c": -3}]}, "x")
    with pytest.raises(EventError, match=r"^x\.a\[0\]: floats"):
        check_json_value({"a": [0.5]}, "x")


def test_event_errors_are_audit_errors() -> None:
    assert isinstance(error_of({}), AuditError)


# ------------------------------------------------------------------ envelopes


def test_envelope_has_every_field_and_round_trips() -> None:
    ev = event_from_mapping({"event_type": "alert", "action": "firing", "severity": "warning",
                             "resource": "rule/high_cpu", "correlation_id": "c0ffee",
                             "details": {"value": "97", "labels": {"host": "a"}}})
    data = envelope(ev, seq=42)
    fields = parse_envelope(data)
    assert tuple(sorted(fields)) == tuple(sorted(ENVELOPE_FIELDS))
    assert fields == {"v": 1, "origin": ORIGIN, "seq": 42, "ts": 1_700_000_000_000_000,
                      "category": "alert", "action": "firing", "severity": "warning",
                      "resource": "rule/high_cpu", "outcome": None, "actor": None,
                      "correlation_id": "c0ffee", "retention": "standard",
                      "data": {"value": "97", "labels": {"host": "a"}}, "pii": None}
    assert data == rfc8785.dumps(fields)


def test_empty_details_give_null_data() -> None:
    assert json.loads(plain({}))["data"] is None


def test_subject_events_need_a_commitment_and_keep_details_out() -> None:
    ev = event_from_mapping(SEED_EVENT)
    with pytest.raises(EventError, match=r"^pii: this event has personal data"):
        envelope(ev)
    commitment = PiiCommitment("s-" + "ab" * 16, "cd" * 32)
    fields = json.loads(envelope(ev, pii=commitment, actor="s-" + "ab" * 16))
    assert fields["data"] is None
    assert fields["pii"] == {"ref": "s-" + "ab" * 16, "sha256": "cd" * 32}
    with pytest.raises(EventError, match=r"^pii: this event has no data subject"):
        envelope(event_from_mapping({"event_type": "system", "action": "x"}), pii=commitment)


def test_personal_payload_holds_user_source_and_details() -> None:
    ev = event_from_mapping({**SEED_EVENT, "source": "203.0.113.9"})
    payload = personal_payload(ev)
    assert payload is not None
    assert json.loads(payload) == {"user_id": "user123", "source": "203.0.113.9",
                                   "details": SEED_EVENT["details"]}
    assert payload == rfc8785.dumps(json.loads(payload))
    assert personal_payload(event_from_mapping({"event_type": "system", "action": "x"})) is None


@pytest.mark.parametrize("seq", [-1, True, "3"])
def test_bad_seq(seq: Any) -> None:
    with pytest.raises(EventError, match=r"^seq: expected a non-negative integer"):
        envelope(event_from_mapping({"event_type": "system", "action": "x"}), seq=seq)


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda d: d.replace(b'"v":1', b'"v":2'), "unsupported schema version 2"),
    (lambda d: d.replace(b'"seq":7', b'"seq":7.0'), "fraction or exponent"),
    (lambda d: d.replace(b'"seq":7', b'"seq":-7'), "envelope.seq: expected a non-negative"),
    (lambda d: d.replace(b'"category":"system"', b'"category":"sys"'), "envelope.category"),
    (lambda d: d.replace(b',"v":1', b',"v":1,"v":1'), "the key appears twice"),
    (lambda d: d.replace(b',"v":1', b',"v":1,"x":1'), "unexpected x"),
    (lambda d: d.replace(b'"action":"x",', b""), "missing action"),
    (lambda d: d.replace(b'"action":"x"', b'"action": "x"'), "not in canonical form"),
    (lambda d: d.replace(b'"action":"x","actor":null', b'"actor":null,"action":"x"'),
     "not in canonical form"),
    (lambda d: d.replace(b'"action":"x"', b'"action":"\\u0078"'), "not in canonical form"),
    (lambda d: d.replace(b'"k":"\xc3\xa9"', b'"k":"e\xcc\x81"'), "not in canonical form"),
    (lambda d: d.replace(b'"k":"\xc3\xa9"', b'"k":"\xff"'), "is not UTF-8"),
    (lambda d: d.replace(b'"data":{"k":"\xc3\xa9"}', b'"data":[1]'), "envelope.data"),
    (lambda d: d.replace(b'"pii":null', b'"pii":{"ref":"s-1","sha256":"00"}'), "envelope.pii"),
    (lambda d: d[:-1], "is not JSON"),
    (lambda d: b"[" + d + b"]", "must be a JSON object"),
])
def test_parse_envelope_is_strict(mutate: Any, fragment: str) -> None:
    data = plain({"k": "\u00e9"}, action="x")
    parse_envelope(data)
    with pytest.raises(EventError) as info:
        parse_envelope(mutate(data))
    assert fragment in str(info.value)


def test_parse_envelope_refuses_data_beside_pii() -> None:
    ev = event_from_mapping(SEED_EVENT)
    data = envelope(ev, pii=PiiCommitment("s-" + "ab" * 16, "cd" * 32))
    parse_envelope(data)
    with pytest.raises(EventError, match=r"envelope.data: must be null"):
        parse_envelope(data.replace(b'"data":null', b'"data":{"a":1}'))


# ------------------------------------------------------------------ T06 canonicalisation


def test_t06_equal_inputs_give_identical_bytes() -> None:
    """Key order, whitespace, NFC vs NFD, escaped Unicode: one envelope, one leaf."""
    texts = [
        '{"event_type":"system","action":"caf\u00e9","details":{"b":1,"a":"\u00e9"}}',
        '{ "details" : { "a" : "e\u0301" , "b" : 1 } ,\n "action" : "cafe\u0301",'
        ' "event_type" : "system" }',
        '{"action":"caf\\u00e9","event_type":"system","details":{"a":"\\u0065\\u0301","b":1}}',
    ]
    envelopes = {envelope(event_from_mapping(json.loads(t))) for t in texts}
    assert len(envelopes) == 1
    [data] = envelopes
    assert "caf\u00e9".encode() in data and b"\\u" not in data
    assert len({leaf_hash(e) for e in envelopes}) == 1
    # NFC/NFD in keys too, and a Python mapping in another insertion order.
    a = plain({"\u00e9t\u00e9": {"y": True, "x": None}})
    b = plain({"e\u0301te\u0301": {"x": None, "y": True}})
    assert a == b


@pytest.mark.parametrize(("left", "right"), [
    ({"n": 1}, {"n": "1"}),
    ({"n": True}, {"n": 1}),
    ({"n": False}, {"n": 0}),
    ({"n": None}, {}),
    ({"n": []}, {"n": {}}),
    ({"n": "a b"}, {"n": "a  b"}),
    ({"n": "\u00c5"}, {"n": "\u212b\u0301"}),  # NFC keeps these apart (different letters)
    ({"n": [1, 2]}, {"n": [2, 1]}),
])
def test_t06_different_values_give_different_bytes(left: dict[str, Any],
                                                   right: dict[str, Any]) -> None:
    assert leaf_hash(plain(left)) != leaf_hash(plain(right))


@pytest.mark.parametrize("value", [1.0, 1e0, 0.5, float("nan"), -0.0])
def test_t06_floats_are_rejected(value: float) -> None:
    err = error_of({"event_type": "system", "action": "x", "details": {"v": value}})
    assert err.field == "details.v" and "floats are not allowed" in err.message


def test_t06_floats_in_stored_envelopes_are_rejected() -> None:
    data = plain({"v": 1})
    with pytest.raises(EventError, match="fraction or exponent"):
        parse_envelope(data.replace(b'"v":1}', b'"v":1.0}'))
    with pytest.raises(EventError, match="fraction or exponent"):
        parse_envelope(data.replace(b'"v":1}', b'"v":1e0}'))
    with pytest.raises(EventError, match="NaN, which is not JSON"):
        parse_envelope(data.replace(b'"v":1}', b'"v":NaN}'))


def test_t06_key_order_follows_utf16_beyond_the_bmp() -> None:
    """RFC 8785 sorts keys by UTF-16 code units: U+1F600 (a surrogate pair) before U+E000."""
    data = plain({"\ue000": 1, "\U0001f600": 2})
    assert data.index("\U0001f600".encode()) < data.index("\ue000".encode())
    assert parse_envelope(data)["data"] == {"\ue000": 1, "\U0001f600": 2}


json_text = st.text(st.characters(codec="utf-8"), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | json_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_t06_fast_encoder_matches_rfc8785(value: Any) -> None:
    """canonical_json takes a json.dumps fast path; its bytes must be rfc8785's exactly."""
    normal = normalise_json(value, "v")
    assert canonical_json(value) == rfc8785.dumps(normal)
    assert normalise_json(normal, "v") == normal  # NFC is idempotent


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(json_text, json_values, max_size=6), st.randoms())
def test_t06_envelopes_ignore_insertion_order(details: dict[str, Any], rnd: Any) -> None:
    try:
        first = plain(details)
    except EventError:
        return  # keys that collide once normalised
    items = list(details.items())
    rnd.shuffle(items)
    assert plain(dict(items)) == first
    assert parse_envelope(first)["data"] == (normalise_json(details, "d") or None)


short_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
                     min_size=1, max_size=12)
optional_text = st.none() | short_text


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({
    "event_type": st.sampled_from(["authentication", "system", "data_access", "alert"]),
    "action": short_text, "severity": st.sampled_from(["info", "warning", "critical"]),
    "user_id": optional_text, "resource": optional_text, "source": optional_text,
    "subject": optional_text, "correlation_id": st.none() | st.from_regex(r"[ -~]{1,20}",
                                                                          fullmatch=True),
    "outcome": st.none() | st.sampled_from(["success", "failure"]),
    "details": st.dictionaries(json_text, json_values, max_size=4)}),
    st.integers(0, 2**53 - 1), st.integers(0, 2**53 - 1), optional_text,
    st.sampled_from(["standard", "pci_dss", "Ωmega", "cafe\u0301"]))
def test_t06_the_writers_envelope_builder_writes_build_envelopes_bytes(
        raw: dict[str, Any], seq: int, ts: int, actor: str | None, retention: str) -> None:
    """EnvelopeBuilder (the writer's fast path) must be byte for byte build_envelope."""
    try:
        ev = event_from_mapping(raw)
    except EventError:
        return  # whitespace-only action, keys equal once normalised...
    pii = PiiCommitment("s-" + "ab" * 16, "cd" * 32) if ev.data_subject else None
    builder = EnvelopeBuilder(ORIGIN)
    for _ in range(2):  # the first call learns the retention class, the second uses it
        fast = builder.build(ev, seq=seq, ts_us=ts, actor=actor, retention=retention, pii=pii)
        assert fast == build_envelope(ev, origin=ORIGIN, seq=seq, ts_us=ts, actor=actor,
                                      retention=retention, pii=pii)
    parse_envelope(fast)


def test_envelope_builder_refuses_what_build_envelope_refuses() -> None:
    builder = EnvelopeBuilder(ORIGIN)
    subject = event_from_mapping(SEED_EVENT)
    with pytest.raises(EventError, match=r"^pii: this event has personal data"):
        builder.build(subject, seq=1, ts_us=1, actor=None, retention="standard", pii=None)
    big = event_from_mapping({"event_type": "system", "action": "a",
                              "details": {f"k{i}": "x" * 1000 for i in range(70)}})
    builder.build(event_from_mapping({"event_type": "system", "action": "a"}), seq=1, ts_us=1,
                  actor=None, retention="standard", pii=None)  # retention class now known
    with pytest.raises(EventError, match=r"the envelope is .* bytes long, at most 65536"):
        builder.build(big, seq=2, ts_us=1, actor=None, retention="standard", pii=None)
    with pytest.raises(EventError, match=r"^origin: must not contain control characters"):
        EnvelopeBuilder("bad\norigin")


@pytest.mark.parametrize(("value", "fragment"), [
    ("tab\there", "control characters"), (" ", "must not be empty"),
    ("x" * 1025, "at most 1024"), ("\ud800", "lone surrogate")])
def test_text_fields_are_checked_on_the_ascii_fast_path_too(value: str, fragment: str) -> None:
    assert fragment in str(error_of({"event_type": "system", "action": value}))


def test_non_ascii_text_is_still_normalised_to_nfc() -> None:
    ev = event_from_mapping({"event_type": "system", "action": "cafe\u0301",
                             "resource": "re\u0301sume\u0301", "details": {"k": "e\u0301"}})
    assert (ev.action, ev.resource, ev.details) == ("caf\u00e9", "r\u00e9sum\u00e9",
                                                   {"k": "\u00e9"})


# ------------------------------------------------------------------ T38 / T39 personal data

EMAIL = "Alice.Example@example.org"
IP = "198.51.100.23"
SECRET_DETAIL = "diagnosis: hypertension"


def _digests(text: str) -> list[bytes]:
    """Every form of a plain hash of ``text`` a careless ledger might store."""
    out = []
    for form in {text, text.lower(), text.upper()}:
        raw = form.encode()
        for algo in ("sha256", "sha1", "md5"):
            digest = hashlib.new(algo, raw).digest()
            out += [digest, digest.hex().encode(), digest.hex().upper().encode(),
                    base64.b64encode(digest), base64.urlsafe_b64encode(digest).rstrip(b"=")]
    return out


def _needles(text: str) -> list[bytes]:
    """Plain forms of a PII string: as is, case variants, JSON-escaped, UTF-16."""
    forms = {text, text.lower(), text.upper(), unicodedata.normalize("NFD", text)}
    out = [f.encode() for f in forms]
    out += [json.dumps(f).encode()[1:-1] for f in forms]
    out += [f.encode("utf-16-le") for f in forms]
    return out


def _sealed_envelopes(tmp_path: Path) -> tuple[list[bytes], SubjectVault]:
    vault = SubjectVault.open(tmp_path / "vault", os.urandom(32))
    events = [
        {"event_type": "authentication", "action": "login", "user_id": EMAIL, "source": IP,
         "resource": "auth", "details": {"ip_address": IP, "success": False}},
        {"event_type": "data_access", "action": "read", "user_id": "clerk-7", "subject": EMAIL,
         "resource": "records", "details": {"note": SECRET_DETAIL, "email": EMAIL}},
        {"event_type": "security", "action": "blocked", "source": IP,
         "details": {"reason": SECRET_DETAIL}},
    ]
    out = []
    for seq, raw in enumerate(events):
        ev = event_from_mapping(raw)
        subject = ev.data_subject
        assert subject is not None
        payload = personal_payload(ev)
        assert payload is not None
        sealed = vault.seal(subject, payload, f"{ORIGIN}|{seq}".encode())
        actor = vault.ref_for(ev.user_id) if ev.user_id else None
        out.append(envelope(ev, seq=seq, pii=sealed.commitment(), actor=actor))
    return out, vault


def test_t38_no_plain_hash_of_pii_in_envelopes_or_leaves(tmp_path: Path) -> None:
    """A dictionary attack on a known email or IP finds nothing: no plain hash is stored."""
    envelopes, _ = _sealed_envelopes(tmp_path)
    for pii in (EMAIL, IP, SECRET_DETAIL, "clerk-7"):
        digests = _digests(pii)
        for data in envelopes:
            leaf = leaf_hash(data)
            for digest in digests:
                assert digest not in data, (pii, digest)
                assert leaf != digest and digest not in leaf
            assert leaf != hashlib.sha256(b"\x00" + pii.encode()).digest()
    # The scan itself works: a ledger that stored a plain hash would be caught.
    careless = plain({"user_hash": hashlib.sha256(EMAIL.lower().encode()).hexdigest()})
    assert any(digest in careless for digest in _digests(EMAIL))


def test_t38_commitment_is_to_the_ciphertext_only(tmp_path: Path) -> None:
    envelopes, vault = _sealed_envelopes(tmp_path)
    fields = parse_envelope(envelopes[0])
    assert fields["pii"]["ref"].startswith("s-")
    assert fields["actor"] == fields["pii"]["ref"]  # the login's subject is the user
    payload = personal_payload(event_from_mapping(
        {"event_type": "authentication", "action": "login", "user_id": EMAIL, "source": IP,
         "resource": "auth", "details": {"ip_address": IP, "success": False}}))
    assert payload is not None
    assert fields["pii"]["sha256"] != hashlib.sha256(payload).hexdigest()
    assert vault.ref_for(EMAIL, create=False) == fields["pii"]["ref"]


def test_t39_pii_scan_of_envelopes_finds_nothing(tmp_path: Path) -> None:
    envelopes, vault = _sealed_envelopes(tmp_path)
    haystacks = list(envelopes)
    haystacks += [p.read_bytes() for p in sorted(vault.folder.iterdir())]
    haystacks += [p.name.encode() for p in sorted(vault.folder.iterdir())]
    hits = [(pii, i) for pii in (EMAIL, IP, SECRET_DETAIL, "clerk-7")
            for needle in _needles(pii) for i, hay in enumerate(haystacks) if needle in hay]
    assert hits == []
    # The scanner itself works: the same events without a subject would leak.
    leaky = plain({"email": EMAIL})
    assert any(needle in leaky for needle in _needles(EMAIL))
