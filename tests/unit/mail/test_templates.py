"""The sandbox: autoescaped HTML, no unsafe attribute, Go's printing rules."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from apitask.mail import TemplateError, compile_template
from apitask.mail._templates._compile import go_range

HOSTILE = [
    '<script>alert("x")</script>',
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "</a><a href=javascript:alert(1)>",
    "&lt;already&gt; & more",
]


@dataclass
class Profile:
    name: str

    def secret(self) -> str:
        return "should not be callable from a template"


@pytest.mark.parametrize("value", HOSTILE)
def test_user_data_cannot_inject_html_into_an_html_body(value: str) -> None:
    template = compile_template(
        "<p title=\"{{ .Data.name }}\">Hi {{ .Data.name }}</p><a href='{{ .Email }}'>x</a>",
        name="t",
        html=True,
    )
    rendered = template.render({"Data": {"name": value}, "Email": value})
    # Only the template's own markup is left: no tag, quote or entity from the value.
    stripped = rendered.replace("&lt;", "").replace("&gt;", "").replace("&#34;", "")
    stripped = stripped.replace("&#39;", "").replace("&amp;", "")
    assert "<" not in stripped.replace("<p title=", "").replace("</p>", "").replace(
        "<a href=", ""
    ).replace("</a>", "")
    assert rendered.count('"') == 2
    assert rendered.count("'") == 2
    assert value not in rendered


def test_text_templates_print_values_unchanged() -> None:
    template = compile_template("Hi {{ .Data.name }}", name="t", html=False)
    for value in HOSTILE:
        assert template.render({"Data": {"name": value}}) == f"Hi {value}"


def test_objects_expose_safe_attributes_only() -> None:
    data: dict[str, Any] = {"Data": {"profile": Profile("Ann")}}
    assert compile_template("{{ .Data.profile.name }}", name="t", html=True).render(data) == "Ann"
    for source in (
        "{{ .Data.profile.__class__ }}",
        "{{ .Data.profile.__init__.__globals__ }}",
        "{{ .Data.profile.__dict__ }}",
    ):
        with pytest.raises(TemplateError, match=r"rendering failed: SecurityError"):
            compile_template(source, name="evil", html=True).render(data)


def test_go_range_iterates_what_go_does() -> None:
    assert list(go_range({"b": 2, "a": 1})) == [1, 2]  # type: ignore[call-overload]
    assert list(go_range(2)) == [0, 1]  # type: ignore[call-overload]
    assert go_range(None) == ()
    assert go_range(["x"]) == ["x"]
    assert go_range(True) is True  # a bool is not a count


def test_compile_template_is_public_and_points_at_the_error() -> None:
    """compile_template checks one template alone: the error has its line and column."""
    with pytest.raises(TemplateError) as raised:
        compile_template("Hello\n{{ .Email ", html=False)
    assert (raised.value.template, raised.value.line) == ("template", 2)
    assert raised.value.column is not None
    assert str(raised.value).startswith("template 'template', line 2, column ")
    compiled = compile_template("<b>{{ .Email }}</b>", html=True, name="invite")
    assert (compiled.name, compiled.html) == ("invite", True)
    assert compiled.render({"Email": "<a@b.c>"}) == "<b>&lt;a@b.c&gt;</b>"


def test_templates_compile_without_the_mail_extra_until_used() -> None:
    """`import apitask.mail` needs no jinja2; compiling a template does."""
    code = (
        "import sys; sys.modules['jinja2'] = None; sys.modules['markupsafe'] = None\n"
        "import apitask.mail\n"
        "from apitask.mail import compile_template\n"
        "try:\n"
        "    compile_template('x', name='t', html=True)\n"
        "except ImportError:\n"
        "    print('needs jinja2')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == "needs jinja2\n"


# ---------------------------------------------------------------- where a value prints

URL_DATA: dict[str, Any] = {
    "SiteURL": "https://app.example.com",
    "TokenHash": "pkce_abc",
    "RedirectTo": "https://app.example.com/welcome?tab=1",
    "ConfirmationURL": "https://auth.example.com/verify?token=abc&type=signup",
    "Email": "ann@example.com",
}


def render_html(source: str, data: dict[str, Any]) -> str:
    return compile_template(source, name="t", html=True).render(data)


def test_links_are_built_as_go_builds_them() -> None:
    """Supabase's documented template: the nested URL is query-escaped (lower-case hex)."""
    source = (
        '<a href="{{ .SiteURL }}/auth/confirm?token_hash={{ .TokenHash }}'
        '&type=email&next={{ .RedirectTo }}">Confirm</a>'
    )
    assert render_html(source, URL_DATA) == (
        '<a href="https://app.example.com/auth/confirm?token_hash=pkce_abc'
        '&type=email&next=https%3a%2f%2fapp.example.com%2fwelcome%3ftab%3d1">Confirm</a>'
    )
    # A whole URL keeps its structure; only "&" becomes an entity.
    assert render_html('<a href="{{ .ConfirmationURL }}">', URL_DATA) == (
        '<a href="https://auth.example.com/verify?token=abc&amp;type=signup">'
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("javascript:alert(1)", "#ZgotmplZ"),
        (" JavaScript:alert(1)", "#ZgotmplZ"),
        ("data:text/html,<script>", "#ZgotmplZ"),
        ("https://x.example/a b'c", "https://x.example/a%20b%27c"),
        ("mailto:ann@example.com", "mailto:ann@example.com"),
        ("/relative/path?x=1", "/relative/path?x=1"),
        ("HTTP://X.EXAMPLE/é", "HTTP://X.EXAMPLE/%c3%a9"),
    ],
)
def test_a_value_that_starts_a_link_cannot_be_a_script(url: str, expected: str) -> None:
    rendered = render_html(
        '<a href="{{ .Data.url }}">x</a><img src={{ .Data.url }}>', {"Data": {"url": url}}
    )
    unquoted = expected.replace("&", "&amp;").replace("=", "&#61;")
    assert rendered == f'<a href="{expected.replace("&", "&amp;")}">x</a><img src={unquoted}>'


