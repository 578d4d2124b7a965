"""The RFC 9110 auth-param tokenizer on its own."""

from __future__ import annotations

import pytest

from mppagent.protocol import AuthChallenge, quote_string, tokenize_challenges


def test_several_schemes_in_one_value() -> None:
    value = 'Bearer realm="x", Basic, Negotiate abc==, Payment id=abc, realm="a b"'
    assert tokenize_challenges(value) == [
        AuthChallenge("bearer", 0, (("realm", "x"),)),
        AuthChallenge("basic", 18),
        AuthChallenge("negotiate", 25, token68="abc=="),
        AuthChallenge("payment", 42, (("id", "abc"), ("realm", "a b"))),
    ]


def test_names_are_case_insensitive_values_are_not() -> None:
    assert tokenize_challenges('PAYMENT ID=AbC, Realm="X"') == [
        AuthChallenge("payment", 0, (("id", "AbC"), ("realm", "X"))),
    ]


def test_ows_around_equals_and_commas_and_empty_elements() -> None:
    value = ' ,  Payment  id = "a" ,, , realm\t=\tb ,  , Basic  ,'
    assert tokenize_challenges(value) == [
        AuthChallenge("payment", 4, (("id", "a"), ("realm", "b"))),
        AuthChallenge("basic", 42),
    ]


def test_quoted_string_escapes() -> None:
    [challenge] = tokenize_challenges(r'Payment a="x\"y", b="c\\d", c="\e", d="", e=","')
    assert challenge.params == (("a", 'x"y'), ("b", "c\\d"), ("c", "e"), ("d", ""), ("e", ","))
    assert challenge.error is None


def test_obs_text_and_tab_inside_quotes() -> None:
    [challenge] = tokenize_challenges('Payment d="caf\u00e9 \t\u2615"')
    assert challenge.params == (("d", "caf\u00e9 \t\u2615"),)


def test_token68_forms() -> None:
    assert tokenize_challenges("Negotiate a+b/c~d.e_f-g==") == [
        AuthChallenge("negotiate", 0, token68="a+b/c~d.e_f-g=="),
    ]
    # "x=" followed by the end of the element is a token68, not an empty parameter.
    assert tokenize_challenges("Basic x=, Payment id=1") == [
        AuthChallenge("basic", 0, token68="x="),
        AuthChallenge("payment", 10, (("id", "1"),)),
    ]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('Payment id="abc', "parameter 'id': unterminated quoted-string"),
        ('Payment id="a\\', "parameter 'id': unterminated quoted-string"),
        ('Payment id="a\x01b"', "parameter 'id': control character U+0001 in quoted-string"),
        ('Payment id="a\nb"', "parameter 'id': control character U+000A in quoted-string"),
        (
            'Payment id="a\\\x7f"',
            "parameter 'id': invalid escaped character U+007F in quoted-string",
        ),
        ("Payment id=x, realm=", "parameter 'realm' has no value"),
        ("Payment id=x, realm= , a=b", "parameter 'realm' has no value"),
        ("Payment id=@x", "parameter 'id': value must be a token or a quoted-string"),
        ('Payment id="a" "b"', "unexpected character after parameter 'id'"),
        ("Payment id=a b", "unexpected character after parameter 'id'"),
        ("Payment id=a;b", "unexpected character after parameter 'id'"),
        ("Payment @", "expected name=value parameters or a token68"),
        ("Payment= x", "expected a space after the auth-scheme"),
        ("Negotiate abc, realm=x", "parameters after a token68 value"),
    ],
)
def test_syntax_errors_are_reported_per_challenge(value: str, error: str) -> None:
    challenges = tokenize_challenges(value)
    assert challenges[0].error == error


def test_name_equals_nothing_is_a_token68_by_the_grammar() -> None:
    # token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    assert tokenize_challenges("Payment id=") == [AuthChallenge("payment", 0, token68="id=")]
    [challenge] = tokenize_challenges("Payment id=, realm=x")
    assert challenge.token68 == "id="
    assert challenge.error == "parameters after a token68 value"


def test_error_resynchronises_at_next_challenge() -> None:
    value = 'Payment id="a" junk, realm=x, Payment id="b", Bearer x=y'
    first, second, third = tokenize_challenges(value)
    assert first.error == "unexpected character after parameter 'id'"
    assert first.params == ()
    assert second == AuthChallenge("payment", 30, (("id", "b"),))
    assert third == AuthChallenge("bearer", 46, (("x", "y"),))


def test_quoted_comma_does_not_resynchronise() -> None:
    value = 'Payment id=x y, d="a, Payment id=z", Payment id=q'
    first, second = tokenize_challenges(value)
    assert first.error is not None
    assert second == AuthChallenge("payment", 37, (("id", "q"),))


def test_garbage_without_scheme_is_reported_with_empty_scheme() -> None:
    assert tokenize_challenges('="x", Payment id=1') == [
        AuthChallenge("", 0, error="expected an auth-scheme"),
        AuthChallenge("payment", 6, (("id", "1"),)),
    ]
    # A parameter before any scheme is not a scheme either.
    first, second = tokenize_challenges("realm=x, Payment id=1")
    assert first.scheme == "realm"
    assert first.error == "expected a space after the auth-scheme"
    assert second.params == (("id", "1"),)


def test_duplicates_are_kept_for_the_caller() -> None:
    [challenge] = tokenize_challenges("Payment id=a, ID=b")
    assert challenge.params == (("id", "a"), ("id", "b"))


def test_empty_and_blank_values() -> None:
    assert tokenize_challenges("") == []
    assert tokenize_challenges(" , ,\t") == []


def test_unterminated_quote_in_hostile_input_is_linear() -> None:
    # Each quote is escaped: rescanning from every one of them would be quadratic.
    [challenge] = tokenize_challenges('Payment id="' + '\\"' * 30_000)
    assert challenge.error == "parameter 'id': unterminated quoted-string"


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("abc", '"abc"'), ('a"b', '"a\\"b"'), ("a\\b", '"a\\\\b"'), ("", '""')],
)
def test_quote_string(value: str, quoted: str) -> None:
    assert quote_string(value) == quoted
    [challenge] = tokenize_challenges(f"Payment x={quoted}")
    assert challenge.params == (("x", value),)
