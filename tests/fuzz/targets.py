"""Fuzz targets for every parser that reads what a peer sends.

Each :class:`Target` pairs a generator of hostile input with a check of the
parser's robustness claim. Inputs are mostly *structured*: realistic wire
values (challenges, credentials, receipts, problem bodies, session messages,
SSE streams, provider chunks) that are then mutated -- characters flipped,
text truncated, parameters duplicated, values made huge or nested deeply,
padding, unicode and control characters inserted -- so that mutations land
past the first syntax check. Raw text and bytes are mixed in as well. The
checks go beyond "no unexpected exception": what a parser accepts must also
survive its own round trip.

Hypothesis drives every run (:func:`run_target`). Each example is one buffer of
:data:`BUFFER_BYTES` random bytes drawn by hypothesis (a single choice, which
keeps hypothesis's per-example cost low), from which a generator reads all its
decisions (:class:`Source`); zero bytes, or the end of the buffer, give the
simplest choice. So hypothesis generates and shrinks plain bytes while the
generators keep the structure, and :func:`reduce_failure` finishes the job by
deleting whole loop iterations (events, parameters, characters). A failure is
reported as the input that the minimised buffer generates.

The parsers are checked under the process's own recursion limit, not the one
hypothesis sets around a test body: see :func:`run_target`.

``benchmarks/fuzz.py`` runs every target with 100 000 examples;
``tests/fuzz/test_fuzz_small.py`` runs the same targets with a few hundred.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import pickle
import re
import reprlib
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from mppagent.errors import PaymentError
from mppagent.llm.chat import ChatDelta, parse_chunk, parse_completion
from mppagent.llm.errors import ProviderError
from mppagent.protocol import (
    MAX_AMOUNT,
    MAX_HEADER_BYTES,
    MAX_JSON_DEPTH,
    MAX_TOTAL_HEADER_BYTES,
    PROBLEM_TYPES,
    CanonicalizationFailed,
    Challenge,
    ChallengeList,
    Credential,
    EncodingError,
    HeaderTooLarge,
    InvalidAcceptPayment,
    MalformedChallenge,
    MalformedCredential,
    MalformedReceipt,
    PaymentRange,
    ProblemError,
    Receipt,
    b64url_decode,
    b64url_encode,
    b64url_jcs_encode,
    decode_receipt,
    decode_receipt_json,
    encode_receipt,
    jcs_encode,
    parse_accept_payment,
    parse_challenges,
    parse_json,
    parse_problem,
    tokenize_challenges,
)
from mppagent.tempo.schemas import (
    InvalidSessionMessage,
    NeedVoucher,
    SessionReceipt,
    SessionRequest,
    parse_model,
    parse_payload,
)
from mppagent.transport.sse import EventTooLarge, SSEEvent, SSEParser
from tests.fuzz.tempo_tx import check_tempo_tx, tempo_tx_input

__all__ = ["BUFFER_BYTES", "TARGETS", "Outcome", "Source", "Target", "run_target"]

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: Bytes of entropy hypothesis draws per example. Generators read 20 to 130 of them on
#: average (under 200 for nine inputs in ten); past the end, every choice is the simplest.
BUFFER_BYTES = 256

# ================================================================================= source


class Source:
    """Decisions read from a byte string; zero bytes (and the end) mean "the simplest".

    Every choice maps 0 to its simplest option (the first of a list, the lower
    bound, the empty string, no mutation), so hypothesis shrinking the buffer
    towards zeros shrinks the generated input towards something small.
    """

    __slots__ = ("_data", "_pos", "spans")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self.spans: list[tuple[int, int]] = []

    def byte(self) -> int:
        pos = self._pos
        if pos < len(self._data):
            self._pos = pos + 1
            return self._data[pos]
        return 0

    def below(self, n: int) -> int:
        """An int in ``[0, n)``."""
        if n <= 1:
            return 0
        if n <= 256:
            return self.byte() % n
        value = 0
        for _ in range((n.bit_length() + 7) // 8):
            value = value << 8 | self.byte()
        return value % n

    def integer(self, lo: int, hi: int) -> int:
        return lo + self.below(hi - lo + 1)

    def chance(self, one_in: int) -> bool:
        """True with probability ``1/one_in`` (False for a zero byte)."""
        return self.below(one_in) == one_in - 1

    def choice(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def repeat(self, most: int, mean: int | None = None) -> Iterator[int]:
        """Loop up to ``most`` times (about ``mean`` on average); a zero byte stops it.

        Each iteration's bytes (with the byte that continued the loop) are recorded
        as a span: deleting a span removes exactly that element, which is how
        :func:`reduce_failure` drops events, parameters and characters.
        """
        stop_one_in = (mean if mean is not None else max(1, most // 3)) + 1
        for i in range(most):
            start = self._pos
            if self.below(stop_one_in) == 0:
                return
            yield i
            self.spans.append((start, self._pos))

    def opaque(self, n: int) -> bytes:
        """``n`` bytes whose content does not matter (hashes, signatures): two bytes of seed."""
        return hashlib.shake_128(bytes((self.byte(), self.byte()))).digest(n)


# ============================================================================= text & bytes

_SIMPLE = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ !#$%&'()*+-./:<>?@^_`|~"
SPICY_CHARS = (
    "\"\\,=; \t\r\n\x00\x01\x1b\x7f\x85\xa0é€\u2028\ufeff\ud800\udfff\U0001f4b8{}[]:+/-_.%'"
)
FRAGMENTS = (
    "Payment ",
    'id="',
    '", ',
    "==",
    "eyJ",
    '\\"',
    "Bearer x, ",
    "\r\n ",
    "null",
    "NaN",
    "data: ",
    "0x",
    "\\u0000",
)
HUGE_SIZES = (300, 5_000, 70_000)
HUGE_FILL = ("A", "=", " ", '"', "\\", ",", "é", "[", "{", "9")


def char(src: Source) -> str:
    """Any character, mostly simple ones; lone surrogates only via SPICY_CHARS."""
    kind = src.below(10)
    if kind < 6:
        return _SIMPLE[src.below(len(_SIMPLE))]
    if kind == 6:
        return SPICY_CHARS[src.below(len(SPICY_CHARS))]
    if kind == 7:
        code = src.integer(0x80, 0xFFFD)
        return chr(code - 0x800 if 0xD800 <= code <= 0xDFFF else code)
    if kind == 8:
        return chr(src.integer(0x10000, 0x10FFFF))
    return chr(src.below(32))


def text(src: Source, most: int = 20) -> str:
    return "".join(char(src) for _ in src.repeat(most))


_HEADER_SPECIAL = '"\\ ,=;\t'


def header_text(src: Source, most: int = 16) -> str:
    """Text a header value may carry: no CTLs but HTAB, no DEL, no surrogates."""
    out = []
    for _ in src.repeat(most):
        kind = src.below(5)
        if kind < 3:
            out.append(_SIMPLE[src.below(len(_SIMPLE))])
        elif kind == 3:
            out.append(_HEADER_SPECIAL[src.below(len(_HEADER_SPECIAL))])
        else:
            code = src.integer(0xA0, 0xFFFD)
            out.append(chr(code - 0x800 if 0xD800 <= code <= 0xDFFF else code))
    return "".join(out)


def binary(src: Source, most: int = 32) -> bytes:
    return bytes(src.byte() for _ in src.repeat(most))


def spicy_text(src: Source) -> str:
    kind = src.below(4)
    if kind == 0:
        return char(src)
    if kind == 1:
        return src.choice(FRAGMENTS)
    if kind == 2:
        return "".join(src.choice(SPICY_CHARS) for _ in range(src.integer(2, 6)))
    return text(src, 6)


_TEXT_OPS = ("replace", "insert", "delete", "truncate", "duplicate", "huge", "swapcase")


def mutate_text(src: Source, value: str, most: int = 3) -> str:
    """Up to ``most`` random edits: flip, insert, cut, truncate, repeat, make huge, swap case."""
    for _ in src.repeat(most):
        op = src.choice(_TEXT_OPS)
        i = src.below(len(value) + 1)
        if op == "replace":
            value = value[:i] + spicy_text(src)[:1] + value[i + 1 :]
        elif op == "insert":
            value = value[:i] + spicy_text(src) + value[i:]
        elif op == "delete":
            value = value[:i] + value[i + src.integer(1, 16) :]
        elif op == "truncate":
            value = value[:i]
        elif op == "duplicate":
            j = min(len(value), i + src.below(64))
            value = value[:j] + value[i:j] + value[j:]
        elif op == "huge":
            value = value[:i] + src.choice(HUGE_FILL) * src.choice(HUGE_SIZES) + value[i:]
        else:
            value = value[:i] + value[i : i + 16].swapcase() + value[i + 16 :]
    return value


SPICY_BYTES = (
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"\r\r",
    b":",
    b" ",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"data: ",
    b"event: ",
    b"retry: ",
    b"id: ",
)


def mutate_bytes(src: Source, data: bytes, most: int = 3) -> bytes:
    """The byte-level counterpart of :func:`mutate_text`."""
    for _ in src.repeat(most):
        op = src.choice(_TEXT_OPS)
        i = src.below(len(data) + 1)
        if op == "replace":
            data = data[:i] + bytes((src.byte(),)) + data[i + 1 :]
        elif op == "insert":
            data = (
                data[:i] + (src.choice(SPICY_BYTES) if src.below(2) else binary(src, 4)) + data[i:]
            )
        elif op == "delete":
            data = data[:i] + data[i + src.integer(1, 16) :]
        elif op == "truncate":
            data = data[:i]
        elif op == "duplicate":
            j = min(len(data), i + src.below(64))
            data = data[:j] + data[i:j] + data[j:]
        elif op == "huge":
            data = data[:i] + b"x" * src.choice(HUGE_SIZES) + data[i:]
        else:
            data = data[:i] + data[i : i + 16].swapcase() + data[i + 16 :]
    return data


def encode_text(src: Source, value: str) -> bytes:
    """Text as bytes: UTF-8 mostly (lone surrogates kept), sometimes a wrong encoding."""
    encoding = src.choice(("utf-8", "utf-8", "utf-8", "utf-16", "latin-1"))
    return value.encode(encoding, "replace" if encoding == "latin-1" else "surrogatepass")


# ====================================================================================== JSON


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


KNOWN_KEYS = (
    *_words(
        """
        action type channelId cumulativeAmount signature transaction authorizedSigner
        additionalDeposit requiredCumulative acceptedCumulative deposit spent units txHash
        challengeId challenge_id accepted_cumulative status method intent timestamp reference
        amount unitType suggestedDeposit currency recipient methodDetails escrowContract
        chainId minVoucherDelta feePayer challenge payload source id realm request expires
        opaque title detail instance choices delta message content reasoning reasoning_content
        reasoning_details usage error code finish_reason _private __class__ model_config
        """
    ),
    "",
)
BAD_TIMESTAMPS = (
    "2025-01-15T12:05:00",
    "9999-12-31T23:59:60Z",
    "0001-01-01T00:00:00+23:59",
    "2025-02-30T00:00:00Z",
    "2025-01-15T12:05:00.1234567890123456789012345678901234Z",
    "2025-01-15T24:00:00Z",
)
BAD_SOURCES = ("did:pkh:eip155:0:0x", "did:pkh:x", "did:pkh:eip155:1:0x" + "A" * 40, "")
TRICKY_SCALARS: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1.5,
    -0.0,
    1e308,
    5e-324,
    1e16,
    2**53,
    2**64,
    2**128,
    2**128 - 1,
    -(2**63),
    *_words("0 -1 01 1e3 1.0 +1 0x 0x0"),
    "",
    " 1",
    "1 ",
    "\u0663",
    "\uff11",
    str(2**128),
    str(2**128 - 1),
    "9" * 45,
    "0X" + "ab" * 20,
    "0x" + "g" * 40,
    "0x" + "AB" * 20,
    "0x" + "ab" * 31 + "a",
    "0x" + "ab" * 32,
    "0x " + "ab" * 4,
    "0x" + "ab" * 4 + " ",
    "0x\u0660\u0661",
    " 0x00",
    "\ud800",
    "\x00",
    *_words("success tempo session open voucher topUp close 2025-01-15T12:05:00Z"),
    *BAD_TIMESTAMPS,
    *BAD_SOURCES,
)


def json_scalar(src: Source) -> Any:
    kind = src.below(8)
    if kind == 0:
        return src.choice((None, True, False))
    if kind == 1:
        return src.integer(-1000, 1000)
    if kind == 2:
        return src.integer(-(2**53) + 1, 2**53 - 1)
    if kind == 3:
        return src.choice((0.5, -0.0, 1.5, 1e-7, 1e16, 1e308, 5e-324, -2.5e-300))
    if kind == 4:
        return src.choice(TRICKY_SCALARS)
    return text(src, 12)


def json_value(src: Source, depth: int = 0) -> Any:
    """A JSON value (finite numbers only), at most 4 levels deep and a few members wide."""
    kind = src.below(6) if depth < 4 else 0
    if kind < 4:
        return json_scalar(src)
    if kind == 4:
        return [json_value(src, depth + 1) for _ in src.repeat(4, mean=2)]
    return {json_key(src): json_value(src, depth + 1) for _ in src.repeat(4, mean=2)}


def json_key(src: Source) -> str:
    return src.choice(KNOWN_KEYS) if src.below(2) else text(src, 8)


def nested(depth: int, as_object: bool) -> Any:
    """``[[[...]]]`` or ``{"a": {"a": ...}}`` with ``depth`` levels (the top counts as 1)."""
    value: Any = 1 if as_object else []
    for _ in range(depth - (0 if as_object else 1)):
        value = {"a": value} if as_object else [value]
    return value


def nested_text(depth: int, as_object: bool) -> str:
    """The JSON text of :func:`nested`, built without recursion (for very deep values)."""
    if as_object:
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth


def spicy_json(src: Source) -> Any:
    kind = src.below(5)
    if kind == 0:
        return src.choice(TRICKY_SCALARS)
    if kind == 1:
        return nested(src.choice((2, 31, 32, 33, 40)), src.below(2) == 1)
    if kind == 2:
        return "x" * src.choice(HUGE_SIZES)
    return json_value(src)


_JSON_OPS = ("replace", "replace", "delete", "add", "rename", "wrap", "text")


def mutate_json(src: Source, value: Any, most: int = 3) -> Any:
    """Edit a JSON value at random places: replace, drop, add or rename members, wrap..."""
    for _ in src.repeat(most):
        value = _mutate_node(src, value)
    return value


def _mutate_node(src: Source, node: Any) -> Any:
    # Containers are copied, never edited in place: generators share some values.
    if isinstance(node, dict) and node and src.below(4):
        key = src.choice(list(node))
        return {**node, key: _mutate_node(src, node[key])}
    if isinstance(node, list) and node and src.below(4):
        i = src.below(len(node))
        return [*node[:i], _mutate_node(src, node[i]), *node[i + 1 :]]
    op = src.choice(_JSON_OPS)
    if isinstance(node, dict) and node and op in ("delete", "rename"):
        key = src.choice(list(node))
        rest = {k: v for k, v in node.items() if k != key}
        if op == "delete":
            return rest
        return {**rest, src.choice((key.upper(), key + " ", key.lower(), "")): node[key]}
    if isinstance(node, dict) and op == "add":
        return {**node, json_key(src): spicy_json(src)}
    if isinstance(node, list) and node and op == "delete":
        i = src.below(len(node))
        return node[:i] + node[i + 1 :]
    if isinstance(node, list) and op == "add":
        return [*node, spicy_json(src)]
    if isinstance(node, str) and op == "text":
        return mutate_text(src, node, 2)
    if op == "wrap":
        return [node] if src.below(2) else {"value": node}
    return spicy_json(src)


JSON_LITERALS = (
    "1" * 5000,
    "-" + "9" * 4301,
    "1e999",
    "-1e999",
    "1" * 400 + ".5",
    "NaN",
    "Infinity",
    "-Infinity",
    '"\\ud800"',
    '"\\udc00\\ud800"',
    '"\\u0000"',
    '"\\"',
    "1.0",
    "-0",
    "1E+2",
    "[]",
    "{}",
    "true",
    '"' + "\\\\" * 10 + '"',
)
NEST_DEPTHS = (MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 990, 1000, 5000, 100_000)
_JSON_TEXT_OPS = ("dup_key", "member", "deep_member", "wrap_deep", "bom", "trailing", "text")


def json_text_of(src: Source, value: Any, most: int = 2) -> str:
    """Serialize ``value`` in one of several spellings, then spoil the text a little."""
    style = src.choice(("compact", "spaced", "ascii", "indent", "jcs"))
    if style == "jcs":
        try:
            out = jcs_encode(value).decode("utf-8")
        except (PaymentError, UnicodeDecodeError):
            out = json.dumps(value)
    elif style == "compact":
        out = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    elif style == "indent":
        out = json.dumps(value, indent="\t" if src.below(2) else 1, ensure_ascii=False)
    else:
        out = json.dumps(value, ensure_ascii=style == "ascii")
    for _ in src.repeat(most):
        op = src.choice(_JSON_TEXT_OPS)
        if op == "dup_key" and out.startswith("{"):
            key = json.dumps(src.choice(KNOWN_KEYS))
            out = "{" + key + ":" + json.dumps(spicy_json(src)) + "," + out[1:]
        elif op in ("member", "deep_member") and out.endswith("}"):
            key = json.dumps(src.choice(KNOWN_KEYS))
            if op == "member":
                literal = src.choice(JSON_LITERALS)
            else:
                literal = nested_text(src.choice(NEST_DEPTHS), src.below(2) == 1)
            out = out[:-1] + ("," if len(out) > 2 else "") + key + ":" + literal + "}"
        elif op == "wrap_deep":
            depth = src.choice(NEST_DEPTHS)
            out = "[" * depth + out + "]" * depth
        elif op == "bom":
            out = "\ufeff" + out
        elif op == "trailing":
            out += src.choice((" ", "\n", "x", ",", "}", "]", "\x00", " {}"))
        elif op == "text":
            out = mutate_text(src, out, 2)
    return out


# =============================================================================== wire values


def hex_bytes(src: Source, n: int) -> str:
    return "0x" + src.opaque(n).hex()


def address(src: Source) -> str:
    value = hex_bytes(src, 20)
    return "0x" + value[2:].upper() if src.chance(4) else value


def amount(src: Source) -> str:
    kind = src.below(4)
    if kind == 0:
        return str(src.below(10**6))
    if kind == 1:
        return str(src.integer(0, MAX_AMOUNT))
    if kind == 2:
        return str(src.choice((0, 1, MAX_AMOUNT, MAX_AMOUNT - 1, 2**64, 2**53 + 1)))
    return str(src.below(10**12))


def challenge_id(src: Source) -> str:
    return b64url_encode(src.opaque(32))


def session_payload(src: Source) -> dict[str, Any]:
    action = src.choice(("voucher", "open", "topUp", "close"))
    payload: dict[str, Any] = {"action": action, "channelId": hex_bytes(src, 32)}
    if action in ("open", "topUp"):
        payload["type"] = "transaction"
        payload["transaction"] = hex_bytes(src, src.below(121))
    if action == "topUp":
        payload["additionalDeposit"] = amount(src)
    else:
        payload["cumulativeAmount"] = amount(src)
        payload["signature"] = hex_bytes(src, 65)
    if action == "open" and src.below(2):
        payload["authorizedSigner"] = address(src)
    return payload


def need_voucher(src: Source) -> dict[str, Any]:
    return {
        "channelId": hex_bytes(src, 32),
        "requiredCumulative": amount(src),
        "acceptedCumulative": amount(src),
        "deposit": amount(src),
    }


def timestamp(src: Source) -> str:
    if src.chance(8):
        return src.choice(
            ("2025-01-15T12:05:00Z", "2025-01-15t14:05:00.123+02:00", "2016-12-31T23:59:60z")
        )
    stamp = (
        f"{src.integer(1970, 2100):04d}-{src.integer(1, 12):02d}-{src.integer(1, 28):02d}"
        f"T{src.below(24):02d}:{src.below(60):02d}:{src.below(60):02d}"
    )
    if src.below(2):
        stamp += "." + str(src.below(10**6))
    return stamp + src.choice(("Z", "z", "+00:00", "-07:30"))


def session_receipt(src: Source) -> dict[str, Any]:
    receipt: dict[str, Any] = {
        "method": "tempo",
        "intent": "session",
        "status": src.choice(("success", "failed")),
        "timestamp": timestamp(src),
        "reference": hex_bytes(src, 32),
        "challengeId": challenge_id(src),
        "channelId": hex_bytes(src, 32),
        "acceptedCumulative": amount(src),
        "spent": amount(src),
    }
    if src.below(2):
        receipt["units"] = src.below(10**6)
    if src.below(2):
        receipt["txHash"] = hex_bytes(src, 32)
    return receipt


def session_request(src: Source) -> dict[str, Any]:
    details: dict[str, Any] = {"escrowContract": address(src)}
    if src.below(2):
        details["chainId"] = src.choice((4217, 31337, 1))
    if src.below(2):
        details["channelId"] = hex_bytes(src, 32)
    if src.below(2):
        details["minVoucherDelta"] = amount(src)
    if src.below(2):
        details["feePayer"] = src.below(2) == 1
    request: dict[str, Any] = {
        "amount": amount(src),
        "currency": address(src),
        "recipient": address(src),
        "methodDetails": details,
    }
    if src.below(2):
        request["unitType"] = "llm_token"
    if src.below(2):
        request["suggestedDeposit"] = amount(src)
    return request


def challenge_params(src: Source) -> dict[str, str]:
    """The wire parameters of a valid challenge, as a server would issue them."""
    request = session_request(src)
    if src.below(2):
        request_text = b64url_jcs_encode(request)
    else:
        spelled = json.dumps(request, indent=src.choice((None, 1)), ensure_ascii=False)
        request_text = b64url_encode(spelled.encode())
    params = {
        "id": challenge_id(src) if src.below(4) else "x" + header_text(src),
        "realm": src.choice(("api.example.com", "127.0.0.1:8402", "")) or header_text(src),
        "method": src.choice(("tempo", "stripe", "x")),
        "intent": src.choice(("session", "charge", "Pay-2")),
        "request": request_text,
    }
    if src.below(2):
        params["expires"] = timestamp(src)
    if src.below(2):
        params["digest"] = "sha-256=:" + b64url_encode(src.opaque(32))
    if src.below(2):
        params["description"] = header_text(src)
    if src.below(2):
        opaque = {header_text(src, 6): header_text(src, 6) for _ in src.repeat(3)}
        params["opaque"] = b64url_jcs_encode(opaque)
    return params


def source_value(src: Source) -> str:
    kind = src.below(4)
    if kind == 0:
        return f"did:pkh:eip155:{src.integer(1, 2**63)}:{address(src)}"
    if kind == 1:
        return "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    if kind == 2:
        return src.choice(BAD_SOURCES)
    return "did:" + text(src, 12)


# ================================================================================ challenges

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PARAM_OPS = _words(
    "drop dup unknown value huge pad std_b64 trailing_bits deep request_json expires name_case "
    "opaque empty"
)
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _replace(params: list[tuple[str, str]], i: int, name: str, value: str) -> list[tuple[str, str]]:
    return [*params[:i], (name, value), *params[i + 1 :]]


def _mutate_request(src: Source, op: str, request: str) -> str:
    if op == "pad":
        return request + src.choice(("=", "==", "==="))
    if op == "std_b64":
        try:
            raw = base64.urlsafe_b64decode(request + "=" * (-len(request) % 4))
        except ValueError:  # already spoiled by an earlier mutation
            return request
        return base64.b64encode(raw + b"\xfb\xff").decode()
    if op == "trailing_bits" and len(request) % 4 in (2, 3) and request[-1] in _B64URL:
        return request[:-1] + _B64URL[(_B64URL.index(request[-1]) + 1) % 64]
    if op == "deep":
        depth = src.choice(NEST_DEPTHS[:4])
        return b64url_encode(nested_text(depth, src.below(2) == 1).encode())
    spoiled = json_text_of(src, mutate_json(src, session_request(src)), 3)
    return b64url_encode(spoiled.encode("utf-8", "surrogatepass"))


def _mutate_params(src: Source, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    for _ in src.repeat(3):
        op = src.choice(_PARAM_OPS)
        i = src.below(len(params))
        names = [name for name, _ in params]
        if op == "drop" and params:
            params = params[:i] + params[i + 1 :]
        elif op == "dup" and params:
            name, value = params[i]
            params = [*params, (name, src.choice((value, value + "x", "")))]
        elif op == "unknown":
            params = [*params, ("x-" + src.choice(("a", "id", "Request")), "1")]
        elif op == "value" and params:
            value = mutate_text(src, params[i][1], 2) + spicy_text(src)
            params = _replace(params, i, params[i][0], value)
        elif op == "huge" and params:
            value = src.choice(HUGE_FILL) * src.choice(HUGE_SIZES)
            params = _replace(params, i, params[i][0], value)
        elif op == "empty" and params:
            params = _replace(params, i, params[i][0], "")
        elif op == "name_case" and params:
            params = _replace(params, i, params[i][0].upper(), params[i][1])
        elif op == "expires":
            params = [*params, ("expires", src.choice(BAD_TIMESTAMPS))]
        elif op == "opaque":
            spoiled = json_text_of(src, {"a": 1}).encode("utf-8", "surrogatepass")
            params = [*params, ("opaque", b64url_encode(spoiled))]
        elif "request" in names:
            at = names.index("request")
            params = _replace(params, at, "request", _mutate_request(src, op, params[at][1]))
    return params


def _render_challenge(src: Source, params: list[tuple[str, str]]) -> str:
    parts = []
    for name, value in params:
        quoted = not _TOKEN.fullmatch(value) or src.below(2) == 1
        equals = src.choice(("=", "=", " = ", "\t="))
        parts.append(name + equals + (_quote(value) if quoted else value))
    separator = src.choice((", ", ",", " , ", ",\t", ", ,"))
    scheme = src.choice(("Payment", "payment", "PAYMENT", "Payment "))
    return scheme + " " + separator.join(parts)


@dataclass(frozen=True)
class ChallengeCase:
    """``WWW-Authenticate`` values; ``intact`` is the challenge of the last value, if known."""

    values: list[str]
    intact: Challenge | None = None


OTHER_SCHEMES = ('Bearer realm="x"', "Basic", "Negotiate abc==", 'Digest a="b", c=d', "Payment")
HEADERISH = 'Payment id=realm,"\\ =\t;eyJ9-_ABasicNegotiate'


def challenge_case(src: Source) -> ChallengeCase:
    """A mutated Payment challenge among other schemes, then (often) an intact copy."""
    if src.chance(5):
        values = []
        for _ in src.repeat(4):
            if src.below(2):
                values.append(text(src, 200))
            else:
                values.append("".join(src.choice(HEADERISH) for _ in src.repeat(80)))
        return ChallengeCase(values)
    params = challenge_params(src)
    ordered = list(params.items())
    for i in range(len(ordered) - 1, 0, -1):  # a shuffle; zero bytes keep the order
        j = src.below(i + 1)
        ordered[i], ordered[j] = ordered[j], ordered[i]
    header = _render_challenge(src, _mutate_params(src, ordered))
    header = mutate_text(src, header, src.choice((0, 0, 1, 3)))
    before = [src.choice(OTHER_SCHEMES) for _ in src.repeat(2)]
    after = [src.choice(OTHER_SCHEMES) for _ in src.repeat(2)]
    values = [", ".join([*before, header, *after])]
    values += [src.choice(OTHER_SCHEMES) for _ in src.repeat(1)]
    if src.below(2):
        return ChallengeCase(values)
    intact = Challenge.model_validate(params)
    return ChallengeCase([*values, intact.to_header()], intact)


def _utf8_size(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def check_challenges(case: ChallengeCase) -> None:
    """``parse_challenges``: a ChallengeList, or HeaderTooLarge only for over-limit input."""
    try:
        result = parse_challenges(case.values)
    except HeaderTooLarge:
        sizes = [_utf8_size(v) for v in case.values]
        assert max(sizes) > MAX_HEADER_BYTES or sum(sizes) > MAX_TOTAL_HEADER_BYTES
        return
    assert isinstance(result, ChallengeList)
    for challenge in result:
        assert isinstance(challenge, Challenge)
        assert parse_challenges(challenge.to_header()) == [challenge], "accepted, not re-parsed"
    for error in result.errors:
        assert isinstance(error, MalformedChallenge)
        assert error.header_index is not None
        assert error.offset is not None
        assert 0 <= error.header_index < len(case.values)
        assert 0 <= error.offset < len(case.values[error.header_index])
    payment = sum(
        1 for value in case.values for raw in tokenize_challenges(value) if raw.scheme == "payment"
    )
    assert len(result) + len(result.errors) == payment, "a Payment challenge went unreported"
    if case.intact is not None:
        assert result[-1] == case.intact, "a bad challenge hid a good one"


# =============================================================================== credential


def credential_header(src: Source) -> str:
    """``Authorization: Payment <b64url(JSON)>`` built right, then spoiled at every layer."""
    kind = src.below(8)
    if kind == 6:
        return text(src, 200)
    if kind == 7:
        return "Payment " + b64url_encode(binary(src, 200) or b"{")
    document: dict[str, Any] = {"challenge": challenge_params(src), "payload": session_payload(src)}
    if src.below(2):
        document["source"] = source_value(src)
    spelled = json_text_of(src, mutate_json(src, document))
    token = b64url_encode(encode_text(src, spelled))
    if src.chance(4):
        token = mutate_text(src, token + src.choice(("", "=", "==")), 2)
    scheme = src.choice(("Payment", "payment", "PAYMENT", "Bearer", " Payment"))
    gap = src.choice((" ", " ", "  ", "\t"))
    end = src.choice(("", "", " ", "\t", " extra", "\r\n"))
    return mutate_text(src, scheme + gap + token + end, src.choice((0, 0, 0, 2)))


def check_credential(header: str) -> None:
    """``Credential.decode``: a Credential that round-trips, or MalformedCredential."""
    try:
        credential = Credential.decode(header)
    except MalformedCredential:
        return
    try:
        encoded = credential.encode()
    except CanonicalizationFailed:
        return  # an int beyond 2**53 in the payload: decodable, not re-encodable by JCS
    if len(encoded) <= MAX_HEADER_BYTES:  # JCS can be longer than the input ("1E2")
        assert Credential.decode(encoded) == credential


# ================================================================================== receipts


def receipt_document(src: Source) -> str:
    """The JSON text of a receipt (session or plain), mutated."""
    if src.below(3):
        document = session_receipt(src)
    else:
        document = {
            "status": "success",
            "method": src.choice(("tempo", "x")),
            "timestamp": timestamp(src),
            "reference": text(src, 10),
        }
    return json_text_of(src, mutate_json(src, document))


def receipt_header(src: Source) -> str:
    if src.chance(6):
        return text(src, 200)
    token = b64url_encode(encode_text(src, receipt_document(src)))
    token = src.choice(("", " ", "\t", "\r")) + token + src.choice(("", " ", "\t", "=", "\n"))
    return mutate_text(src, token, src.choice((0, 0, 1, 2)))


def _check_receipt(receipt: Receipt) -> None:
    assert isinstance(receipt, Receipt)
    receipt.timestamp_at  # noqa: B018 - must not raise once decoded
    try:
        encoded = encode_receipt(receipt)
    except CanonicalizationFailed:
        return
    if len(encoded) <= MAX_HEADER_BYTES:
        assert decode_receipt(encoded) == receipt
    else:  # a JSON receipt (event data) of over 48 KiB does not fit a header
        with contextlib.suppress(MalformedReceipt):
            decode_receipt(encoded)
            raise AssertionError("a receipt header over the size limit was accepted")


def check_receipt(value: str) -> None:
    """``decode_receipt``: a Receipt that round-trips, or MalformedReceipt."""
    try:
        receipt = decode_receipt(value)
    except MalformedReceipt:
        return
    _check_receipt(receipt)


def receipt_json_input(src: Source) -> str | bytes:
    if src.chance(6):
        return binary(src, 200)
    document = receipt_document(src)
    if src.below(2):
        return document
    return mutate_bytes(src, encode_text(src, document), src.choice((0, 0, 1)))


def check_receipt_json(data: str | bytes) -> None:
    """``decode_receipt_json``: a Receipt that round-trips, or MalformedReceipt."""
    try:
        receipt = decode_receipt_json(data)
    except MalformedReceipt:
        return
    _check_receipt(receipt)
    assert decode_receipt_json(json.dumps(receipt.to_json_object())) == receipt


# ================================================================================== problems


@dataclass
class FakeResponse:
    """What ``parse_problem`` reads from a response (``httpx.Response`` has more)."""

    status_code: Any
    content: Any
    headers: dict[str, str] = field(default_factory=dict)


class BrokenResponse:
    """A response whose attributes raise (``None``), as a half-closed stream's might."""

    def __init__(self, status: Any, content: Any) -> None:
        self._status = status
        self._content = content
        self.headers: dict[str, str] = {}

    @property
    def status_code(self) -> Any:
        if self._status is None:
            raise RuntimeError("no status")
        return self._status

    @property
    def content(self) -> Any:
        if self._content is None:
            raise RuntimeError("stream closed")
        return self._content

    def __repr__(self) -> str:
        return f"BrokenResponse({show(self._status)}, {show(self._content)})"


