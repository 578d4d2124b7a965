"""Structured logging that never carries secrets.

mppagent logs with structlog through the standard library's ``logging``
(logger names under ``mppagent``), so a library user's logging setup decides
what is shown; by default only warnings reach stderr. :func:`configure` is
what the CLI calls for human or JSON output.

Every event passes :func:`redact` first: values under secret-sounding keys
(private keys, signatures, signed transactions, credentials, authorization
headers) are replaced, and so are values that *look* like secrets wherever
they appear -- 65-byte signatures, ``Payment``/``Bearer`` header values, and
long base64url blobs (encoded credentials).

structlog (with the rich and attrs modules it loads, ~0.1 s) is imported when
the first event that passes its logger's level is logged, not when a module
asks for a logger or the CLI configures output: a paid request that logs
nothing above the configured level never loads it. Until then :func:`get_logger`
hands out a stand-in that applies the same level check ``filter_by_level`` does.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["configure", "get_logger", "redact"]

REDACTED = "<redacted>"

_SECRET_KEYS = re.compile(
    r"(private|secret|signature|sig$|^sig_|transaction|^raw$|credential|authorization|password"
    r"|mnemonic|api_key|apikey|token_value)",
    re.IGNORECASE,
)
_SECRET_VALUES = [
    re.compile(r"0x[0-9a-fA-F]{128,}"),  # signatures (65 bytes) and signed transactions
    re.compile(r"(?i)\b(payment|bearer)\s+[A-Za-z0-9._~+/=-]{8,}"),  # auth header values
    re.compile(r"\beyJ[A-Za-z0-9_-]{40,}"),  # base64url JSON blobs (credentials)
]


def _scrub(value: str) -> str:
    for pattern in _SECRET_VALUES:
        value = pattern.sub(REDACTED, value)
    return value


def _clean(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return REDACTED
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, dict):
        return {k: _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(key, v) for v in value]
    if isinstance(value, BaseException):
        return _scrub(f"{type(value).__name__}: {value}")
    return value


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: remove secrets by key and by shape."""
    for key in list(event_dict):
        event_dict[key] = _clean(key, event_dict[key])
    return event_dict


def _install_defaults() -> None:
    """Route structlog through stdlib logging with redaction, unless the app configured it."""
    import structlog

    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            redact,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


_pending_json: list[bool] = []
"""The renderer :func:`configure` chose, until structlog is imported (see :func:`_structlog`)."""


def configure(*, level: str = "WARNING", json: bool = False, stream: Any = None) -> None:
    """Send mppagent's logs to ``stream`` (stderr) as text or JSON lines, redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("mppagent")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    _pending_json[:] = [json]
    if "structlog" in sys.modules:
        _structlog()


def _configure_structlog(json: bool) -> None:
    import structlog

    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            redact,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _structlog() -> Any:
    """structlog, imported now, with :func:`configure`'s pending choice applied."""
    import structlog

    if _pending_json:
        _configure_structlog(_pending_json.pop())
    return structlog


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _dropped(*_args: object, **_kwargs: object) -> None:
    """An event below its logger's level (``filter_by_level`` would drop it too)."""


class _Logger:
    """A structlog logger for ``name``, created (and structlog imported) when first needed.

    While structlog is not imported nobody can have configured it otherwise, so
    the processors are ours, the first of which drops events below the stdlib
    logger's level: the same check here drops them without importing anything.
    """

    __slots__ = ("_name", "_real")

    def __init__(self, name: str) -> None:
        self._name = name
        self._real: Any = None

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        level = _LEVELS.get(attr)
        if (
            level is not None
            and "structlog" not in sys.modules
            and not logging.getLogger(self._name).isEnabledFor(level)
        ):
            return _dropped
        if self._real is None:
            structlog = _structlog()
            _install_defaults()
            self._real = structlog.get_logger(self._name)
        return getattr(self._real, attr)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<mppagent logger {self._name!r}>"


def get_logger(name: str) -> Any:
    """A structlog logger for ``name``, with redacting defaults installed if needed."""
    return _Logger(name)
