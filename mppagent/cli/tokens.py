"""Token symbols for showing amounts to people ("1.250000 tUSD").

Known Tempo stablecoins are named from a table; any other token's ``symbol()``
is read from the RPC when one is configured, with a short timeout and the
standard library only (``channels list`` must stay quick and work offline).
Amounts are always shown with 6 decimals: TIP-20 tokens and the test token
both have 6.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

__all__ = ["KNOWN_SYMBOLS", "token_symbols"]

KNOWN_SYMBOLS: dict[str, str] = {
    "0x20c0000000000000000000000000000000000000": "pathUSD",
    "0x20c0000000000000000000000000000000000001": "AlphaUSD",
    "0x20c0000000000000000000000000000000000002": "BetaUSD",
    "0x20c0000000000000000000000000000000000003": "ThetaUSD",
    "0x20c000000000000000000000b9537d11c60e8b50": "USDC",
}

_SYMBOL_SELECTOR = "0x95d89b41"  # symbol()
_TIMEOUT = 2.0


def token_symbols(rpc_url: str | None, tokens: Iterable[str]) -> dict[str, str]:
    """A display symbol for each token address (the address itself, shortened, if unknown)."""
    result: dict[str, str] = {}
    for token in tokens:
        symbol = KNOWN_SYMBOLS.get(token.lower())
        if symbol is None and rpc_url:
            symbol = _read_symbol(rpc_url, token)
        result[token] = symbol or f"(token {token[:6]}…{token[-4:]})"
    return result


def _read_symbol(rpc_url: str, token: str) -> str | None:
    import urllib.error
    import urllib.request

    if not rpc_url.startswith(("http://", "https://")):
        return None
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_call",
        "params": [{"to": token, "data": _SYMBOL_SELECTOR}, "latest"],
    }
    request = urllib.request.Request(  # noqa: S310 -- scheme checked above
        rpc_url,
        data=json.dumps(call).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310
            result = json.loads(response.read()).get("result")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return decode_abi_string(result) if isinstance(result, str) else None


def decode_abi_string(data: str) -> str | None:
    """An ABI-encoded ``string`` return value, or ``None`` if it is not one."""
    try:
        raw = bytes.fromhex(data.removeprefix("0x"))
        offset = int.from_bytes(raw[:32], "big")
        length = int.from_bytes(raw[offset : offset + 32], "big")
        text = raw[offset + 32 : offset + 32 + length].decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if not 0 < len(text) <= 16 or not text.isprintable() or len(raw) < offset + 32 + length:
        return None
    return text
