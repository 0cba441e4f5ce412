"""Tests for monitoring.templates: Prometheus's Go text/template dialect."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.templates import (
    FUNCTION_NAMES,
    MAX_NESTING_DEPTH,
    MAX_TEMPLATE_LENGTH,
    Template,
    TemplateContext,
    TemplateRenderError,
    TemplateSyntaxError,
    parse_template,
)
from monitoring.templates.functions import format_float, go_sprintf, parse_go_float

Rows = list[tuple[dict[str, str], float]]

EXTERNAL_URL = "http://testhost:9090/path/prefix"
LABELS = {"instance": "host:9100", "job": "node"}


def rows(*samples: tuple[dict[str, str], float]) -> Callable[[str], Rows]:
    """A query function that answers every query with ``samples``."""
    return lambda _query: list(samples)


def render(text: str, value: float = 0.0, labels: dict[str, str] | None = None,
           **kwargs: Any) -> str:
    ctx = TemplateContext(labels=LABELS if labels is None else labels, value=value,
                          external_url=kwargs.pop("external_url", EXTERNAL_URL), **kwargs)
    return parse_template(text).render(ctx)


def render_error(text: str, value: float = 0.0, **kwargs: Any) -> TemplateRenderError:
    with pytest.raises(TemplateRenderError) as info:
        render(text, value, **kwargs)
    return info.value


# ---------------------------------------------------------------------------
# Prometheus's own expectations (template/template_test.go and
# prometheus/common helpers/templates/time_test.go). Float inputs go through
# $value (a float64, as in Prometheus); ints and strings are literals.

INF, NAN = math.inf, math.nan

PROMETHEUS_CASES: list[tuple[str, float, str]] = [
    ("plain text", 0, "plain text"),
    ("{{ 1 }}", 0, "1"),
    ('{{ "<b>" }}', 0, "<b>"),
    ('{{ reReplaceAll "(a)b" "x$1" "ab" }}', 0, "xa"),
    # humanize
    ("{{ humanize $value }}", 0.0, "0"),
    ("{{ humanize $value }}", 1.0, "1"),
    ("{{ humanize $value }}", 1234567.0, "1.235M"),
    ("{{ humanize $value }}", 0.12, "120m"),
    ('{{ humanize "0.0" }}:{{ humanize "1.0" }}:{{ humanize "1234567.0" }}:{{ humanize ".12" }}',
     0, "0:1:1.235M:120m"),
    ("{{ humanize 0 }}:{{ humanize -1 }}:{{ humanize 1 }}:{{ humanize 1234567 }}:"
     "{{ humanize 9223372036854775807 }}", 0, "0:-1:1:1.235M:9.223E"),
    # humanize1024
    ("{{ humanize1024 $value }}", 0.0, "0"),
    ("{{ humanize1024 $value }}", 1.0, "1"),
    ("{{ humanize1024 $value }}", 1048576.0, "1Mi"),
    ("{{ humanize1024 $value }}", 0.12, "0.12"),
    ('{{ humanize1024 "0.0" }}:{{ humanize1024 "1.0" }}:{{ humanize1024 "1048576.0" }}:'
     '{{ humanize1024 ".12" }}', 0, "0:1:1Mi:0.12"),
    ("{{ humanize1024 0 }}:{{ humanize1024 -1 }}:{{ humanize1024 1 }}:{{ humanize1024 1234567 }}:"
     "{{ humanize1024 9223372036854775807 }}", 0, "0:-1:1:1.177Mi:8Ei"),
    # humanizeDuration
    ("{{ humanizeDuration $value }}", 0, "0s"),
    ("{{ humanizeDuration $value }}", 1, "1s"),
    ("{{ humanizeDuration $value }}", 60, "1m 0s"),
    ("{{ humanizeDuration $value }}", 3600, "1h 0m 0s"),
    ("{{ humanizeDuration $value }}", 86400, "1d 0h 0m 0s"),
    ("{{ humanizeDuration $value }}", 86400 + 3600, "1d 1h 0m 0s"),
    ("{{ humanizeDuration $value }}", -(86400 * 2 + 3600 * 3 + 60 * 4 + 5), "-2d 3h 4m 5s"),
    ("{{ humanizeDuration $value }}", 899.99, "14m 59s"),
    ("{{ humanizeDuration $value }}", 3661, "1h 1m 1s"),
    ("{{ humanizeDuration $value }}", 0.1, "100ms"),
    ("{{ humanizeDuration $value }}", 0.0001, "100us"),
    ("{{ humanizeDuration $value }}", 0.12345, "123.5ms"),
    ("{{ humanizeDuration $value }}", 60.1, "1m 0s"),
    ("{{ humanizeDuration $value }}", 60.5, "1m 0s"),
    ("{{ humanizeDuration $value }}", 1.2345, "1.234s"),
    ("{{ humanizeDuration $value }}", 12.345, "12.35s"),
    ('{{ humanizeDuration "0" }}:{{ humanizeDuration "1" }}:{{ humanizeDuration "60" }}:'
     '{{ humanizeDuration "3600" }}:{{ humanizeDuration "86400" }}', 0,
     "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s"),
    ('{{ humanizeDuration ".1" }}:{{ humanizeDuration ".0001" }}:{{ humanizeDuration ".12345" }}:'
     '{{ humanizeDuration "60.1" }}:{{ humanizeDuration "60.5" }}:{{ humanizeDuration "1.2345" }}:'
     '{{ humanizeDuration "12.345" }}', 0, "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s"),
    ("{{ humanizeDuration 0 }}:{{ humanizeDuration -1 }}:{{ humanizeDuration 1 }}:"
     "{{ humanizeDuration 1234567 }}", 0, "0s:-1s:1s:14d 6h 56m 7s"),
    # Inf and NaN, as float64 and as strings
    *[("{{ humanize $value }}:{{ humanize1024 $value }}:{{ humanizeDuration $value }}:"
       "{{ humanizeTimestamp $value }}", v, ":".join([text] * 4))
      for v, text in [(INF, "+Inf"), (-INF, "-Inf"), (NAN, "NaN")]],
    *[(f'{{{{ humanize "{s}" }}}}:{{{{ humanize1024 "{s}" }}}}:{{{{ humanizeDuration "{s}" }}}}:'
       f'{{{{ humanizeTimestamp "{s}" }}}}', 0, ":".join([s] * 4))
      for s in ("+Inf", "-Inf", "NaN")],
    # humanizePercentage
    ("{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:"
     "{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}", 0,
     "-22.22%:0%:12.35%:123.5%"),
    ('{{ "-0.22222" | humanizePercentage }}:{{ "0.0" | humanizePercentage }}:'
     '{{ "0.1234567" | humanizePercentage }}:{{ "1.23456" | humanizePercentage }}', 0,
     "-22.22%:0%:12.35%:123.5%"),
    ("{{ humanizePercentage 0 }}:{{ humanizePercentage -1 }}:{{ humanizePercentage 1 }}:"
     "{{ humanizePercentage 1234567 }}:{{ humanizePercentage 9223372036854775807 }}", 0,
     "0%:-100%:100%:1.235e+08%:9.223e+20%"),
    ("{{ humanizePercentage $value }}", 0.1234, "12.34%"),
    # humanizeTimestamp and toTime
    ("{{ humanizeTimestamp 0 }}", 0, "1970-01-01 00:00:00 +0000 UTC"),
    ("{{ humanizeTimestamp -1 }}", 0, "1969-12-31 23:59:59 +0000 UTC"),
    ("{{ humanizeTimestamp 1 }}", 0, "1970-01-01 00:00:01 +0000 UTC"),
    ("{{ humanizeTimestamp 1234567 }}", 0, "1970-01-15 06:56:07 +0000 UTC"),
    ("{{ humanizeTimestamp 9223372036 }}", 0, "2262-04-11 23:47:16 +0000 UTC"),
    ("{{ 1435065584.128 | humanizeTimestamp }}", 0, "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ "1435065584.128" | humanizeTimestamp }}', 0, "2015-06-23 13:19:44.128 +0000 UTC"),
    ("{{ humanizeTimestamp $value }}", 1657155181, "2022-07-07 00:53:01 +0000 UTC"),
    ('{{ (1435065584.128 | toTime).Format "2006" }}', 0, "2015"),
    ('{{ ("1435065584.128" | toTime).Format "2006" }}', 0, "2015"),
    # strings
    ('{{ "aa bb CC" | title }}', 0, "Aa Bb CC"),
    ('{{ "aa bb CC" | toUpper }}', 0, "AA BB CC"),
    ('{{ "aA bB CC" | toLower }}', 0, "aa bb cc"),
    ('{{ match "a+" "aa" }} {{ match "a+" "b" }}', 0, "true false"),
    ('{{ graphLink "up" }}', 0, "/graph?g0.expr=up&g0.tab=0"),
    ('{{ tableLink "up" }}', 0, "/graph?g0.expr=up&g0.tab=1"),
    ("{{ pathPrefix }}", 0, "/path/prefix"),
    ("{{ externalURL }}", 0, "http://testhost:9090/path/prefix"),
    ('{{ printf "%0.2f" (parseDuration "1h2m10ms") }}', 0, "3720.01"),
    # stripPort / stripDomain
    *[(f'{{{{ "{arg}" | stripPort }}}}', 0, out) for arg, out in [
        ("foo.example.com", "foo.example.com"), ("foo.example.com:12345", "foo.example.com"),
        ("192.0.2.1", "192.0.2.1"), ("192.0.2.1:12345", "192.0.2.1"),
        ("2001:0DB8::1", "2001:0DB8::1"), ("[2001:0DB8::1]:12345", "2001:0DB8::1"),
        ("[2001:0DB8::1]::12345", "[2001:0DB8::1]::12345")]],
    *[(f'{{{{ "{arg}" | stripDomain }}}}', 0, out) for arg, out in [
        ("foo.example.com", "foo"), ("foo.example.com:12345", "foo:12345"),
        ("192.0.2.1", "192.0.2.1"), ("192.0.2.1:12345", "192.0.2.1:12345"),
        ("2001:0DB8::1", "2001:0DB8::1"), ("[2001:0DB8::1]:12345", "[2001:0DB8::1]:12345"),
        ("[2001:0DB8::1]::12345", "[2001:0DB8::1]::12345")]],
    # args (Prometheus uses it with {{template}}; here through with)
    ('{{ with args 1 "2" }}{{ .arg0 }} {{ .arg1 }}{{ end }}', 0, "1 2"),
    ("{{ (args).Foo }}", 0, "<no value>"),
]


@pytest.mark.parametrize(("text", "value", "expected"), PROMETHEUS_CASES)
def test_prometheus_expansions(text: str, value: float, expected: str) -> None:
    assert render(text, value) == expected


METRIC_A = ({"__name__": "metric", "instance": "a"}, 11.0)
METRIC_B = ({"__name__": "metric", "instance": "b"}, 21.0)

QUERY_CASES: list[tuple[str, Callable[[str], Rows], str]] = [
    ('{{ query "1.5" | first | value }}', rows(({}, 1.5)), "1.5"),
    ("{{ query \"metric{instance='a'}\" | first | value }}", rows(METRIC_A), "11"),
    ("{{ query \"metric{instance='a'}\" | first | label \"instance\" }}", rows(METRIC_A), "a"),
    ("{{ query \"metric{__value__='a'}\" | first | strvalue }}",
     rows(({"__name__": "metric", "__value__": "a"}, 11)), "a"),
    ("{{ query \"metric{instance='a'}\" | first | label \"foo\" }}", rows(METRIC_A), ""),
    ('{{ $x := query "metric" | first }}{{ $x.Labels.foo }}', rows(METRIC_A), ""),
    ('{{ range query "metric" | sortByLabel "instance" }}{{.Labels.instance}}:{{.Value}}: {{end}}',
     rows(METRIC_B, METRIC_A), "a:11: b:21: "),
    ('{{ with query "up" }}{{ . | first | value | humanize }}{{ else }}none{{ end }}',
     rows(), "none"),
    ('{{ range $i, $s := query "up" }}{{ $i }}={{ $s.Value }} {{ end }}',
     rows(METRIC_A, METRIC_B), "0=11 1=21 "),
    ('{{ len (query "up") }}', rows(METRIC_A, METRIC_B), "2"),
    ('{{ print (query "up" | first) }}', rows(({"a": "b"}, 1.0)), "&{map[a:b] 1}"),
    ('{{ query "up" | first }}', rows(({"a": "b"}, 1.0)), "{map[a:b] 1}"),
]


@pytest.mark.parametrize(("text", "query", "expected"), QUERY_CASES)
def test_query_functions(text: str, query: Callable[[str], Rows], expected: str) -> None:
    assert render(text, query=query) == expected


PROMETHEUS_ERRORS: list[tuple[str, Callable[[str], Rows] | None, str]] = [
    ('{{ query "missing" | first }}', rows(),
     "error calling first: first() called on vector with no elements"),
    ('{{ (query "missing").banana }}', rows(),
     "can't evaluate field banana in type template.queryResult"),
    ('{{ humanize "one" }}', None,
     'error calling humanize: strconv.ParseFloat: parsing "one": invalid syntax'),
    ('{{ humanize1024 "one" }}', None,
     'error calling humanize1024: strconv.ParseFloat: parsing "one": invalid syntax'),
    ('{{ humanizeDuration "one" }}', None,
     'error calling humanizeDuration: strconv.ParseFloat: parsing "one": invalid syntax'),
    ('{{ "one" | humanizePercentage }}', None,
     'error calling humanizePercentage: strconv.ParseFloat: parsing "one": invalid syntax'),
    ("{{ humanizeTimestamp -9223372036854775808 }}", None,
     "error calling humanizeTimestamp: -9.223372036854776e+18 cannot be represented as a "
     "nanoseconds timestamp since it overflows int64"),
    ("{{ humanizeTimestamp 9223372036854775807 }}", None,
     "error calling humanizeTimestamp: 9.223372036854776e+18 cannot be represented as a "
     "nanoseconds timestamp since it overflows int64"),
    ('{{ query "up" }}', None,
     "error calling query: no query function is configured for template rendering"),
]


@pytest.mark.parametrize(("text", "query", "message"), PROMETHEUS_ERRORS)
def test_prometheus_errors(text: str, query: Callable[[str], Rows] | None, message: str) -> None:
    assert render_error(text, query=query).message == message


def test_error_names_the_failing_node_like_go() -> None:
    error = render_error('{{ humanize "one" }}')
    assert str(error).startswith('executing at <humanize "one">: ')
    assert (error.offset, error.end) == (3, 17)


def test_query_callback_errors_become_render_errors() -> None:
    def broken(_query: str) -> Rows:
        raise RuntimeError("storage unavailable")

    assert render_error('{{ query "up" }}', query=broken).message == (
        "error calling query: storage unavailable")


# ---------------------------------------------------------------------------
# Go text/template semantics


GO_CASES: list[tuple[str, float, str]] = [
    # data and variables
    ("{{ $labels.instance }} {{ .Labels.job }}", 0, "host:9100 node"),
    ("[{{ $labels.missing }}]", 0, "[]"),  # missingkey=zero on map[string]string
    ("{{ $.Labels.job }}", 0, "node"),
    ("{{ .Value }} {{ $value }}", 2.5, "2.5 2.5"),
    ("{{ $externalURL }}|{{ .ExternalURL }}", 0, "http://testhost:9090/path/prefix|"
     "http://testhost:9090/path/prefix"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", 0, "2"),
    ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ end }}{{ $x }}", 0, "1"),
    ("{{ $value := 7 }}{{ $value }}", 1, "7"),
    ("{{ ($x := 2) }}{{ $x }}", 0, "22"),
    # float printing follows fmt's %v
    ("{{ $value }}", 1234567.0, "1.234567e+06"),
    ("{{ $value }}", 123456.0, "123456"),
    ("{{ $value }}", 0.1 + 0.2, "0.30000000000000004"),
    ("{{ $value }}", 1e-5, "1e-05"),
    ("{{ $value }}", 0.0001, "0.0001"),
    ("{{ $value }}", -0.0, "-0"),
    ("{{ $value }}", INF, "+Inf"),
    ("{{ $value }}", NAN, "NaN"),
    ("{{ 1.0 }} {{ 1e3 }} {{ 0x1F }} {{ 017 }} {{ 0o17 }} {{ 1_000 }} {{ -1.5 }} {{ .5 }}", 0,
     "1 1000 31 15 15 1000 -1.5 0.5"),
    ("{{ 'a' }} {{ '\\n' }} {{ '\\x41' }}", 0, "97 10 65"),
    # literals and trim markers
    ('{{ "tab\\there" }}|{{ `raw\\n` }}|{{ "\\u00e9\\xc3\\xa9" }}', 0, "tab\there|raw\\n|éé"),
    ("a  {{- 1 -}}  b", 0, "a1b"),
    ("a \n\t{{- 1 }} b", 0, "a1 b"),
    ("a {{ 1 -}} \n b", 0, "a 1b"),
    ("{{-3}}", 0, "-3"),
    ("a {{/* comment */}} b", 0, "a  b"),
    ("a {{- /* comment */ -}} b", 0, "ab"),
    ("{{ 1\n}}", 0, "1"),
    # pipelines and parentheses
    ('{{ "a" | printf "%s-%s" "b" }}', 0, "b-a"),
    ("{{ $value | printf \"%.2f\" }}", 3.14159, "3.14"),
    ("{{ (1) }}", 0, "1"),
    ('{{ printf "%s" (index $labels "job") }}', 0, "node"),
    ("{{ 1 | }}", 0, "1"),  # Go's parser accepts a trailing pipe
    # control structures
    ("{{ if gt $value 1.0 }}big{{ else }}small{{ end }}", 2, "big"),
    ("{{ if eq 1 2 }}a{{ else if eq 1 1 }}b{{ else }}c{{ end }}", 0, "b"),
    ("{{ with $labels.nope }}a{{ else with $labels.job }}{{ . }}{{ end }}", 0, "node"),
    ("{{ with $labels.job }}{{ . }}{{ end }}", 0, "node"),
    ("{{ with $labels.nope }}y{{ else }}n{{ end }}", 0, "n"),
    ("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}", 0,
     "instance=host:9100;job=node;"),
    ("{{ range $labels }}{{ . }},{{ end }}", 0, "host:9100,node,"),
    ("{{ range .ExternalLabels }}x{{ else }}empty{{ end }}", 0, "empty"),
    ("{{ range 3 }}{{ . }}{{ end }}", 0, "012"),
    ("{{ range $x := 2 }}{{ $x }}{{ end }}", 0, "01"),
    ("{{ range $k, $v := $labels }}{{ if eq $k \"job\" }}{{ break }}{{ end }}{{ $k }}{{ end }}",
     0, "instance"),
    ("{{ range $k, $v := $labels }}{{ if eq $k \"instance\" }}{{ continue }}{{ end }}{{ $k }}"
     "{{ end }}", 0, "job"),
    ('{{ $k := "" }}{{ $v := "" }}{{ range $k, $v = $labels }}{{ end }}{{ $k }}={{ $v }}', 0,
     "job=node"),
    # truthiness, and/or/not
    ('{{ if "" }}t{{ else }}f{{ end }}{{ if 0 }}t{{ else }}f{{ end }}{{ if 0.0 }}t{{ else }}f'
     '{{ end }}{{ if $labels }}t{{ else }}f{{ end }}'
     "{{ if .ExternalLabels }}t{{ else }}f{{ end }}{{ if . }}t{{ else }}f{{ end }}", 0, "ffftft"),
    ("{{ if $value }}t{{ else }}f{{ end }}", NAN, "t"),
    ('{{ and 1 2 }} {{ and 0 2 }} {{ or 0 "" }} {{ or 0 3 }} {{ not 0 }} {{ not "x" }}', 0,
     "2 0  3 true false"),
    ("{{ and 0 (index nil 1) }} {{ or 1 (index nil 1) }}", 0, "0 1"),  # short-circuit
    # comparisons
    ('{{ eq 1 1 }} {{ eq "a" "b" "a" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} '
     "{{ ge 1.5 2.5 }} {{ eq nil nil }}", 0, "true true true true true true false true"),
    ("{{ gt $value 10.0 }} {{ eq $value 1.0 }}", 11, "true false"),
    ("{{ gt $value 1.0 }}", NAN, "true"),  # le(NaN, 1) is false, so gt is true, as in Go
    # builtins
    ('{{ len "héllo" }} {{ len $labels }} {{ len "" }}', 0, "6 2 0"),
    ('{{ index $labels "job" }}|{{ index $labels "nope" }}|{{ index "abc" 1 }}', 0, "node||98"),
    ('{{ slice "abcdef" 1 3 }}|{{ slice "abc" 1 }}|{{ slice "abc" }}', 0, "bc|bc|abc"),
    ('{{ print 1 2 "a" "b" 3 }}', 0, "1 2ab3"),
    ('{{ println 1 "a" }}', 0, "1 a\n"),
    ("{{ print nil }}", 0, "<nil>"),
    ('{{ html "<a href=\'x\'>&\\"" }}', 0, "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"),
    ("{{ html nil }}", 0, "&lt;no value&gt;"),
    ('{{ js "a\'b\\"c<>&=\\n" }}', 0, "a\\'b\\\"c\\u003C\\u003E\\u0026\\u003D\\u000A"),
    ('{{ urlquery "a b&c/d?e=f~_.-" }}', 0, "a+b%26c%2Fd%3Fe%3Df~_.-"),
    ('{{ urlquery "a" 1 }}', 0, "a1"),
    # struct and map printing
    ("{{ . }}", 1.5, "{map[instance:host:9100 job:node] map[] http://testhost:9090/path/prefix "
     "1.5}"),
    ("{{ $labels }}", 0, "map[instance:host:9100 job:node]"),
    ('{{ "x" | safeHtml }}', 0, "x"),
    # Prometheus string functions beyond the upstream table
    ('{{ title "hello world-foo bar_baz it\'s example.com" }}', 0,
     "Hello World-Foo Bar_baz It's Example.com"),
    ('{{ toUpper "straße" }} {{ toLower "İSTANBUL" }}', 0, "STRASSE istanbul".replace("SS", "ß")),
    ('{{ reReplaceAll "x*" "-" "abxd" }}', 0, "-a-b-d-"),
    ('{{ reReplaceAll "" "-" "añb" }}', 0, "-a-ñ-b-"),
    ('{{ reReplaceAll "(?P<w>\\\\w+)" "<${w}>" "hi there" }}', 0, "<hi> <there>"),
    ('{{ reReplaceAll "a" "$1x" "aa" }}', 0, ""),  # $1x names group "1x", which is absent
    ('{{ reReplaceAll "a(b)" "${1}x$$" "ab" }}', 0, "bx$"),
    ('{{ reReplaceAll "localhost:(.*)" "my.domain:$1" $labels.instance }}', 0, "host:9100"),
    ('{{ reReplaceAll "é" "e" "café" }}', 0, "cafe"),
    ('{{ match "^host" $labels.instance }} {{ match "(?i)NODE" $labels.job }}', 0, "true true"),
    ('{{ parseDuration "1y2w3d4h5m6s7ms" }} {{ parseDuration "0" }}', 0, "3.3019506007e+07 0"),
    ('{{ $t := toTime 1435065584.128 }}{{ $t.Format "Mon Jan _2 15:04:05.000 MST 2006" }}|'
     '{{ $t.Format "2006-01-02T15:04:05Z07:00" }}|{{ $t.Unix }}|{{ $t.Month }}|{{ $t.Weekday }}|'
     "{{ $t.Year }}|{{ $t }}", 0,
     "Tue Jun 23 13:19:44.128 UTC 2015|2015-06-23T13:19:44Z|1435065584|June|Tuesday|2015|"
     "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ (toTime 1435065584.128).Format "002 __2 _2006 Monday January 3:04:05 pm ,999 -0700" }}',
     0, "174 174 _2015 Tuesday June 1:19:44 pm ,128 +0000"),
    ("{{ humanize 0.001 }} {{ humanize 1e-27 }} {{ humanize 1e30 }} {{ humanize -1234 }}", 0,
     "1m 0.001y 1e+06Y -1.234k"),
]


@pytest.mark.parametrize(("text", "value", "expected"), GO_CASES)
def test_go_semantics(text: str, value: float, expected: str) -> None:
    assert render(text, value) == expected


PRINTF_CASES: list[tuple[str, tuple[object, ...], str]] = [
    ("%d", (5,), "5"),
    ("%5d|%-5d|%05d", (42, 42, 42), "   42|42   |00042"),
    ("%+d % d %x %X %o %O %b %#x %#o", (42, 42, 255, 255, 8, 8, 5, 255, 8),
     "+42  42 ff FF 10 0o10 101 0xff 010"),
    ("%.3d|%8.3d|%-08d|", (7, 7, -7), "007|     007|-7      |"),
    ("%s %q %v %10s|%-10s|%.2s", ("a", "b\n", "c", "r", "l", "xyz"),
     'a "b\\n" c          r|l         |xy'),
    ("%+q %#q %x % X", ("é", "x", "hi", "hi"), '"\\u00e9" `x` 6869 68 69'),
    ("%f %.2f %e %E %g %G %.3g", (3.14159, 3.14159, 1234.5678, 1234.5678, 0.000012345, 1e21,
                                  1234.5678),
     "3.141590 3.14 1.234568e+03 1.234568E+03 1.2345e-05 1E+21 1.23e+03"),
    ("%v %v %v %v %g", (1e6, 123456.0, 0.1, 1e-5, 100000000.0),
     "1e+06 123456 0.1 1e-05 1e+08"),
    ("%8.3f|%-8.3f|%07.2f|%+07.2f|% .1f", (3.14159, 3.14159, -1.5, 1.5, 2.0),
     "   3.142|3.142   |-001.50|+001.50| 2.0"),
    ("%.0f %.0f %.0f %.1f", (0.5, 1.5, 2.5, 0.25), "0 2 2 0.2"),
    ("%#g %#.3g %#v %x %X %b", (1.0, 2.0, 3.0, 1.5, 1.0, 1.0),
     "1.00000 2.00 3 0x1.8p+00 0X1P+00 4503599627370496p-52"),
    ("%f|%5.1f|%e|%v|%d", (INF, -INF, NAN, INF, INF),
     "+Inf| -Inf|NaN|+Inf|%!d(float64=+Inf)"),
    ("%t %v %5t", (True, False, True), "true false  true"),
    ("%c %U %#U %q", (65, 0x1F600, 65, 65), "A U+1F600 U+0041 'A' 'A'"),
    ("%T %T %T %T %T", (1, 1.0, "s", True, None), "int float64 string bool <nil>"),
    ("%%|%d %s", (1.5, 2), "%|%!d(float64=1.5) %!s(int=2)"),
    ("%d", (), "%!d(MISSING)"),
    ("%d", (1, 2), "1%!(EXTRA int=2)"),
    ("%d %d", (1, "a", None), "1 %!d(string=a)%!(EXTRA <nil>)"),
    ("%!", (1,), "%!!(int=1)"),
    ("%", (), "%!(NOVERB)"),
    ("%[2]d %[1]d", (1, 2), "2 1"),
    ("%[3]d", (1, 2), "%!d(BADINDEX)"),
    ("%*d|%.*f|%-*d|", (5, 1, 2, 3.14159, 3, 7), "    1|3.14|7  |"),
    ("%*d", ("x", 1), "%!(BADWIDTH)1"),
    ("%s", (None,), "%!s(<nil>)"),
    ("%v", (None,), "<nil>"),
    ("%v", ({"b": "2", "a": "1"},), "map[a:1 b:2]"),
    ("%d", ({"a": "1"},), "map[%!d(string=a):%!d(string=1)]"),
]


@pytest.mark.parametrize(("fmt", "args", "expected"), PRINTF_CASES)
def test_printf_follows_go_fmt(fmt: str, args: tuple[object, ...], expected: str) -> None:
    assert go_sprintf(fmt, *args) == expected


def test_printf_from_a_template() -> None:
    assert render('{{ printf "%s is %.1f%%" $labels.job $value }}', 99.44) == "node is 99.4%"
    assert render('{{ printf "%d" $value }}', 1.5) == "%!d(float64=1.5)"


RUNTIME_ERRORS: list[tuple[str, str]] = [
    ("{{ .Foo }}", "can't evaluate field Foo in type struct { Labels map[string]string; "
     "ExternalLabels map[string]string; ExternalURL string; Value interface {} }"),
    ("{{ eq $value 1 }}", "error calling eq: incompatible types for comparison: float64 and int"),
    ("{{ gt $value 10 }}", "error calling gt: incompatible types for comparison: float64 and int"),
    ("{{ lt true false }}", "error calling lt: invalid type for comparison"),
    ("{{ eq 1 }}", "error calling eq: missing argument for comparison"),
    ("{{ eq $labels $labels }}",
     "error calling eq: non-comparable type map[instance:host:9100 job:node]: map[string]string"),
    ("{{ 1 2 }}", "can't give argument to non-function 1"),
    ("{{ nil }}", "nil is not a command"),
    ("{{ $value 1 }}", "can't give argument to non-function $value"),
    ("{{ .Labels 1 }}", "Labels has arguments but cannot be invoked as function"),
    ("{{ $labels.job 1 }}", "job is not a method but has arguments"),
    ("{{ $labels.job.x }}", "can't evaluate field x in type string"),
    ("{{ toUpper 1 }}", "expected string; found 1"),
    ("{{ $value | toUpper }}", "wrong type for value; expected string; got float64"),
    ('{{ "x" | safeHtml | toUpper }}', "wrong type for value; expected string; got template.HTML"),
    ("{{ toUpper nil }}", "cannot assign nil to string"),
    ("{{ toUpper $labels.x.y }}", "can't evaluate field y in type string"),
    ("{{ humanize true }}", "error calling humanize: can't convert bool to float"),
    ("{{ humanize $labels }}", "error calling humanize: can't convert map[string]string to float"),
    ("{{ toUpper }}", "wrong number of args for toUpper: want 1 got 0"),
    ('{{ toUpper "a" "b" }}', "wrong number of args for toUpper: want 1 got 2"),
    ("{{ and }}", "wrong number of args for and: want at least 1 got 0"),
    ("{{ index $labels 1 }}", "error calling index: value has type int; should be string"),
    ('{{ index "abc" 4 }}', "error calling index: index out of range: 4"),
    ('{{ index "abc" 3 }}', "error calling index: reflect: string index out of range"),
    ("{{ index nil 1 }}", "error calling index: index of untyped nil"),
    ('{{ index 1 "a" }}', "error calling index: can't index item of type int"),
    ('{{ slice "abc" 2 1 }}', "error calling slice: invalid slice index: 2 > 1"),
    ('{{ slice "abc" 1 2 3 }}', "error calling slice: cannot 3-index slice a string"),
    ("{{ len 3 }}", "error calling len: len of type int"),
    ("{{ call 1 }}", "error calling call: non-function 1 of type int"),
    ("{{ range $i, $x := 3 }}{{ end }}", "can't use 3 to iterate over more than one variable"),
    ("{{ range 1.5 }}{{ end }}", "range can't iterate over 1.5"),
    ("{{ if true }}{{ $x := 1 }}{{ else }}{{ $x }}{{ end }}{{ $y := 1 }}", ""),
    ("{{ 18446744073709551615 }}", "18446744073709551615 overflows int"),
    ('{{ reReplaceAll "(" "x" "y" }}', "error calling reReplaceAll: regexp: Compile(`(`): "
     "error parsing regexp: missing ): ("),
    ('{{ match "(" "x" }}', "error calling match: error parsing regexp: missing ): ("),
    ('{{ parseDuration "5" }}', 'error calling parseDuration: not a valid duration string: "5"'),
    ('{{ parseDuration "1m1h" }}',
     'error calling parseDuration: not a valid duration string: "1m1h"'),
    ('{{ parseDuration "3x" }}', 'error calling parseDuration: unknown unit "x" in duration "3x"'),
    ('{{ parseDuration "" }}', "error calling parseDuration: empty duration string"),
    ("{{ toTime $value }}", "error calling toTime: value is NaN or Inf"),
    ("{{ label \"x\" nil }}", "error calling label: runtime error: invalid memory address or nil "
     "pointer dereference"),
    ("{{ first 1 }}", "can't handle 1 for arg of type template.queryResult"),
]


@pytest.mark.parametrize(("text", "message"), RUNTIME_ERRORS)
def test_runtime_errors(text: str, message: str) -> None:
    if not message:  # renders fine: the undefined-at-runtime branch is not taken
        assert render(text) == ""
        return
    assert render_error(text, value=INF if "toTime" in text else 0.0).message == message


def test_undeclared_branch_variable_fails_only_when_reached() -> None:
    text = "{{ if false }}{{ $x := 1 }}{{ else }}{{ $x }}{{ end }}"
    assert render_error(text).message == "undefined variable: $x"


def test_sort_by_label_sorts_the_shared_result_in_place() -> None:
    text = ('{{ $r := query "up" }}{{ $s := sortByLabel "instance" $r }}'
            '{{ range $r }}{{ .Labels.instance }}{{ end }}')
    assert render(text, query=rows(METRIC_B, METRIC_A)) == "ab"


def test_context_is_not_mutated() -> None:
    labels = {"a": "1"}
    ctx = TemplateContext(labels=labels, value=1.0)
    parse_template("{{ $labels.a }}").render(ctx)
    assert labels == {"a": "1"}


# ---------------------------------------------------------------------------
# Syntax errors: Go's wording, our offsets


SYNTAX_ERRORS: list[tuple[str, str, int, int]] = [
    ("{{", "unclosed action", 0, 2),
    ("text {{ $value ", "unclosed action", 5, 15),
    ('{{ "a" }', 'unexpected "}" in operand', 7, 8),
    ("{{ humanise $value }}", 'function "humanise" not defined (did you mean "humanize"?)', 3, 11),
    ("{{ frobnicate }}", 'function "frobnicate" not defined', 3, 13),
    ("{{ $vlaue }}", 'undefined variable "$vlaue" (did you mean "$value"?)', 3, 9),
    ("{{ $x }}", 'undefined variable "$x"', 3, 5),
    ("{{ if 1 }}x", "unexpected EOF: missing {{end}} for {{if}}", 0, 10),
    ("{{ range $labels }}{{ with . }}{{ end }}", "unexpected EOF: missing {{end}} for {{range}}",
     0, 19),
    ("{{ end }}", "unexpected {{end}}", 0, 9),
    ("a {{else}}", "unexpected {{else}}", 2, 10),
    ("{{ if 1 }}{{ else }}{{ else }}{{ end }}", "expected end; found {{else}}", 20, 30),
    ("{{ }}", "missing value for command", 3, 5),
    ("{{ if }}{{ end }}", "missing value for if", 6, 8),
    ("{{ () }}", "missing value for parenthesized pipeline", 4, 5),
    ("{{ 1 | 2 }}", "non executable command in pipeline stage 2", 7, 8),
    ('{{ "a }}', "unterminated quoted string", 3, 8),
    ("{{ `abc }}", "unterminated raw quoted string", 3, 10),
    ("{{ 'ab' }}", "malformed character constant: 'ab'", 3, 7),
    ("{{ (1 }}", "unclosed left paren", 3, 4),
    ("{{ 1) }}", "unexpected right paren", 4, 5),
    ("{{ x:y }}", 'function "x" not defined', 3, 4),
    ("{{ $value :y }}", "expected :=", 10, 11),
    ('{{ .a"b" }}', "bad character U+0022 '\"'", 5, 6),
    ("{{ 1.a }}", 'bad number syntax: "1.a"', 3, 6),
    ("{{ 099 }}", 'integer overflow: "099"', 3, 6),
    ("{{ 1e400 }}", 'illegal number syntax: "1e400"', 3, 8),
    ("{{ 1i }}", "complex number constants are not supported", 3, 5),
    ('{{ "\\q" }}', "invalid syntax: unknown escape sequence \\q", 4, 6),
    ('{{ "a".b }}', 'unexpected . after term "\\"a\\""', 6, 8),
    ("{{/* x", "unclosed comment", 0, 6),
    ("{{/* x */ }}", "comment ends before closing delimiter", 9, 10),
    ('{{ define "x" }}{{ end }}', "{{define}} is not supported in alert templates", 3, 9),
    ('{{ template "x" }}', "{{template}} is not supported in alert templates", 3, 11),
    ('{{ block "x" . }}{{ end }}', "{{block}} is not supported in alert templates", 3, 8),
    ("{{ break }}", "{{break}} outside {{range}}", 0, 11),
    ("{{ range . }}{{ continue 1 }}{{ end }}", 'unexpected "1" in {{continue}}', 25, 26),
    ("{{ range $a, $b, $c := . }}{{ end }}", "too many declarations in range", 15, 16),
    ("{{ range $a, 1 }}{{ end }}", "range can only initialize variables", 13, 14),
    ("{{ | }}", 'unexpected "|" in command', 3, 4),
    ("{{ \u00a0 }}", "unrecognized character in action: U+00A0", 3, 4),
    ("{{ if 1 }}{{ else if }}{{ end }}", "missing value for if", 21, 23),
    ('{{ "0123456789abc" 1 | "x" }}', "non executable command in pipeline stage 2", 23, 26),
    ("{{ 1 }}{{ end 1 }}", 'unexpected "1" in end', 14, 15),
]


@pytest.mark.parametrize(("text", "message", "offset", "end"), SYNTAX_ERRORS)
def test_syntax_errors(text: str, message: str, offset: int, end: int) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        parse_template(text)
    assert (info.value.message, info.value.offset, info.value.end) == (message, offset, end)


def test_syntax_error_str_carries_the_offset() -> None:
    with pytest.raises(TemplateSyntaxError, match=r"unclosed action \(at offset 0\)"):
        parse_template("{{")


def test_unexpected_token_quotes_long_text_like_go() -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        parse_template('{{ 1 }}{{ end "0123456789abcdef" }}')
    assert info.value.message == 'unexpected "\\"012345678"... in end'


VALID_TEMPLATES = [
    "",
    "plain text with } and { and }}",
    "{{ $value | humanize }}",
    "{{ $labels.instance }} is down (value {{ $value | printf \"%.2f\" }})",
    '{{ if gt $value 0.9 }}high{{ else if gt $value 0.5 }}medium{{ else }}low{{ end }}',
    "{{ range $k, $v := $labels }}{{ $k }}={{ $v }} {{ end }}",
    '{{ with query "up" }}{{ . | first | value | humanizePercentage }}{{ end }}',
    "{{- /* a comment */ -}}",
    "{{ $x := 1 }}{{ $x = 2 }}{{ $x }}",
    "{{ range . }}{{ break }}{{ continue }}{{ end }}",
    "{{ (1) }} {{ ($labels).job }} {{ (args 1).arg0 }}",
    "{{ 'x' }} {{ `raw` }} {{ nil | print }} {{ true }} {{ . }} {{ $ }}",
    "{{ .Labels.job }}{{ $externalLabels.region }}{{ $externalURL }}",
    "{{ toUpper\n$labels.job\n}}",
]


@pytest.mark.parametrize("text", VALID_TEMPLATES)
def test_valid_templates_parse(text: str) -> None:
    template = parse_template(text)
    assert isinstance(template, Template)
    assert template.source == text


def test_template_is_frozen() -> None:
    template = parse_template("{{ 1 }}")
    with pytest.raises(FrozenInstanceError):
        template.source = "x"  # type: ignore[misc]


# ---------------------------------------------------------------------------
# variables()


VARIABLE_CASES: list[tuple[str, set[str]]] = [
    ("no actions", set()),
    ("{{ $value }}", {"$value"}),
    ("{{ $value | humanize }}", {"$value"}),
    ("{{ humanize .Value }}", {".Value"}),
    ("{{ $labels.instance }} {{ .Labels.job }} {{ $externalLabels.region }}",
     {"$labels.instance", ".Labels.job", "$externalLabels.region"}),
    ("{{ $x := $value }}{{ $x }}", {"$value", "$x"}),
    ("{{ range $k, $v := $labels }}{{ $v }}{{ end }}", {"$labels", "$v"}),
    ("{{ if gt $value 1.0 }}{{ else }}{{ .Value }}{{ end }}", {"$value", ".Value"}),
    ('{{ (query "up" | first).Labels.job }}', set()),
    ("{{ $.Value }}", {"$.Value"}),
]


@pytest.mark.parametrize(("text", "expected"), VARIABLE_CASES)
def test_variables(text: str, expected: set[str]) -> None:
    assert parse_template(text).variables() == frozenset(expected)


# ---------------------------------------------------------------------------
# Limits


def nested_ifs(depth: int) -> str:
    return "{{ if 1 }}" * depth + "x" + "{{ end }}" * depth


def nested_parens(depth: int) -> str:
    return "{{ " + "(" * depth + "1" + ")" * depth + " }}"


@pytest.mark.parametrize("build", [nested_ifs, nested_parens])
def test_nesting_up_to_the_limit_parses_and_renders(build: Callable[[int], str]) -> None:
    assert render(build(MAX_NESTING_DEPTH)) in ("x", "1")


@pytest.mark.parametrize("build", [nested_ifs, nested_parens])
def test_nesting_beyond_the_limit_is_a_syntax_error(build: Callable[[int], str]) -> None:
    with pytest.raises(TemplateSyntaxError, match="nesting too deep"):
        parse_template(build(MAX_NESTING_DEPTH + 1))
    with pytest.raises(TemplateSyntaxError, match="nesting too deep"):
        parse_template(build(3000))


def test_long_else_if_chain_counts_as_nesting() -> None:
    chain = "{{ if 0 }}" + "{{ else if 0 }}" * 150 + "{{ end }}"
    with pytest.raises(TemplateSyntaxError, match="nesting too deep"):
        parse_template(chain)


def test_template_length_limit() -> None:
    assert parse_template("x" * MAX_TEMPLATE_LENGTH).source
    with pytest.raises(TemplateSyntaxError) as info:
        parse_template("x" * (MAX_TEMPLATE_LENGTH + 1))
    assert info.value.offset == MAX_TEMPLATE_LENGTH
    assert "too long" in info.value.message


def test_runaway_rendering_is_stopped() -> None:
    assert "steps" in render_error("{{ range 100000000 }}{{ end }}").message
    assert "output" in render_error('{{ range 100 }}{{ printf "%100000d" 1 }}{{ end }}').message
    heavy = '{{ range 1000000 }}{{ $x := printf "%1000000d" 0 }}{{ end }}'
    assert "functions produced" in render_error(heavy).message


# ---------------------------------------------------------------------------
# Go number formatting and parsing


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_shortest_float_formatting_round_trips(value: float) -> None:
    text = format_float(value, "g", -1)
    assert float(text) == value
    magnitude = abs(value)
    assert ("e" in text) == (magnitude != 0 and not 1e-4 <= magnitude < 1e6)


@pytest.mark.parametrize(("text", "expected"), [
    ("1", 1.0), ("-1.5e3", -1500.0), (".5", 0.5), ("5.", 5.0), ("0x1p-2", 0.25),
    ("1_000.5", 1000.5), ("Inf", INF), ("-infinity", -INF), ("+Inf", INF),
])
def test_parse_go_float(text: str, expected: float) -> None:
    assert parse_go_float(text) == expected


@pytest.mark.parametrize(
    "text", ["", " 1", "1 ", "one", "1e", "_1", "1__0", "+nan", "0x1", "1e400"])
def test_parse_go_float_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"strconv\.ParseFloat"):
        parse_go_float(text)


def test_function_names_cover_go_and_prometheus() -> None:
    expected = {
        "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "slice", "print",
        "printf", "println", "html", "js", "urlquery", "call",
        "humanize", "humanize1024", "humanizeDuration", "humanizePercentage",
        "humanizeTimestamp", "toTime", "title", "toUpper", "toLower", "match", "reReplaceAll",
        "label", "value", "first", "sortByLabel", "strvalue", "args", "safeHtml", "stripPort",
        "stripDomain", "pathPrefix", "externalURL", "graphLink", "tableLink", "parseDuration",
        "query",
    }
    assert expected == FUNCTION_NAMES


# ---------------------------------------------------------------------------
# Robustness: parse_template raises nothing but TemplateSyntaxError, and
# render nothing but TemplateRenderError, whatever the input.


FRAGMENTS = [
    "{{", "}}", "{{-", "-}}", "{{/*", "*/}}", "(", ")", "|", "$", ".", ":=", "=", ",", '"', "'",
    "`", "\\", " ", "\n", "\t", "-", "0", "1.5", "0x", "e9", "if", "else", "end", "range", "with",
    "break", "continue", "nil", "true", "define", "$value", "$labels", ".Labels", ".Value",
    "$x", "printf", '"%d"', "index", "query", "humanize", "\u00a0", "é", "\x00", "\ud800",
    "{{ end }}",
    "{{ else }}", "{{ if 1 }}", "{{ range 2 }}",
    *sorted(FUNCTION_NAMES),
]

SEEDS = [t for t in VALID_TEMPLATES if t] + [text for text, _, _ in GO_CASES[:40]]


def mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply (position, kind, fragment) edits: 0 insert, 1 delete, 2 replace."""
    chars = list(text)
    for position, kind, fragment in edits:
        at = position % (len(chars) + 1)
        if kind == 0:
            chars[at:at] = [fragment]
        elif chars:
            at = min(at, len(chars) - 1)
            chars[at:at + 1] = [] if kind == 1 else [fragment]
    return "".join(chars)


