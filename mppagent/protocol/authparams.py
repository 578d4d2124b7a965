"""An RFC 9110 §11 tokenizer for ``WWW-Authenticate`` field values.

One field value may hold several challenges of different schemes
(``Bearer realm="x", Payment id="..", ...``), and commas separate both the
challenges and the parameters inside them. The grammar is::

    challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param = token BWS "=" BWS ( token / quoted-string )

An element that starts with ``token BWS "="`` continues the current challenge;
any other element starts a new one. This tokenizer is deliberately forgiving in
one way only: a syntax error inside a challenge marks *that* challenge as broken
(with a reason) and resynchronises at the next element that can start a
challenge, so one bad challenge cannot hide a good one next to it. Scheme and
parameter names are case-insensitive and returned lowercased; values are
returned unescaped and otherwise untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["AuthChallenge", "quote_string", "tokenize_challenges"]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")
# qdtext and quoted-pair (RFC 9110 §5.6.4); any non-ASCII character is accepted
# as obs-text because clients may hand us values already decoded from UTF-8.
_QUOTED = re.compile(
    r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\t \x21-\x7e\x80-\U0010ffff])*)"'
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """One challenge as written: scheme, parameters in order, or a syntax error.

    ``params`` keeps duplicates and order so callers can refuse repeated names
    (RFC 9110: each parameter name occurs once per challenge). ``offset`` is the
    index of the scheme in the field value. When ``error`` is set the challenge
    is unusable and ``params`` holds whatever was read before the error.
    """

    scheme: str
    offset: int
    params: tuple[tuple[str, str], ...] = ()
    token68: str | None = None
    error: str | None = None


class _Syntax(Exception):
    """Internal control flow of the tokenizer; never escapes it."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos


@dataclass(slots=True)
class _Builder:
    scheme: str
    offset: int
    params: list[tuple[str, str]] = field(default_factory=list)
    token68: str | None = None
    error: str | None = None

    def build(self) -> AuthChallenge:
        return AuthChallenge(
            scheme=self.scheme,
            offset=self.offset,
            params=tuple(self.params),
            token68=self.token68,
            error=self.error,
        )


