"""The OpenAI chat-completions wire format, as the devserver speaks it.

Pure data in, pure data out: the HTTP layer hands :func:`parse_chat_request` a
decoded JSON body and sends what :class:`ChunkWriter` / :func:`completion_body`
return. Nothing here does I/O, so every byte the server can emit is testable
against the real ``openai`` SDK models.

Why "flavours": the client is meant to pay real providers whose streams differ
in small ways that break naive parsers -- where reasoning text appears
(``delta.reasoning_content`` à la DeepSeek/Kimi/Perceptron, or OpenRouter's
``delta.reasoning`` + ``delta.reasoning_details``) and whether usage arrives only
when asked for. Each model name served selects a :class:`Flavour`, so one
devserver can imitate all of them and the client's metering can be tested
against each shape.

Usage placement (documented choice):

* ``usage="on_request"`` (OpenAI): only when the request says
  ``stream_options.include_usage``; then every chunk carries ``"usage": null``
  and, after the finish chunk, one extra chunk with ``"choices": []`` carries
  the totals -- exactly what OpenAI sends.
* ``usage="always"`` (OpenRouter and friends): the totals ride on the finish
  chunk itself (``choices`` = the finish choice, plus ``usage``), whether or not
  the client asked. No extra chunk, no ``null`` placeholders.

Both shapes parse with ``openai.types.chat.ChatCompletionChunk``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mppagent.devserver.fakemodel import Token, count_prompt_tokens, prompt_text
from mppagent.protocol.encoding import json_nesting_exceeds

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_MESSAGES",
    "MAX_TOKENS_CAP",
    "MODELS",
    "MODELS_CREATED",
    "PLAIN",
    "SSE_DONE",
    "STANDARD_FIELDS",
    "AudioPart",
    "ChatRequest",
    "ChunkWriter",
    "ContentPart",
    "FinishReason",
    "Flavour",
    "GenerationPlan",
    "ImagePart",
    "ImageURL",
    "InputAudio",
    "Message",
    "StreamOptions",
    "TextPart",
    "Usage",
    "VideoPart",
    "VideoURL",
    "WireError",
    "completion_body",
    "error_body",
    "flavour_for",
    "model_list",
    "parse_chat_request",
    "parse_chat_request_json",
    "sse",
]

JSONDict: TypeAlias = dict[str, Any]
FinishReason: TypeAlias = Literal["stop", "length"]
ReasoningStyle: TypeAlias = Literal["reasoning_content", "reasoning_details"]
UsagePolicy: TypeAlias = Literal["on_request", "always"]

MAX_TOKENS_CAP: Final = 100_000
"""Largest ``max_tokens`` / ``max_completion_tokens`` accepted: keeps one request bounded."""
MAX_MESSAGES: Final = 4096
"""Largest number of messages accepted in one request."""
DEFAULT_MAX_TOKENS: Final = 256
"""Completion length when the request names no limit (then ``finish_reason`` is ``"stop"``)."""
MODELS_CREATED: Final = 1_767_225_600
"""The ``created`` timestamp of every listed model (2026-01-01T00:00:00Z): fixed, so
``GET /v1/models`` is byte-for-byte reproducible."""

SSE_DONE: Final = b"data: [DONE]\n\n"
"""The stream terminator OpenAI-compatible clients wait for."""

STANDARD_FIELDS: Final = frozenset(
    {
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "metadata",
        "modalities",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "service_tier",
        "store",
        "tool_choice",
        "tools",
        "top_logprobs",
        "verbosity",
        "web_search_options",
    }
)
"""OpenAI request fields the fake model accepts and ignores. They are not "vendor"
fields, so :meth:`ChatRequest.vendor_fields` leaves them out."""


# --------------------------------------------------------------------------- errors


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",  # shadows the builtin: it is OpenAI's field name
    param: str | None = None,
    code: str | None = None,
) -> JSONDict:
    """An OpenAI-style error body; SDKs turn it into their ``APIError`` with these fields."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class WireError(ValueError):
    """A request the devserver refuses (HTTP 400 by default), in OpenAI's error vocabulary.

    ``param`` is the JSON path OpenAI would name (``messages[0].content[1].type``);
    ``code`` is OpenAI's machine-readable code (``missing_required_parameter``,
    ``invalid_value``, ``invalid_type``...). :meth:`body` renders the response body.
    """

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status

    def body(self) -> JSONDict:
        """The JSON body to send with :attr:`status`."""
        return error_body(self.message, param=self.param, code=self.code)


