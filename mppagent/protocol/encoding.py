"""Strict wire encodings: base64url without padding, bounded JSON, and JCS.

The draft binds a challenge's ``id`` to the *exact* base64url text of its
``request`` and echoes that text back in the credential, so two decoders that
disagree about what a string means are a security problem, not a nicety. These
helpers therefore accept exactly one spelling of each value:

* base64url (RFC 4648 §5) without padding, only ``A-Z a-z 0-9 - _``, with zero
  trailing bits, so every byte string has a single textual form;
* JSON (RFC 8259) as UTF-8, without duplicate member names, ``NaN``/``Infinity``
  or lone surrogates, bounded in size and nesting depth;
* JCS (RFC 8785) for everything we serialize, so a server's HMAC and a client's
  echo are computed over identical bytes.

Each failure is a typed :class:`~mppagent.errors.ProtocolError` subclass whose
message names what was being decoded and why it failed, never its content.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import NoReturn, TypeAlias

import rfc8785
from pydantic import JsonValue

from mppagent.protocol.errors import (
    CanonicalizationFailed,
    DuplicateJSONKey,
    InputTooLarge,
    InvalidBase64url,
    InvalidJSON,
    JSONTooDeep,
    NonFiniteNumber,
)
from mppagent.protocol.limits import MAX_HEADER_BYTES, MAX_JSON_BYTES, MAX_JSON_DEPTH

__all__ = [
    "JSON",
    "JSONObject",
    "b64url_decode",
    "b64url_encode",
    "b64url_jcs_encode",
    "b64url_json_decode",
    "jcs_encode",
    "parse_json",
    "parse_json_object",
]

#: Any JSON value as Python holds it: dict, list, str, int, float, bool or None.
JSON: TypeAlias = JsonValue
#: A decoded JSON object.
JSONObject: TypeAlias = dict[str, JsonValue]

_B64URL_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_JSON_STRUCTURE = re.compile(r'[\[\]{}"\\]')
_SURROGATE = re.compile("[\ud800-\udfff]")


def b64url_encode(data: bytes) -> str:
    """Encode bytes as base64url without padding (RFC 4648 §5, as the draft requires)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _describe_foreign(text: str) -> str:
    """Say why ``text`` is not in the base64url alphabet, naming the first culprit."""
    for index, char in enumerate(text):
        if char.isascii() and (char.isalnum() or char in "-_"):
            continue
        if char == "=":
            return "padding '=' is not allowed (base64url without padding)"
        if char in "+/":
            return f"{char!r} at offset {index} is standard base64; base64url uses '-' and '_'"
        if char.isspace():
            return f"whitespace at offset {index} is not allowed"
        return f"character U+{ord(char):04X} at offset {index} is not in the base64url alphabet"
    return "not base64url"  # pragma: no cover - only called when a foreign character exists


