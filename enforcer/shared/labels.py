"""Label expressions (DESIGN.md, "Label expressions").

::

    expr  := term ("or" term)*
    term  := unary ("and" unary)*
    unary := "not" unary | "(" expr ")" | test
    test  := KEY | KEY "=" VALUE | KEY "!=" VALUE | KEY "in" "(" VALUE ("," VALUE)* ")"
    KEY, VALUE := [A-Za-z0-9][A-Za-z0-9._/-]*  or a "quoted string"

A bare KEY tests presence; ``KEY != VALUE`` also holds when KEY is absent. Matching is
case-sensitive, keywords are lower-case, and the empty expression matches everything.
`parse` gives a small frozen AST whose ``str()`` is a canonical text that parses back to an
equal AST.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "And",
    "Anything",
    "Equals",
    "Expr",
    "Has",
    "In",
    "LabelSyntaxError",
    "Not",
    "NotEquals",
    "Or",
    "evaluate",
    "is_label_word",
    "parse",
    "parse_labels",
]

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_KEYWORDS = frozenset({"and", "or", "not", "in"})
MAX_DEPTH = 100  # nesting of "(" and "not"; deeper input is refused rather than overflowing


class LabelSyntaxError(ValueError):
    """A label expression that does not parse; `column` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


def is_label_word(text: str) -> bool:
    """Whether `text` is a KEY or VALUE that needs no quotes (and is no keyword)."""
    return _WORD.fullmatch(text) is not None and text not in _KEYWORDS


def _quote(text: str) -> str:
    if is_label_word(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the AST -------------------------------------------------------------------------------


class Expr:
    """A parsed label expression."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Anything(Expr):
    """The empty expression."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return ""


@dataclass(frozen=True)
class Has(Expr):
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return _quote(self.key)


@dataclass(frozen=True)
class Equals(Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) == self.value

    def __str__(self) -> str:
        return f"{_quote(self.key)} = {_quote(self.value)}"


@dataclass(frozen=True)
class NotEquals(Expr):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) != self.value

    def __str__(self) -> str:
        return f"{_quote(self.key)} != {_quote(self.value)}"


@dataclass(frozen=True)
class In(Expr):
    key: str
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels and labels[self.key] in self.values

    def __str__(self) -> str:
        return f"{_quote(self.key)} in ({', '.join(_quote(v) for v in self.values)})"


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def __str__(self) -> str:
        if isinstance(self.operand, (And, Or)):
            return f"not ({self.operand})"
        return f"not {self.operand}"


@dataclass(frozen=True)
class And(Expr):
    operands: tuple[Expr, ...]  # two or more

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(o.matches(labels) for o in self.operands)

    def __str__(self) -> str:
        return " and ".join(f"({o})" if isinstance(o, (And, Or)) else str(o) for o in self.operands)


@dataclass(frozen=True)
class Or(Expr):
    operands: tuple[Expr, ...]  # two or more

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(o.matches(labels) for o in self.operands)

    def __str__(self) -> str:
        return " or ".join(f"({o})" if isinstance(o, Or) else str(o) for o in self.operands)


# -- tokenizer -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", "=", "!=", "(", ")", ",", "end"
    text: str  # the word or the unquoted string; the symbol otherwise
    column: int  # 1-based

    def describe(self) -> str:
        if self.kind == "end":
            return "the end"
        if self.kind == "string":
            return _quote_always(self.text)
        return f'"{self.text}"'


