"""``mppagent channels list|show|close|request-close|withdraw|sync``."""

from __future__ import annotations

import argparse

from mppagent.cli.common import agent_from, settings_from
from mppagent.cli.output import Output, format_units
from mppagent.session.store import ChannelRecord

__all__ = ["run"]


def _row(record: ChannelRecord) -> dict[str, object]:
    return {
        "channelId": record.channel_id,
        "status": str(record.status),
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
    }


async def run(args: argparse.Namespace, out: Output) -> int:
    """Dispatch one channels action."""
    settings = settings_from(args)
    async with agent_from(settings) as agent:
        action = args.action
        if action == "list":
            records = agent.channels.list()
            for record in records:
                out.emit("channel", **_row(record))
            if not records:
                out.result("no channels")
            else:
                out.result(
                    f"{'channel':<14} {'status':<15} {'payee':<14} {'deposit':>12} "
                    f"{'signed':>12} {'spent':>12}"
                )
            for r in records:
                out.result(
                    f"{r.channel_id[:12]}.. {r.status!s:<15} {r.scope.payee[:12]}.. "
                    f"{format_units(r.deposit):>12} {format_units(r.signed):>12} "
                    f"{format_units(r.spent):>12}"
                )
            out.emit("summary", channels=len(records))
        elif action == "show":
            record = agent.channels.get(args.channel_id)
            out.emit("channel", **_row(record))
            for key, value in _row(record).items():
                out.result(f"{key:>10}: {value}")
        elif action == "sync":
            records = await agent.channels.sync()
            for record in records:
                out.emit("channel", **_row(record))
                deposit, settled = format_units(record.deposit), format_units(record.settled)
                out.result(
                    f"{record.channel_id}: {record.status} deposit {deposit} settled {settled}"
                )
            out.emit("summary", channels=len(records))
        elif action == "close":
            result = await agent.channels.close(args.channel_id)
            out.emit(
                "summary",
                channelId=result.channel_id,
                deposit=result.deposit,
                paid=result.paid,
                refunded=result.refunded,
                txHash=result.tx_hash,
            )
            paid, refunded = format_units(result.paid), format_units(result.refunded)
            out.result(
                f"closed {result.channel_id}: paid {paid}, refunded {refunded} of "
                f"{format_units(result.deposit)} (tx {result.tx_hash})"
            )
        elif action == "request-close":
            forced = await agent.channels.request_close(args.channel_id)
            out.emit("summary", channelId=forced.channel_id, txHash=forced.tx_hash)
            out.result(
                f"close requested for {forced.channel_id} (tx {forced.tx_hash}); "
                "withdraw after the grace period (about 16 minutes)"
            )
        elif action == "withdraw":
            forced = await agent.channels.withdraw(args.channel_id)
            out.emit(
                "summary",
                channelId=forced.channel_id,
                txHash=forced.tx_hash,
                refunded=forced.refunded,
            )
            out.result(f"withdrew {format_units(forced.refunded)} from {forced.channel_id}")
    return 0
