"""Run the reference server in its own process: ``python -m mppagent.devserver``.

The configuration comes as JSON in ``$MPPAGENT_DEVSERVER_CONFIG`` (a
:class:`DevServerConfig`; the environment keeps the payee key out of process
listings); ``--session-protocol v1|v2`` overrides its ``session_protocol``
(default v2). The server binds 127.0.0.1 on ``--port`` (0: any free port) and
prints ``listening <url>`` once it accepts connections. Benchmarks use this to
put client and server in separate processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from mppagent.devserver.config import DevServerConfig
from mppagent.devserver.server import RunningServer


def load_config(raw: str, session_protocol: str | None = None) -> DevServerConfig:
    """The configuration from its JSON, ``session_protocol`` (if given) overriding it."""
    config = DevServerConfig.model_validate_json(raw)
    if session_protocol is None:
        return config
    return DevServerConfig.model_validate(
        {**config.model_dump(), "session_protocol": session_protocol}
    )


async def _main(port: int, session_protocol: str | None) -> None:
    config = load_config(os.environ["MPPAGENT_DEVSERVER_CONFIG"], session_protocol)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with RunningServer(config, port=port) as server:
        print(f"listening {server.url}", flush=True)
        await stop.wait()


def main() -> None:
    """Parse ``--port`` (and ``--session-protocol``) and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m mppagent.devserver")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--session-protocol", choices=["v1", "v2"], default=None)
    args = parser.parse_args()
    asyncio.run(_main(args.port, args.session_protocol))


if __name__ == "__main__":
    main()
