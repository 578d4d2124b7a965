"""The OpenAI-compatible LLM layer: provider profiles, chat requests, delta parsing, errors.

It knows the chat-completions wire format and how providers differ, and nothing
about payments: requests it builds go out through :class:`mppagent.Agent` (or
any HTTP client), and what comes back is parsed here whichever way it was paid.

::

    profile = load_profiles(config.get("providers", {}))["openrouter"]
    body = build_chat_request(prompt="Hi", profile=profile, params={"reasoning": {}})
    async for event in agent.stream("POST", profile.chat_url, json=body,
                                    headers=profile.request_headers()):
        delta = parse_chunk(event.data)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mppagent._lazy import lazy_exports

# Imported on first use, so importing one submodule (say the built-in profile
# tables) does not load httpx and pydantic through this package.
_EXPORTS: dict[str, str] = {
    "ChatDelta": "mppagent.llm.chat",
    "MediaSource": "mppagent.llm.chat",
    "build_chat_request": "mppagent.llm.chat",
    "media_url": "mppagent.llm.chat",
    "parse_chunk": "mppagent.llm.chat",
    "parse_completion": "mppagent.llm.chat",
    "parse_param": "mppagent.llm.chat",
    "parse_params": "mppagent.llm.chat",
    "MAX_RETRY_DELAY": "mppagent.llm.errors",
    "ProviderError": "mppagent.llm.errors",
    "describe_http_error": "mppagent.llm.errors",
    "error_message": "mppagent.llm.errors",
    "retry_delay": "mppagent.llm.errors",
    "retryable": "mppagent.llm.errors",
    "BUILTIN_PROFILES": "mppagent.llm.providers",
    "DEFAULT_MAX_IMAGE_BYTES": "mppagent.llm.providers",
    "DEFAULT_MAX_VIDEO_BYTES": "mppagent.llm.providers",
    "RESERVED_BODY_FIELDS": "mppagent.llm.providers",
    "AuthMode": "mppagent.llm.providers",
    "ProviderProfile": "mppagent.llm.providers",
    "get_profile": "mppagent.llm.providers",
    "load_profiles": "mppagent.llm.providers",
}

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_VIDEO_BYTES",
    "MAX_RETRY_DELAY",
    "RESERVED_BODY_FIELDS",
    "AuthMode",
    "ChatDelta",
    "MediaSource",
    "ProviderError",
    "ProviderProfile",
    "build_chat_request",
    "describe_http_error",
    "error_message",
    "get_profile",
    "load_profiles",
    "media_url",
    "parse_chunk",
    "parse_completion",
    "parse_param",
    "parse_params",
    "retry_delay",
    "retryable",
]

if TYPE_CHECKING:
    from mppagent.llm.chat import (
        ChatDelta,
        MediaSource,
        build_chat_request,
        media_url,
        parse_chunk,
        parse_completion,
        parse_param,
        parse_params,
    )
    from mppagent.llm.errors import (
        MAX_RETRY_DELAY,
        ProviderError,
        describe_http_error,
        error_message,
        retry_delay,
        retryable,
    )
    from mppagent.llm.providers import (
        BUILTIN_PROFILES,
        DEFAULT_MAX_IMAGE_BYTES,
        DEFAULT_MAX_VIDEO_BYTES,
        RESERVED_BODY_FIELDS,
        AuthMode,
        ProviderProfile,
        get_profile,
        load_profiles,
    )

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