def test_values_later_in_a_link_are_normalized_and_after_the_query_escaped() -> None:
    data = {"Data": {"path": "a b/c", "q": "x&y=z"}}
    source = "<a href='https://x.example/{{ .Data.path }}#{{ .Data.q }}'>"
    assert render_html(source, data) == "<a href='https://x.example/a%20b/c#x%26y%3dz'>"


def test_an_unquoted_attribute_value_cannot_add_an_attribute() -> None:
    data = {"Data": {"name": "x onmouseover=alert(1)"}}
    assert render_html("<p title={{ .Data.name }}>hi</p>", data) == (
        "<p title=x&#32;onmouseover&#61;alert(1)>hi</p>"
    )


def test_text_after_scripts_styles_and_comments_is_text_again() -> None:
    source = (
        "<style>p { color: red }</style><script>var a = '<p>';</script>"
        '<!-- note <a href= --><p title="{{ .Email }}">{{ .Email }}</p>< {{ .Email }}'
    )
    assert render_html(source, URL_DATA).endswith(
        '<p title="ann@example.com">ann@example.com</p>< ann@example.com'
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("<script>var x = {{ .Email }};</script>", "inside <script> is not supported"),
        ("<style>p { color: {{ .Email }} }</style>", "inside <style> is not supported"),
        ('<a onclick="go({{ .Email }})">', "inside the onclick attribute is not supported"),
        ("<p style='color: {{ .Email }}'>", "inside the style attribute is not supported"),
        ("<a {{ .Email }}>", "a value inside a tag must be an attribute value"),
        ("<a href {{ .Email }}>", "a value inside a tag must be an attribute value"),
        ("<a b{{ .Email }}>", "a value inside a tag must be an attribute value"),
        ("</{{ .Email }}>", "a value inside a tag must be an attribute value"),
        ("<{{ .Email }}>", "a value cannot start a tag"),
    ],
)
def test_places_where_escaping_cannot_help_are_refused(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        compile_template(source, name="t", html=True)
    # Text templates have no HTML: the same source is plain text there.
    compile_template(source, name="t", html=False)


def test_attributes_without_values_and_spaces_around_equals() -> None:
    source = '<input disabled title = "{{ .Email }}" src= {{ .Data.url }}>'
    data = {**URL_DATA, "Data": {"url": "javascript:x"}}
    assert render_html(source, data) == (
        '<input disabled title = "ann@example.com" src= #ZgotmplZ>'
    )


def test_the_tokenizer_survives_text_split_by_actions() -> None:
    """Comments, script ends and "<" can be cut by an action or a block."""
    source = (
        "<!-- {{ .Email }} --><p>{{ if .Email }}<{{ end }}</p>"
        '<script>{{/* c */}}</scr{{/* c */}}ipt><b title="{{ .Email }}"></b>'
    )
    assert render_html(source, URL_DATA) == (
        '<!-- ann@example.com --><p><</p><script></script><b title="ann@example.com"></b>'
    )
