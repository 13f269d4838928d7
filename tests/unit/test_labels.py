"""The label expression language of DESIGN.md and the --labels syntax of the CLI."""

from __future__ import annotations

import pytest

from enforcer.shared.labels import (
    And,
    Anything,
    Equals,
    Has,
    In,
    LabelSyntaxError,
    Not,
    NotEquals,
    Or,
    evaluate,
    is_label_word,
    parse,
    parse_labels,
)

HOST = {
    "zone": "line-1",
    "customer": "acme",
    "region": "eu",
    "system/arch": "amd64",
    "system/gpu": "nvidia",
    "with space": "a b",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("   ", True),
        ("zone", True),
        ("maintenance", False),
        ("zone = line-1", True),
        ("zone=line-1", True),
        ("zone = line-2", False),
        ("zone != line-2", True),
        ("zone != line-1", False),
        ("maintenance != on", True),  # != also holds when the label is absent
        ("region in (eu, uk)", True),
        ("region in (us)", False),
        ("missing in (eu)", False),
        ("not maintenance", True),
        ("not zone", False),
        ("zone = line-1 and not maintenance", True),
        ("customer = acme and region in (eu, uk)", True),
        ("customer = other or region = eu", True),
        ("customer = other or region = us", False),
        ("system/gpu and system/arch = amd64", True),
        ('"with space" = "a b"', True),
        ("Zone = line-1", False),  # keys are case-sensitive
        ("zone = LINE-1", False),  # values are case-sensitive
        ("not (zone or customer)", False),
        ("not not zone", True),
        ("((zone))", True),
    ],
)
def test_expressions_match_labels_as_described(text: str, expected: bool) -> None:
    assert evaluate(text, HOST) is expected
    assert parse(text).matches(HOST) is expected


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("", Anything()),
        ("a", Has("a")),
        ("a = b", Equals("a", "b")),
        ("a != b", NotEquals("a", "b")),
        ("a in (b, c)", In("a", ("b", "c"))),
        ("a or b and c", Or((Has("a"), And((Has("b"), Has("c")))))),
        ("a and b or c", Or((And((Has("a"), Has("b"))), Has("c")))),
        ("not a and b", And((Not(Has("a")), Has("b")))),
        ("not (a and b)", Not(And((Has("a"), Has("b"))))),
        ("a and b and c", And((Has("a"), Has("b"), Has("c")))),
        ('"and" = "x"', Equals("and", "x")),
        (r'k = "say \"hi\" \\ bye"', Equals("k", 'say "hi" \\ bye')),
        ('k = ""', Equals("k", "")),
    ],
)
def test_and_binds_tighter_than_or_and_not_binds_tightest(text: str, tree: object) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(
    "text",
    [
        "zone = line-1 and not maintenance",
        "customer = acme and region in (eu, uk)",
        "a and (b or c)",
        "(a or b) or c",
        "a and (b and c)",
        "not (a or b) and not c",
        '"not" = "x y" or k in ("a,b", c)',
        'k = "q\\"uote"',
        'k = ""',
    ],
)
def test_an_expression_written_out_parses_back_to_the_same_tree(text: str) -> None:
    tree = parse(text)
    assert parse(str(tree)) == tree


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("zone = line-1 and x =", 22, 'expected a value after "="'),
        ("zone = line-1 and x = )", 23, 'expected a value after "="'),
        ("zone =", 7, 'expected a value after "="'),
        ("a in b", 6, 'expected "(" after "in"'),
        ("a in (", 7, 'expected a value after "in ("'),
        ("a in (b,", 9, 'expected a value after ","'),
        ("a in (b c)", 9, 'expected "," or ")"'),
        ("((a)", 5, 'expected ")" to close the "(" at column 1'),
        ("a)", 2, 'unmatched ")"'),
        ("a b", 3, 'expected "and", "or" or the end'),
        ("a AND b", 3, 'expected "and", "or" or the end'),
        ("a and", 6, "expected a label key"),
        ("and = x", 1, 'found the keyword "and"'),
        ("not", 4, "expected a label key"),
        ("()", 2, "expected a label key"),
        ("a ! b", 3, 'unexpected character "!"'),
        ("a = $x", 5, 'unexpected character "$"'),
        ("-a", 1, 'unexpected character "-"'),
        ('a = "open', 5, "unterminated quoted string"),
        ('a = "x\\n"', 7, "unknown escape"),
        ("a = not", 5, 'expected a value after "="'),
    ],
)
def test_syntax_errors_name_the_column(text: str, column: int, message: str) -> None:
    with pytest.raises(LabelSyntaxError) as caught:
        parse(text)
    assert caught.value.column == column
    assert message in caught.value.message
    assert str(caught.value).startswith(f"column {column}: ")


def test_a_syntax_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r'^column 22: expected a value after "="$'):
        parse("zone = line-1 and x =")


def test_absurdly_deep_nesting_is_refused_instead_of_overflowing() -> None:
    with pytest.raises(LabelSyntaxError, match="nested more than"):
        parse("(" * 5000 + "a" + ")" * 5000)
    with pytest.raises(LabelSyntaxError, match="nested more than"):
        parse("not " * 5000 + "a")
    assert parse("(" * 50 + "a" + ")" * 50) == Has("a")


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("", {}),
        ("customer=acme", {"customer": "acme"}),
        ("customer=acme,region=eu", {"customer": "acme", "region": "eu"}),
        (" customer = acme , region=eu ", {"customer": "acme", "region": "eu"}),
        ("system/name=store-042", {"system/name": "store-042"}),
        ("version=1.2", {"version": "1.2"}),
    ],
)
def test_cli_labels_are_read_as_key_value_pairs(text: str, labels: dict[str, str]) -> None:
    assert parse_labels(text) == labels


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("customer", 1, "expected key=value"),
        ("a=b,customer", 5, "expected key=value"),
        ("a=b,,c=d", 5, "expected key=value"),
        ("=acme", 1, "invalid label key nothing"),
        ("customer=", 1, "invalid label value nothing"),
        ("a=b, c d=e", 6, 'invalid label key "c d"'),
        ("a=x y", 1, 'invalid label value "x y"'),
        ("a=b,a=c", 5, 'label "a" is given twice'),
    ],
)
def test_bad_cli_labels_are_refused_naming_the_column(text: str, column: int, message: str) -> None:
    with pytest.raises(LabelSyntaxError) as caught:
        parse_labels(text)
    assert caught.value.column == column
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("word", "plain"),
    [
        ("zone", True),
        ("system/gpu", True),
        ("1.2", True),
        ("and", False),
        ("a b", False),
        ("", False),
    ],
)
def test_words_that_need_no_quotes_are_recognised(word: str, plain: bool) -> None:
    assert is_label_word(word) is plain