# ------------------------------------------------------------------------- requests


class _Lenient(BaseModel):
    """Base of request models: unknown keys kept (vendors add many), JSON types strict.

    Strict because OpenAI rejects ``"max_tokens": "5"`` and ``"stream": 1``;
    coercing them would hide client bugs that a real provider would surface.
    """

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class TextPart(_Lenient):
    """``{"type": "text", "text": ...}``."""

    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    """Payload of an ``image_url`` part; ``url`` may be ``https:`` or a ``data:`` URL."""

    url: str = Field(min_length=1)
    detail: str | None = None


class ImagePart(_Lenient):
    """``{"type": "image_url", "image_url": {"url": ..., "detail": ...}}``."""

    type: Literal["image_url"]
    image_url: ImageURL


class VideoURL(_Lenient):
    """Payload of a ``video_url`` part (vision providers such as Perceptron, Qwen-VL)."""

    url: str = Field(min_length=1)


class VideoPart(_Lenient):
    """``{"type": "video_url", "video_url": {"url": ...}}``."""

    type: Literal["video_url"]
    video_url: VideoURL


class InputAudio(_Lenient):
    """Payload of an ``input_audio`` part: base64 ``data`` and its ``format`` (wav, mp3...)."""

    data: str
    format: str


class AudioPart(_Lenient):
    """``{"type": "input_audio", "input_audio": {"data": ..., "format": ...}}``."""

    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart: TypeAlias = Annotated[
    TextPart | ImagePart | VideoPart | AudioPart, Field(discriminator="type")
]


class Message(_Lenient):
    """A chat message. Extra keys (``name``, ``tool_calls``, ``tool_call_id``...) are kept."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Lenient):
    """``stream_options``; only ``include_usage`` matters to the devserver."""

    include_usage: bool = False


@dataclass(frozen=True, slots=True)
class GenerationPlan:
    """What to generate for a request: hand ``max_tokens`` and ``reasoning_tokens`` to
    :meth:`FakeModel.generate` and end with ``finish_reason`` (unless stopped early).

    ``finish_reason`` is ``"length"`` when the client named a limit (the fake model
    always uses all of it, as a real model that hit the limit would) and ``"stop"``
    when the server's default applied.
    """

    max_tokens: int
    reasoning_tokens: int
    finish_reason: FinishReason


class ChatRequest(_Lenient):
    """A ``POST /v1/chat/completions`` body. Build it with :func:`parse_chat_request`.

    Unknown top-level keys are accepted rather than rejected, because clients
    talk to many vendors and send their extensions (``reasoning``, ``plugins``,
    ``vision_config``, ``routing_strategy``...); :meth:`vendor_fields` exposes them
    so the server can reflect them back for debugging.
    """

    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    n: int | None = Field(default=None, ge=1, le=1)
    seed: int | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    user: str | None = None

    def vendor_fields(self) -> dict[str, object]:
        """Top-level keys that are neither declared here nor standard OpenAI parameters."""
        extra = self.model_extra or {}
        return {k: v for k, v in extra.items() if k not in STANDARD_FIELDS}

    @property
    def flavour(self) -> Flavour:
        """The wire flavour selected by :attr:`model`."""
        return flavour_for(self.model)

    @property
    def include_usage(self) -> bool:
        """Whether the client asked for a usage chunk (``stream_options.include_usage``)."""
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def requested_max_tokens(self) -> int | None:
        """The client's completion limit; ``max_completion_tokens`` wins over the
        deprecated ``max_tokens``, as at OpenAI."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    def plan(self, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> GenerationPlan:
        """How many tokens to generate, how many of them reasoning, and the finish reason."""
        if default_max_tokens < 1:
            raise ValueError(f"default_max_tokens must be >= 1, got {default_max_tokens}")
        requested = self.requested_max_tokens
        limit = default_max_tokens if requested is None else requested
        return GenerationPlan(
            max_tokens=limit,
            reasoning_tokens=self.flavour.reasoning_tokens(limit),
            finish_reason="stop" if requested is None else "length",
        )

    def messages_json(self) -> list[JSONDict]:
        """The messages as plain JSON (what :mod:`.fakemodel` consumes)."""
        return [m.model_dump(mode="json", exclude_none=True) for m in self.messages]

    def prompt_text(self) -> str:
        """The string the fake model is keyed by (see :func:`.fakemodel.prompt_text`)."""
        return prompt_text(self.messages_json())

    def prompt_tokens(self) -> int:
        """Billed prompt tokens (see :func:`.fakemodel.count_prompt_tokens`)."""
        return count_prompt_tokens(self.messages_json())


