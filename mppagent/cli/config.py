"""CLI configuration: flags, then environment, then a TOML file; keys from env or a keystore.

Precedence is the usual one -- a flag beats an environment variable beats the
config file beats the default -- and every failure is a :class:`ConfigError`
with a message that names the setting. The config file lives at
``<platform config dir>/mppagent/config.toml`` unless ``--config`` or
``MPPAGENT_CONFIG`` says otherwise::

    rpc_url = "http://127.0.0.1:8545"
    store = "/home/me/.local/share/mppagent/channels.db"
    keystore = "/home/me/.config/mppagent/key.json"   # eth-account keystore (encrypted)
    provider = "local"

    [policy]
    max_deposit = 5_000_000
    max_price = { llm_token = 50 }
    budget_per_day = 20_000_000

    [providers.mine]
    extends = "openrouter"
    base_url = "https://example.org/v1"
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mppagent.errors import ConfigError

if TYPE_CHECKING:
    from mppagent.session.policy import SpendPolicy

__all__ = ["Settings", "config_path", "load_settings", "validate_private_key"]

ENV_PREFIX = "MPPAGENT_"

_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def config_path(explicit: str | None = None) -> Path:
    """Where the config file is read from."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_PREFIX + "CONFIG")
    if env:
        return Path(env).expanduser()
    return _user_config_dir() / "mppagent" / "config.toml"


def _user_config_dir() -> Path:
    # On Linux this is the XDG rule platformdirs applies; computing it here keeps
    # platformdirs (and its imports) off the start-up path of every command.
    platform = sys.platform
    if platform == "linux":
        xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
        return Path(xdg) if xdg else Path.home() / ".config"
    import platformdirs

    return Path(platformdirs.user_config_dir())


def validate_private_key(value: str, source: str) -> str:
    """A 32-byte secp256k1 key as ``0x``-hex, or a :class:`ConfigError` naming ``source``.

    Checked by shape and range without importing the crypto stack, so a bad key
    is reported at once, as a configuration error, and never echoed.
    """
    text = value.strip()
    if not _KEY.match(text):
        raise ConfigError(f"{source} is not a private key: expected 64 hex digits (0x optional)")
    number = int(text.removeprefix("0x").removeprefix("0X"), 16)
    if not 0 < number < _SECP256K1_N:
        raise ConfigError(f"{source} is not a valid secp256k1 private key (out of range)")
    return "0x" + text[-64:].lower()


@dataclass
class Settings:
    """Resolved settings for one CLI invocation. Holds the key: never print it."""

    rpc_url: str | None
    store_path: Path | None
    policy_data: dict[str, Any]
    provider: str | None
    providers: dict[str, dict[str, Any]]
    config_file: Path
    _private_key: str | None = field(default=None, repr=False)
    keystore: Path | None = None

    @functools.cached_property
    def policy(self) -> SpendPolicy:
        """The spending policy, validated on first use (pydantic is not imported before)."""
        from pydantic import ValidationError

        from mppagent.session.policy import SpendPolicy

        try:
            return SpendPolicy.model_validate(self.policy_data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"invalid policy setting {where}: {first['msg']}") from None

    def private_key(self) -> str:
        """The paying key: from the environment, or decrypted from the keystore."""
        if self._private_key:
            self._private_key = validate_private_key(self._private_key, "MPPAGENT_PRIVATE_KEY")
            return self._private_key
        if self.keystore is None:
            raise ConfigError(
                "no key: set MPPAGENT_PRIVATE_KEY, or MPPAGENT_KEYSTORE (an encrypted "
                "eth-account keystore) with MPPAGENT_KEYSTORE_PASSWORD, or pass --keystore"
            )
        self._private_key = _decrypt_keystore(self.keystore)
        return self._private_key

    def require_rpc(self) -> str:
        """The RPC URL, or a ConfigError saying how to set one."""
        if not self.rpc_url:
            raise ConfigError("no chain RPC: pass --rpc-url or set MPPAGENT_RPC_URL")
        return self.rpc_url


def load_settings(
    *,
    config: str | None = None,
    rpc_url: str | None = None,
    store: str | None = None,
    keystore: str | None = None,
    provider: str | None = None,
    policy_overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve settings from flags (arguments), environment and the config file."""
    path = config_path(config)
    data: dict[str, Any] = {}
    if path.exists():
        import tomllib

        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
    elif config:
        raise ConfigError(f"config file {path} does not exist")
    env = os.environ
    policy_data = dict(data.get("policy", {}))
    env_policy = env.get(ENV_PREFIX + "POLICY")
    if env_policy:
        try:
            policy_data.update(json.loads(env_policy))
        except ValueError:
            raise ConfigError("MPPAGENT_POLICY must be a JSON object") from None
    policy_data.update({k: v for k, v in (policy_overrides or {}).items() if v is not None})
    keystore_value = keystore or env.get(ENV_PREFIX + "KEYSTORE") or data.get("keystore")
    store_value = store or env.get(ENV_PREFIX + "STORE") or data.get("store")
    providers = data.get("providers", {})
    if not isinstance(providers, dict):
        raise ConfigError("[providers] in the config file must be a table of tables")
    return Settings(
        rpc_url=rpc_url or env.get(ENV_PREFIX + "RPC_URL") or data.get("rpc_url"),
        store_path=Path(store_value).expanduser() if store_value else None,
        policy_data=policy_data,
        provider=provider or env.get(ENV_PREFIX + "PROVIDER") or data.get("provider"),
        providers=providers,
        config_file=path,
        _private_key=env.get(ENV_PREFIX + "PRIVATE_KEY") or None,
        keystore=Path(keystore_value).expanduser() if keystore_value else None,
    )


def _decrypt_keystore(path: Path) -> str:
    from eth_account import Account

    try:
        encrypted = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read keystore {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ConfigError(f"cannot read keystore {path}: not a JSON keystore file") from None
    password = os.environ.get(ENV_PREFIX + "KEYSTORE_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"keystore {path} needs a password: set MPPAGENT_KEYSTORE_PASSWORD "
                "(no terminal to prompt on)"
            )
        password = getpass.getpass(f"Password for {path}: ")
    try:
        key = Account.decrypt(encrypted, password)
    except Exception:
        raise ConfigError(f"cannot decrypt keystore {path}: wrong password or bad file") from None
    return validate_private_key(bytes(key).hex(), f"the key in keystore {path}")
