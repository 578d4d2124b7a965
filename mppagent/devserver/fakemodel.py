"""A deterministic fake LLM for the devserver.

The devserver meters and charges per token, so what matters about its model is
not the text but that the token stream is *reproducible*: the same (seed,
prompt, max_tokens) always yields the same tokens, so a test can compute in
advance what a request will cost and what the client should have received.
Every :class:`Token` is exactly one metered unit.

The text is drawn from small built-in word lists with a counter-mode SHA-256
stream keyed by (seed, prompt).  SHA-256 rather than :mod:`random` because its
output is fixed by a standard, not by the Python version, and it is cheap: one
digest yields sixteen tokens, so 100,000 tokens take a few tens of milliseconds.

Token *i* of a prompt always comes from the same two bytes of that stream,
whatever ``max_tokens`` is, so a shorter completion is a prefix of a longer one
(given the same reasoning split). That makes "the server stopped early" easy to
check against "the server would have said".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "AUDIO_PART_TOKENS",
    "IMAGE_PART_TOKENS",
    "MESSAGE_OVERHEAD_TOKENS",
    "VIDEO_PART_TOKENS",
    "FakeModel",
    "Token",
    "TokenKind",
    "count_prompt_tokens",
    "prompt_text",
]

TokenKind = Literal["reasoning", "content"]

MESSAGE_OVERHEAD_TOKENS: Final = 4
"""Charged per message on top of its text, like real chat templates (role markers etc.)."""
IMAGE_PART_TOKENS: Final = 85
"""Fixed price of one ``image_url`` part (OpenAI's low-detail image cost)."""
VIDEO_PART_TOKENS: Final = 256
"""Fixed price of one ``video_url`` part."""
AUDIO_PART_TOKENS: Final = 64
"""Fixed price of one ``input_audio`` part."""

_MEDIA_PART_TOKENS: Final[Mapping[str, int]] = {
    "image_url": IMAGE_PART_TOKENS,
    "video_url": VIDEO_PART_TOKENS,
    "input_audio": AUDIO_PART_TOKENS,
}

# 64 words each, so one byte masked with 63 picks a word without bias.
_CONTENT_WORDS: Final = (
    "the",
    "agent",
    "pays",
    "for",
    "each",
    "token",
    "it",
    "reads",
    "and",
    "a",
    "server",
    "streams",
    "words",
    "over",
    "an",
    "open",
    "channel",
    "while",
    "voucher",
    "grows",
    "by",
    "one",
    "unit",
    "at",
    "time",
    "so",
    "nobody",
    "trusts",
    "more",
    "than",
    "they",
    "must",
    "model",
    "answers",
    "quickly",
    "with",
    "plain",
    "text",
    "budget",
    "stays",
    "inside",
    "limits",
    "that",
    "owner",
    "set",
    "before",
    "request",
    "began",
    "every",
    "chunk",
    "carries",
    "small",
    "price",
    "signed",
    "receipt",
    "settles",
    "later",
    "on",
    "chain",
    "when",
    "session",
    "closes",
    "cleanly",
    "today",
)
_REASONING_WORDS: Final = (
    "hmm",
    "first",
    "consider",
    "the",
    "question",
    "maybe",
    "then",
    "check",
    "whether",
    "so",
    "that",
    "implies",
    "wait",
    "actually",
    "let",
    "me",
    "think",
    "about",
    "this",
    "step",
    "carefully",
    "if",
    "we",
    "assume",
    "user",
    "wants",
    "answer",
    "probably",
    "short",
    "but",
    "should",
    "verify",
    "edge",
    "cases",
    "again",
    "which",
    "means",
    "second",
    "option",
    "seems",
    "better",
    "unless",
    "input",
    "is",
    "empty",
    "right",
    "now",
    "compare",
    "both",
    "paths",
    "and",
    "pick",
    "simpler",
    "one",
    "okay",
    "plan",
    "looks",
    "fine",
    "next",
    "write",
    "reply",
    "clearly",
    "done",
    "reasoning",
)
assert len(_CONTENT_WORDS) == 64
assert len(_REASONING_WORDS) == 64

_STREAM_DOMAIN: Final = b"mppagent-fakemodel-v1\x00"


@dataclass(frozen=True, slots=True)
class Token:
    """One generated token: one metered unit, streamed as one chunk.

    ``kind`` says which channel it belongs to: ``"reasoning"`` tokens come first
    and are shown (or not) according to the wire flavour; ``"content"`` tokens
    are the answer. Both are billed.
    """

    text: str
    kind: TokenKind


def _token_texts(words: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Precompute the 4 spellings of every word: [capitalised][leading space]."""
    return tuple(
        tuple((" " if spaced else "") + (w[:1].upper() + w[1:] if capital else w) for w in words)
        for capital in (False, True)
        for spaced in (False, True)
    )


_CONTENT_TABLE: Final = _token_texts(_CONTENT_WORDS)
_REASONING_TABLE: Final = _token_texts(_REASONING_WORDS)


class FakeModel:
    """Deterministic text generator; one instance per server (or per request ``seed``).

    ``seed`` lets a server (or a request's ``seed`` field) select a different but
    still reproducible universe of answers.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __repr__(self) -> str:
        return f"FakeModel(seed={self.seed})"

    def generate(
        self, prompt: str, *, max_tokens: int, reasoning_tokens: int = 0
    ) -> Iterator[Token]:
        """Yield exactly ``max_tokens`` tokens: ``reasoning_tokens`` reasoning, then content.

        Arguments are checked here, before the first token, so a bad call fails
        at the call site rather than midway through a stream the server already
        started sending.
        """
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise ValueError(f"max_tokens must be an integer >= 0, got {max_tokens!r}")
        if (
            isinstance(reasoning_tokens, bool)
            or not isinstance(reasoning_tokens, int)
            or not 0 <= reasoning_tokens <= max_tokens
        ):
            raise ValueError(
                f"reasoning_tokens must be an integer in [0, max_tokens={max_tokens}], "
                f"got {reasoning_tokens!r}"
            )
        return self._tokens(prompt, max_tokens, reasoning_tokens)

    def count_prompt_tokens(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Same as the module-level :func:`count_prompt_tokens` (kept here for discoverability)."""
        return count_prompt_tokens(messages)

    def _tokens(self, prompt: str, max_tokens: int, reasoning_tokens: int) -> Iterator[Token]:
        if max_tokens == 0:
            return
        base = hashlib.sha256(_STREAM_DOMAIN)
        base.update(str(self.seed).encode("ascii"))
        base.update(b"\x00")
        base.update(prompt.encode("utf-8", "surrogatepass"))

        emitted = 0
        block_index = 0
        table = _REASONING_TABLE if reasoning_tokens else _CONTENT_TABLE
        kind: TokenKind = "reasoning" if reasoning_tokens else "content"
        switch_at = reasoning_tokens
        section_start = True  # no leading space, capitalised
        capital = True
        while True:
            digest = base.copy()
            digest.update(block_index.to_bytes(8, "big"))
            block = digest.digest()
            block_index += 1
            for j in range(0, 32, 2):
                if emitted == switch_at and kind == "reasoning":
                    table, kind, section_start, capital = _CONTENT_TABLE, "content", True, True
                word = block[j] & 63
                punct = block[j + 1]
                text = table[2 * capital + (not section_start)][word]
                # ~4.7% full stops, ~9.4% commas: sentences of about twenty words.
                if punct < 12:
                    text += "."
                    capital = True
                elif punct < 36:
                    text += ","
                    capital = False
                else:
                    capital = False
                section_start = False
                yield Token(text, kind)
                emitted += 1
                if emitted == max_tokens:
                    return


def _parts(message: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The (type, payload) pairs of a message's content, validating its shape."""
    content = message.get("content")
    if content is None:
        return []
    if isinstance(content, str):
        return [("text", content)]
    if not isinstance(content, list):
        raise ValueError(f"message content must be a string, a list or null, got {content!r}")
    pairs: list[tuple[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            raise ValueError(f"content part must be an object, got {part!r}")
        part_type = part.get("type")
        if part_type == "text":
            pairs.append(("text", part.get("text", "")))
        elif part_type in _MEDIA_PART_TOKENS:
            pairs.append((str(part_type), part.get(part_type)))
        else:
            raise ValueError(f"unsupported content part type {part_type!r}")
    return pairs


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Count the prompt tokens the devserver bills for ``messages`` (OpenAI JSON shape).

    Deliberately simple so tests can compute it by hand: per message
    :data:`MESSAGE_OVERHEAD_TOKENS`, plus the whitespace-separated words of every
    text (string content or ``text`` parts), plus a fixed price per media part
    (:data:`IMAGE_PART_TOKENS`, :data:`VIDEO_PART_TOKENS`, :data:`AUDIO_PART_TOKENS`),
    whatever its size or detail. Other message fields (``name``, ``tool_calls``)
    are free. Raises :class:`ValueError` for content the wire layer would reject.
    """
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        for part_type, payload in _parts(message):
            if part_type == "text":
                total += len(str(payload).split())
            else:
                total += _MEDIA_PART_TOKENS[part_type]
    return total


def prompt_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """Flatten ``messages`` into the one string :meth:`FakeModel.generate` is keyed by.

    Every message contributes its role and every part (media by type and
    payload, so two different images give two different answers); the string is
    only hashed, never shown, so its layout merely has to be stable.
    """
    lines: list[str] = []
    for message in messages:
        rendered: list[str] = []
        for part_type, payload in _parts(message):
            if part_type == "text":
                rendered.append(str(payload))
            elif isinstance(payload, Mapping):
                fields = ",".join(f"{k}={payload[k]}" for k in sorted(payload))
                rendered.append(f"<{part_type} {fields}>")
            else:
                rendered.append(f"<{part_type} {payload}>")
        lines.append(f"{message.get('role')}: {' '.join(rendered)}")
    return "\n".join(lines)
