"""Provider profiles: the built-ins say what they should, user config overrides them safely."""

from __future__ import annotations

import pytest

from mppagent.errors import ConfigError
from mppagent.llm import BUILTIN_PROFILES, ProviderProfile, get_profile, load_profiles


def test_builtin_profiles_exactly() -> None:
    summary = {
        name: (p.base_url, p.auth, p.api_key_env, p.default_model, p.stream_default)
        for name, p in BUILTIN_PROFILES.items()
    }
    assert summary == {
        "perceptron": (
            "https://perceptron.cloud/api/v1",
            "mpp",
            None,
            "moonshotai/kimi-k2.6",
            True,
        ),
        "perceptron-mk1": (
            "https://api.perceptron.inc/v1",
            "either",
            "PERCEPTRON_API_KEY",
            "perceptron-mk1",
            True,
        ),
        "mpp-router": ("https://router.example/v1", "mpp", None, "auto", True),
        "ppq": ("https://api.ppq.ai", "bearer", "PPQ_API_KEY", "gpt-4o", True),
        "openrouter": (
            "https://openrouter.ai/api/v1",
            "bearer",
            "OPENROUTER_API_KEY",
            "openrouter/auto",
            True,
        ),
        "local": ("http://127.0.0.1:8402/v1", "mpp", None, "mpp-fake-1", True),
    }
    assert BUILTIN_PROFILES["ppq"].defaults == {"plugins": [{"id": "web"}]}
    assert BUILTIN_PROFILES["ppq"].chat_url == "https://api.ppq.ai/chat/completions"
    assert BUILTIN_PROFILES["openrouter"].headers == {
        "HTTP-Referer": "https://pypi.org/project/mppagent/",
        "X-Title": "mppagent",
    }
    assert "reasoning" in BUILTIN_PROFILES["openrouter"].vendor_params
    assert "vision_config" in BUILTIN_PROFILES["perceptron-mk1"].vendor_params
    router = BUILTIN_PROFILES["mpp-router"]
    assert router.defaults == {"routing_strategy": "cheapest", "timeout_ms": 120_000}
    assert {"allow_external", "max_input_price_per_million"} <= router.vendor_params.keys()
    assert sorted(router.error_hints) == [400, 401, 402, 502, 503]
    assert "placeholder" in router.description
    assert [n for n, p in BUILTIN_PROFILES.items() if p.include_usage] == [
        "perceptron",
        "perceptron-mk1",
        "mpp-router",
        "local",
    ]


def test_profiles_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        BUILTIN_PROFILES["local"].base_url = "http://elsewhere"  # type: ignore[misc]


def test_user_table_overrides_only_what_it_sets_and_merges_tables() -> None:
    profiles = load_profiles(
        {
            "openrouter": {
                "base_url": "http://127.0.0.1:9000/v1/",
                "headers": {"X-Title": "my-agent"},
                "error_hints": {"402": "top up your OpenRouter credits"},
            }
        }
    )
    profile = profiles["openrouter"]
    assert profile.base_url == "http://127.0.0.1:9000/v1"  # trailing slash dropped
    assert profile.headers == {
        "HTTP-Referer": "https://pypi.org/project/mppagent/",
        "X-Title": "my-agent",
    }
    assert profile.error_hints == {402: "top up your OpenRouter credits"}
    assert profile.api_key_env == "OPENROUTER_API_KEY"
    assert profiles["ppq"] is BUILTIN_PROFILES["ppq"]


def test_extends_builtin_and_user_profiles_in_any_order() -> None:
    profiles = load_profiles(
        {
            "cheap": {"extends": "mine", "defaults": {"routing_strategy": "cheapest"}},
            "mine": {"extends": "mpp-router", "base_url": "https://router.internal/v1"},
        }
    )
    assert profiles["mine"].base_url == "https://router.internal/v1"
    assert profiles["cheap"].base_url == "https://router.internal/v1"
    assert profiles["cheap"].defaults == {"routing_strategy": "cheapest", "timeout_ms": 120_000}
    assert profiles["cheap"].name == "cheap"
    assert profiles["mpp-router"] is BUILTIN_PROFILES["mpp-router"]


def test_new_profile_needs_url_and_model() -> None:
    profile = load_profiles({"mine": {"base_url": "https://x.test/v1", "default_model": "m"}})[
        "mine"
    ]
    assert (profile.auth, profile.stream_default, profile.defaults) == ("mpp", True, {})
    with pytest.raises(ConfigError, match=r"'mine' is new, so it needs default_model"):
        load_profiles({"mine": {"base_url": "https://x.test/v1"}})


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"a": {"extends": "nope"}}, r"'a' extends unknown profile 'nope'"),
        ({"a": {"extends": "b"}, "b": {"extends": "a"}}, r"cycle: a -> b -> a"),
        ({"a": {"extends": "a"}}, r"'a' extends itself"),
        ({"local": {"base_url": "ftp://x"}}, r"'local': base_url: must be an http\(s\) URL"),
        ({"local": {"colour": "red"}}, r"'local': colour: Extra inputs are not permitted"),
        ({"local": {"auth": "cash"}}, r"'local': auth: Input should be 'mpp', 'bearer' or"),
        ({"local": {"auth": "bearer"}}, r"'local': profile: a bearer profile needs api_key_env"),
        ({"local": {"stream_default": "yes"}}, r"'local': stream_default: Input should be a"),
        ({"local": {"defaults": {"stream": False}}}, r"stream cannot be a default"),
        ({"local": {"headers": {"X-A": "1\r\nX-B: 2"}}}, r"header 'X-A' contains a line break"),
        ({"local": {"headers": {"Authorization": "k"}}}, r"set api_key_env instead"),
        ({"local": {"error_hints": {"200": "fine"}}}, r"200 is not an HTTP error status"),
        ({"local": {"max_image_bytes": 0}}, r"max_image_bytes: Input should be greater than 0"),
        ({"local": {"name": "other"}}, r"'name' must match the table name"),
        ({"local": "not a table"}, r"'local' must be a table"),
        ({"bad name": {"extends": "local"}}, r"name: Value error|name: use letters"),
    ],
)
def test_bad_tables_are_config_errors(tables: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_profiles(tables)  # type: ignore[arg-type]


def test_get_profile_lists_known_names() -> None:
    assert get_profile("local") is BUILTIN_PROFILES["local"]
    with pytest.raises(ConfigError, match=r"unknown provider 'nope' \(known: local, mpp-router"):
        get_profile("nope")


def test_request_headers_and_api_key_per_auth_mode() -> None:
    openrouter = BUILTIN_PROFILES["openrouter"]
    assert openrouter.request_headers({"OPENROUTER_API_KEY": " sk-or "}) == {
        "HTTP-Referer": "https://pypi.org/project/mppagent/",
        "X-Title": "mppagent",
        "Authorization": "Bearer sk-or",
    }
    with pytest.raises(ConfigError, match=r"'openrouter' needs an API key: set OPENROUTER_API_KEY"):
        openrouter.request_headers({})
    mk1 = BUILTIN_PROFILES["perceptron-mk1"]
    assert mk1.request_headers({}) == {}  # either: pays when no key is set
    assert mk1.request_headers({"PERCEPTRON_API_KEY": "pk"}) == {"Authorization": "Bearer pk"}
    mpp = ProviderProfile(
        name="m", base_url="https://m.test", default_model="x", api_key_env="M_KEY"
    )
    assert mpp.api_key({"M_KEY": "secret"}) is None  # an mpp profile never sends a key
