"""The built-in provider profiles as plain data (see :mod:`mppagent.llm.providers`).

Kept apart from the pydantic model so that listing them (``mppagent providers``)
costs no more than reading a table: the CLI shows these without validating.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BUILTIN_TABLES"]

_ROUTER_HINTS: Final = {
    400: "the router rejected the request: check the model name and the routing params "
    "(routing_strategy, allow_external, max_*_price_per_million, timeout_ms)",
    401: "the router did not accept the request's credentials: MPP-paid routers need no key, "
    "so check that the request went through the paying agent",
    402: "the router wants a payment that was not made: check the spending policy "
    "(max_price, max_deposit) and the wallet balance",
    502: "no upstream model answered: retry, or relax the price ceilings or raise timeout_ms",
    503: "no route matches right now: no upstream model fits the price ceilings and "
    "allow_external; retry later or relax them",
}

BUILTIN_TABLES: Final[tuple[dict[str, object], ...]] = (
    dict(
        name="perceptron",
        base_url="https://perceptron.cloud/api/v1",
        auth="mpp",
        default_model="moonshotai/kimi-k2.6",
        include_usage=True,
        description="Perceptron's MPP-paid OpenAI-compatible gateway (pay per token, no key). "
        "Reasoning models stream delta.reasoning_content.",
    ),
    dict(
        name="perceptron-mk1",
        base_url="https://api.perceptron.inc/v1",
        auth="either",
        api_key_env="PERCEPTRON_API_KEY",
        default_model="perceptron-mk1",
        include_usage=True,
        vendor_params={
            "vision_config": "image/video preprocessing options (object), e.g. resolution",
        },
        description="Perceptron mk1 vision-language model: image_url and video_url parts, "
        "reasoning in delta.reasoning_content, streamed usage with "
        "stream_options.include_usage. Sends PERCEPTRON_API_KEY when set, else pays with MPP.",
    ),
    dict(
        name="mpp-router",
        base_url="https://router.example/v1",
        auth="mpp",
        meter="event",  # routers on the reference SDK bill one unit per SSE data event
        default_model="auto",
        stream_default=True,
        include_usage=True,
        defaults={"routing_strategy": "cheapest", "timeout_ms": 120_000},
        vendor_params={
            "routing_strategy": "how the router picks an upstream model (string)",
            "allow_external": "whether upstreams outside the router's own pool may serve (bool)",
            "max_input_price_per_million": "ceiling on the prompt price per million tokens",
            "max_output_price_per_million": "ceiling on the completion price per million tokens",
            "timeout_ms": "how long the router may search for an upstream (milliseconds)",
        },
        error_hints=_ROUTER_HINTS,
        description="EXAMPLE of an MPP-paid model router: router.example is a placeholder, "
        "override base_url in your config with your router's address.",
    ),
    dict(
        name="ppq",
        base_url="https://api.ppq.ai",
        auth="bearer",
        api_key_env="PPQ_API_KEY",
        default_model="gpt-4o",
        defaults={"plugins": [{"id": "web"}]},
        vendor_params={"plugins": 'plugin list (array), e.g. [{"id": "web"}] for web search'},
        description="PayPerQ (ppq.ai): prepaid credits, Bearer key from PPQ_API_KEY; "
        "web search plugin on by default.",
    ),
    dict(
        name="openrouter",
        base_url="https://openrouter.ai/api/v1",
        auth="bearer",
        api_key_env="OPENROUTER_API_KEY",
        default_model="openrouter/auto",
        headers={"HTTP-Referer": "https://pypi.org/project/mppagent/", "X-Title": "mppagent"},
        vendor_params={
            "reasoning": 'reasoning options (object), e.g. {"effort": "high"} or '
            '{"max_tokens": 2000}; streamed as delta.reasoning + delta.reasoning_details',
            "provider": "upstream provider routing preferences (object)",
            "models": "fallback model list (array)",
            "plugins": "plugin list (array)",
        },
        description="OpenRouter: Bearer key from OPENROUTER_API_KEY; app attribution via "
        "HTTP-Referer / X-Title; usage on every stream.",
    ),
    dict(
        name="local",
        base_url="http://127.0.0.1:8402/v1",
        auth="mpp",
        default_model="mpp-fake-1",
        include_usage=True,
        description="The reference devserver (`mppagent serve`) on loopback, paid with MPP "
        "on the local chain.",
    ),
)