PROBLEM_TYPE_URIS = (*PROBLEM_TYPES, "about:blank", "https://example.com/x", "", "\x1b[31mred")
STATUSES = (402, 400, 410, 500, 200, 0, -1, 2**70, True, None, "402", 402.0)


def problem_document(src: Source) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": src.choice(PROBLEM_TYPE_URIS),
        "title": header_text(src) if src.below(2) else spicy_text(src),
        "status": src.choice((402, 400, 410, "402", None)),
    }
    if src.below(2):
        document["detail"] = text(src, 40) if src.below(2) else spicy_text(src)
    if src.below(2):
        document["instance"] = text(src, 20)
    if src.below(2):
        document["challengeId"] = challenge_id(src)
    if src.below(2):
        document["requiredTopUp"] = amount(src)
    return document


def problem_response(src: Source) -> FakeResponse | BrokenResponse:
    kind = src.choice(("problem", "problem", "binary", "html", "huge", "json"))
    content: Any
    if kind == "problem":
        spelled = json_text_of(src, mutate_json(src, problem_document(src)))
        content = mutate_bytes(src, encode_text(src, spelled), src.choice((0, 1)))
    elif kind == "binary":
        content = binary(src, 300)
    elif kind == "html":
        content = b"<html><body>\x1b[2J" + binary(src, 40) + b"</body></html>"
    elif kind == "huge":
        content = src.choice((b"{", b" ", b"\xff")) * (64 * 1024 + src.below(3))
    else:
        content = json.dumps(json_value(src)).encode()
    status = src.choice(STATUSES) if src.below(2) else src.integer(-(2**40), 2**40)
    if src.chance(10):
        wrapped = src.choice(("bytearray", "memoryview", "str", "missing"))
        if wrapped == "bytearray":
            content = bytearray(content)
        elif wrapped == "memoryview":
            content = memoryview(content)
        elif wrapped == "str":
            content = content.decode("latin-1")
        else:
            content = None
        return BrokenResponse(status, content)
    return FakeResponse(status, content)


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_problem(response: FakeResponse | BrokenResponse) -> None:
    """``parse_problem``: never raises; a ProblemError with clean, bounded text."""
    problem = parse_problem(response)
    assert isinstance(problem, ProblemError)
    try:
        raw = response.status_code
    except RuntimeError:
        raw = 0
    assert problem.status == (raw if isinstance(raw, int) and not isinstance(raw, bool) else 0)
    assert isinstance(problem.type, str)
    assert isinstance(problem.title, str)
    assert len(problem.title) <= 200
    assert len(problem.type) <= 200
    assert problem.detail is None or len(problem.detail) <= 500
    for shown in (problem.type, problem.title, problem.detail, problem.instance):
        assert shown is None or not _UNPRINTABLE.search(shown), "control character in output"
    assert not {"type", "title", "status", "detail", "instance"} & problem.extras.keys()
    again = pickle.loads(pickle.dumps(problem))
    assert type(again) is type(problem)
    assert again.to_body() == problem.to_body()