_TYPE_NAMES: Final[Mapping[str, str]] = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
}
# Pydantic names union branches in error locations (``content.str``,
# ``content.list[tagged-union[...]]``); these are not JSON keys.
_BRANCH_LABELS: Final = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "an empty string" if value == "" else "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object"


def _param(loc: tuple[int | str, ...]) -> str:
    """Pydantic location -> OpenAI ``param`` path (``messages[0].content[1].type``)."""
    out = ""
    previous: int | str | None = None
    for seg in loc:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif "[" in seg or seg in _BRANCH_LABELS:
            continue
        elif seg == previous:
            # A tagged-union member is located by its tag, then by its fields; every
            # OpenAI part nests its payload under a key equal to its tag
            # ("image_url": {"image_url": {...}}), so the tag shows up twice.
            continue
        else:
            out += f".{seg}" if out else seg
        previous = seg
    return out


def _wire_error(exc: ValidationError) -> WireError:
    """Turn pydantic's error list into the single OpenAI-style error a client expects.

    OpenAI reports one problem per response: the first offending top-level
    parameter, at its most specific location (a union reports one error per
    branch; the deepest is the one that explains the failure).
    """
    errors = exc.errors(include_url=False)
    first_top = errors[0]["loc"][0] if errors[0]["loc"] else None
    group = [e for e in errors if (e["loc"][0] if e["loc"] else None) == first_top]
    located = [(_param(e["loc"]), e) for e in group]
    depth = max(p.count(".") + p.count("[") for p, _ in located)
    deepest = [(p, e) for p, e in located if p.count(".") + p.count("[") == depth]
    param, err = deepest[0]
    kind = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    got = err.get("input")

    if all(e["type"] in _TYPE_NAMES for _, e in deepest):
        names = list(dict.fromkeys(_TYPE_NAMES[e["type"]] for _, e in deepest))
        expected = names[0] if len(names) == 1 else "one of " + " or ".join(names)
        return WireError(
            f"Invalid type for '{param}': expected {expected}, but got {_json_type(got)} instead.",
            param=param,
            code="invalid_type",
        )
    if kind in ("missing", "union_tag_not_found"):
        if kind == "union_tag_not_found":
            param = f"{param}.type"  # a content part without its "type"
        return WireError(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind == "union_tag_invalid":
        param = f"{param}.type"
        return WireError(
            f"Invalid value: '{ctx.get('tag')}'. Supported values are: {ctx.get('expected_tags')}.",
            param=param,
            code="invalid_value",
        )
    if kind == "literal_error":
        return WireError(
            f"Invalid value: '{got}'. Supported values are: {ctx.get('expected')}.",
            param=param,
            code="invalid_value",
        )
    if kind in ("greater_than_equal", "less_than_equal"):
        below = kind == "greater_than_equal"
        bound = ctx.get("ge") if below else ctx.get("le")
        number = "decimal" if isinstance(bound, float) or isinstance(got, float) else "integer"
        return WireError(
            f"Invalid '{param}': {number} {'below minimum' if below else 'above maximum'} value. "
            f"Expected a value {'>=' if below else '<='} {bound}, but got {got} instead.",
            param=param,
            code=f"{number}_{'below_min' if below else 'above_max'}_value",
        )
    if kind == "too_short" and ctx.get("actual_length") == 0:
        return WireError(
            f"Invalid '{param}': empty array. Expected an array with minimum length "
            f"{ctx.get('min_length')}, but got an empty array instead.",
            param=param,
            code="empty_array",
        )
    if kind == "too_long":
        return WireError(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{ctx.get('max_length')}, but got an array with length "
            f"{ctx.get('actual_length')} instead.",
            param=param,
            code="array_above_max_length",
        )
    if kind == "string_too_short":
        return WireError(
            f"Invalid '{param}': string too short. Expected a string with minimum length "
            f"{ctx.get('min_length')}, but got {_json_type(got)} instead.",
            param=param,
            code="string_too_short",
        )
    if kind == "string_too_long":
        return WireError(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{ctx.get('max_length')}, but got a string with length {len(str(got))} instead.",
            param=param,
            code="string_above_max_length",
        )
    return WireError(
        f"Invalid value for '{param}': {err['msg']}.", param=param, code="invalid_value"
    )


def parse_chat_request(body: object) -> ChatRequest:
    """Validate a decoded JSON body; raise :class:`WireError` with OpenAI's wording if bad.

    This, not ``ChatRequest.model_validate``, is the entry point: it turns
    pydantic's multi-error reports into the one clear message and ``param`` path
    a client (or a person reading a 400) can act on.
    """
    if not isinstance(body, dict):
        raise WireError(
            f"The request body must be a JSON object, but got {_json_type(body)} instead.",
            code="invalid_type",
        )
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise _wire_error(exc) from None


_MAX_BODY_DEPTH = 64


def parse_chat_request_json(raw: bytes | str) -> ChatRequest:
    """:func:`parse_chat_request` for an undecoded body; bad JSON is a :class:`WireError` too."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if json_nesting_exceeds(text, _MAX_BODY_DEPTH):
            raise ValueError("nested too deeply")  # parsing it could crash the server
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise WireError(
            "We could not parse the JSON body of your request. The request body must be "
            "valid JSON (Content-Type: application/json).",
            code="invalid_json",
        ) from None
    return parse_chat_request(body)


# ------------------------------------------------------------------------- flavours


@dataclass(frozen=True, slots=True)
class Flavour:
    """How one served model name shapes its stream.

    * ``reasoning_style`` -- where reasoning tokens go: ``None`` (the model does
      not reason), ``"reasoning_content"`` (``delta.reasoning_content``:
      DeepSeek, Kimi, Perceptron) or ``"reasoning_details"`` (OpenRouter:
      ``delta.reasoning`` plus ``delta.reasoning_details``).
    * ``usage`` -- ``"on_request"`` or ``"always"``; see the module docstring.
    * ``reasoning_share`` -- the exact fraction of the completion limit spent on
      reasoning, rounded down. A :class:`~fractions.Fraction` so nothing metered
      ever touches a float.
    * ``reasoning_format`` -- the ``format`` tag of OpenRouter reasoning details.
    * ``owned_by`` -- reported by ``GET /v1/models``.
    """

    reasoning_style: ReasoningStyle | None = None
    usage: UsagePolicy = "on_request"
    reasoning_share: Fraction = Fraction(0)
    reasoning_format: str = "unknown"
    owned_by: str = "mppagent"

    def __post_init__(self) -> None:
        if not 0 <= self.reasoning_share < 1:
            raise ValueError(f"reasoning_share must be in [0, 1), got {self.reasoning_share}")
        if (self.reasoning_style is None) != (self.reasoning_share == 0):
            raise ValueError("a flavour reasons (reasoning_style set) iff reasoning_share > 0")

    def reasoning_tokens(self, max_tokens: int) -> int:
        """How many of ``max_tokens`` are reasoning: ``floor(max_tokens * reasoning_share)``.

        Always less than ``max_tokens`` when that is positive, so every completion
        has at least one content token.
        """
        share = self.reasoning_share
        return max_tokens * share.numerator // share.denominator


PLAIN: Final = Flavour()
"""Plain OpenAI: content only, usage only when asked for. Unknown model names get this."""

_THINKING: Final = Flavour(reasoning_style="reasoning_content", reasoning_share=Fraction(1, 4))

MODELS: Final[dict[str, Flavour]] = {
    "mpp-fake-1": PLAIN,
    "mpp-fake-thinking": _THINKING,
    "mpp-fake-reasoning-details": Flavour(
        reasoning_style="reasoning_details", reasoning_share=Fraction(1, 4)
    ),
    "mpp-fake-usage": Flavour(usage="always"),
    # Provider look-alikes for the CLI's provider profiles.
    "perceptron-mk1": Flavour(
        reasoning_style="reasoning_content", reasoning_share=Fraction(1, 4), owned_by="perceptron"
    ),
    "moonshotai/kimi-k2.6": Flavour(
        reasoning_style="reasoning_content", reasoning_share=Fraction(1, 4), owned_by="moonshotai"
    ),
    # OpenRouter returns usage on every stream, asked for or not.
    "openrouter/auto": Flavour(
        reasoning_style="reasoning_details",
        usage="always",
        reasoning_share=Fraction(1, 4),
        owned_by="openrouter",
    ),
}
"""Served model names and their flavours; ``GET /v1/models`` lists exactly these."""


def flavour_for(model: str) -> Flavour:
    """The flavour of ``model``; unknown names are served too, as :data:`PLAIN`."""
    return MODELS.get(model, PLAIN)


def model_list() -> JSONDict:
    """The ``GET /v1/models`` body (parses as ``openai.types.Model`` items)."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": MODELS_CREATED, "owned_by": f.owned_by}
            for name, f in MODELS.items()
        ],
    }