def quote_string(value: str) -> str:
    """Render ``value`` as an RFC 9110 quoted-string (escaping ``"`` and ``\\``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _skip_ows(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _OWS:
        pos += 1
    return pos


def _quoted_end(text: str, pos: int) -> int | None:
    """Index just after the quoted-string starting at ``pos``, if it is terminated."""
    i = pos + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            return i + 1
        i += 1
    return None


def _skip_element(text: str, pos: int) -> int:
    """Advance to the next list separator, stepping over quoted-strings.

    An unterminated quoted-string swallows the rest of the value: rescanning
    from every later quote would cost quadratic time on hostile input.
    """
    while pos < len(text):
        char = text[pos]
        if char == ",":
            return pos
        if char == '"':
            end = _quoted_end(text, pos)
            if end is None:
                return len(text)
            pos = end
            continue
        pos += 1
    return pos


def _starts_param(text: str, pos: int) -> bool:
    match = _TOKEN.match(text, pos)
    if match is None:
        return False
    after = _skip_ows(text, match.end())
    return after < len(text) and text[after] == "="


def _quoted_error(text: str, pos: int) -> str:
    """Explain why the quoted-string at ``pos`` did not match."""
    i = pos + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "invalid quoted-string"  # pragma: no cover - the regex would have matched
        if char == "\\":
            if i + 1 >= len(text):
                break
            if not _QUOTED.fullmatch('"\\' + text[i + 1] + '"'):
                return f"invalid escaped character U+{ord(text[i + 1]):04X} in quoted-string"
            i += 2
            continue
        if not _QUOTED.fullmatch('"' + char + '"'):
            return f"control character U+{ord(char):04X} in quoted-string"
        i += 1
    return "unterminated quoted-string"


def _read_value(text: str, pos: int, name: str) -> tuple[str, int]:
    if pos >= len(text) or text[pos] == ",":
        raise _Syntax(f"parameter {name!r} has no value", pos)
    if text[pos] == '"':
        match = _QUOTED.match(text, pos)
        if match is None:
            raise _Syntax(f"parameter {name!r}: {_quoted_error(text, pos)}", pos)
        return _QUOTED_PAIR.sub(r"\1", match.group(1)), match.end()
    match = _TOKEN.match(text, pos)
    if match is None:
        raise _Syntax(f"parameter {name!r}: value must be a token or a quoted-string", pos)
    return match.group(), match.end()


def _read_param(text: str, pos: int) -> tuple[str, str, int]:
    """Read ``token BWS "=" BWS value`` and check that the element ends after it."""
    match = _TOKEN.match(text, pos)
    assert match is not None
    name = match.group().lower()
    shown = name if len(name) <= 40 else name[:40] + "..."
    eq = _skip_ows(text, match.end())
    value, end = _read_value(text, _skip_ows(text, eq + 1), shown)
    after = _skip_ows(text, end)
    if after < len(text) and text[after] != ",":
        raise _Syntax(f"unexpected character after parameter {shown!r}", after)
    return name, value, after


def tokenize_challenges(value: str) -> list[AuthChallenge]:
    """Split one ``WWW-Authenticate`` field value into challenges of any scheme.

    Never raises on malformed input: a broken challenge comes back with
    ``error`` set, and tokenizing resumes at the next element that can begin a
    challenge (an element that is not ``name=value``). Text that cannot belong
    to any challenge (for example a leading ``=``) is reported as a challenge
    with an empty scheme. Empty list elements (``, ,``) are skipped.
    """
    text = value
    length = len(text)
    out: list[_Builder] = []
    current: _Builder | None = None
    skipping = False
    pos = 0

    def fail(builder: _Builder, exc: _Syntax) -> int:
        nonlocal skipping
        if builder.error is None:
            builder.error = exc.reason
        skipping = True
        return _skip_element(text, exc.pos)

    while True:
        while pos < length and text[pos] in " \t,":
            pos += 1
        if pos >= length:
            break

        if current is not None and _starts_param(text, pos):
            if skipping:
                pos = _skip_element(text, pos)
                continue
            if current.token68 is not None:
                pos = fail(current, _Syntax("parameters after a token68 value", pos))
                continue
            try:
                name, param_value, pos = _read_param(text, pos)
            except _Syntax as exc:
                pos = fail(current, exc)
                continue
            current.params.append((name, param_value))
            continue

        # Anything else starts a new challenge.
        skipping = False
        start = pos
        scheme = _TOKEN.match(text, pos)
        if scheme is None:
            current = _Builder(scheme="", offset=start)
            out.append(current)
            pos = fail(current, _Syntax("expected an auth-scheme", pos))
            continue
        current = _Builder(scheme=scheme.group().lower(), offset=start)
        out.append(current)
        pos = scheme.end()
        if pos >= length or text[pos] == ",":
            continue
        if text[pos] not in _OWS:
            pos = fail(current, _Syntax("expected a space after the auth-scheme", pos))
            continue
        pos = _skip_ows(text, pos)
        if pos >= length or text[pos] == ",":
            continue

        token68 = _TOKEN68.match(text, pos)
        if token68 is not None:
            after = _skip_ows(text, token68.end())
            if after >= length or text[after] == ",":
                current.token68 = token68.group()
                pos = after
                continue
        if not _starts_param(text, pos):
            pos = fail(current, _Syntax("expected name=value parameters or a token68", pos))
            continue
        try:
            name, param_value, pos = _read_param(text, pos)
        except _Syntax as exc:
            pos = fail(current, exc)
            continue
        current.params.append((name, param_value))

    return [builder.build() for builder in out]