# ============================================================================ Accept-Payment

Q_VALUES = (
    *_words("1 0 0.5 0.123 1.000 0. 1. 0.1234 1.5 -0 1.0001 q 1e0 0.5;q=1"),
    "0.5 ",
    "\u0660.\u0665",
    "",
)


def accept_payment_value(src: Source) -> str:
    if src.chance(5):
        return (
            text(src, 120)
            if src.below(2)
            else "".join(src.choice("abc*/;q=0.15, \t") for _ in src.repeat(60))
        )
    parts = []
    for _ in src.repeat(6):
        method = src.choice(("tempo", "stripe", "*", "x", "Tempo", "t\u00e9mpo"))
        intent = src.choice(("session", "charge", "*", "a-b-1", "", "/"))
        part = f"{method}/{intent}"
        if src.below(2):
            part += src.choice((";q=", "; q=", ";Q=", " ;q=", ";q =")) + src.choice(Q_VALUES)
        parts.append(part)
    value = src.choice((", ", ",", " , ", ",,", ",\t")).join(parts)
    return mutate_text(src, value, src.choice((0, 0, 1, 3)))


def check_accept_payment(value: str) -> None:
    """``parse_accept_payment``: PaymentRanges that round-trip, or its two typed errors."""
    try:
        ranges = parse_accept_payment(value)
    except (InvalidAcceptPayment, HeaderTooLarge):
        return
    assert all(isinstance(r, PaymentRange) and 0 <= r.q <= 1 for r in ranges)
    assert parse_accept_payment(", ".join(str(r) for r in ranges)) == ranges


