"""OpenAI-compatible chat requests in, text deltas out -- across provider dialects.

:func:`build_chat_request` turns "a prompt, some images, some vendor params" into
the JSON body a provider expects, applying its :class:`ProviderProfile`.
:func:`parse_chunk` and :func:`parse_completion` turn what comes back into a
:class:`ChatDelta`, whichever place the provider puts reasoning in
(``reasoning_content``, ``reasoning``, or OpenRouter's ``reasoning_details``) and
wherever it puts usage (a ``choices: []`` trailer, or the finish chunk).

Pure functions apart from reading local media files, so every dialect is a fast
unit test against the devserver's own chunk writer.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeAlias

from mppagent.errors import ConfigError
from mppagent.llm.errors import ProviderError
from mppagent.llm.providers import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_VIDEO_BYTES,
    RESERVED_BODY_FIELDS,
    ProviderProfile,
)
from mppagent.protocol import JSON
from mppagent.protocol.encoding import json_nesting_exceeds

__all__ = [
    "ChatDelta",
    "MediaSource",
    "build_chat_request",
    "media_url",
    "parse_chunk",
    "parse_completion",
    "parse_param",
    "parse_params",
]

MediaSource: TypeAlias = str | os.PathLike[str]
"""An ``http(s):``/``data:`` URL, or a local file path."""

_URL_SCHEMES: Final = ("http", "https", "data")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_SUMMARY_CHARS: Final = 300
# Deeper than any provider's answer, far shallower than what overflows the C stack.
_MAX_JSON_DEPTH: Final = 512


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """What one chunk (or a whole non-streamed completion) contributes.

    ``content`` and ``reasoning`` are ``""`` when absent, so callers can append
    without checks; ``finish_reason`` and ``usage`` are ``None`` until the chunk
    that carries them; ``error`` is the message of an error object a provider
    sent inside the stream (OpenRouter does this after a 200).
    """

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: dict[str, JSON] | None = None
    error: str | None = None


# --------------------------------------------------------------------------- requests


def build_chat_request(
    *,
    model: str | None = None,
    prompt: str,
    system: str | None = None,
    images: Sequence[MediaSource] = (),
    videos: Sequence[MediaSource] = (),
    params: Mapping[str, JSON] | None = None,
    profile: ProviderProfile | None = None,
    stream: bool | None = None,
    max_tokens: int | None = None,
) -> dict[str, JSON]:
    """The JSON body of a ``POST /chat/completions``.

    ``model`` and ``stream`` default to the profile's ``default_model`` and
    ``stream_default`` (``stream`` to ``True`` without a profile). With media,
    the user message becomes a list of parts: the text, then ``image_url``
    parts, then ``video_url`` parts; local files are inlined as ``data:`` URLs
    (see :func:`media_url`). ``params`` (vendor fields) override the profile's
    ``defaults`` key by key. ``stream_options.include_usage`` is added when
    streaming to a profile that wants it, unless ``params`` sets
    ``stream_options`` itself.
    """
    if model is None:
        if profile is None:
            raise ConfigError("no model given and no provider profile to take a default from")
        model = profile.default_model
    if stream is None:
        stream = profile.stream_default if profile is not None else True
    params = dict(params or {})
    reserved = sorted(RESERVED_BODY_FIELDS & params.keys())
    if reserved:
        raise ConfigError(
            f"--param cannot set {', '.join(reserved)}: use the dedicated option instead"
        )
    if max_tokens is not None:
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {max_tokens}")
        if "max_tokens" in params or "max_completion_tokens" in params:
            raise ConfigError("max_tokens is given both as an option and as a --param")

    # A lone path or URL is one item, not a sequence of characters.
    if isinstance(images, str | os.PathLike):
        images = [images]
    if isinstance(videos, str | os.PathLike):
        videos = [videos]
    image_limit = profile.max_image_bytes if profile else DEFAULT_MAX_IMAGE_BYTES
    video_limit = profile.max_video_bytes if profile else DEFAULT_MAX_VIDEO_BYTES
    content: JSON
    if images or videos:
        parts: list[JSON] = []
        if prompt:
            parts.append({"type": "text", "text": prompt})
        parts.extend(
            {"type": "image_url", "image_url": {"url": media_url(i, "image", image_limit)}}
            for i in images
        )
        parts.extend(
            {"type": "video_url", "video_url": {"url": media_url(v, "video", video_limit)}}
            for v in videos
        )
        content = parts
    else:
        content = prompt
    messages: list[JSON] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": content})

    body: dict[str, JSON] = {"model": model, "messages": messages, "stream": stream}
    if stream and profile is not None and profile.include_usage:
        body["stream_options"] = {"include_usage": True}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if profile is not None:
        body.update(profile.defaults)
    body.update(params)
    if not stream:
        # OpenAI refuses stream_options on a non-streaming request (400).
        body.pop("stream_options", None)
    return body


def media_url(source: MediaSource, kind: Literal["image", "video"], max_bytes: int) -> str:
    """A URL for an ``image_url``/``video_url`` part.

    ``http(s):`` and ``data:`` URLs pass through (a ``data:`` URL must be of the
    right kind). A local file is checked before it is read -- it must be a
    regular file of at most ``max_bytes`` -- then read with a bounded read (it
    may grow in between), recognised by its first bytes, and inlined as
    ``data:<mime>;base64,...``. The MIME type comes from the content, with the
    file name (``mimetypes``) as a fallback only for video containers we do
    not sniff; a file that is not the right kind is refused, since a provider
    would otherwise bill for a request it rejects.
    """
    if isinstance(source, str):
        match = _SCHEME.match(source)
        scheme = match.group(1).lower() if match else None
        if scheme in _URL_SCHEMES:
            if scheme == "data" and not source[5:].lower().startswith(f"{kind}/"):
                raise ConfigError(f"the data: URL given as {kind} is not of type {kind}/*")
            return source
        if match and len(scheme or "") > 1 and source[match.end() :].startswith("//"):
            raise ConfigError(
                f"unsupported {kind} URL scheme {scheme!r} (use http, https, data or a file path)"
            )
    path = Path(source).expanduser()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{kind} file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {kind} file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{kind} {path} is not a regular file")
    if info.st_size > max_bytes:
        raise ConfigError(_too_large(kind, path, info.st_size, max_bytes))
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {kind} file {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise ConfigError(_too_large(kind, path, len(data), max_bytes))
    mime = _media_type(kind, path, data)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _too_large(kind: str, path: Path, size: int, limit: int) -> str:
    return (
        f"{kind} {path} is {size} bytes, over the limit of {limit} (max_{kind}_bytes); "
        f"pass a URL instead or raise the limit in the provider profile"
    )


def _sniff(data: bytes) -> str | None:
    """The media type the first bytes announce, for the formats providers accept."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith(b"BM") and len(data) >= 26 and data[14] in (12, 40, 52, 56, 108, 124):
        return "image/bmp"  # "BM" alone is too weak; the DIB header size must be a known one
    if head[4:8] == b"ftyp":  # ISO base media file: the brand says what it is
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand == b"qt  ":
            return "video/quicktime"
        if brand.startswith(b"3g"):
            return "video/3gpp"
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def _media_type(kind: str, path: Path, data: bytes) -> str:
    sniffed = _sniff(data)
    if sniffed is not None:
        if sniffed.startswith(f"{kind}/"):
            return sniffed
        raise ConfigError(f"{path} is {sniffed}, not an {kind}")
    guessed, _ = mimetypes.guess_type(path.name)
    if kind == "video" and guessed is not None and guessed.startswith("video/"):
        return guessed
    if guessed is not None and guessed.startswith(f"{kind}/"):
        raise ConfigError(f"{path} is named like {guessed}, but its content is not a known {kind}")
    raise ConfigError(f"{path} is not an {kind} (unrecognised content)")


