"""Go ``html/template`` text, the subset GoTrue users write, as Jinja2 source.

GoTrue's custom e-mail templates are Go templates (``{{ .ConfirmationURL }}``,
``{{ if .Token }}…{{ end }}``). So that an existing template file works
unmodified, :func:`translate` turns it into Jinja2 source that the sandboxed
environment compiles (see ``_compile.py``). What is supported:

* text, copied exactly (``{`` is emitted as an expression, so no Jinja
  syntax can hide in it), and comments ``{{/* … */}}``;
* trim markers ``{{- `` and `` -}}``;
* the dot ``.``, fields ``.A.b.c`` (map keys: never Python attributes),
  ``$`` and ``$.A``;
* string (``"…"``, raw ``…``), number, ``true``, ``false`` and ``nil`` literals;
* pipelines ``x | f a`` (the piped value becomes the last argument) and
  parenthesised sub-pipelines;
* ``if`` / ``else if`` / ``else`` / ``end``, ``with`` / ``else`` / ``end``,
  ``range`` / ``else`` / ``end`` (a map ranges over its values in key order);
* the functions ``eq`` (with several right-hand values), ``ne``, ``lt``,
  ``le``, ``gt``, ``ge``, ``and``, ``or``, ``not``, ``len``, ``index``,
  ``urlquery``, ``html``, ``print``.

Everything else (variables, ``define``/``template``/``block``, ``printf``,
``js``, ``call``, ``break``…) is refused with a :class:`TemplateError` that
names the template and the line and column, rather than rendered wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from .._errors import MailError
from ._htmlcontext import HtmlContext

__all__ = ["TemplateError", "translate"]

ROOT = "_d0"
"""The Jinja variable holding the template's data (Go's ``$``)."""


class TemplateError(MailError, ValueError):
    """A template cannot be parsed or rendered (it names the template).

    Attributes:
        template: the template's name (``"confirmation"``, ``"recovery subject"``).
        line: 1-based line of the problem in the template's source, if known.
        column: 1-based column, if known.
    """

    def __init__(
        self, message: str, *, template: str, line: int | None = None, column: int | None = None
    ) -> None:
        where = f"template {template!r}"
        if line is not None:
            where += f", line {line}" + (f", column {column}" if column is not None else "")
        super().__init__(f"{where}: {message}")
        self.template = template
        self.line = line
        self.column = column


# ------------------------------------------------------------------ lexing

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?(?![\w.]))
  | (?P<field>(?:\.[A-Za-z_]\w*)+)
  | (?P<variable>\$\w*(?:\.[A-Za-z_]\w*)*)
  | (?P<dot>\.)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<punct>\(|\)|\||:=|=|,)
    """,
    re.VERBOSE,
)
_CLOSE = re.compile(r"[ \t\r\n]+-}}|}}")
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a"}
_ESCAPES |= {"b": "\b", "f": "\f", "v": "\v"}
_STRING_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    offset: int


# ------------------------------------------------------------------ translation

