"""Opening a channel on the Tempo devchain: one 0x76 approve+open vs two EIP-1559 transactions.

Starts ``anvil --network tempo --hardfork T4`` with our escrow (pathUSD as the currency and
fee token) and, in one run, opens ``--n`` channels each way, alternating, from two funded
accounts:

* **tempo** -- ``Escrow.sign_open_tempo``: one Tempo transaction batching ``approve`` and
  ``open`` (gas from simulating the calls, expiring nonce), sent, receipt awaited;
* **eip1559** -- ``Token.sign_approve`` sent and awaited, then ``Escrow.sign_open`` sent and
  awaited (each gas-estimated with ``eth_estimateGas``).

Latency is wall time from the first signature to the last receipt (``time.perf_counter``);
gas is the receipts' ``gasUsed``; the fee is what the payer's pathUSD balance lost beyond the
deposit. Every open is checked on chain (the channel's deposit), so a fast failure cannot
pass as a result.

Usage::

    .venv/bin/python benchmarks/tempo_open.py [--n 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from mppagent.devchain import DevAccount, DevChain
from mppagent.tempo.chain import ChainClient
from mppagent.tempo.channel_id import compute_channel_id, random_salt
from mppagent.tempo.escrow import Escrow, Token
from mppagent.tempo.hexutil import ZERO_ADDRESS
from mppagent.tempo.tempo_chain import send_tempo

DEPOSIT = 1_000_000


@dataclass
class Open:
    path: str
    seconds: float
    gas: int
    fee: int
    transactions: int


async def _check(
    escrow: Escrow, chain: DevChain, payer: DevAccount, payee: DevAccount, salt: str
) -> None:
    channel_id = compute_channel_id(
        payer.address, payee.address, chain.token, salt, ZERO_ADDRESS, chain.escrow, chain.chain_id
    )
    if (await escrow.get_channel(channel_id)).deposit != DEPOSIT:
        raise RuntimeError("channel was not opened with the deposit")


async def measure(
    chain: DevChain,
    client: ChainClient,
    payer: DevAccount,
    payee: DevAccount,
    batched: bool,
) -> Open:
    """Open one channel one way; time it, add up its gas, and work out its fee."""
    escrow, token = Escrow(client, chain.escrow), Token(client, chain.token)
    before = await token.balance_of(payer.address)
    salt = random_salt()
    args: dict[str, Any] = {
        "payee": payee.address,
        "token": chain.token,
        "deposit": DEPOSIT,
        "salt": salt,
    }
    start = time.perf_counter()
    if batched:
        tx = await escrow.sign_open_tempo(payer.wallet(), **args)
        receipts = [await send_tempo(client, tx, context="open")]
    else:
        approve = await token.sign_approve(payer.wallet(), chain.escrow, DEPOSIT)
        receipts = [await client.send_and_wait(approve, context="approve")]
        opened = await escrow.sign_open(payer.wallet(), **args)
        receipts.append(await client.send_and_wait(opened, context="open"))
    seconds = time.perf_counter() - start
    await _check(escrow, chain, payer, payee, salt)
    fee = before - await token.balance_of(payer.address) - DEPOSIT
    gas = sum(int(r["gasUsed"]) for r in receipts)
    path = "tempo 0x76 approve+open" if batched else "eip1559 approve, open"
    return Open(path, seconds, gas, fee, len(receipts))


def summarize(opens: list[Open]) -> dict[str, Any]:
    seconds = [o.seconds * 1000 for o in opens]
    return {
        "path": opens[0].path,
        "n": len(opens),
        "transactions": opens[0].transactions,
        "latency_ms_mean": round(statistics.mean(seconds), 1),
        "latency_ms_p50": round(statistics.median(seconds), 1),
        "latency_ms_max": round(max(seconds), 1),
        "gas_mean": round(statistics.mean(o.gas for o in opens)),
        "fee_mean_base_units": round(statistics.mean(o.fee for o in opens)),
    }


async def main(n: int) -> dict[str, Any]:
    chain = await DevChain.start(accounts=3, network="tempo")
    client = chain.client()
    try:
        payee, tempo_payer, legacy_payer = chain.accounts
        # One warm-up each (first-use storage of a fresh account is dearer), not counted.
        await measure(chain, client, tempo_payer, payee, batched=True)
        await measure(chain, client, legacy_payer, payee, batched=False)
        tempo: list[Open] = []
        legacy: list[Open] = []
        for _ in range(n):
            tempo.append(await measure(chain, client, tempo_payer, payee, batched=True))
            legacy.append(await measure(chain, client, legacy_payer, payee, batched=False))
    finally:
        await client.close()
        await chain.stop()
    a, b = summarize(tempo), summarize(legacy)
    return {
        "results": [a, b],
        "runs": {"tempo": [asdict(o) for o in tempo], "eip1559": [asdict(o) for o in legacy]},
        "ratios_eip1559_over_tempo": {
            "latency_mean": round(b["latency_ms_mean"] / a["latency_ms_mean"], 2),
            "gas": round(b["gas_mean"] / a["gas_mean"], 2),
            "fee": round(b["fee_mean_base_units"] / a["fee_mean_base_units"], 2),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="opens per path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = asyncio.run(main(args.n))
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{'path':<26} {'tx':>2} {'n':>3} {'mean ms':>8} {'p50 ms':>7} {'max ms':>7} "
            f"{'gas':>10} {'fee (pathUSD base units)':>25}"
        )
        for row in report["results"]:
            print(
                f"{row['path']:<26} {row['transactions']:>2} {row['n']:>3} "
                f"{row['latency_ms_mean']:>8} {row['latency_ms_p50']:>7} "
                f"{row['latency_ms_max']:>7} {row['gas_mean']:>10} "
                f"{row['fee_mean_base_units']:>25}"
            )
        ratios = report["ratios_eip1559_over_tempo"]
        print(
            f"eip1559 / tempo: latency {ratios['latency_mean']}x, gas {ratios['gas']}x, "
            f"fee {ratios['fee']}x"
        )