def parse_param(text: str) -> tuple[str, JSON]:
    """One ``--param key=VALUE``: VALUE as JSON, or as a plain string if it is not JSON.

    So ``allow_external=true`` is a boolean, ``plugins=[{"id":"web"}]`` a list,
    and ``routing_strategy=cheapest`` the string ``"cheapest"``. ``NaN`` and
    ``Infinity`` stay strings: they are not JSON, and a provider would reject them.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--param must look like key=value, got {text!r}")
    if any(c.isspace() for c in key):
        raise ConfigError(f"--param key {key!r} contains whitespace")
    value: JSON
    try:
        value = json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError):
        value = raw
    return key, value


def parse_params(items: Sequence[str]) -> dict[str, JSON]:
    """Several ``--param`` values; a repeated key keeps the last value, as on a command line."""
    return dict(parse_param(item) for item in items)


def _not_json(constant: str) -> JSON:
    raise ValueError(f"{constant} is not JSON")


# -------------------------------------------------------------------------- responses


def parse_chunk(data: str) -> ChatDelta | None:
    """The delta of one streamed ``data:`` payload; ``None`` for ``[DONE]`` and blanks.

    Tolerant of everything providers do within "OpenAI-compatible": usage-only
    chunks with ``choices: []``, ``"usage": null`` placeholders, ``null``
    content next to reasoning, unknown fields, error objects in the stream.
    Only the first choice is read (requests here never ask for ``n > 1``).
    A payload that is not a JSON object is a :class:`ProviderError`: it is not
    a chat completion stream at all.
    """
    text = data.strip()
    if not text or text == "[DONE]":
        return None
    chunk = _json_object(text, "stream chunk")
    return _delta(chunk, "delta")


def parse_completion(body: Mapping[str, object] | bytes | str) -> ChatDelta:
    """The whole answer of a non-streaming completion, as one :class:`ChatDelta`."""
    if isinstance(body, bytes | str):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        body = _json_object(text.strip(), "completion body")
    return _delta(body, "message")


def _json_object(text: str, what: str) -> Mapping[str, object]:
    if json_nesting_exceeds(text, _MAX_JSON_DEPTH):
        raise ProviderError(None, f"the provider sent a {what} nested too deeply to parse")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ProviderError(
            None, f"the provider sent a {what} that is not JSON: {text[:80]!r}"
        ) from None
    if not isinstance(value, dict):
        raise ProviderError(None, f"the provider sent a {what} that is not a JSON object")
    return value


def _delta(obj: Mapping[str, object], key: Literal["delta", "message"]) -> ChatDelta:
    usage = obj.get("usage")
    error = _error_text(obj.get("error"))
    choices = obj.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict):
        return ChatDelta(usage=_usage(usage), error=error)
    part = first.get(key)
    part = part if isinstance(part, dict) else {}
    finish = first.get("finish_reason")
    if error is None:
        error = _error_text(first.get("error"))
    return ChatDelta(
        content=_text(part.get("content")),
        reasoning=_reasoning(part),
        finish_reason=finish if isinstance(finish, str) else None,
        usage=_usage(usage),
        error=error,
    )


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # Some providers return content as parts even in answers.
        return "".join(
            p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _reasoning(part: Mapping[str, object]) -> str:
    """Reasoning text, wherever the provider put it.

    OpenRouter sends the same text twice (``reasoning`` and ``reasoning_details``),
    so the first non-empty source wins rather than concatenating all of them.
    """
    for field in ("reasoning_content", "reasoning"):
        value = part.get(field)
        if isinstance(value, str) and value:
            return value
    details = part.get("reasoning_details")
    if isinstance(details, list):
        texts = []
        for item in details:
            if not isinstance(item, dict):
                continue
            text = item.get("text")
            if not isinstance(text, str):
                text = item.get("summary")  # "reasoning.summary" entries
            if isinstance(text, str):
                texts.append(text)
        return "".join(texts)
    return ""


def _usage(value: object) -> dict[str, JSON] | None:
    return dict(value) if isinstance(value, dict) else None


def _error_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        message = value.get("message")
        text = message if isinstance(message, str) else json.dumps(value)[:_SUMMARY_CHARS]
        code = value.get("code")
        return f"{text} (code {code})" if isinstance(code, str | int) and code != "" else text
    return str(value)[:_SUMMARY_CHARS]