# --------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True)
class Usage:
    """Token totals of one completion; reasoning tokens are part of ``completion_tokens``
    (as at OpenAI: they are billed as output)."""

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        if min(self.prompt_tokens, self.completion_tokens, self.reasoning_tokens) < 0:
            raise ValueError(f"token counts must be >= 0: {self}")
        if self.reasoning_tokens > self.completion_tokens:
            raise ValueError(f"reasoning_tokens exceed completion_tokens: {self}")

    @classmethod
    def of(cls, prompt_tokens: int, tokens: Sequence[Token]) -> Usage:
        """The usage of a completion made of ``tokens``."""
        reasoning = sum(1 for t in tokens if t.kind == "reasoning")
        return cls(prompt_tokens, len(tokens), reasoning)

    @property
    def total_tokens(self) -> int:
        """``prompt_tokens + completion_tokens``."""
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> JSONDict:
        """The OpenAI ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


def _debug(vendor_fields: Mapping[str, object] | None) -> JSONDict:
    # A top-level key the SDKs ignore (their models allow extra keys), so
    # reflecting what the server received never breaks a client.
    return {"vendor_fields": dict(vendor_fields or {})}


def _reasoning_details(text: str, flavour: Flavour) -> list[JSONDict]:
    return [
        {"type": "reasoning.text", "text": text, "format": flavour.reasoning_format, "index": 0}
    ]


def _no_reasoning_channel(model: str) -> ValueError:
    return ValueError(
        f"model {model!r} has a flavour without reasoning_style; it cannot carry reasoning tokens"
    )


class ChunkWriter:
    """Builds the ``chat.completion.chunk`` dicts of one stream, in flavour.

    Call order: :meth:`role_chunk`, one :meth:`token_chunk` per generated token,
    then the dicts of :meth:`final_chunks` (or :meth:`finish_chunk` /
    :meth:`usage_chunk` directly), each through :func:`sse`, then
    :data:`SSE_DONE`. One token per chunk is the metering contract: the client
    can count what it received.

    The writer counts the tokens it has rendered (:attr:`completion_tokens`,
    :attr:`reasoning_tokens`), so a stream cut short can still report honest
    usage via :meth:`usage_so_far`.
    """

    def __init__(
        self,
        completion_id: str,
        model: str,
        created: int,
        flavour: Flavour,
        *,
        include_usage: bool = False,
        vendor_fields: Mapping[str, object] | None = None,
    ) -> None:
        self.completion_id = completion_id
        self.model = model
        self.created = created
        self.flavour = flavour
        self.include_usage = include_usage
        self.vendor_fields = dict(vendor_fields or {})
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        # OpenAI puts "usage": null on every chunk before the usage chunk when
        # include_usage is on; imitate it so clients learn to skip nulls.
        self._null_usage = include_usage and flavour.usage == "on_request"

    @property
    def sends_usage(self) -> bool:
        """Whether this stream will report usage (asked for, or the flavour always does)."""
        return self.include_usage or self.flavour.usage == "always"

    def _chunk(self, choices: list[JSONDict]) -> JSONDict:
        chunk: JSONDict = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self._null_usage:
            chunk["usage"] = None
        return chunk

    def role_chunk(self) -> JSONDict:
        """The first chunk: the assistant role, empty content, and ``mpp_debug``."""
        chunk = self._chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        )
        chunk["mpp_debug"] = _debug(self.vendor_fields)
        return chunk

    def token_chunk(self, token: Token) -> JSONDict:
        """One token's chunk. Reasoning goes where the flavour puts it.

        Raises :class:`ValueError` for a reasoning token on a flavour that cannot
        show reasoning (use :meth:`Flavour.reasoning_tokens` to plan the split).
        """
        delta: JSONDict
        if token.kind == "content":
            delta = {"content": token.text}
        elif self.flavour.reasoning_style == "reasoning_content":
            # DeepSeek-style: the idle channel is null, not absent.
            delta = {"content": None, "reasoning_content": token.text}
        elif self.flavour.reasoning_style == "reasoning_details":
            # OpenRouter-style: empty content, plain text in "reasoning", structured copy
            # in "reasoning_details".
            delta = {
                "content": "",
                "reasoning": token.text,
                "reasoning_details": _reasoning_details(token.text, self.flavour),
            }
        else:
            raise _no_reasoning_channel(self.model)
        self.completion_tokens += 1
        if token.kind == "reasoning":
            self.reasoning_tokens += 1
        return self._chunk([{"index": 0, "delta": delta, "finish_reason": None}])

    def finish_chunk(self, finish_reason: FinishReason, usage: Usage | None = None) -> JSONDict:
        """The chunk with an empty delta and ``finish_reason``; ``usage`` attached if given."""
        chunk = self._chunk([{"index": 0, "delta": {}, "finish_reason": finish_reason}])
        if usage is not None:
            chunk["usage"] = usage.as_dict()
        return chunk

    def usage_chunk(self, usage: Usage) -> JSONDict:
        """OpenAI's trailing usage chunk: ``"choices": []`` and the totals."""
        chunk = self._chunk([])
        chunk["usage"] = usage.as_dict()
        return chunk

    def final_chunks(self, finish_reason: FinishReason, usage: Usage) -> list[JSONDict]:
        """The chunks that end the stream, following the flavour's usage policy.

        ``always``: one finish chunk carrying usage. ``on_request``: the finish
        chunk, then a usage chunk only if the client asked for it.
        """
        if self.flavour.usage == "always":
            return [self.finish_chunk(finish_reason, usage)]
        if self.include_usage:
            return [self.finish_chunk(finish_reason), self.usage_chunk(usage)]
        return [self.finish_chunk(finish_reason)]

    def usage_so_far(self, prompt_tokens: int) -> Usage:
        """Usage of the tokens rendered by this writer so far."""
        return Usage(prompt_tokens, self.completion_tokens, self.reasoning_tokens)


