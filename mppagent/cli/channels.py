"""``mppagent channels list|show|close|request-close|withdraw|sync``.

``list`` and ``show`` only read the local store: they need no key and no
chain (token symbols are looked up on the RPC when one is configured). Channel
ids may be given as any unique prefix, as git accepts commit ids.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from mppagent.cli.common import agent_from, open_store, run_async, settings_from
from mppagent.cli.config import Settings
from mppagent.cli.output import Output, format_units
from mppagent.cli.tokens import token_symbols
from mppagent.errors import ConfigError, NetworkError, StoreError

if TYPE_CHECKING:
    from mppagent.agent import Agent
    from mppagent.session.store import ChannelRecord, ChannelStore

__all__ = ["resolve_channel", "run", "short_ids"]

MIN_SHORT = 10  # "0x" + 8 hex digits, like git's default abbreviation


def resolve_channel(store: ChannelStore, given: str) -> str:
    """The full channel id ``given`` abbreviates (a unique prefix, ``0x`` optional)."""
    prefix = given.strip().lower()
    if not prefix.startswith("0x"):
        prefix = "0x" + prefix
    if len(prefix) < 6 or any(c not in "0123456789abcdef" for c in prefix[2:]):
        raise ConfigError(f"{given!r} is not a channel id or a prefix of one (at least 4 hex)")
    matches = [r.channel_id for r in store.channels() if r.channel_id.lower().startswith(prefix)]
    if not matches:
        raise StoreError(f"no channel in the store matches {given!r}")
    if len(matches) > 1:
        shown = ", ".join(sorted(matches)[:5])
        raise ConfigError(f"channel prefix {given!r} is ambiguous: it matches {shown}")
    return matches[0]


def short_ids(ids: list[str]) -> dict[str, str]:
    """Shortest prefixes (at least :data:`MIN_SHORT` characters) unique among ``ids``."""
    result: dict[str, str] = {}
    for channel_id in ids:
        length = MIN_SHORT
        while length < len(channel_id) and any(
            other != channel_id and other.startswith(channel_id[:length]) for other in ids
        ):
            length += 1
        result[channel_id] = channel_id[:length]
    return result


def _row(record: ChannelRecord) -> dict[str, object]:
    """A channel for ``--json``: full id, amounts in base units."""
    return {
        "channelId": record.channel_id,
        "status": str(record.status),
        "payer": record.payer,
        "payee": record.scope.payee,
        "token": record.scope.token,
        "escrow": record.scope.escrow,
        "chainId": record.scope.chain_id,
        "deposit": record.deposit,
        "signed": record.signed,
        "accepted": record.accepted,
        "spent": record.spent,
        "settled": record.settled,
        "url": record.url,
        "evidence": json.loads(record.evidence) if record.evidence else None,
    }


def run(args: argparse.Namespace, out: Output) -> int:
    """Dispatch one channels action."""
    settings = settings_from(args)
    action = args.action
    if action == "list":
        return _list(settings, out)
    if action == "show":
        return _show(settings, out, args.channel_id)
    settings.private_key()
    settings.require_rpc()
    if action == "sync":
        return run_async(args, lambda: _sync(settings, out))
    store = open_store(settings)
    try:
        channel_id = resolve_channel(store, args.channel_id)
    finally:
        store.close()
    work = {"close": _close, "request-close": _request_close, "withdraw": _withdraw}[action]
    return run_async(args, lambda: work(settings, out, channel_id))


def _symbols(settings: Settings, records: list[ChannelRecord]) -> dict[str, str]:
    return token_symbols(settings.rpc_url, {r.scope.token for r in records})


def _list(settings: Settings, out: Output) -> int:
    store = open_store(settings)
    try:
        records = store.channels()
    finally:
        store.close()
    for record in records:
        out.emit("channel", **_row(record))
    out.emit("summary", channels=len(records))
    if not records:
        out.result("no channels")
        return 0
    symbols = _symbols(settings, records)
    shorts = short_ids([r.channel_id for r in records])
    out.result(
        f"{'channel':<12} {'status':<15} {'payee':<12} {'deposit':>18} {'signed':>18} {'spent':>18}"
    )
    for r in records:
        symbol = symbols[r.scope.token]
        out.result(
            f"{shorts[r.channel_id]:<12} {r.status!s:<15} {r.scope.payee[:10]:<12} "
            f"{_amount(r.deposit, symbol):>18} {_amount(r.signed, symbol):>18} "
            f"{_amount(r.spent, symbol):>18}"
        )
    return 0


def _amount(value: int, symbol: str) -> str:
    return f"{format_units(value)} {symbol}"


def _show(settings: Settings, out: Output, given: str) -> int:
    store = open_store(settings)
    try:
        record = store.get(resolve_channel(store, given))
    finally:
        store.close()
    assert record is not None
    out.emit("channel", **_row(record))
    symbol = _symbols(settings, [record])[record.scope.token]
    lines: list[tuple[str, Any]] = [
        ("channel", record.channel_id),
        ("status", record.status),
        ("payer", record.payer),
        ("payee", record.scope.payee),
        ("token", f"{record.scope.token} ({symbol})"),
        ("escrow", record.scope.escrow),
        ("chain", record.scope.chain_id),
        ("deposit", _amount(record.deposit, symbol)),
        ("signed", _amount(record.signed, symbol)),
        ("accepted", _amount(record.accepted, symbol)),
        ("spent", _amount(record.spent, symbol)),
        ("settled", _amount(record.settled, symbol)),
        ("url", record.url or "-"),
    ]
    for key, value in lines:
        out.result(f"{key:>10}: {value}")
    if record.evidence:
        out.result("  evidence: the server misbehaved on this channel; no more payments on it")
        for key, value in sorted(json.loads(record.evidence).items()):
            out.result(f"{key:>12}: {value}")
    return 0


async def _sync(settings: Settings, out: Output) -> int:
    async with agent_from(settings) as agent:
        before = {r.channel_id: r for r in agent.channels.list()}
        records = await agent.channels.sync()
        symbols = _symbols(settings, records)
        for record in records:
            out.emit("channel", **_row(record))
            out.result(_change(before.get(record.channel_id), record, symbols[record.scope.token]))
        out.emit("summary", channels=len(records))
        if not records:
            out.result("no live channels to reconcile")
    return 0


def _change(old: ChannelRecord | None, new: ChannelRecord, symbol: str) -> str:
    """One line saying what reconciling changed on a channel (or that nothing did)."""
    changes: list[str] = []
    if old is None or old.status != new.status:
        changes.append(f"status {old.status if old else '-'} -> {new.status}")
    for name in ("deposit", "settled"):
        was, now = (getattr(old, name) if old else 0), getattr(new, name)
        if was != now:
            changes.append(f"{name} {_amount(was, symbol)} -> {_amount(now, symbol)}")
    summary = "; ".join(changes) if changes else "matches the chain, unchanged"
    return (
        f"{new.channel_id}: {summary} (deposit {_amount(new.deposit, symbol)}, "
        f"settled {_amount(new.settled, symbol)})"
    )


async def _close(settings: Settings, out: Output, channel_id: str) -> int:
    import httpx

    async with agent_from(settings) as agent:
        record = agent.channels.get(channel_id)
        try:
            result = await agent.channels.close(channel_id)
        except (httpx.TransportError, NetworkError) as exc:
            raise NetworkError(
                f"cannot reach the server at {record.url} to close channel {channel_id} "
                f"({type(exc).__name__}: {exc}). If it stays unreachable, take the deposit "
                f"back on chain: `mppagent channels request-close {channel_id}`, then "
                f"{await _grace_text(agent, record)} `mppagent channels withdraw {channel_id}`"
            ) from None
        symbol = _symbols(settings, [record])[record.scope.token]
    out.emit(
        "summary",
        channelId=result.channel_id,
        deposit=result.deposit,
        paid=result.paid,
        refunded=result.refunded,
        txHash=result.tx_hash,
    )
    out.result(
        f"closed {result.channel_id}: paid {_amount(result.paid, symbol)}, refunded "
        f"{_amount(result.refunded, symbol)} of {_amount(result.deposit, symbol)} "
        f"(tx {result.tx_hash})"
    )
    return 0


async def _grace_text(agent: Agent, record: ChannelRecord) -> str:
    """When ``withdraw`` will work: the escrow's grace period plus the agent's margin.

    Read from the chain when it answers; the escrow's own value (15 minutes for
    the v1 escrow) is the one that counts, stated once with the margin added.
    """
    margin = agent.manager.withdraw_margin
    try:
        grace = await agent.manager.escrow(record.scope.escrow).close_grace_period()
    except Exception:
        return f"after the escrow's close grace period plus {_duration(margin)}"
    return (
        f"after {_duration(grace + margin)} (the escrow's {_duration(grace)} grace period "
        f"plus a {_duration(margin)} margin)"
    )


def _duration(seconds: int) -> str:
    minutes, rest = divmod(int(seconds), 60)
    if minutes and not rest:
        return f"{minutes} min"
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


async def _request_close(settings: Settings, out: Output, channel_id: str) -> int:
    async with agent_from(settings) as agent:
        record = agent.channels.get(channel_id)
        forced = await agent.channels.request_close(channel_id)
        when = await _grace_text(agent, record)
    out.emit("summary", channelId=forced.channel_id, txHash=forced.tx_hash)
    out.result(
        f"close requested for {forced.channel_id} (tx {forced.tx_hash}); run "
        f"`mppagent channels withdraw {forced.channel_id}` {when}"
    )
    return 0


async def _withdraw(settings: Settings, out: Output, channel_id: str) -> int:
    async with agent_from(settings) as agent:
        record = agent.channels.get(channel_id)
        forced = await agent.channels.withdraw(channel_id)
        symbol = _symbols(settings, [record])[record.scope.token]
    out.emit(
        "summary",
        channelId=forced.channel_id,
        txHash=forced.tx_hash,
        refunded=forced.refunded,
    )
    out.result(f"withdrew {_amount(forced.refunded, symbol)} from {forced.channel_id}")
    return 0