mutations = st.builds(
    mutate, st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 2), st.sampled_from(FRAGMENTS)),
             min_size=1, max_size=6),
)
fragment_soup = st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join)
any_text = st.one_of(st.text(max_size=80), fragment_soup, mutations)

ROBUSTNESS = settings(max_examples=400, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
FUZZ_CONTEXT = TemplateContext(labels={"job": "x", "a": "b"}, value=2.5,
                               external_labels={"region": "eu"}, external_url=EXTERNAL_URL,
                               query=rows(METRIC_A, METRIC_B))


def check_parse(text: str) -> Template | None:
    try:
        return parse_template(text)
    except TemplateSyntaxError as error:
        assert 0 <= error.offset < max(len(text), 1)
        assert error.offset < error.end <= max(len(text), 1)
        assert error.message
        return None


@ROBUSTNESS
@given(any_text)
def test_parse_raises_only_syntax_errors(text: str) -> None:
    check_parse(text)


@ROBUSTNESS
@given(mutations)
def test_render_raises_only_render_errors(text: str) -> None:
    template = check_parse(text)
    if template is None:
        return
    template.variables()
    try:
        assert isinstance(template.render(FUZZ_CONTEXT), str)
    except TemplateRenderError as error:
        assert error.message


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=60))
def test_text_without_braces_renders_verbatim(text: str) -> None:
    assert render(text) == text


