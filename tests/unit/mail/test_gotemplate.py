"""The Go template subset, as a specification: what GoTrue templates write renders as Go would.

Each case is Go template text, the data, and what Go's html/template prints
for it; the unsupported rest is refused with the template's name and the
line and column of the problem.
"""

from __future__ import annotations

from typing import Any

import pytest

from apitask.mail import MailError, TemplateError, compile_template
from apitask.mail._templates._gotemplate import translate

DATA: dict[str, Any] = {
    "SiteURL": "https://app.example.com",
    "ConfirmationURL": "https://auth.example.com/verify?token=pkce_abc&type=signup",
    "Email": "ann@example.com",
    "NewEmail": "ann@new.example",
    "Token": "123456",
    "TokenHash": "pkce_abc",
    "RedirectTo": "https://app.example.com/welcome",
    "Data": {"name": "Ann", "plan": "team", "tags": ["a", "b"], "count": 3, "beta": True},
}


def render(source: str, data: dict[str, Any] | None = None, *, html: bool = False) -> str:
    return compile_template(source, name="t", html=html).render(DATA if data is None else data)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # Text is copied exactly, including braces that are Jinja syntax.
        ("plain text\n", "plain text\n"),
        (
            "css { color: red } {% raw %} {# no comment #} {",
            "css { color: red } {% raw %} {# no comment #} {",
        ),
        ("{ {{ .Token }}}", "{ 123456}"),
        # Fields, the dot, $ and map keys.
        ("{{ .Email }}", "ann@example.com"),
        ("{{.Email}}", "ann@example.com"),
        ("{{ .Data.name }}", "Ann"),
        ("{{ $.Data.name }}", "Ann"),
        ("{{ .Data.missing }}|", "|"),
        ("{{ .Unknown }}|", "|"),
        ("{{ .Data.beta }} {{ .Data.count }}", "true 3"),
        # Comments and trim markers.
        ("a {{/* note */}} b", "a  b"),
        ("a {{- /* note */ -}} b", "ab"),
        ("a\n  {{- .Token -}}\n  b", "a123456b"),
        ("a {{- .Token }} b", "a123456 b"),
        ("{{ 3 -}} x", "3x"),
        # Literals.
        ('{{ "a\\tb\\x41\\u00e9" }}', "a\tbA\u00e9"),
        ("{{ `raw \\n` }}", "raw \\n"),
        ("{{ -1.5 }} {{ true }} {{ nil }}|", "-1.5 true |"),
        # if / else if / else.
        ("{{ if .Token }}code {{ .Token }}{{ end }}", "code 123456"),
        ("{{ if .Data.missing }}x{{ else }}y{{ end }}", "y"),
        (
            '{{ if eq .Data.plan "pro" }}P{{ else if eq .Data.plan "team" }}T{{ else }}F{{ end }}',
            "T",
        ),
        ('{{ if eq .Data.plan "free" "team" }}paid or free{{ end }}', "paid or free"),
        ('{{ if ne .Data.plan "team" }}x{{ else }}same{{ end }}', "same"),
        ("{{ if and .Token .Email }}both{{ end }}", "both"),
        (
            "{{ if or .Data.missing .Email }}{{ or .Data.missing .Email }}{{ end }}",
            "ann@example.com",
        ),
        ("{{ if not .Data.missing }}none{{ end }}", "none"),
        ("{{ if (lt .Data.count 5) }}few{{ end }}", "few"),
        (
            "{{ if le 3 .Data.count }}{{ if gt 4 .Data.count }}"
            "{{ if ge 3 3 }}ok{{ end }}{{ end }}{{ end }}",
            "ok",
        ),
        # with: the dot becomes the value; $ stays the root; else sees the outer dot.
        (
            "{{ with .Data.name }}Hi {{ . }} from {{ $.SiteURL }}{{ end }}",
            "Hi Ann from https://app.example.com",
        ),
        ("{{ with .Data.missing }}x{{ else }}{{ .Email }}{{ end }}", "ann@example.com"),
        # range over lists, maps (values in key order), ints, nothing.
        ("{{ range .Data.tags }}[{{ . }}]{{ end }}", "[a][b]"),
        ("{{ range .Data }}{{ if eq . 3 }}three{{ end }}{{ end }}", "three"),
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        ("{{ range .Data.missing }}x{{ else }}empty{{ end }}", "empty"),
        ("{{ range nil }}x{{ else }}{{ .Token }}{{ end }}", "123456"),
        # Functions and pipelines.
        ("{{ len .Data.tags }}", "2"),
        ('{{ index .Data "plan" }} {{ index .Data.tags 1 }}', "team b"),
        ("{{ .Email | urlquery }}", "ann%40example.com"),
        ('{{ urlquery "a b" "&" }}', "a+b%26"),
        ('{{ print 1 2 "x" 3 }}', "1 2x3"),
        ("{{ print .Data.beta nil }}", "true <nil>"),
        ("{{ .Data.name | print | urlquery }}", "Ann"),
        ('{{ "<b>" | html }}', "&lt;b&gt;"),
    ],
)
def test_go_templates_render_as_go_would(source: str, expected: str) -> None:
    assert render(source) == expected


