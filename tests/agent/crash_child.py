"""A paying agent run as a separate process by the crash tests (killed on purpose).

Usage: python crash_child.py RPC_URL RESOURCE_URL STORE_PATH TOKENS LOOPS [close]
The private key comes from the environment (CRASH_CHILD_KEY), never from argv.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mppagent import Agent, SpendPolicy, SqliteChannelStore


async def main() -> None:
    rpc_url, url, store_path, tokens, loops = sys.argv[1:6]
    close = sys.argv[6:] == ["close"]
    body = {
        "model": "mpp-fake-1",
        "messages": [{"role": "user", "content": "crash me"}],
        "stream": True,
        "max_tokens": int(tokens),
    }
    async with Agent(
        private_key=os.environ["CRASH_CHILD_KEY"],
        rpc_url=rpc_url,
        store=SqliteChannelStore(store_path),
        policy=SpendPolicy(max_deposit=10_000_000),
    ) as agent:
        for _ in range(int(loops)):
            async for _event in agent.stream("POST", url, json=body):
                pass
        if close:
            for record in agent.channels.list(include_closed=False):
                await agent.channels.close(record.channel_id)
    print("done", flush=True)


asyncio.run(main())