# ======================================================================== base64url and JSON


def b64url_input(src: Source) -> str | bytes:
    kind = src.below(6)
    if kind == 4:
        return text(src, 100)
    if kind == 5:
        return binary(src, 100)
    value = mutate_text(src, b64url_encode(binary(src, 64)), src.choice((0, 1, 1, 2)))
    if src.chance(4):
        return value.encode("utf-8", "surrogatepass")
    return value


def check_b64url(value: str | bytes) -> None:
    """``b64url_decode``: bytes whose encoding is the input exactly, or an EncodingError."""
    try:
        data = b64url_decode(value)
    except EncodingError:
        return
    spelled = value.decode("ascii") if isinstance(value, bytes) else value
    assert b64url_encode(data) == spelled, "a non-canonical spelling was accepted"


def json_input(src: Source) -> str | bytes:
    kind = src.below(8)
    if kind == 6:
        return text(src, 200)
    if kind == 7:
        return binary(src, 200)
    spelled = json_text_of(src, mutate_json(src, json_value(src)), 3)
    return spelled if src.below(2) else encode_text(src, spelled)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def check_json(data: str | bytes) -> None:
    """``parse_json``: a value within the limits that re-parses equal, or an EncodingError."""
    try:
        value = parse_json(data)
    except EncodingError:
        return
    assert _depth(value) <= MAX_JSON_DEPTH
    assert not any(_SURROGATE.search(s) for s in _strings(value)), "lone surrogate accepted"
    assert parse_json(json.dumps(value)) == value