def _quote_always(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "=(),":
            tokens.append(_Token(char, char, i + 1))
            i += 1
        elif text.startswith("!=", i):
            tokens.append(_Token("!=", "!=", i + 1))
            i += 2
        elif char == '"':
            value, end = _read_string(text, i)
            tokens.append(_Token("string", value, i + 1))
            i = end
        else:
            match = _WORD.match(text, i)
            if match is None:
                hint = ' (did you mean "!="?)' if char == "!" else ""
                raise LabelSyntaxError(f'unexpected character "{char}"{hint}', i + 1)
            tokens.append(_Token("word", match.group(), i + 1))
            i = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    """The unescaped content of the quoted string at `start`, and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            following = text[i + 1 : i + 2]
            if following not in ('"', "\\"):
                raise LabelSyntaxError(
                    'unknown escape in quoted string (only \\" and \\\\ are allowed)', i + 1
                )
            out.append(following)
            i += 2
        else:
            out.append(char)
            i += 1
    raise LabelSyntaxError("unterminated quoted string", start + 1)


# -- parser --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.position = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.position]

    def advance(self) -> _Token:
        token = self.tokens[self.position]
        if token.kind != "end":
            self.position += 1
        return token

    def at_keyword(self, keyword: str) -> bool:
        token = self.current
        return token.kind == "word" and token.text == keyword

    def fail(self, expected: str) -> LabelSyntaxError:
        token = self.current
        return LabelSyntaxError(f"{expected}, found {token.describe()}", token.column)

    def parse(self) -> Expr:
        if self.current.kind == "end":
            return Anything()
        expr = self.expr()
        if self.current.kind != "end":
            if self.current.kind == ")":
                raise LabelSyntaxError('unmatched ")"', self.current.column)
            raise self.fail('expected "and", "or" or the end')
        return expr

    def expr(self) -> Expr:
        operands = [self.term()]
        while self.at_keyword("or"):
            self.advance()
            operands.append(self.term())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def term(self) -> Expr:
        operands = [self.unary()]
        while self.at_keyword("and"):
            self.advance()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Expr:
        token = self.current
        if self.depth >= MAX_DEPTH:
            raise LabelSyntaxError(f"nested more than {MAX_DEPTH} levels deep", token.column)
        if self.at_keyword("not"):
            self.advance()
            self.depth += 1
            operand = self.unary()
            self.depth -= 1
            return Not(operand)
        if token.kind == "(":
            self.advance()
            self.depth += 1
            inner = self.expr()
            self.depth -= 1
            if self.current.kind != ")":
                raise self.fail(f'expected ")" to close the "(" at column {token.column}')
            self.advance()
            return inner
        return self.test()

    def test(self) -> Expr:
        token = self.current
        if token.kind == "string" or (token.kind == "word" and token.text not in _KEYWORDS):
            self.advance()
        elif token.kind == "word":
            raise LabelSyntaxError(
                f'expected a label key, found the keyword "{token.text}" '
                "(put it in double quotes to use it as a key)",
                token.column,
            )
        else:
            raise self.fail('expected a label key, "not" or "("')
        key = token.text
        operator = self.current
        if operator.kind in ("=", "!="):
            self.advance()
            value = self.value(f'expected a value after "{operator.text}"')
            return Equals(key, value) if operator.kind == "=" else NotEquals(key, value)
        if self.at_keyword("in"):
            self.advance()
            if self.current.kind != "(":
                raise self.fail('expected "(" after "in"')
            self.advance()
            values = [self.value('expected a value after "in ("')]
            while self.current.kind == ",":
                self.advance()
                values.append(self.value('expected a value after ","'))
            if self.current.kind != ")":
                raise self.fail('expected "," or ")" in the list of values')
            self.advance()
            return In(key, tuple(values))
        return Has(key)

    def value(self, expected: str) -> str:
        token = self.current
        if token.kind == "string" or (token.kind == "word" and token.text not in _KEYWORDS):
            self.advance()
            return token.text
        if token.kind == "end":
            raise LabelSyntaxError(expected, token.column)
        raise self.fail(expected)


def parse(text: str) -> Expr:
    """The AST of `text`; raises LabelSyntaxError naming the 1-based column.

    Results are cached: the same few expressions are evaluated against many hosts and sites.
    """
    return _parse_cached(text)


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Expr:
    return _Parser(text).parse()


def evaluate(text: str, labels: Mapping[str, str]) -> bool:
    """Whether `labels` match the expression `text` (parsed once and cached)."""
    return parse(text).matches(labels)


def parse_labels(text: str) -> dict[str, str]:
    """``"k=v,k2=v2"`` as given to ``--labels``; keys and values are unquoted KEY/VALUE words.

    Raises LabelSyntaxError naming the column of the first bad item; a key given twice is an
    error. Blank text gives no labels.
    """
    labels: dict[str, str] = {}
    offset = 0
    if not text.strip():
        return labels
    for item in text.split(","):
        column = offset + 1 + (len(item) - len(item.lstrip()))
        offset += len(item) + 1
        key, equals, value = item.strip().partition("=")
        if not equals:
            raise LabelSyntaxError(f'expected key=value, found "{item.strip()}"', column)
        key, value = key.strip(), value.strip()
        for word, what in ((key, "key"), (value, "value")):
            if _WORD.fullmatch(word) is None:
                shown = f'"{word}"' if word else "nothing"
                raise LabelSyntaxError(
                    f"invalid label {what} {shown}: use letters, digits and . _ / -, "
                    "starting with a letter or digit",
                    column,
                )
        if key in labels:
            raise LabelSyntaxError(f'label "{key}" is given twice', column)
        labels[key] = value
    return labels
