"""Provider profiles: what differs between OpenAI-compatible LLM providers.

Every provider speaks "OpenAI chat completions", and every one of them differs
in a few details that decide whether a request works at all: how the client
authenticates (an MPP payment, a Bearer key, or either), which headers it must
send, which vendor fields it understands, whether streamed usage must be asked
for, and what its error statuses mean. A :class:`ProviderProfile` writes those
details down once so the CLI and library callers do not rediscover them per call.

The built-in profiles only state wire features the providers document publicly;
base URLs can be overridden (and new profiles added) from the user's config with
:func:`load_profiles`. Nothing here does I/O: reading the API key from the
environment happens only when :meth:`ProviderProfile.api_key` is called.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal, Self, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mppagent.errors import ConfigError
from mppagent.llm.builtin_profiles import BUILTIN_TABLES
from mppagent.protocol import JSON

if TYPE_CHECKING:
    from mppagent.llm.meters import MeterSpec

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_VIDEO_BYTES",
    "RESERVED_BODY_FIELDS",
    "AuthMode",
    "ProviderProfile",
    "get_profile",
    "load_profiles",
]

AuthMode: TypeAlias = Literal["mpp", "bearer", "either"]

DEFAULT_MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024
"""Client-side cap on one local image (20 MiB). A guard against sending a huge file
as base64 by mistake, not a limit any provider publishes."""
DEFAULT_MAX_VIDEO_BYTES: Final = 50 * 1024 * 1024
"""Client-side cap on one local video inlined as a ``data:`` URL (50 MiB)."""

RESERVED_BODY_FIELDS: Final = frozenset({"model", "messages", "stream"})
"""Body fields that have dedicated arguments; ``defaults``/``params`` may not set them,
because a silent override (say ``stream`` from a config file) would change how the
response must be read."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MERGED_FIELDS: Final = ("headers", "defaults", "error_hints", "vendor_params")


class ProviderProfile(BaseModel):
    """How to talk to one OpenAI-compatible provider.

    * ``auth`` -- ``"mpp"``: pay per token through the agent, send no key;
      ``"bearer"``: an API key from ``api_key_env`` is required;
      ``"either"``: send the key when ``api_key_env`` is set, otherwise pay.
    * ``defaults`` -- vendor request-body fields merged *under* the caller's
      params (the caller wins key by key).
    * ``include_usage`` -- send ``stream_options.include_usage`` on streams, for
      providers that report streamed usage only when asked (OpenAI's rule).
    * ``error_hints`` -- status → what it usually means at this provider;
      used by :func:`mppagent.llm.errors.describe_http_error`.
    * ``vendor_params`` -- vendor fields the provider documents, with a one-line
      description (shown to users; requests are not checked against it).
    * ``max_image_bytes`` / ``max_video_bytes`` -- local files larger than this are
      refused before they are read.
    * ``meter`` / ``bills_prompt`` -- how the provider bills, so the payment gate
      knows what an honest bill for the delivered text may be
      (:mod:`mppagent.llm.meters`): ``"event"`` (one unit per SSE data event, as
      servers on the reference SDK do), ``"chunk"`` (one per text chunk),
      ``"token"`` (per token, bounded by the text's bytes) or ``"request"``;
      unset: the default for the challenge's ``unitType``, which pays all of these.
      ``bills_prompt``: the provider bills the prompt up front, so an allowance for
      it (bounded by the request body) is granted before any token arrives.

    Frozen: a profile is shared configuration, so derive changed copies with
    ``model_copy(update=...)`` or :func:`load_profiles` instead of mutating.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str
    base_url: str
    auth: AuthMode = "mpp"
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    default_model: str = Field(min_length=1)
    defaults: dict[str, JSON] = Field(default_factory=dict)
    stream_default: bool = True
    max_image_bytes: int = Field(DEFAULT_MAX_IMAGE_BYTES, gt=0)
    max_video_bytes: int = Field(DEFAULT_MAX_VIDEO_BYTES, gt=0)
    include_usage: bool = False
    error_hints: dict[int, str] = Field(default_factory=dict)
    vendor_params: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    meter: Literal["event", "chunk", "token", "request"] | None = None
    bills_prompt: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 64 characters)")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        # Stored without the trailing slash so "base_url + '/chat/completions'" is right.
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if "\r" in text or "\n" in text:
                raise ValueError(f"header {name!r} contains a line break")  # header injection
            if name.lower() == "authorization":
                raise ValueError("set api_key_env instead of an Authorization header")
        return value

    @field_validator("defaults")
    @classmethod
    def _defaults(cls, value: dict[str, JSON]) -> dict[str, JSON]:
        reserved = sorted(RESERVED_BODY_FIELDS & value.keys())
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)} cannot be a default (use default_model / stream_default)"
            )
        return value

    @field_validator("error_hints", mode="before")
    @classmethod
    def _hint_keys(cls, value: object) -> object:
        # TOML table keys are strings ("402"); accept them as status codes.
        if isinstance(value, Mapping):
            return {_status_key(k): v for k, v in value.items()}
        return value

    @field_validator("error_hints")
    @classmethod
    def _hints(cls, value: dict[int, str]) -> dict[int, str]:
        for status in value:
            if not 400 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP error status")
        return value

    @model_validator(mode="after")
    def _bearer_has_key(self) -> Self:
        # A bearer profile is useless without a key to read.
        if self.auth == "bearer" and self.api_key_env is None:
            raise ValueError("a bearer profile needs api_key_env")
        return self

    @property
    def chat_url(self) -> str:
        """``POST`` target for chat completions."""
        return f"{self.base_url}/chat/completions"

    @property
    def models_url(self) -> str:
        """``GET`` target listing models."""
        return f"{self.base_url}/models"

    def api_key(self, env: Mapping[str, str] | None = None) -> str | None:
        """The API key from ``api_key_env`` (``None`` when unset, empty, or not used)."""
        if self.api_key_env is None or self.auth == "mpp":
            return None
        source = os.environ if env is None else env
        value = source.get(self.api_key_env, "").strip()
        return value or None

    def meter_spec(self) -> MeterSpec | None:
        """The meter this provider's billing needs (``None``: the unit type's default)."""
        from mppagent.llm.meters import MeterSpec, default_spec

        if self.meter is None and not self.bills_prompt:
            return None
        if self.meter is None:
            base = default_spec("llm_token")
            return MeterSpec(**{**vars(base), "bills_prompt": True})
        return MeterSpec(kind=self.meter, bills_prompt=self.bills_prompt)

    def request_headers(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Headers for a request: the profile's own plus ``Authorization`` when a key applies.

        Raises :class:`ConfigError` for a ``bearer`` profile whose key is not set,
        naming the variable, instead of letting the provider answer 401.
        """
        headers = dict(self.headers)
        key = self.api_key(env)
        if key is None and self.auth == "bearer":
            raise ConfigError(f"provider {self.name!r} needs an API key: set {self.api_key_env}")
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return headers