def b64url_decode(
    text: str | bytes,
    *,
    max_chars: int = MAX_HEADER_BYTES,
    what: str = "base64url value",
) -> bytes:
    """Decode base64url without padding, accepting only its one canonical spelling.

    Rejected: the empty string (the draft's ABNF is ``1*(...)``), ``=`` padding,
    the standard alphabet's ``+``/``/``, whitespace or any other character, a
    length of 1 mod 4 (no byte string encodes to that), and non-zero trailing
    bits (``"QR"`` and ``"QQ"`` would otherwise both decode to ``b"A"``). Text
    longer than ``max_chars`` is refused before any decoding work.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidBase64url("contains non-ASCII bytes", what=what) from None
    if not isinstance(text, str):
        raise InvalidBase64url(f"expected text, got {type(text).__name__}", what=what)
    if len(text) > max_chars:
        raise InputTooLarge(
            f"{len(text)} characters, over the limit of {max_chars}",
            limit=max_chars,
            size=len(text),
            what=what,
        )
    if not text:
        raise InvalidBase64url("empty", what=what)
    if not _B64URL_ALPHABET.fullmatch(text):
        raise InvalidBase64url(_describe_foreign(text), what=what)
    if len(text) % 4 == 1:
        raise InvalidBase64url(f"length {len(text)} is impossible for base64url", what=what)
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - the checks above exclude it
        raise InvalidBase64url("undecodable", what=what) from None
    if b64url_encode(data) != text:
        raise InvalidBase64url("non-canonical: the unused trailing bits are not zero", what=what)
    return data


def json_nesting_exceeds(text: str, max_depth: int) -> bool:
    """Whether JSON arrays/objects in ``text`` nest deeper than ``max_depth``.

    ``json.loads`` recurses in C once per level, guarded only by the recursion
    limit -- which eth-account's dependencies raise to 100 000, so a deep enough
    document overflows the C stack and kills the process instead of raising
    ``RecursionError``. Every JSON parser fed by a peer asks this first. Scans
    only brackets, quotes and backslashes (string contents skipped exactly as
    JSON's grammar says), in linear time; few brackets means no scan at all.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return False
    depth = 0
    in_string = False
    escaped_index = -1
    for match in _JSON_STRUCTURE.finditer(text):
        index = match.start()
        if index == escaped_index:
            continue
        char = match.group()
        if in_string:
            if char == "\\":
                escaped_index = index + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _check_depth(text: str, max_depth: int, what: str) -> None:
    """Refuse JSON nested deeper than ``max_depth`` before the recursive parser sees it."""
    if json_nesting_exceeds(text, max_depth):
        raise JSONTooDeep(f"nested deeper than {max_depth} levels", limit=max_depth, what=what)


def _check_strings(value: object, what: str) -> None:
    """Refuse lone surrogates (``"\\ud800"``): they cannot be re-encoded as UTF-8 or JCS."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise InvalidJSON("string contains a lone UTF-16 surrogate", what=what)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, what)
            _check_strings(item, what)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, what)


def parse_json(
    data: str | bytes,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    what: str = "JSON",
) -> JSON:
    """Parse a JSON text with the limits and strictness the protocol needs.

    Bytes must be UTF-8 (RFC 8259 §8.1; no UTF-16 sniffing). Duplicate member
    names, ``NaN``/``Infinity``, numbers overflowing a double, lone surrogates,
    more than ``max_bytes`` of input and nesting deeper than ``max_depth`` are
    refused with typed errors. Numbers with a fraction or exponent become
    ``float``; that is harmless because the protocol carries money only in
    decimal strings (see :mod:`mppagent.protocol.amounts`).
    """
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > max_bytes:
            raise InputTooLarge(
                f"{len(raw)} bytes, over the limit of {max_bytes}",
                limit=max_bytes,
                size=len(raw),
                what=what,
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJSON("not valid UTF-8", what=what) from None
    elif isinstance(data, str):
        text = data
        if len(text) > max_bytes:
            size = len(text)
        else:
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:
                raise InvalidJSON("contains a lone UTF-16 surrogate", what=what) from None
        if size > max_bytes:
            raise InputTooLarge(
                f"{size} bytes or more, over the limit of {max_bytes}",
                limit=max_bytes,
                size=size,
                what=what,
            )
    else:
        raise InvalidJSON(f"expected text or bytes, got {type(data).__name__}", what=what)

    _check_depth(text, max_depth, what)

    def unique_members(pairs: list[tuple[str, JSON]]) -> JSONObject:
        obj: JSONObject = {}
        for key, value in pairs:
            if key in obj:
                raise DuplicateJSONKey(key, what=what)
            obj[key] = value
        return obj

    def reject_constant(name: str) -> NoReturn:
        raise NonFiniteNumber(f"{name} is not a JSON number", what=what)

    def finite_float(literal: str) -> float:
        number = float(literal)
        if not math.isfinite(number):
            raise NonFiniteNumber("number is too large for a double", what=what)
        return number

    try:
        value: JSON = json.loads(
            text,
            object_pairs_hook=unique_members,
            parse_constant=reject_constant,
            parse_float=finite_float,
        )
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} at offset {exc.pos}", what=what) from None
    except ValueError:
        # int() refuses literals beyond sys.get_int_max_str_digits().
        raise InvalidJSON("number literal is too long", what=what) from None
    except RecursionError:  # pragma: no cover - the depth scan rejects this first
        raise JSONTooDeep(
            f"nested deeper than {max_depth} levels", limit=max_depth, what=what
        ) from None
    _check_strings(value, what)
    return value


def parse_json_object(
    data: str | bytes,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    what: str = "JSON",
) -> JSONObject:
    """Like :func:`parse_json`, but the top-level value must be an object."""
    value = parse_json(data, max_bytes=max_bytes, max_depth=max_depth, what=what)
    if not isinstance(value, dict):
        raise InvalidJSON(f"expected a JSON object, got {_json_kind(value)}", what=what)
    return value


def b64url_json_decode(
    text: str | bytes,
    *,
    max_chars: int = MAX_HEADER_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    what: str = "value",
) -> JSONObject:
    """Decode the protocol's usual container: base64url-nopad of a JSON object."""
    raw = b64url_decode(text, max_chars=max_chars, what=what)
    return parse_json_object(raw, max_bytes=max_chars, max_depth=max_depth, what=what)


def jcs_encode(value: object) -> bytes:
    """Serialize with the JSON Canonicalization Scheme (RFC 8785).

    Object members are sorted by UTF-16 code units, strings and numbers have one
    spelling, and there is no whitespace: the bytes are the same in every
    implementation, which the HMAC challenge binding depends on.

    JCS numbers are IEEE 754 doubles, so integers beyond ±(2**53 - 1) are refused
    rather than silently rounded (I-JSON, RFC 7493 §2.2); the protocol carries
    large values such as amounts in decimal strings.
    """
    try:
        canonical: bytes = rfc8785.dumps(_plain(value))  # type: ignore[arg-type]
        return canonical
    except rfc8785.IntegerDomainError:
        reason = "integer outside ±(2**53 - 1) (send amounts as decimal strings)"
        raise CanonicalizationFailed(reason, what="JCS") from None
    except rfc8785.FloatDomainError:
        raise CanonicalizationFailed("NaN or infinite float", what="JCS") from None
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        # The remaining messages name a type or a rule, never a value; clip anyway.
        reason = (str(exc) or type(exc).__name__)[:100]
        raise CanonicalizationFailed(reason, what="JCS") from None
    except RecursionError:
        raise CanonicalizationFailed("value is nested too deeply (or cyclic)", what="JCS") from None


def _plain(value: object) -> object:
    """Turn read-only mappings and tuples into the dicts and lists ``rfc8785`` accepts."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def b64url_jcs_encode(value: object) -> str:
    """``base64url-nopad(JCS(value))``: how ``request``, ``opaque`` and credentials travel."""
    return b64url_encode(jcs_encode(value))


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
