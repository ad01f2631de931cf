"""Compiling and rendering templates in a Jinja2 sandbox.

Every template (default or custom, subject or body) is Go template text,
translated by ``_gotemplate`` and compiled here into one of two sandboxed
environments: HTML bodies autoescape every value, subjects and text bodies
do not (a subject's safety is the header check's job, in :class:`Message`).

Jinja2 is imported on first use, so ``import apitask.mail`` works without
the ``mail`` extra.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from ._gotemplate import ROOT, TemplateError, translate
from ._htmlcontext import go_nospace, go_url_escape, go_url_filter, go_url_normalize

if TYPE_CHECKING:
    import jinja2

__all__ = ["CompiledTemplate", "compile_template"]


def _go_string(value: object) -> str:
    """A value as Go's fmt.Sprint prints it (for the cases JSON data has)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _finalize(value: object) -> object:
    # What Go's html/template prints: nothing for nil, true/false for booleans.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def go_print(*args: object) -> str:
    """Go's ``print``: spaces between operands when neither is a string."""
    parts: list[str] = []
    for index, arg in enumerate(args):
        if index and not isinstance(arg, str) and not isinstance(args[index - 1], str):
            parts.append(" ")
        parts.append(_go_string(arg))
    return "".join(parts)


def go_urlquery(*args: object) -> str:
    """Go's ``urlquery``: the printed arguments, escaped for a URL query."""
    return quote_plus(go_print(*args))


def go_range(value: object) -> object:
    """What Go's ``range`` iterates: a map's values in key order, n for an int."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return [value[key] for key in sorted(value)]
    if isinstance(value, int) and not isinstance(value, bool):
        return range(value)
    return value


@functools.cache
def _environment(html: bool) -> jinja2.Environment:
    import markupsafe
    from jinja2 import Undefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import SandboxedEnvironment

    class GoUndefined(Undefined):
        """Missing prints as nothing (Go's zero value); unsafe access raises."""

        __slots__ = ()

        def __str__(self) -> str:
            if self._undefined_exception is SecurityError:
                self._fail_with_undefined_error()
            return ""

    class GoEnvironment(SandboxedEnvironment):
        """Go's field semantics: ``.Data.items`` is a map key, never dict.items."""

        def getitem(self, obj: Any, argument: Any) -> Any:
            if isinstance(obj, Mapping):
                try:
                    return obj[argument]
                except (KeyError, TypeError):
                    return self.undefined(obj=obj, name=argument)
            # Other objects: the sandbox's own rules (index, then a safe attribute).
            return super().getitem(obj, argument)

    environment = GoEnvironment(
        autoescape=html,
        undefined=GoUndefined,
        keep_trailing_newline=True,
        finalize=_finalize,
        # Our own syntax never makes these; they must not come from text either.
        line_statement_prefix=None,
        line_comment_prefix=None,
    )
    environment.filters.update(
        go_url_filter=go_url_filter,
        go_url_normalize=go_url_normalize,
        go_url_escape=go_url_escape,
        # After HTML escaping: spaces, "=" and backquotes too become entities.
        go_nospace=lambda value: markupsafe.Markup(go_nospace(str(markupsafe.escape(value)))),
    )
    environment.globals.update(
        go_range=go_range,
        go_urlquery=go_urlquery,
        go_print=go_print,
        go_html=lambda *args: markupsafe.escape(go_print(*args)),
    )
    return environment


class CompiledTemplate:
    """A parsed template, ready to render with one mail's data.

    Made by :func:`compile_template`.

    Attributes:
        name: names the template in errors.
        html: whether values are HTML-escaped when rendered.
    """

    __slots__ = ("_template", "html", "name")

    def __init__(self, template: jinja2.Template, *, name: str, html: bool) -> None:
        self._template = template
        self.name = name
        self.html = html

    def render(self, data: Mapping[str, object]) -> str:
        """Render with ``data`` as the template's dot (``{{ .Email }}``).

        Raises:
            TemplateError: the template failed while rendering (a missing
                nested key, a comparison of mismatched types, an unsafe
                attribute refused by the sandbox...).
        """
        try:
            return self._template.render({ROOT: data})
        except Exception as exc:
            # Any failure inside user-supplied template code is a template error.
            raise TemplateError(
                f"rendering failed: {type(exc).__name__}: {exc}", template=self.name
            ) from exc


def compile_template(source: str, *, html: bool, name: str = "template") -> CompiledTemplate:
    """Translate Go template ``source`` and compile it in the sandbox.

    The check :class:`TemplateMailer` applies to every subject and body, for
    a caller that wants to validate a template alone (a configuration value,
    say) or render it itself.

    Args:
        source: Go template text (GoTrue's custom template syntax).
        html: autoescape values, as Go's ``html/template`` does (HTML
            bodies); ``False`` for subjects and text bodies.
        name: names the template in errors.

    Returns:
        The compiled template; :meth:`CompiledTemplate.render` renders it
        with one mail's values.

    Raises:
        TemplateError: the source is not valid in the supported Go subset;
            its ``line`` and ``column`` point at the problem.
    """
    import jinja2

    jinja_source = translate(source, name=name, html=html)
    try:
        template = _environment(html).from_string(jinja_source)
    except jinja2.TemplateSyntaxError as exc:  # pragma: no cover - translate emits valid Jinja
        raise TemplateError(f"internal translation error: {exc}", template=name) from exc
    return CompiledTemplate(template, name=name, html=html)