# ===================================================================================== tempo


def tempo_payload(src: Source) -> Any:
    if src.chance(6):
        return spicy_json(src)
    return mutate_json(src, session_payload(src), src.choice((0, 1, 2, 3)))


_HEX_WORD = re.compile(r"0x[0-9a-f]{64}")
_HEX_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_HEX_BLOB = re.compile(r"0x(?:[0-9a-f]{2})*")
_ADDRESS_FIELDS = ("authorized_signer", "currency", "recipient", "escrow_contract")


def _check_wire_model(model: Any) -> None:
    """Accepted values are in their one wire form: lowercase hex, uint128 amounts."""
    for name in type(model).model_fields:  # extra members are not normalised
        value = getattr(model, name)
        if isinstance(value, str) and name in ("channel_id", "tx_hash"):
            assert _HEX_WORD.fullmatch(value), f"{name} not normalised"
        elif isinstance(value, str) and name in ("transaction", "signature"):
            assert _HEX_BLOB.fullmatch(value), f"{name} accepted but not 0x-hex"
        elif isinstance(value, str) and name in _ADDRESS_FIELDS:
            assert _HEX_ADDRESS.fullmatch(value), f"{name} not normalised"
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and name not in ("chain_id", "units")
        ):
            assert 0 <= value <= MAX_AMOUNT, f"{name} out of range"