def _status_key(key: object) -> object:
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    return key


# ------------------------------------------------------------------------- built-ins

_PROFILES: Final = tuple(ProviderProfile.model_validate(table) for table in BUILTIN_TABLES)

BUILTIN_PROFILES: Final[Mapping[str, ProviderProfile]] = {p.name: p for p in _PROFILES}
"""The built-in profiles by name (read-only by convention; derive, don't mutate)."""


# ------------------------------------------------------------------------ user config


def get_profile(
    name: str, profiles: Mapping[str, ProviderProfile] | None = None
) -> ProviderProfile:
    """The profile called ``name``; :class:`ConfigError` listing the known ones otherwise."""
    table = BUILTIN_PROFILES if profiles is None else profiles
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise ConfigError(f"unknown provider {name!r} (known: {known})") from None


def load_profiles(
    user_tables: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, ProviderProfile]:
    """The built-in profiles, overridden and extended by the user's config tables.

    A table named like a built-in changes only the keys it sets (``headers``,
    ``defaults``, ``error_hints`` and ``vendor_params`` merge key by key). A
    table with ``extends = "<profile>"`` starts from that profile (built-in or
    another user table); any other table is a new profile and needs at least
    ``base_url`` and ``default_model``. Every problem -- an unknown key, a
    bad value, an unknown or circular ``extends`` -- is a :class:`ConfigError`
    naming the profile and the field.
    """
    tables: dict[str, Mapping[str, object]] = {}
    for name, table in (user_tables or {}).items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"provider profile {name!r} must be a table")
        tables[name] = table
    result: dict[str, ProviderProfile] = dict(BUILTIN_PROFILES)
    resolved: dict[str, ProviderProfile] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> ProviderProfile:
        if name in resolved:
            return resolved[name]
        if name in chain:
            cycle = " -> ".join((*chain, name))
            raise ConfigError(f"provider profiles extend each other in a cycle: {cycle}")
        table = dict(tables[name])
        extends = table.pop("extends", None)
        if extends is not None and not isinstance(extends, str):
            raise ConfigError(f"provider profile {name!r}: extends must be a profile name")
        if "name" in table and table["name"] != name:
            raise ConfigError(
                f"provider profile {name!r}: 'name' must match the table name or be left out"
            )
        base: ProviderProfile | None
        if extends is None or extends == name:
            base = BUILTIN_PROFILES.get(name)
            if extends == name and base is None:
                raise ConfigError(f"provider profile {name!r} extends itself")
        elif extends in tables:
            base = resolve(extends, (*chain, name))
        elif extends in BUILTIN_PROFILES:
            base = BUILTIN_PROFILES[extends]
        else:
            known = ", ".join(sorted({*BUILTIN_PROFILES, *tables}))
            raise ConfigError(
                f"provider profile {name!r} extends unknown profile {extends!r} (known: {known})"
            )
        profile = _build(name, base, table)
        resolved[name] = profile
        return profile

    for name in tables:
        result[name] = resolve(name, ())
    return result


def _build(name: str, base: ProviderProfile | None, table: Mapping[str, object]) -> ProviderProfile:
    data: dict[str, object] = {} if base is None else base.model_dump()
    for key, value in table.items():
        if key in _MERGED_FIELDS and isinstance(value, Mapping) and key in data:
            merged = dict(_as_mapping(data[key]))
            merged.update(
                {_status_key(k): v for k, v in value.items()}
                if key == "error_hints"
                else dict(value)
            )
            data[key] = merged
        else:
            data[key] = value
    data["name"] = name
    if base is None:
        missing = [k for k in ("base_url", "default_model") if k not in data]
        if missing:
            raise ConfigError(
                f"provider profile {name!r} is new, so it needs {' and '.join(missing)} "
                "(or extends = an existing profile)"
            )
    try:
        return ProviderProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"provider profile {name!r}: {_summary(exc)}") from None


def _as_mapping(value: object) -> Mapping[object, object]:
    return value if isinstance(value, Mapping) else {}


def _summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "profile"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
