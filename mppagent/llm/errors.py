"""Provider HTTP errors as one clear line, and when (and how long) to retry.

A provider's 4xx says *what* went wrong in its own words, often buried in JSON;
the user needs to know *what to do*: set which environment variable, fix which
option, check which URL. :func:`describe_http_error` combines both -- the
profile's hint (or a generic one for the status) and the provider's own message,
summarised -- into a single line fit for a terminal or a log.

:func:`retryable` and :func:`retry_delay` decide retries of *unpaid* requests
(the paying transport handles its own, with the same credential). Only 429,
502 and 503 are retried: they say "not now", while other errors say "not like
this" and would fail again at the same cost.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

import httpx

from mppagent.errors import NetworkError
from mppagent.logging import redact
from mppagent.protocol.encoding import json_nesting_exceeds

if TYPE_CHECKING:
    from mppagent.llm.providers import ProviderProfile

_MAX_JSON_DEPTH = 512

__all__ = [
    "MAX_RETRY_DELAY",
    "ProviderError",
    "describe_http_error",
    "error_message",
    "retry_delay",
    "retryable",
]

MAX_RETRY_DELAY: Final = 30.0
"""Longest wait :func:`retry_delay` returns: a longer ``Retry-After`` means "give up",
better decided by the caller than by a silent half-minute sleep."""

_RETRYABLE: Final = frozenset({429, 502, 503})
_MESSAGE_CHARS: Final = 200


class ProviderError(NetworkError):
    """A provider answered with an error (``status``), or sent something unreadable.

    An upstream failure, so a :class:`~mppagent.errors.NetworkError` (CLI exit code 6).

    ``status`` is ``None`` when the problem was in a 200 response's body.
    ``str()`` is the one-line description from :func:`describe_http_error`.
    """

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @classmethod
    def from_response(
        cls, status: int, body: bytes, profile: ProviderProfile | None = None
    ) -> ProviderError:
        """The error for an HTTP error response."""
        return cls(status, describe_http_error(status, body, profile))


def describe_http_error(status: int, body: bytes, profile: ProviderProfile | None = None) -> str:
    """One line: status, provider, what to do, and what the provider said.

    ``401 Unauthorized from openrouter: check OPENROUTER_API_KEY (provider said:
    Incorrect API key provided.)``. The provider's message is redacted of
    anything shaped like a key or credential before it is shown.
    """
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "HTTP error"
    who = profile.name if profile is not None else "the provider"
    hint = (profile.error_hints.get(status) if profile is not None else None) or _hint(
        status, profile
    )
    line = f"{status} {phrase} from {who}: {hint}"
    said = error_message(body)
    if said:
        line += f" (provider said: {said})"
    return line


def _hint(status: int, profile: ProviderProfile | None) -> str:
    env = profile.api_key_env if profile is not None else None
    if status == 400:
        return "the request was rejected: check the model name and any --param fields"
    if status == 401:
        if profile is not None and profile.auth == "mpp":
            return (
                f"{profile.name} wants an API key, but this profile pays with MPP: set "
                "auth and api_key_env in the profile, or use a provider that accepts payment"
            )
        return f"check {env}" if env else "check the API key"
    if status == 402:
        return (
            "payment required, and no payment was made: the provider sent no Payment "
            "challenge mppagent accepts, or the request did not go through the paying agent"
        )
    if status == 403:
        return (
            f"access denied: the key{f' in {env}' if env else ''} or wallet may not use this "
            "model or endpoint"
        )
    if status == 404:
        where = f" ({profile.base_url})" if profile is not None else ""
        return f"not found: check the base URL{where} and the model name"
    if status == 408:
        return "the provider timed out waiting for the request; retry"
    if status == 413:
        return "the request is too large: send fewer or smaller images/videos, or URLs"
    if status == 422:
        return "the request was understood but refused: check --param values"
    if status == 429:
        return "rate limited: wait and retry"
    if status in (500, 502, 503, 504):
        return "the provider failed or is overloaded: retry later"
    return "the request failed"


def error_message(body: bytes) -> str | None:
    """The provider's own error message from a response body, summarised to one line.

    Understands OpenAI-style ``{"error": {"message": ...}}`` (also with a plain
    string), RFC 9457 problem details (``detail``/``title``), ``{"message": ...}``
    and short plain text; HTML error pages yield nothing rather than markup.
    """
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    message: str | None = None
    try:
        if json_nesting_exceeds(text, _MAX_JSON_DEPTH):
            raise ValueError("nested too deeply")  # parsing it could crash the process
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
        if not text.startswith("<"):
            message = text
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            found = error.get("message")
            message = found if isinstance(found, str) else None
        elif isinstance(error, str):
            message = error
        else:
            for key in ("detail", "message", "title"):
                found = data.get(key)
                if isinstance(found, str) and found:
                    message = found
                    break
    elif isinstance(data, str):
        message = data
    if not message:
        return None
    line = " ".join(message.split())
    if len(line) > _MESSAGE_CHARS:
        line = line[: _MESSAGE_CHARS - 1].rstrip() + "…"
    cleaned = redact(None, "", {"message": line})["message"]
    return str(cleaned)


def retryable(status: int) -> bool:
    """Whether an unpaid request that got ``status`` is worth sending again (429/502/503)."""
    return status in _RETRYABLE


def retry_delay(
    response: httpx.Response,
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = MAX_RETRY_DELAY,
    now: datetime | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    ``Retry-After`` wins when present and valid -- as seconds, or as an HTTP
    date (relative to ``now``; a date in the past means "now") -- otherwise
    exponential backoff ``base * 2**attempt``. Either way at most ``cap``.
    Deterministic (no jitter) so the caller, not this function, decides
    whether to spread retries out.
    """
    value = response.headers.get("retry-after", "").strip()
    delay: float | None = None
    if value:
        try:
            seconds = float(value)
        except ValueError:
            seconds = None
        if seconds is not None:
            if not math.isnan(seconds) and seconds >= 0:
                delay = seconds
        else:
            delay = _seconds_until(value, now)
    if delay is None:
        delay = base * 2 ** max(attempt, 0)
    return max(0.0, min(delay, cap))


def _seconds_until(http_date: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are GMT by definition
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