def check_tempo_payload(data: Any) -> None:
    """``parse_payload``: a normalised payload that round-trips, or InvalidSessionMessage."""
    try:
        payload = parse_payload(data)
    except InvalidSessionMessage:
        return
    _check_wire_model(payload)
    assert parse_payload(payload.to_wire()) == payload


SessionModel = type[SessionReceipt] | type[NeedVoucher] | type[SessionRequest]


@dataclass(frozen=True)
class ModelCase:
    """Data from a peer, and the session model it should be."""

    model: SessionModel
    data: Any


def tempo_model_case(src: Source) -> ModelCase:
    models: tuple[tuple[SessionModel, Callable[[Source], dict[str, Any]]], ...] = (
        (SessionReceipt, session_receipt),
        (NeedVoucher, need_voucher),
        (SessionRequest, session_request),
    )
    model, build = src.choice(models)
    if src.chance(6):
        return ModelCase(model, spicy_json(src))
    return ModelCase(model, mutate_json(src, build(src), src.choice((0, 1, 2, 3))))


def check_tempo_model(case: ModelCase) -> None:
    """``parse_model``: a normalised model that round-trips, or InvalidSessionMessage."""
    try:
        parsed = parse_model(case.model, case.data, "fuzz")
    except InvalidSessionMessage:
        return
    _check_wire_model(parsed)
    if isinstance(parsed, SessionRequest):
        _check_wire_model(parsed.method_details)
    if any(_SURROGATE.search(s) for s in _strings(case.data)):
        return  # kept as an extra member, not serialisable; the JSON decoders refuse them
    # Compared on the wire: to_wire leaves out null members, extra ones included.
    wire = parsed.to_wire()
    assert parse_model(case.model, wire, "fuzz").to_wire() == wire


# ======================================================================================= SSE


@dataclass(frozen=True)
class SSECase:
    """A byte stream, where to cut it into chunks, and an event size limit to apply."""

    stream: bytes
    cuts: tuple[int, ...] = ()
    max_event: int | None = None


_EOLS = (b"\n", b"\r\n", b"\r")
_FIELD_LINES = (
    b"id: 7",
    b"id: a\x00b",
    b"id",
    b"event",
    b"event: \xc3",
    b"event:message",
    b"data",
    b"foo: bar",
    b"retry",
)


def sse_lines(src: Source) -> list[bytes]:
    kind = src.choice(("data", "need", "receipt", "comment", "fields", "retry", "raw", "text"))
    if kind == "need":
        data = json_text_of(src, need_voucher(src), src.choice((0, 0, 1)))
        return [b"event: payment-need-voucher", b"data: " + data.encode("utf-8", "surrogatepass")]
    if kind == "receipt":
        data = json_text_of(src, session_receipt(src), 0)
        return [b"event: payment-receipt", b"data: " + data.encode()]
    if kind == "data":
        prefix = src.choice((b"data: ", b"data:", b"data:  ", b"\xef\xbb\xbfdata: "))
        first = prefix + text(src).encode("utf-8", "surrogatepass")
        return [
            first,
            *(prefix + text(src).encode("utf-8", "surrogatepass") for _ in src.repeat(2)),
        ]
    if kind == "comment":
        return [src.choice((b": keep-alive", b":", b": \xff\xfe"))]
    if kind == "fields":
        return [src.choice(_FIELD_LINES), *(src.choice(_FIELD_LINES) for _ in src.repeat(3))]
    if kind == "retry":
        digits = src.choice((1, 4, 19, 40, 4300, 4301, 5000))
        value = src.choice((b"9" * digits, b"-1", b"1.5", b"\xd9\xa3", b" 15", b""))
        return [b"retry: " + value, b"data: x"]
    if kind == "raw":
        return [binary(src, 24)]
    return [text(src, 24).encode("utf-8", "surrogatepass")]


SSE_TAILS = (b"", b"", b"data: half", b"data: x\r", b"\r", b"event: e\n", b"\n\r")
SSE_LIMITS = (None, None, 8, 24, 64, 256, 4096)
RAW_SSE_PIECES = (*SPICY_BYTES, b"data: x", b": c", b"event: e")