# ---------------------------------------------------------------- the fast validation path

_PIECES = st.sampled_from([
    "{{ $labels.job }}", "{{ $value }}", "{{$value|humanize}}", "{{- $labels.instance -}}",
    "{{ $value | humanizePercentage | toUpper }}", "{{ $externalLabels.region }}", "text ",
    "{", "}", "{{", "}}", "{{ $labels.a.b }}", "{{-3}}", "{{ $value | nope }}", "{{ $x }}",
    "{{ .Value }}", "{{ $value | printf }}", "{{/* c */}}", "{{ $labels.job -}}", " ", "\n",
    "{{ $value|humanize1024 }}", "{{ $labels.0x }}", "{{ $value | title5 }}",
])


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=6).map("".join))
def test_quick_path_agrees_with_the_parser(text: str) -> None:
    from monitoring.templates.quick import template_variables

    try:
        expected: frozenset[str] | str = parse_template(text).variables()
    except TemplateSyntaxError:
        expected = "error"
    try:
        got: frozenset[str] | str = template_variables(text)
    except TemplateSyntaxError:
        got = "error"
    assert got == expected


@pytest.mark.parametrize(("text", "reads"), [
    ("on {{ $labels.instance }}", False),
    ("{{ with $labels }}{{ .job }}{{ end }}", False),
    ("{{ .Labels.job }} {{ $externalLabels.dc }}", False),
    ("plain text", False),
    ("v={{ $value }}", True),
    ("{{ .Value | humanize }}", True),
    ("{{ $.Value }}", True),
    ("{{ . }}", True),
    ("{{ $x := .Value }}{{ $x }}", True),
    ('{{ if gt $value 5.0 }}high{{ end }}', True),
])
def test_reads_value(text: str, reads: bool) -> None:
    assert parse_template(text).reads_value() is reads