_FUNCTIONS = {"eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "len", "index"}
_FUNCTIONS |= {"urlquery", "html", "print"}
_COMPARE = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_KEYWORDS = {"if", "else", "end", "with", "range", "define", "template", "block"}
_KEYWORDS |= {"break", "continue"}


@dataclass(slots=True)
class _Block:
    kind: str  # "if", "with" or "range"
    offset: int
    has_else: bool = False
    dot: str | None = None  # the dot variable this block introduced


class _Translator:
    def __init__(self, source: str, name: str, html: HtmlContext | None) -> None:
        self.html = html
        self.source = source
        self.name = name
        self.out: list[str] = []
        self.blocks: list[_Block] = []
        self.dots = [ROOT]

    # -- errors

    def fail(self, message: str, offset: int) -> NoReturn:
        line = self.source.count("\n", 0, offset) + 1
        column = offset - (self.source.rfind("\n", 0, offset) + 1) + 1
        raise TemplateError(message, template=self.name, line=line, column=column)

    # -- text and actions

    def run(self) -> str:
        source, position, trim_next = self.source, 0, False
        while True:
            start = source.find("{{", position)
            text = source[position:] if start < 0 else source[position:start]
            if trim_next:
                text = text.lstrip(" \t\r\n")
            inner_start = start + 2
            trim_before = source.startswith(("{{- ", "{{-\t", "{{-\n", "{{-\r"), start)
            if start >= 0 and trim_before:
                text = text.rstrip(" \t\r\n")
                inner_start += 2
            self.text(text)
            if start < 0:
                break
            position, trim_next = self.action(inner_start, start)
        if self.blocks:
            block = self.blocks[-1]
            self.fail(f"{{{{ {block.kind} }}}} is never closed by {{{{ end }}}}", block.offset)
        return "".join(self.out)

    def text(self, text: str) -> None:
        # "{" could open Jinja syntax next to what follows: emit it as a string.
        if self.html is not None:
            self.html.feed(text)
        if text:
            self.out.append(text.replace("{", '{{ "{" }}'))

    def action(self, inner_start: int, start: int) -> tuple[int, bool]:
        """Translate the action opened at ``start``; return where text resumes."""
        source = self.source
        comment = _COMMENT.match(source, inner_start)
        if comment is not None:
            end_match = _CLOSE.match(source, comment.end())
            if end_match is None:
                self.fail("a comment must be followed directly by }}", comment.end())
            return end_match.end(), end_match.group() != "}}"
        tokens: list[_Token] = []
        position = inner_start
        while True:
            close = _CLOSE.match(source, position)
            if close is not None:
                break
            match = _TOKEN.match(source, position)
            if match is None:
                if position >= len(source):
                    self.fail("unclosed action: missing }}", start)
                self.fail(f"unexpected {source[position]!r} in action", position)
            kind = match.lastgroup or ""  # every alternative is a named group
            if kind != "space":
                tokens.append(_Token(kind, match.group(), match.start()))
            position = match.end()
        self.statement(tokens, start)
        return close.end(), close.group() != "}}"

    def statement(self, tokens: list[_Token], start: int) -> None:
        if not tokens:
            self.fail("empty action {{ }}", start)
        head = tokens[0]
        word = head.text if head.kind == "ident" else ""
        if word == "if":
            self.open_block("if", tokens, head)
            self.out.append(f"{{% if {self.pipeline(tokens[1:], head)} %}}")
        elif word == "with":
            expression, dot = self.open_dot_block("with", tokens, head)
            self.out.append(f"{{% with {dot} = {expression} %}}{{% if {dot} %}}")
        elif word == "range":
            if any(token.kind == "punct" and token.text in (":=", "=", ",") for token in tokens):
                self.fail("range with variables ($i, $v :=) is not supported", head.offset)
            expression, dot = self.open_dot_block("range", tokens, head)
            self.out.append(f"{{% for {dot} in go_range({expression}) %}}")
        elif word == "else":
            self.else_(tokens, head)
        elif word == "end":
            self.end(tokens, head)
        elif word in _KEYWORDS:
            self.fail(f"{{{{ {word} }}}} is not supported in e-mail templates", head.offset)
        else:
            self.out.append(f"{{{{ {self.printed(self.pipeline(tokens, head), head)} }}}}")

    def printed(self, expression: str, head: _Token) -> str:
        if self.html is None:
            return expression
        filters, refusal = self.html.action()
        if refusal is not None:
            self.fail(refusal, head.offset)
        return expression if filters is None else f"({expression})|{filters}"

    def open_block(self, kind: str, tokens: list[_Token], head: _Token) -> _Block:
        if len(tokens) == 1:
            self.fail(f"{{{{ {kind} }}}} needs a pipeline", head.offset)
        block = _Block(kind, head.offset)
        self.blocks.append(block)
        return block

    def open_dot_block(self, kind: str, tokens: list[_Token], head: _Token) -> tuple[str, str]:
        """Open a block that rebinds dot (``with``, ``range``): its pipeline, read
        with the outer dot, and the fresh variable that holds dot inside it."""
        expression = self.pipeline(tokens[1:], head)
        dot = f"_d{len(self.dots)}"
        self.open_block(kind, tokens, head).dot = dot
        self.dots.append(dot)
        return expression, dot

    def current(self, head: _Token) -> _Block:
        if not self.blocks:
            self.fail(f"{{{{ {head.text} }}}} without an open if, with or range", head.offset)
        return self.blocks[-1]

    def else_(self, tokens: list[_Token], head: _Token) -> None:
        block = self.current(head)
        if block.has_else:
            self.fail(f"a second {{{{ else }}}} in one {block.kind}", head.offset)
        if len(tokens) > 1:
            if not (tokens[1].kind == "ident" and tokens[1].text == "if" and block.kind == "if"):
                self.fail(f"{{{{ else {tokens[1].text} }}}} is not supported here", head.offset)
            if len(tokens) == 2:
                self.fail("{{ else if }} needs a pipeline", tokens[1].offset)
            self.out.append(f"{{% elif {self.pipeline(tokens[2:], tokens[1])} %}}")
            return
        block.has_else = True
        if block.dot is not None:
            # Go evaluates the else branch with the outer dot.
            self.dots.pop()
        self.out.append("{% else %}")

    def end(self, tokens: list[_Token], head: _Token) -> None:
        block = self.current(head)
        if len(tokens) > 1:
            self.fail("{{ end }} takes no arguments", tokens[1].offset)
        self.blocks.pop()
        if block.dot is not None and not block.has_else:
            self.dots.pop()
        closing = {"if": "{% endif %}", "with": "{% endif %}{% endwith %}"}
        self.out.append(closing.get(block.kind, "{% endfor %}"))

    # -- expressions

    def pipeline(self, tokens: list[_Token], anchor: _Token) -> str:
        """Translate ``command | command …`` to one Jinja expression."""
        commands: list[list[_Token]] = [[]]
        depth = 0
        for token in tokens:
            if token.kind == "punct" and token.text in (":=", "=", ","):
                self.fail("variables ($x := …) are not supported", token.offset)
            if token.text == "(" and token.kind == "punct":
                depth += 1
            elif token.text == ")" and token.kind == "punct":
                depth -= 1
                if depth < 0:
                    self.fail("unexpected )", token.offset)
            if depth == 0 and token.kind == "punct" and token.text == "|":
                commands.append([])
            else:
                commands[-1].append(token)
        if depth:
            self.fail("unclosed (", anchor.offset)
        piped: str | None = None
        for command in commands:
            if not command:
                self.fail("missing command in pipeline", anchor.offset)
            piped = self.command(command, piped)
        assert piped is not None  # commands is never empty
        return piped

    def command(self, tokens: list[_Token], piped: str | None) -> str:
        operands = self.operands(tokens)
        head = tokens[0]
        extra = [] if piped is None else [piped]
        if head.kind == "ident" and head.text not in ("true", "false", "nil"):
            return self.call(head, operands[1:] + extra)
        if len(operands) + len(extra) > 1:
            self.fail(f"{head.text!r} is not a function and takes no arguments", head.offset)
        return operands[0]

    def operands(self, tokens: list[_Token]) -> list[str]:
        result: list[str] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token.kind == "punct" and token.text == "(":
                depth, close = 1, index
                while depth:
                    close += 1
                    depth += {"(": 1, ")": -1}.get(tokens[close].text, 0)
                if close == index + 1:
                    self.fail("empty ( )", token.offset)
                result.append(f"({self.pipeline(tokens[index + 1 : close], token)})")
                index = close + 1
                continue
            result.append(self.operand(token, first=index == 0))
            index += 1
        return result

    def operand(self, token: _Token, *, first: bool) -> str:
        kind, text = token.kind, token.text
        if kind == "dot":
            return self.dots[-1]
        if kind == "field":
            return self.fields(self.dots[-1], text)
        if kind == "variable":
            name, _, rest = text.partition(".")
            if name != "$":
                self.fail(f"variable {name} is not supported (only $)", token.offset)
            return self.fields(ROOT, "." + rest) if rest else ROOT
        if kind == "string":
            return repr(self.unquote(token))
        if kind == "raw":
            return repr(text[1:-1])
        if kind == "number":
            return text
        if kind == "ident":
            if text in ("true", "false", "nil"):
                return {"true": "True", "false": "False", "nil": "None"}[text]
            if text in _KEYWORDS:
                self.fail(f"unexpected keyword {text!r}", token.offset)
            if text not in _FUNCTIONS:
                self.fail(f"function {text!r} is not supported", token.offset)
            if not first:
                self.fail(f"function {text!r} must be called in parentheses here", token.offset)
            return text
        # Punctuation never gets here: pipeline() and operands() consume it all.
        return self.fail(f"unexpected {text!r}", token.offset)  # pragma: no cover

    def fields(self, base: str, chain: str) -> str:
        # Subscripts, not attributes: the environment's getitem reads map keys
        # and never falls back to a Python attribute of a dict.
        return base + "".join(f"[{name!r}]" for name in chain.split(".")[1:])

    def unquote(self, token: _Token) -> str:
        def replace(match: re.Match[str]) -> str:
            code = match.group(1) or match.group(2) or match.group(3)
            if code is not None:
                return chr(int(code, 16))
            escaped = _ESCAPES.get(match.group(4))
            if escaped is None:
                self.fail(f"unknown escape \\{match.group(4)} in string", token.offset)
            return escaped

        return _STRING_ESCAPE.sub(replace, token.text[1:-1])

    def call(self, head: _Token, args: list[str]) -> str:
        name = head.text
        if name == "not":
            self.arity(head, args, 1, 1)
            return f"(not {args[0]})"
        if name == "len":
            self.arity(head, args, 1, 1)
            return f"({args[0]}|length)"
        if name in ("and", "or"):
            self.arity(head, args, 1, None)
            return "(" + f" {name} ".join(args) + ")"
        if name == "eq":
            self.arity(head, args, 2, None)
            return "(" + " or ".join(f"{args[0]} == {other}" for other in args[1:]) + ")"
        if name in _COMPARE:
            self.arity(head, args, 2, 2)
            return f"({args[0]} {_COMPARE[name]} {args[1]})"
        if name == "index":
            self.arity(head, args, 1, None)
            return args[0] + "".join(f"[{key}]" for key in args[1:])
        return f"go_{name}({', '.join(args)})"

    def arity(self, head: _Token, args: list[str], least: int, most: int | None) -> None:
        if len(args) < least or (most is not None and len(args) > most):
            wanted = f"{least}" if most == least else f"at least {least}"
            self.fail(f"{head.text} takes {wanted} argument(s), got {len(args)}", head.offset)


def translate(source: str, *, name: str, html: bool = False) -> str:
    """Translate Go template ``source`` to Jinja2 source.

    The result expects the template's data in the variable ``_d0`` and the
    helper functions ``go_range``, ``go_urlquery``, ``go_html`` and
    ``go_print`` (the environment in ``_compile.py`` provides them).

    With ``html``, each printed value also gets the filter its place in the
    HTML needs, or is refused where no filter makes it safe (see
    ``_htmlcontext``).

    Raises:
        TemplateError: ``source`` uses Go template syntax outside the
            supported subset, or is malformed; the error names ``name`` and
            the line and column.
    """
    return _Translator(source, name, HtmlContext() if html else None).run()
