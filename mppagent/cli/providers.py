"""``mppagent providers``, and the provider profile a command names.

Listing the built-in profiles reads plain tables; pydantic is only imported
when the user's config adds or changes profiles (they must be validated) or a
command actually uses one.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mppagent.cli.common import settings_from
from mppagent.cli.config import Settings
from mppagent.cli.output import Output
from mppagent.errors import ConfigError
from mppagent.llm.builtin_profiles import BUILTIN_TABLES

if TYPE_CHECKING:
    from mppagent.llm.providers import ProviderProfile

__all__ = ["profile_named", "run_providers"]


def profile_named(settings: Settings, name: str | None) -> ProviderProfile | None:
    """The profile ``name`` (built-in or configured); ``None`` when no name is given."""
    if name is None:
        return None
    known = {str(t["name"]) for t in BUILTIN_TABLES} | set(settings.providers)
    if name not in known:
        raise ConfigError(f"unknown provider {name!r}; known providers: {', '.join(sorted(known))}")
    from mppagent.llm.providers import load_profiles

    return load_profiles(settings.providers)[name]


def _rows(settings: Settings) -> list[Mapping[str, object]]:
    if not settings.providers:
        return sorted(BUILTIN_TABLES, key=lambda t: str(t["name"]))
    from mppagent.llm.providers import load_profiles

    profiles = load_profiles(settings.providers)
    return [profiles[name].model_dump() for name in sorted(profiles)]


def run_providers(args: argparse.Namespace, out: Output) -> int:
    """List built-in and configured provider profiles."""
    for row in _rows(settings_from(args)):
        name, base_url = str(row["name"]), str(row["base_url"])
        auth = str(row.get("auth", "mpp"))
        model = row.get("default_model")
        out.emit(
            "provider",
            name=name,
            baseUrl=base_url,
            auth=auth,
            defaultModel=model,
            description=str(row.get("description", "")),
        )
        out.result(f"{name:<16} {auth:<7} {base_url:<40} {model or '-'}")
    return 0
