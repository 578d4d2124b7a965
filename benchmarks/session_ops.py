"""Open, top-up and close on the Tempo devchain: session v1 (escrow) against v2 (reserve).

Starts ``anvil --network tempo --hardfork T4`` with the v1 ``TempoStreamChannel`` escrow and
the local TIP-1034 reserve (behind the devchain's JSON-RPC front) and, in one run, takes
``--n`` channels through their life each way, alternating v1 and v2:

* **open** -- what the agent signs (``V1Backend``: one ``0x76`` batching ``approve`` and
  ``open``; ``V2Backend``: one ``0x76`` with ``open`` alone, the reserve needs no approval),
  sent and its receipt awaited, as a server broadcasting the credential would;
* **top-up** -- the agent's top-up transaction (v1: ``approve`` + ``topUp``; v2:
  ``topUp(descriptor, amount)``), sent and awaited;
* **close** -- the payee's cooperative close with the payer's final voucher, one ``0x76``
  calling the contract's ``close`` (v1: ``close(channelId, cumulative, signature)``; v2:
  ``close(descriptor, cumulative, capture, signature)``).

Latency is wall time from the first signature to the receipt (``time.perf_counter``), gas
the receipt's ``gasUsed``, the fee what the sender's pathUSD balance lost beyond the money
moved. Every step is checked on chain (deposit after open and top-up; the close's payout
and refund), so a fast failure cannot pass as a result.

Usage::

    .venv/bin/python benchmarks/session_ops.py [--n 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from mppagent.devchain import DevAccount, DevChain
from mppagent.tempo.backend import ChannelTerms, SessionBackend
from mppagent.tempo.chain import ChainClient, SignedTransaction
from mppagent.tempo.channel_id import random_salt
from mppagent.tempo.escrow import Token
from mppagent.tempo.escrow import encode_close as encode_v1_close
from mppagent.tempo.hexutil import ZERO_ADDRESS
from mppagent.tempo.tempo_chain import OutgoingTempoTransaction, send_tempo, sign_calls
from mppagent.tempo.tempotx import Call
from mppagent.tempo.v1 import V1Backend
from mppagent.tempo.v2 import RESERVE_ADDRESS
from mppagent.tempo.v2.backend import V2Backend, descriptor_of
from mppagent.tempo.v2.calls import encode_close
from mppagent.tempo.voucher import VoucherSigner

DEPOSIT = 1_000_000
TOP_UP = 500_000
PAID = 700_000  # the final voucher; the close pays this and refunds the rest
OPS = ("open", "topUp", "close")


@dataclass
class Step:
    protocol: str
    op: str
    seconds: float
    gas: int
    fee: int


async def _no_prior(kind: str, tx: SignedTransaction) -> None:
    del tx
    raise RuntimeError(f"a Tempo-chain {kind} should need no separate transaction")


async def _send(client: ChainClient, tx: SignedTransaction) -> dict[str, Any]:
    if not isinstance(tx, OutgoingTempoTransaction):
        raise RuntimeError("expected a Tempo transaction")
    return await send_tempo(client, tx)


async def life(
    chain: DevChain,
    client: ChainClient,
    backend: SessionBackend,
    payer: DevAccount,
    payee: DevAccount,
) -> list[Step]:
    """Open, top up and close one channel; one :class:`Step` per operation."""
    protocol = backend.protocol
    escrow = RESERVE_ADDRESS if protocol == "v2" else chain.escrow
    token = Token(client, chain.token)
    terms = ChannelTerms(
        payer=payer.address.lower(),
        payee=payee.address.lower(),
        token=chain.token,
        escrow=escrow,
        chain_id=chain.chain_id,
        salt=random_salt(),
        authorized_signer=ZERO_ADDRESS,
    )
    steps: list[Step] = []

    async def timed(op: str, who: DevAccount, moved: int, sign: Any) -> dict[str, Any]:
        before = await token.balance_of(who.address)
        start = time.perf_counter()
        receipt = await _send(client, await sign())
        seconds = time.perf_counter() - start
        fee = before - await token.balance_of(who.address) - moved
        steps.append(Step(protocol, op, seconds, int(receipt["gasUsed"]), fee))
        return receipt

    new: list[Any] = []

    async def sign_open() -> SignedTransaction:
        made = await backend.new_channel(payer.wallet(), terms, DEPOSIT)
        new.append(made)
        if made.plan is not None:
            return made.plan.main
        return (await backend.plan_open(payer.wallet(), terms, DEPOSIT, _no_prior)).main

    await timed("open", payer, DEPOSIT, sign_open)
    channel_id = new[0].channel_id
    terms = replace(terms, descriptor=new[0].descriptor)
    if (await backend.read_channel(terms, channel_id)).deposit != DEPOSIT:
        raise RuntimeError(f"{protocol}: the open did not fund the channel")

    async def sign_top_up() -> SignedTransaction:
        plan = await backend.plan_top_up(payer.wallet(), terms, channel_id, TOP_UP, _no_prior)
        return plan.main

    await timed("topUp", payer, TOP_UP, sign_top_up)
    if (await backend.read_channel(terms, channel_id)).deposit != DEPOSIT + TOP_UP:
        raise RuntimeError(f"{protocol}: the top-up did not add its deposit")

    voucher = backend.sign_voucher(
        VoucherSigner(payer.private_key), channel_id, PAID, escrow, chain.chain_id
    )
    if protocol == "v2":
        data = encode_close(descriptor_of(terms), PAID, PAID, voucher)
    else:
        data = encode_v1_close(channel_id, PAID, voucher)

    async def sign_close() -> SignedTransaction:
        return await sign_calls(client, payee.wallet(), [Call(escrow, data)], fee_token=chain.token)

    receipt = await timed("close", payee, -PAID, sign_close)
    closed = backend.closed_amounts(escrow, channel_id, receipt)
    if closed is None or (closed.paid, closed.refunded) != (PAID, DEPOSIT + TOP_UP - PAID):
        raise RuntimeError(f"{protocol}: the close did not pay {PAID} and refund the rest")
    return steps


def summarize(steps: list[Step]) -> dict[str, Any]:
    ms = [s.seconds * 1000 for s in steps]
    return {
        "protocol": steps[0].protocol,
        "op": steps[0].op,
        "n": len(steps),
        "latency_ms_mean": round(statistics.mean(ms), 1),
        "latency_ms_p50": round(statistics.median(ms), 1),
        "gas_mean": round(statistics.mean(s.gas for s in steps)),
        "fee_mean_base_units": round(statistics.mean(s.fee for s in steps)),
    }


async def main(n: int) -> dict[str, Any]:
    chain = await DevChain.start(accounts=4, network="tempo")
    client = chain.client()
    try:
        payee, v1_payer, v2_payer = chain.accounts[:3]
        backends: list[tuple[SessionBackend, DevAccount]] = [
            (V1Backend(client, tempo=True), v1_payer),
            (V2Backend(client), v2_payer),
        ]
        for backend, payer in backends:  # warm-up: first use of fresh storage is dearer
            await life(chain, client, backend, payer, payee)
        steps: list[Step] = []
        for _ in range(n):
            for backend, payer in backends:
                steps.extend(await life(chain, client, backend, payer, payee))
    finally:
        await client.close()
        await chain.stop()
    rows = [
        summarize([s for s in steps if (s.protocol, s.op) == (protocol, op)])
        for op in OPS
        for protocol in ("v1", "v2")
    ]
    by = {(r["protocol"], r["op"]): r for r in rows}
    ratios = {
        op: {
            "latency": round(by["v1", op]["latency_ms_mean"] / by["v2", op]["latency_ms_mean"], 2),
            "gas": round(by["v1", op]["gas_mean"] / by["v2", op]["gas_mean"], 2),
        }
        for op in OPS
    }
    return {"results": rows, "ratios_v1_over_v2": ratios, "runs": [asdict(s) for s in steps]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="channel lives per protocol")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = asyncio.run(main(args.n))
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{'op':<6} {'proto':<5} {'n':>3} {'mean ms':>8} {'p50 ms':>7} {'gas':>10} {'fee':>7}"
        )
        for row in report["results"]:
            print(
                f"{row['op']:<6} {row['protocol']:<5} {row['n']:>3} {row['latency_ms_mean']:>8} "
                f"{row['latency_ms_p50']:>7} {row['gas_mean']:>10} {row['fee_mean_base_units']:>7}"
            )
        for op, ratio in report["ratios_v1_over_v2"].items():
            print(f"v1 / v2 {op}: latency {ratio['latency']}x, gas {ratio['gas']}x")
