"""One-line provider errors, and retry decisions honouring Retry-After."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from mppagent.devserver.wire import error_body
from mppagent.llm import (
    BUILTIN_PROFILES,
    ProviderError,
    describe_http_error,
    error_message,
    retry_delay,
    retryable,
)

OPENROUTER = BUILTIN_PROFILES["openrouter"]


def body(message: str, **fields: object) -> bytes:
    return json.dumps(error_body(message, **fields)).encode()  # type: ignore[arg-type]


def test_lines_for_the_common_statuses() -> None:
    assert describe_http_error(401, body("Incorrect API key provided."), OPENROUTER) == (
        "401 Unauthorized from openrouter: check OPENROUTER_API_KEY "
        "(provider said: Incorrect API key provided.)"
    )
    assert describe_http_error(400, body("Invalid value: 'x'."), None) == (
        "400 Bad Request from the provider: the request was rejected: check the model name "
        "and any --param fields (provider said: Invalid value: 'x'.)"
    )
    assert describe_http_error(403, b"", BUILTIN_PROFILES["ppq"]) == (
        "403 Forbidden from ppq: access denied: the key in PPQ_API_KEY or wallet may not use "
        "this model or endpoint"
    )
    assert describe_http_error(404, b"<html><body>Not Found</body></html>", OPENROUTER) == (
        "404 Not Found from openrouter: not found: check the base URL "
        "(https://openrouter.ai/api/v1) and the model name"
    )
    assert describe_http_error(401, b"", BUILTIN_PROFILES["local"]) == (
        "401 Unauthorized from local: local wants an API key, but this profile pays with MPP: "
        "set auth and api_key_env in the profile, or use a provider that accepts payment"
    )


def test_profile_hints_win_over_generic_ones() -> None:
    router = BUILTIN_PROFILES["mpp-router"]
    line = describe_http_error(503, b'{"error": "no_route"}', router)
    assert line == (
        "503 Service Unavailable from mpp-router: no route matches right now: no upstream model "
        "fits the price ceilings and allow_external; retry later or relax them "
        "(provider said: no_route)"
    )
    assert describe_http_error(502, b"", router).startswith(
        "502 Bad Gateway from mpp-router: no upstream model answered"
    )
    assert describe_http_error(402, b"", router).startswith(
        "402 Payment Required from mpp-router: the router wants a payment that was not made"
    )


def test_error_messages_are_summarised_and_redacted() -> None:
    problem = b'{"type": "https://paymentauth.org/problems/x", "title": "T", "detail": "D d"}'
    assert error_message(problem) == "D d"
    assert error_message(b'{"message": "plain"}') == "plain"
    assert error_message(b"  upstream\n  timed out  ") == "upstream timed out"
    assert error_message(b"<!doctype html><p>x</p>") is None
    assert error_message(b"") is None
    long = error_message(body("word " * 100))
    assert long is not None
    assert len(long) == 200
    assert long.endswith("…")
    leaked = error_message(body("bad key: Bearer sk-or-v1-abcdefghijklmnop"))
    assert leaked == "bad key: <redacted>"
    err = ProviderError.from_response(429, b"", OPENROUTER)
    assert err.status == 429
    assert str(err) == "429 Too Many Requests from openrouter: rate limited: wait and retry"


def test_only_429_502_503_are_retryable() -> None:
    assert [s for s in range(400, 600) if retryable(s)] == [429, 502, 503]


def response(**headers: str) -> httpx.Response:
    return httpx.Response(429, headers=headers)


@pytest.mark.parametrize(
    ("headers", "attempt", "delay"),
    [
        ({}, 0, 0.5),
        ({}, 3, 4.0),
        ({}, 10, 30.0),  # backoff capped
        ({"Retry-After": "7"}, 0, 7.0),
        ({"Retry-After": "2.5"}, 5, 2.5),  # Retry-After wins over backoff
        ({"Retry-After": "120"}, 0, 30.0),  # capped
        ({"Retry-After": "0"}, 2, 0.0),
        ({"Retry-After": "-3"}, 1, 1.0),  # invalid: backoff
        ({"Retry-After": "nan"}, 1, 1.0),
        ({"Retry-After": "soon"}, 2, 2.0),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:12 GMT"}, 0, 12.0),
        ({"Retry-After": "Wed, 21 Oct 2026 07:27:00 GMT"}, 0, 0.0),  # in the past
    ],
)
def test_retry_delay_honours_retry_after(
    headers: dict[str, str], attempt: int, delay: float
) -> None:
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert retry_delay(response(**headers), attempt, now=now) == delay


def test_deeply_nested_error_body_is_summarised_not_fatal() -> None:
    from mppagent.llm.errors import describe_http_error

    line = describe_http_error(400, b"[" * 200_000, None)
    assert line.startswith("400")
