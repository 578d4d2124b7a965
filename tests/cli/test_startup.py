"""Start-up: commands that touch no chain or network load none of the heavy stack.

Timing itself is measured by ``benchmarks/startup.py`` (ratios against a bare
interpreter); these tests pin the cause of a slow start -- which modules a
command imports -- because that is deterministic on a busy machine. A paid
``chat`` on an open channel (the common case) loads HTTP but not the chain stack
(web3, eth-account and what they pull in take seconds): only opening, topping
up, reconciling or closing a channel does.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from mppagent.cli import build_parser
from mppagent.devserver import RunningServer
from mppagent.session.store import SqliteChannelStore
from tests.cli.helpers import ROOT, chat_args

HEAVY = ("web3", "httpx", "pydantic", "eth_account", "structlog", "rich", "asyncio", "uvicorn")
CHAIN_STACK = (
    "web3",
    "eth_account",
    "eth_keyfile",
    "py_ecc",
    "aiohttp",
    "eth_abi",
    "eth_utils",
    "eth_typing",
    "rlp",
)
"""Top-level packages that only touching the chain may import."""

PROBE = """
import sys
from mppagent.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("LOADED=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


async def _loaded(
    *args: str, env: dict[str, str], watch: tuple[str, ...] = HEAVY
) -> tuple[int, list[str], str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE.format(heavy=watch),
        *args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    text = err.decode()
    marker = text.rsplit("LOADED=", 1)[1].strip()
    return process.returncode or 0, [m for m in marker.split(",") if m], text


async def test_importing_the_cli_loads_no_web3() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys, mppagent.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY!r}))",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert out.decode().strip() == "[]"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--help",), 0),
        (("--version",), 0),
        ((), 0),
        (("providers",), 0),
        (("providers", "--json"), 0),
        (("chat", "--no-such-flag"), 2),
        (("chat", "hi", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"), 2),  # no key
        (("chat", "hi", "--provider", "nope"), 2),
        (("channels", "list"), 0),
        (("channels", "show", "0xdeadbeef"), 2),
    ],
)
async def test_fast_commands_import_nothing_heavy(
    args: tuple[str, ...], code: int, tmp_path: Path
) -> None:
    env = {
        "MPPAGENT_CONFIG": str(tmp_path / "absent.toml"),
        "MPPAGENT_STORE": str(tmp_path / "store.db"),
        "MPPAGENT_PRIVATE_KEY": "",
        "MPPAGENT_RPC_URL": "",
    }
    returned, loaded, err = await _loaded(*args, env=env)
    assert returned == code, err
    assert loaded == [], f"{args} imported {loaded}"


async def test_a_paying_command_does_load_the_stack(tmp_path: Path) -> None:
    """The probe can fail: a command that reaches the network imports httpx."""
    env = {
        "MPPAGENT_CONFIG": str(tmp_path / "absent.toml"),
        "MPPAGENT_STORE": str(tmp_path / "store.db"),
        "MPPAGENT_PRIVATE_KEY": "0x" + "11" * 32,
        "MPPAGENT_RPC_URL": "http://127.0.0.1:9",
    }
    args = ("chat", "hi", "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    returned, loaded, _ = await _loaded(*args, env=env)
    assert returned in (6, 7)
    assert "httpx" in loaded


async def test_an_agent_loads_no_chain_stack() -> None:
    """Importing the agent and building one (wallet, chain client, store) touches no chain."""
    code = (
        "import sys\n"
        "from mppagent.agent import Agent\n"
        "from mppagent.session.store import MemoryChannelStore\n"
        f"agent = Agent(private_key='0x{'11' * 32}', rpc_url='http://127.0.0.1:9',"
        " store=MemoryChannelStore())\n"
        "assert agent.wallet.address\n"
        f"print(sorted(m for m in {CHAIN_STACK!r} if m in sys.modules))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    assert out.decode().strip() == "[]"


@pytest.mark.timeout(180)
async def test_a_warm_paid_chat_loads_no_chain_stack(
    server: RunningServer, payer_env: dict[str, str], tmp_path: Path
) -> None:
    """Leasing the open channel, signing vouchers and streaming need neither web3 nor eth-account.

    The first chat opens the channel (a signed transaction: the stack loads, which
    shows the probe can fail); the second reuses it and must not load any of it.
    """
    base = f"{server.url}/v1"
    code, opening, err = await _loaded(*chat_args(base), env=payer_env, watch=CHAIN_STACK)
    assert code == 0, err
    assert {"web3", "eth_account"} <= set(opening)
    code, reusing, err = await _loaded(*chat_args(base), env=payer_env, watch=CHAIN_STACK)
    assert code == 0, err
    store = SqliteChannelStore(tmp_path / "cli.db")
    try:
        assert len(store.channels()) == 1  # the second chat did reuse the channel
    finally:
        store.close()
    assert reusing == [], f"a warm paid chat imported {reusing}"


def test_every_option_has_help() -> None:
    missing: list[str] = []

    def walk(parser: object, path: str) -> None:
        import argparse

        assert isinstance(parser, argparse.ArgumentParser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path}: {action.option_strings or action.dest}")

    walk(build_parser(), "mppagent")
    assert missing == []


def test_a_plain_http_chat_loads_no_ca_bundle_and_could_not_skip_tls_checks() -> None:
    """``chat`` to an http URL builds its transport without the CA bundle (start-up time)."""
    import ssl

    from mppagent.cli.common import _transport_for

    assert _transport_for(None) is None
    assert _transport_for("https://api.example/v1/chat/completions") is None
    transport = _transport_for("http://127.0.0.1:8402/v1/chat/completions")
    assert transport is not None
    context = transport._pool._ssl_context  # type: ignore[attr-defined]
    assert isinstance(context, ssl.SSLContext)
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing loaded ...
    assert context.verify_mode == ssl.CERT_REQUIRED  # ... so no TLS peer could pass
    assert context.check_hostname
