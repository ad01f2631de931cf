"""The sandbox: autoescaped HTML, no unsafe attribute, Go's printing rules."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from apitask.mail import TemplateError
from apitask.mail._templates import compile_template, go_range

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


def test_templates_compile_without_the_mail_extra_until_used() -> None:
    """`import apitask.mail` needs no jinja2; compiling a template does."""
    code = (
        "import sys; sys.modules['jinja2'] = None; sys.modules['markupsafe'] = None\n"
        "import apitask.mail\n"
        "from apitask.mail._templates import compile_template\n"
        "try:\n"
        "    compile_template('x', name='t', html=True)\n"
        "except ImportError:\n"
        "    print('needs jinja2')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == "needs jinja2\n"