def sse(data: Mapping[str, Any]) -> bytes:
    """One server-sent event: ``data: {compact json}\\n\\n``.

    ASCII-escaped JSON cannot contain a raw newline or a non-ASCII line
    separator, so one event is always one ``data:`` line.
    """
    return b"data: " + json.dumps(data, separators=(",", ":"), allow_nan=False).encode() + b"\n\n"


def completion_body(
    completion_id: str,
    model: str,
    created: int,
    tokens: Sequence[Token],
    finish_reason: FinishReason,
    usage: Usage,
    flavour: Flavour,
    vendor_fields: Mapping[str, object] | None = None,
) -> JSONDict:
    """A non-streaming ``chat.completion`` body, reasoning placed per flavour.

    ``usage`` is taken as given, not recomputed from ``tokens``, so a server
    can deliberately misreport to test the client's checks.
    """
    content = "".join(t.text for t in tokens if t.kind == "content")
    reasoning = "".join(t.text for t in tokens if t.kind == "reasoning")
    message: JSONDict = {"role": "assistant", "content": content}
    if flavour.reasoning_style == "reasoning_content":
        message["reasoning_content"] = reasoning
    elif flavour.reasoning_style == "reasoning_details":
        message["reasoning"] = reasoning
        message["reasoning_details"] = _reasoning_details(reasoning, flavour)
    elif reasoning:
        raise _no_reasoning_channel(model)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage.as_dict(),
        "mpp_debug": _debug(vendor_fields),
    }
