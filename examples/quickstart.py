"""A paying agent in a few lines, against a local chain and the reference server.

Run it with ``.venv/bin/python examples/quickstart.py`` after ``scripts/setup``.
Against a real provider you would keep only the ``Agent`` part, with your own
key, RPC URL and policy.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from mppagent import Agent, SpendPolicy, SqliteChannelStore
from mppagent.devchain import DevChain
from mppagent.devserver import DevServerConfig, RunningServer


async def main() -> None:
    # The counterparty: anvil with the escrow deployed, and the reference MPP server.
    chain = await DevChain.start(accounts=2)
    payee, payer = chain.accounts
    config = DevServerConfig(
        rpc_url=chain.rpc_url,
        escrow=chain.escrow,
        token=chain.token,
        payee_private_key=payee.private_key,
        session_protocol="v1",  # a plain anvil chain has the v1 escrow, not the v2 reserve
    )
    with tempfile.TemporaryDirectory() as tmp:
        async with RunningServer(config) as server:
            url = f"{server.url}/v1/chat/completions"

            # The agent: pays at most 50 base units per token, locks at most 2 tokens
            # (2_000_000 base units) per channel, and spends at most 0.05 per request.
            policy = SpendPolicy(
                max_price={"llm_token": 50},
                max_deposit=2_000_000,
                budget_per_request=50_000,
            )
            async with Agent(
                private_key=payer.private_key,
                rpc_url=chain.rpc_url,
                policy=policy,
                store=SqliteChannelStore(Path(tmp) / "channels.db"),
            ) as agent:
                body = {
                    "model": "mpp-fake-1",
                    "messages": [{"role": "user", "content": "Say something."}],
                    "stream": True,
                    "max_tokens": 120,
                }
                chunks = 0
                async for _event in agent.stream("POST", url, json=body):
                    chunks += 1  # OpenAI chunks; payment events never show up here
                (channel,) = agent.channels.list()
                print(f"{chunks} events, spent {channel.spent} base units")
                result = await agent.channels.close(channel.channel_id)
                print(f"closed: paid {result.paid}, refunded {result.refunded}")
    await chain.stop()


if __name__ == "__main__":
    asyncio.run(main())