def sse_case(src: Source) -> SSECase:
    """An event stream with payment events among app events, any line ends, cut anywhere."""
    if src.chance(5):
        stream = b"".join(
            src.choice(RAW_SSE_PIECES) if src.below(2) else binary(src, 4) for _ in src.repeat(30)
        )
    else:
        parts: list[bytes] = []
        for _ in src.repeat(6):
            parts.extend(line + src.choice(_EOLS) for line in sse_lines(src))
            parts.append(src.choice(_EOLS))
        stream = b"".join(parts) + src.choice(SSE_TAILS)
        stream = mutate_bytes(src, stream, src.choice((0, 0, 0, 1, 2)))
    cuts = tuple(sorted({src.below(len(stream) + 1) for _ in src.repeat(12)}))
    return SSECase(stream, cuts, src.choice(SSE_LIMITS))


def _sse_parse(chunks: Iterable[bytes], max_event: int) -> tuple[list[SSEEvent], bytes | None]:
    """All events and the tail; the tail is ``None`` when EventTooLarge stopped the parse."""
    parser = SSEParser(max_event_bytes=max_event)
    events: list[SSEEvent] = []
    try:
        for chunk in chunks:
            events += parser.feed(chunk)
        last, tail = parser.close()
    except EventTooLarge:
        return events, None
    return events + last, tail


def _chunks(stream: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    points = [c for c in cuts if 0 < c < len(stream)]
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


def check_sse(case: SSECase) -> None:
    """``SSEParser``: chunking-independent events, lossless raw bytes, EventTooLarge only."""
    stream = case.stream
    unlimited = len(stream) + 1
    events, tail = _sse_parse([stream], unlimited)
    assert tail is not None
    assert b"".join(e.raw for e in events) + tail == stream, "raw bytes lost or reordered"
    for event in events:
        assert "\r" not in event.data
        assert "\r" not in event.event
        assert "\n" not in event.event
        assert event.retry is None or event.retry >= 0
        assert _sse_parse([event.raw], unlimited) == ([event], b""), "a block re-parses differently"
    chunks = _chunks(stream, case.cuts)
    assert _sse_parse(chunks, unlimited) == (events, tail), "chunking changed the events"
    if len(stream) <= 200:
        bytewise = [stream[i : i + 1] for i in range(len(stream))]
        assert _sse_parse(bytewise, unlimited) == (events, tail), "byte-wise feeding changed"
    if case.max_event is not None:
        limit = case.max_event
        too_large = any(len(e.raw) > limit for e in events) or len(tail) > limit
        for pieces in ([stream], chunks):
            got, got_tail = _sse_parse(pieces, limit)
            assert (got_tail is None) == too_large, "EventTooLarge raised wrongly (or not)"
            if got_tail is None:
                assert got == events[: len(got)]
            else:
                assert (got, got_tail) == (events, tail)


# ======================================================================================= LLM


def delta_part(src: Source) -> dict[str, Any]:
    part: dict[str, Any] = {}
    if src.below(2):
        part["role"] = "assistant"
    for name in ("content", "reasoning_content", "reasoning"):
        if src.below(2):
            part[name] = None if src.chance(4) else text(src, 10)
    if src.chance(3):
        details = []
        for _ in src.repeat(3):
            item: dict[str, Any] = {
                "type": src.choice(("reasoning.text", "reasoning.summary", "x"))
            }
            if src.below(2):
                item["text"] = text(src, 6)
            if src.below(2):
                item["summary"] = text(src, 6)
            details.append(item)
        part["reasoning_details"] = details
    return part


def chat_object(src: Source, key: str) -> dict[str, Any]:
    choice = {
        "index": 0,
        key: delta_part(src),
        "finish_reason": src.choice((None, "stop", "length")),
    }
    document: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": src.choice(("gpt-x", "mpp-fake-1")),
        "choices": src.choice(([choice], [], [choice, choice])),
    }
    if src.below(2):
        usage = {"prompt_tokens": src.below(999), "completion_tokens": src.below(999)}
        document["usage"] = None if src.chance(4) else usage
    if src.chance(4):
        if src.below(2):
            error: Any = {"message": text(src, 20)}
            if src.below(2):
                error["code"] = src.choice((502, "", "rate_limited", -1))
        else:
            error = text(src, 20)
        document["error"] = error
    return document


def chunk_payload(src: Source) -> str:
    if src.chance(6):
        return text(src, 200)
    spelled = json_text_of(src, mutate_json(src, chat_object(src, "delta")))
    pad = src.choice(("", "", " ", "\n", "\t "))
    return src.choice((spelled, pad + spelled + pad, "[DONE]", " [DONE] ", "", "data: " + spelled))


def _check_delta(delta: ChatDelta) -> None:
    assert isinstance(delta, ChatDelta)
    assert isinstance(delta.content, str)
    assert isinstance(delta.reasoning, str)
    assert delta.finish_reason is None or isinstance(delta.finish_reason, str)
    assert delta.usage is None or isinstance(delta.usage, dict)
    assert delta.error is None or isinstance(delta.error, str)


def check_chunk(data: str) -> None:
    """``parse_chunk``: a ChatDelta (None for blanks and [DONE]), or ProviderError."""
    try:
        delta = parse_chunk(data)
    except ProviderError:
        return
    if delta is None:
        assert data.strip() in ("", "[DONE]")
    else:
        _check_delta(delta)


def completion_body(src: Source) -> Any:
    if src.chance(6):
        return binary(src, 200)
    spelled = json_text_of(src, mutate_json(src, chat_object(src, "message")))
    form = src.choice(("str", "bytes", "mapping"))
    if form == "mapping" and spelled.count("[") + spelled.count("{") < 500:
        # Only shallow documents: deep ones could overflow the C stack in json.loads
        # here, in the harness, since py_ecc raises the recursion limit to 100 000.
        try:
            value = json.loads(spelled)
        except (ValueError, RecursionError):
            return spelled
        return value if isinstance(value, dict) else spelled
    if form == "bytes":
        return mutate_bytes(src, encode_text(src, spelled), src.choice((0, 1)))
    return spelled


def check_completion(body: Any) -> None:
    """``parse_completion``: a ChatDelta, or ProviderError."""
    try:
        delta = parse_completion(body)
    except ProviderError:
        return
    _check_delta(delta)


# ================================================================================== registry


@dataclass(frozen=True)
class Target:
    """One parser under fuzz: how to build inputs, the property, and a summary of it."""

    name: str
    function: str
    checks: str
    generate: Callable[[Source], Any]
    check: Callable[[Any], None]


