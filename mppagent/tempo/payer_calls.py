"""What a payer's Tempo transaction may do, checked before a server broadcasts it.

An ``open`` or ``topUp`` credential may carry a ``0x76`` transaction with
several calls, and a server that broadcasts it -- or co-signs it as fee payer
-- answers for what it does. The reference SDK batches ``approve(escrow,
amount)`` on the channel's currency, then the escrow call. This module allows
exactly that shape (the approve optional, when the allowance already exists)
and nothing else: no further calls, no native value, no approve for another
spender, token or amount, no bytes after the escrow call's arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from mppagent.tempo.escrow import (
    EscrowCall,
    decode_payer_call,
    encode_approve,
    encode_open,
    encode_top_up,
)
from mppagent.tempo.hexutil import normalize_address
from mppagent.tempo.tempotx import Call
from mppagent.tempo.transactions import InvalidTransaction

__all__ = ["DisallowedCalls", "expect_payer_calls"]


class DisallowedCalls(InvalidTransaction):
    """A payer transaction whose calls are not exactly what the session protocol allows."""


def expect_payer_calls(
    calls: Sequence[Call],
    *,
    action: Literal["open", "topUp"],
    escrow: str,
    currency: str,
) -> EscrowCall:
    """Check ``calls`` is ``[approve(escrow, amount)]? + [escrow.action(...)]``; return the latter.

    The caller still checks the returned arguments against its own terms
    (payee, deposit limits, channel id) -- this function answers only "does
    the transaction do anything besides funding this escrow in this currency".
    """
    escrow = normalize_address(escrow, "escrow")
    currency = normalize_address(currency, "currency")
    if not 1 <= len(calls) <= 2:
        raise DisallowedCalls(f"a {action} transaction has 1 or 2 calls, not {len(calls)}")
    if any(call.value for call in calls):
        raise DisallowedCalls("a payer transaction must not move the native coin")
    last = calls[-1]
    decoded = decode_payer_call(last.data) if last.to == escrow else None
    if decoded is None or decoded.function != action:
        raise DisallowedCalls(f"the last call must be the escrow's {action}")
    if _canonical(decoded) != last.data:
        raise DisallowedCalls(f"the {action} call carries bytes beyond its arguments")
    if action == "open":
        if decoded.args["token"] != currency:
            raise DisallowedCalls("the open is for another token than the session's currency")
        amount = int(decoded.args["deposit"])
    else:
        amount = int(decoded.args["additionalDeposit"])
    if len(calls) == 2:
        first = calls[0]
        if first.to != currency or first.data != encode_approve(escrow, amount):
            raise DisallowedCalls(
                "the first call may only approve the escrow for exactly the amount, "
                "on the session's currency"
            )
    return decoded


def _canonical(call: EscrowCall) -> bytes:
    args = call.args
    if call.function == "open":
        return encode_open(
            str(args["payee"]),
            str(args["token"]),
            int(args["deposit"]),
            str(args["salt"]),
            str(args["authorizedSigner"]),
        )
    return encode_top_up(str(args["channelId"]), int(args["additionalDeposit"]))