def test_html_mode_escapes_once_and_text_mode_not_at_all() -> None:
    data = {**DATA, "Data": {"name": "<script>alert(1)</script>"}}
    assert render("<p>{{ .Data.name }}</p>", data, html=True) == (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    )
    # html already escaped: not twice.
    assert (
        render("{{ html .Data.name }}", data, html=True) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    )
    assert render("{{ .Data.name }}", data) == "<script>alert(1)</script>"


def test_map_keys_never_reach_python_attributes() -> None:
    """`.Data.items` is the key "items" (absent here), not dict.items."""
    assert render("[{{ .Data.items }}][{{ .Data.keys }}][{{ .Data.__class__ }}]") == "[][][]"
    assert render("{{ .Data.items }}", {"Data": {"items": "3 things"}}) == "3 things"


def test_translation_is_jinja_with_fields_as_subscripts() -> None:
    assert translate("Hi {{ .Data.name }}!", name="t") == "Hi {{ _d0['Data']['name'] }}!"


@pytest.mark.parametrize(
    ("source", "message", "line", "column"),
    [
        ('{{ printf "%s" .Email }}', "function 'printf' is not supported", 1, 4),
        ("{{ js .Email }}", "function 'js' is not supported", 1, 4),
        ("x\n{{ $name := .Email }}", "variables ($x := …) are not supported", 2, 10),
        ("{{ $name }}", "variable $name is not supported (only $)", 1, 4),
        ("{{ range $i, $v := .Data }}{{ end }}", "range with variables", 1, 4),
        ('{{ define "x" }}{{ end }}', "{{ define }} is not supported", 1, 4),
        ('{{ template "x" }}', "{{ template }} is not supported", 1, 4),
        ("{{ range .Data }}{{ break }}{{ end }}", "{{ break }} is not supported", 1, 21),
        ("a\n\n  {{ if .Token }}x", "{{ if }} is never closed by {{ end }}", 3, 6),
        ("{{ end }}", "{{ end }} without an open if, with or range", 1, 4),
        ("{{ else }}", "{{ else }} without an open if", 1, 4),
        ("{{ if .A }}{{ else }}{{ else }}{{ end }}", "a second {{ else }} in one if", 1, 25),
        ("{{ with .A }}{{ else if .B }}{{ end }}", "{{ else if }} is not supported here", 1, 17),
        ("{{ if .A }}{{ else if }}{{ end }}", "{{ else if }} needs a pipeline", 1, 20),
        ("{{ if }}{{ end }}", "{{ if }} needs a pipeline", 1, 4),
        ("{{ if .A }}{{ end .A }}", "{{ end }} takes no arguments", 1, 19),
        ("{{ .Email", "unclosed action: missing }}", 1, 1),
        ("{{ }}", "empty action {{ }}", 1, 1),
        ("{{ .Email # }}", "unexpected '#' in action", 1, 11),
        ("{{ (.Email }}", "unclosed (", 1, 4),
        ("{{ .Email) }}", "unexpected )", 1, 10),
        ("{{ () }}", "empty ( )", 1, 4),
        ("{{ .Email | }}", "missing command in pipeline", 1, 4),
        ("{{{ .Token }}}", "unexpected '{' in action", 1, 3),
        ("{{ .Email .Token }}", "'.Email' is not a function", 1, 4),
        ("{{ .Email | .Token }}", "'.Token' is not a function", 1, 13),
        ("{{ eq .Email len }}", "function 'len' must be called in parentheses here", 1, 14),
        ("{{ eq .Email if }}", "unexpected keyword 'if'", 1, 14),
        ("{{ unknownfn .Email }}", "function 'unknownfn' is not supported", 1, 4),
        ("{{ eq .Email }}", "eq takes at least 2 argument(s), got 1", 1, 4),
        ("{{ not .A .B }}", "not takes 1 argument(s), got 2", 1, 4),
        ('{{ "\\q" }}', "unknown escape \\q in string", 1, 4),
        ("{{ /* comment */ .Email }}", "unexpected '/' in action", 1, 4),
        ("{{/* comment */ .Email }}", "a comment must be followed directly by }}", 1, 16),
        ("{{ .A = .B }}", "variables ($x := …) are not supported", 1, 7),
    ],
)
def test_unsupported_or_malformed_syntax_is_refused_with_its_place(
    source: str, message: str, line: int, column: int
) -> None:
    with pytest.raises(TemplateError) as caught:
        translate(source, name="invite")
    error = caught.value
    assert message in str(error)
    assert (error.template, error.line, error.column) == ("invite", line, column)
    assert str(error).startswith(f"template 'invite', line {line}, column {column}: ")
    assert isinstance(error, MailError)
    assert isinstance(error, ValueError)


def test_template_error_without_a_place() -> None:
    assert str(TemplateError("boom", template="x")) == "template 'x': boom"
    assert str(TemplateError("boom", template="x", line=2)) == "template 'x', line 2: boom"


def test_render_errors_are_template_errors_naming_the_template() -> None:
    template = compile_template("{{ .Data.missing.deeper }}", name="recovery html", html=True)
    with pytest.raises(TemplateError, match=r"^template 'recovery html': rendering failed"):
        template.render(DATA)
    mismatched = compile_template("{{ if lt .Data.name 3 }}x{{ end }}", name="t", html=False)
    with pytest.raises(TemplateError, match="TypeError"):
        mismatched.render(DATA)