TARGETS: dict[str, Target] = {
    target.name: target
    for target in [
        Target(
            "challenges",
            "protocol.parse_challenges",
            "returns a ChallengeList; raises only HeaderTooLarge, and only for over-limit input; "
            "every Payment challenge is accepted or reported with its position; accepted ones "
            "re-render and re-parse equal; an intact challenge after a mutated one survives",
            challenge_case,
            check_challenges,
        ),
        Target(
            "credential",
            "protocol.Credential.decode",
            "raises only MalformedCredential; accepted credentials re-encode and decode equal "
            "(when the encoding fits the 64 KiB header limit)",
            credential_header,
            check_credential,
        ),
        Target(
            "receipt",
            "protocol.decode_receipt",
            "raises only MalformedReceipt; accepted receipts re-encode and decode equal, or are "
            "refused when the header would exceed 64 KiB",
            receipt_header,
            check_receipt,
        ),
        Target(
            "receipt_json",
            "protocol.decode_receipt_json",
            "str or bytes: raises only MalformedReceipt; accepted receipts round-trip as JSON "
            "and as a header (as for receipt)",
            receipt_json_input,
            check_receipt_json,
        ),
        Target(
            "problem",
            "protocol.parse_problem",
            "never raises, also for broken response objects; a ProblemError with the "
            "response's status, bounded title/detail free of control characters, picklable",
            problem_response,
            check_problem,
        ),
        Target(
            "accept_payment",
            "protocol.parse_accept_payment",
            "raises only InvalidAcceptPayment or HeaderTooLarge; accepted lists re-render and "
            "re-parse equal",
            accept_payment_value,
            check_accept_payment,
        ),
        Target(
            "b64url",
            "protocol.b64url_decode",
            "str or bytes: raises only EncodingError; accepts only the canonical spelling",
            b64url_input,
            check_b64url,
        ),
        Target(
            "json",
            "protocol.parse_json",
            "str or bytes: raises only EncodingError; accepted values are within the depth "
            "limit, hold no lone surrogate and re-parse equal",
            json_input,
            check_json,
        ),
        Target(
            "tempo_payload",
            "tempo.schemas.parse_payload",
            "raises only InvalidSessionMessage; accepted payloads are normalised (lowercase hex, "
            "uint128 amounts) and round-trip through to_wire",
            tempo_payload,
            check_tempo_payload,
        ),
        Target(
            "tempo_models",
            "tempo.schemas.parse_model",
            "SessionReceipt, NeedVoucher, SessionRequest: raises only InvalidSessionMessage; "
            "accepted models are normalised and round-trip through to_wire",
            tempo_model_case,
            check_tempo_model,
        ),
        Target(
            "tempo_tx",
            "tempo.tempotx.decode_tempo_transaction",
            "signed 0x76 / 0x78 bytes, mutated: raises only InvalidTransaction; what is "
            "accepted re-encodes to exactly the input and decodes equal again",
            tempo_tx_input,
            check_tempo_tx,
        ),
        Target(
            "sse",
            "transport.sse.SSEParser",
            "same events and tail whole, randomly chunked and byte by byte; raw bytes of the "
            "events + tail == input; each event's raw re-parses to itself; EventTooLarge, and "
            "only it, exactly when an event or the tail is over the limit",
            sse_case,
            check_sse,
        ),
        Target(
            "llm_chunk",
            "llm.chat.parse_chunk",
            "raises only ProviderError; None only for blank and [DONE]; a well-typed ChatDelta",
            chunk_payload,
            check_chunk,
        ),
        Target(
            "llm_completion",
            "llm.chat.parse_completion",
            "mapping, str or bytes: raises only ProviderError; a well-typed ChatDelta",
            completion_body,
            check_completion,
        ),
    ]
}


# ==================================================================================== runner


@dataclass
class Outcome:
    """How one target fared: examples run, wall time, and the minimised failure if any."""

    target: str
    examples: int
    seconds: float
    seed: int | None
    failure: str | None = None

    @property
    def per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 300
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 12
_REPR.maxlevel = 8


def show(value: object) -> str:
    """A bounded repr: failing inputs can be 100 KB long."""
    if is_dataclass(value) and not isinstance(value, type):
        inner = ", ".join(f"{f.name}={show(getattr(value, f.name))}" for f in fields(value))
        return f"{type(value).__name__}({inner})"
    shown = _REPR.repr(value)
    if isinstance(value, str | bytes) and len(value) > _REPR.maxstring:
        shown += f" ({len(value)} long)"
    return shown


def _signature(exc: BaseException) -> tuple[str, str, int]:
    """What makes two failures "the same": exception type and innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return (type(exc).__name__, "", 0)
    return (type(exc).__name__, frames[-1].filename, frames[-1].lineno or 0)


def _attempt(target: Target, data: bytes) -> tuple[object, BaseException | None, Source]:
    """Generate from ``data`` and check: the input, the exception if any, the source."""
    src = Source(data)
    value: object = None
    try:
        value = target.generate(src)
        target.check(value)
    except Exception as exc:
        return value, exc, src
    return value, None, src


def reduce_failure(target: Target, data: bytes, *, seconds: float = 20.0) -> bytes:
    """Shrink a failing buffer further, keeping the same failure (type and place).

    Hypothesis lowers the bytes of the buffer but cannot delete bytes from a
    fixed-size buffer. Deleting one loop iteration's span (see
    :meth:`Source.repeat`) removes exactly one event, parameter, mutation or
    character, so this tries deleting, then zeroing, each span (longest first),
    then lowering single bytes, until nothing helps or ``seconds`` are up.
    """
    _, first, src = _attempt(target, data)
    if first is None:
        return data  # flaky: keep what hypothesis found
    wanted = _signature(first)
    deadline = time.monotonic() + seconds

    def same(candidate: bytes) -> Source | None:
        _, exc, src = _attempt(target, candidate)
        return src if exc is not None and _signature(exc) == wanted else None

    best, spans = data.rstrip(b"\0"), src.spans
    while time.monotonic() < deadline:
        candidates = []
        for start, end in sorted(set(spans), key=lambda span: span[0] - span[1]):
            candidates.append(best[:start] + best[end:])
            candidates.append(best[:start] + bytes(end - start) + best[end:])
        for i, byte in enumerate(best):
            candidates.extend(
                best[:i] + bytes((lower,)) + best[i + 1 :] for lower in {0, byte // 2}
            )
        for candidate in candidates:
            if candidate.rstrip(b"\0") == best or time.monotonic() > deadline:
                continue
            found = same(candidate)
            if found is not None:
                best, spans = candidate.rstrip(b"\0"), found.spans
                break
        else:
            break  # no candidate kept the failure: done
    return best


def _describe(exc: BaseException, example: object) -> str:
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        frame = frames[-1]
        path = Path(frame.filename)
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        where = f" at {shown}:{frame.lineno} in {frame.name}"
    message = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {message}{where}\n  minimal example: {show(example)}"


# One integer of BUFFER_BYTES * 8 bits, little-endian, is the cheapest way to have
# hypothesis draw that much entropy (a single choice, not one per byte). Shrinking
# the integer zeroes its high bytes (the last decisions) and lowers the low ones.
_BUFFERS = st.integers(0, 2 ** (8 * BUFFER_BYTES) - 1).map(
    lambda n: n.to_bytes(BUFFER_BYTES, "little")
)


def run_target(
    target: Target,
    *,
    examples: int,
    seed: int | None = None,
    on_example: Callable[[int, bytes], None] | None = None,
    reduce_seconds: float = 20.0,
) -> Outcome:
    """Run ``target`` on ``examples`` hypothesis examples; the minimised failure, if any.

    ``examples`` in the outcome counts the inputs generated and checked up to the
    first failure (or all of them); shrinking runs are not counted. ``on_example``
    sees each example's number and buffer before it runs (a crash-reporting hook).
    """
    count = 0
    first_failure_at: int | None = None
    failing: list[bytes] = []
    # Hypothesis runs test bodies with the recursion limit at "current depth + 2000";
    # the parsers must be checked under the process's own limit, which is 100 000 in
    # any process that imported eth-account/web3 (py_ecc raises it on import).
    process_limit = sys.getrecursionlimit()

    def body(data: bytes) -> None:
        nonlocal count, first_failure_at
        count += 1
        if on_example is not None:
            on_example(count, data)
        hypothesis_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(process_limit)
        try:
            target.check(target.generate(Source(data)))
        except BaseException:
            if first_failure_at is None:
                first_failure_at = count
            failing.append(data)  # the last one is hypothesis's shrunk example
            raise
        finally:
            sys.setrecursionlimit(hypothesis_limit)

    test = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
    )(given(_BUFFERS)(body))
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    start = time.perf_counter()
    failure = None
    try:
        test()
    except Exception as exc:  # hypothesis re-raises the shrunk failure
        failure = _describe(exc, None)
        if failing:
            data = reduce_failure(target, failing[-1], seconds=reduce_seconds)
            example, again, _ = _attempt(target, data)
            if again is not None:
                failure = _describe(again, example)
    seconds = time.perf_counter() - start
    return Outcome(target.name, first_failure_at or count, seconds, seed, failure)
