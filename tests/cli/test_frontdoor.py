"""The CLI as a new user meets it: commands that fit together, errors, exit codes, output.

Everything that depends on the process (exit codes, signals, pipes) runs the
real entry point as a subprocess, against the real chain and server.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import DevServerConfig, RunningServer
from mppagent.protocol import parse_challenges
from tests.cli.helpers import chat_args, cli, faulty_request, lines, local_chat_args, spawn
from tests.support import ServerFactory

pytestmark = pytest.mark.timeout(240)
PRICE = 25


async def _chat(base: str, env: dict[str, str], *extra: str) -> tuple[int, str, str]:
    return await cli(*chat_args(base, *extra), env=env)


# -- small things ----------------------------------------------------------------------------


async def test_no_arguments_prints_help_and_version_works() -> None:
    code, out, _ = await cli()
    assert code == 0
    assert "usage: mppagent" in out
    assert "COMMAND" in out
    code, out, _ = await cli("--version")
    assert code == 0
    assert out.startswith("mppagent ")


async def test_json_before_or_after_the_subcommand() -> None:
    code_after, after, _ = await cli("providers", "--json")
    code_before, before, _ = await cli("--json", "providers")
    assert code_after == code_before == 0
    assert lines(before) == lines(after)
    assert lines(before)[0]["type"] == "provider"


async def test_invalid_private_key_is_a_configuration_error(tmp_path: Path) -> None:
    bad = "0x" + "zz" * 32
    env = {"MPPAGENT_PRIVATE_KEY": bad, "MPPAGENT_CONFIG": str(tmp_path / "absent.toml")}
    code, _, err = await cli(
        "chat", "hi", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", env=env
    )
    assert code == 2
    assert "MPPAGENT_PRIVATE_KEY is not a private key" in err
    assert "[ConfigError, exit 2]" in err
    assert bad not in err
    code, out, _ = await cli(
        "chat", "hi", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--json", env=env
    )
    error = lines(out)[-1]
    assert (error["type"], error["code"], error["error"]) == ("error", "2", "ConfigError")


async def test_unreachable_endpoint_error_names_the_url(payer_env: dict[str, str]) -> None:
    code, _, err = await _chat("http://127.0.0.1:9/v1", payer_env)
    assert code == 6
    assert "cannot reach http://127.0.0.1:9/v1/chat/completions" in err


async def test_json_output_into_a_closed_pipe_exits_quietly(
    server: RunningServer, payer_env: dict[str, str]
) -> None:
    """``mppagent chat --json | head -1``: no BrokenPipeError traceback, exit 141."""
    process = await spawn(
        *chat_args(f"{server.url}/v1", "--max-tokens", "3000", "--json"), env=payer_env
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = await asyncio.wait_for(process.stdout.readline(), 120)
    assert json.loads(first)["type"] == "payment"
    # Close our end of the pipe, as `head -1` does after its line.
    transport = process._transport  # type: ignore[attr-defined]
    transport.get_pipe_transport(1).close()
    err = (await asyncio.wait_for(process.stderr.read(), 120)).decode()
    assert await process.wait() == 141, err
    assert "Traceback" not in err
    assert "BrokenPipe" not in err


# -- serve: the devnet environment, books that survive a restart, Ctrl-C, logs ----------------


def _devnet_env(chain: DevChain, payee: DevAccount, payer: DevAccount) -> dict[str, str]:
    """What `mppagent devnet` prints: the payer's variables plus the payee key."""
    return {**chain.env(payer), "MPPAGENT_PAYEE_KEY": payee.private_key}


async def _start_serve(env: dict[str, str], *args: str) -> tuple[Any, dict[str, Any]]:
    """``serve`` on the (plain EVM) devnet of ``env``: session v1, its escrow."""
    return await _start_serve_as(env, "--session-protocol", "v1", *args)


async def _start_serve_as(env: dict[str, str], *args: str) -> tuple[Any, dict[str, Any]]:
    process = await spawn("serve", "--port", "0", "--json", *args, env=env)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 120)
    if not line:
        assert process.stderr is not None
        raise AssertionError((await process.stderr.read()).decode())
    return process, json.loads(line)


async def _interrupt(process: Any, signum: int = signal.SIGINT) -> tuple[int, str]:
    process.send_signal(signum)
    code = await asyncio.wait_for(process.wait(), 60)
    err = (await process.stderr.read()).decode()
    return code, err


async def test_serve_uses_the_devnet_environment_and_keeps_its_books(
    chain: DevChain, payee: DevAccount, payer: DevAccount, tmp_path: Path
) -> None:
    env = _devnet_env(chain, payee, payer)
    env |= {
        "MPPAGENT_STORE": str(tmp_path / "client.db"),
        "MPPAGENT_CONFIG": str(tmp_path / "absent.toml"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    process, serving = await _start_serve(env)
    assert (serving["escrow"].lower(), serving["token"].lower()) == (
        chain.escrow.lower(),
        chain.token.lower(),
    )
    assert serving["rpcUrl"] == chain.rpc_url
    state = Path(serving["state"])
    assert state.parent == tmp_path / "state" / "mppagent"  # the platform state dir
    base = serving["baseUrl"]
    # The command `serve` suggests: the `local` profile brings its default model.
    code, out, err = await cli(*local_chat_args(base, "hi"), env=env)
    assert code == 0, err
    first = lines(out)[-1]
    assert first["type"] == "summary"
    code, err = await _interrupt(process)
    assert code == 130
    assert "Traceback" not in err
    assert "Unclosed" not in err
    requests = [r for r in lines(err) if r.get("event") == "request"]  # --json: JSON logs
    paid = [r for r in requests if (r["method"], r.get("status")) == ("POST", 200)]
    assert len(paid) == 1  # one line per request (vouchers come as HEAD requests) ...
    assert paid[0]["path"] == "/v1/chat/completions"
    assert paid[0]["units"] == int(first["tokens"])  # ... with the units it billed
    assert paid[0]["spent"] == first["channelSpent"]
    assert {r.get("status") for r in requests} == {200, 402}
    assert await asyncio.to_thread(state.exists)

    # Restarted on the same books, it honours the channel the client holds.
    process, serving = await _start_serve(env)
    try:
        code, out, err = await cli(*local_chat_args(serving["baseUrl"], "again"), env=env)
        assert code == 0, err
        second = lines(out)[-1]
        assert second["channelId"] == first["channelId"]
        kinds = [r["kind"] for r in lines(out) if r["type"] == "payment"]
        assert "reuse" in kinds
        assert "open" not in kinds
    finally:
        await _interrupt(process)


async def test_serve_state_in_memory_only_when_asked(
    chain: DevChain, payee: DevAccount, payer: DevAccount, tmp_path: Path
) -> None:
    env = _devnet_env(chain, payee, payer) | {"XDG_STATE_HOME": str(tmp_path / "state")}
    process, serving = await _start_serve(env, "--state", ":memory:", "--log-level", "warning")
    code, err = await _interrupt(process, signal.SIGTERM)  # as Ctrl-C: no traceback
    assert "Traceback" not in err
    assert serving["state"] == ":memory:"
    assert code == 130
    assert "request" not in err  # --log-level warning: quiet
    assert not await asyncio.to_thread((tmp_path / "state").exists)


async def test_serve_with_partial_chain_settings_says_what_is_missing(
    chain: DevChain, tmp_path: Path
) -> None:
    env = {
        "MPPAGENT_RPC_URL": chain.rpc_url,
        "MPPAGENT_ESCROW": chain.escrow,
        "MPPAGENT_TOKEN": "",
        "MPPAGENT_PAYEE_KEY": "",
        "MPPAGENT_CONFIG": str(tmp_path / "absent.toml"),
    }
    code, _, err = await cli("serve", "--port", "0", env=env)
    assert code == 2
    assert "MPPAGENT_TOKEN" in err
    assert "MPPAGENT_PAYEE_KEY" in err


async def test_serve_session_protocol_v2_by_default_and_only_where_a_reserve_is(
    chain: DevChain, tempo_chain: DevChain, payee: DevAccount, payer: DevAccount, tmp_path: Path
) -> None:
    """v2 is the default; on a chain without the reserve it is refused up front, not later."""
    env = _devnet_env(chain, payee, payer) | {"XDG_STATE_HOME": str(tmp_path / "state")}
    code, _, err = await cli("serve", "--port", "0", "--state", ":memory:", env=env)
    assert code == 2, err
    assert "reserve" in err
    code, _, err = await cli("serve", "--devnet", "--chain", "evm", "--port", "0", env=env)
    assert code == 2, err
    assert "--session-protocol v1" in err

    tempo_env = _devnet_env(tempo_chain, tempo_chain.accounts[0], tempo_chain.accounts[1])
    tempo_env |= {
        "MPPAGENT_STORE": str(tmp_path / "client.db"),
        "MPPAGENT_CONFIG": str(tmp_path / "absent.toml"),
    }
    process, serving = await _start_serve_as(tempo_env, "--state", ":memory:")
    try:
        assert serving["sessionProtocol"] == "v2"
        assert serving["escrow"] == "0x4d50500000000000000000000000000000000000"
        async with httpx.AsyncClient() as http:
            response = await http.head(serving["baseUrl"] + "/chat/completions")
        (challenge,) = parse_challenges(response.headers.get_list("www-authenticate"))
        assert challenge.request_data["methodDetails"]["sessionProtocol"] == "v2"
        # The README's three terminals, on the Tempo devnet: the CLI pays it over v2.
        code, out, err = await cli(*local_chat_args(serving["baseUrl"], "hi"), env=tempo_env)
        assert code == 0, err
        assert lines(out)[-1]["type"] == "summary"
    finally:
        await _interrupt(process)


async def test_busy_port_is_a_configuration_error(
    chain: DevChain, payee: DevAccount, payer: DevAccount
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = _devnet_env(chain, payee, payer)
        code, _, err = await cli(
            "serve", "--port", str(port), "--state", ":memory:", "--session-protocol", "v1", env=env
        )
    assert code == 2, err
    assert f"127.0.0.1:{port}" in err
    assert "already in use" in err


async def test_ctrl_c_on_demo_exits_cleanly() -> None:
    process = await spawn("demo", "--json", "--tokens", "100000", "--rate", "200")
    assert process.stdout is not None
    while True:  # wait until it is streaming
        record = json.loads(await asyncio.wait_for(process.stdout.readline(), 120))
        if record["type"] == "delta":
            break
    code, err = await _interrupt(process)
    assert code == 130, err
    assert "Traceback" not in err
    assert "Unclosed" not in err


# -- chat: what this request cost -----------------------------------------------------------


async def test_chat_reports_this_requests_cost_apart_from_the_channel_total(
    server: RunningServer, payer_env: dict[str, str]
) -> None:
    base = f"{server.url}/v1"
    code, out, err = await _chat(base, payer_env, "--max-tokens", "30", "--json")
    assert code == 0, err
    first = lines(out)[-1]
    assert (first["tokens"], first["cost"], first["channelSpent"]) == ("30", "750", "750")
    code, out, err = await _chat(base, payer_env, "--max-tokens", "20", "--json")
    assert code == 0, err
    second = lines(out)[-1]
    assert second["channelId"] == first["channelId"]
    assert (second["tokens"], second["cost"]) == ("20", str(20 * PRICE))
    assert second["channelSpent"] == str(50 * PRICE)
    # Not streamed: the tokens are reported, and the cost is this request's alone.
    code, out, err = await _chat(base, payer_env, "--max-tokens", "10", "--no-stream", "--json")
    assert code == 0, err
    third = lines(out)[-1]
    assert (third["tokens"], third["cost"]) == ("10", str(10 * PRICE))
    assert third["channelSpent"] == str(60 * PRICE)
    # The human status line says the same.
    code, _, err = await _chat(base, payer_env, "--max-tokens", "12")
    assert code == 0, err
    assert f"this request {12 * PRICE / 1e6:.6f} tUSD" in err
    assert f"channel spent {72 * PRICE / 1e6:.6f} tUSD" in err


# -- channels ---------------------------------------------------------------------------------


async def test_channels_without_a_key_by_prefix_with_symbols(
    server: RunningServer, payer_env: dict[str, str]
) -> None:
    code, _, err = await _chat(f"{server.url}/v1", payer_env, "--max-tokens", "8")
    assert code == 0, err
    keyless = {**payer_env, "MPPAGENT_PRIVATE_KEY": ""}
    code, out, err = await cli("channels", "list", "--json", env=keyless)
    assert code == 0, err
    (channel,) = [r for r in lines(out) if r["type"] == "channel"]
    full = channel["channelId"]
    assert len(full) == 66
    assert channel["spent"] == str(8 * PRICE)  # base units in JSON
    code, out, _ = await cli("channels", "list", env=keyless)
    assert code == 0
    assert full[:10] in out
    assert full not in out  # a short id in the table
    assert "0.000200 tUSD" in out  # token units with the symbol
    assert "1.000000 tUSD" in out
    code, out, err = await cli("channels", "show", full[2:12], env=keyless)
    assert code == 0, err
    assert full in out  # the full id in show
    assert "spent: 0.000200 tUSD" in out
    assert "deposit: 1.000000 tUSD" in out
    code, _, err = await cli("channels", "show", "0xffffffff", env=keyless)
    assert code == 2
    assert "no channel in the store matches '0xffffffff'" in err


async def test_channels_sync_prints_what_it_reconciled(
    server: RunningServer, payer_env: dict[str, str]
) -> None:
    code, _, err = await _chat(f"{server.url}/v1", payer_env, "--max-tokens", "5")
    assert code == 0, err
    code, out, err = await cli("channels", "sync", env=payer_env)
    assert code == 0, err
    assert "matches the chain, unchanged" in out
    assert "deposit 1.000000 tUSD" in out


async def test_show_gives_the_evidence_of_a_suspect_channel(
    server: RunningServer, payer_env: dict[str, str]
) -> None:
    code, _, err = await faulty_request(server.url, "wrong-challenge", payer_env)
    assert code == 4, err
    code, out, _ = await cli("channels", "list", "--json", env=payer_env)
    (channel,) = [r for r in lines(out) if r["type"] == "channel"]
    assert channel["status"] == "suspect"
    assert channel["evidence"]["check"] == "receipt_challenge"
    code, out, err = await cli("channels", "show", channel["channelId"][:12], env=payer_env)
    assert code == 0, err
    assert "evidence" in out
    assert "receipt_challenge" in out
    assert f"{server.url}/v1/chat/completions" in out


async def test_close_with_the_server_gone_explains_the_way_out(
    start_server: ServerFactory, payer_env: dict[str, str]
) -> None:
    server = await start_server()
    code, out, err = await _chat(f"{server.url}/v1", payer_env, "--max-tokens", "5", "--json")
    assert code == 0, err
    channel = lines(out)[-1]["channelId"]
    await server.stop()
    code, _, err = await cli("channels", "close", channel[:12], env=payer_env)
    assert code == 6, err
    assert f"cannot reach the server at {server.url}" in err
    assert f"mppagent channels request-close {channel}" in err
    assert f"mppagent channels withdraw {channel}" in err
    assert "16 min (the escrow's 15 min grace period plus a 1 min margin)" in err


async def test_request_close_says_when_to_withdraw(
    server: RunningServer, payer_env: dict[str, str]
) -> None:
    code, out, err = await _chat(f"{server.url}/v1", payer_env, "--max-tokens", "5", "--json")
    assert code == 0, err
    channel = lines(out)[-1]["channelId"]
    code, out, err = await cli("channels", "request-close", channel, env=payer_env)
    assert code == 0, err
    assert f"mppagent channels withdraw {channel}` after 16 min" in out
    code, _, err = await cli("channels", "withdraw", channel, env=payer_env)
    assert code == 7
    assert "can be withdrawn in" in err


# -- client and server on different chains ---------------------------------------------------


@pytest.mark.parametrize("chain_id", [31338, 31337])
async def test_client_and_server_on_different_chains(
    chain: DevChain, payer_env: dict[str, str], tmp_path: Path, chain_id: int
) -> None:
    """The error says the chains differ (by id, or by the escrow missing), not allowed_escrows."""
    other = await DevChain.start(accounts=1, chain_id=chain_id)
    try:
        config = DevServerConfig(
            rpc_url=other.rpc_url,
            escrow=other.escrow,
            token=other.token,
            payee_private_key=other.accounts[0].private_key,
            state_path=":memory:",
            session_protocol="v1",  # a plain EVM devchain: no v2 reserve
        )
        async with RunningServer(config) as server:
            code, _, err = await _chat(f"{server.url}/v1", payer_env, "--max-tokens", "5")
    finally:
        await other.stop()
    assert code == 2, err
    assert "allowed_escrows" not in err
    assert chain.rpc_url in err
    if chain_id != chain.chain_id:  # both chain ids named
        assert f"payment on chain {chain_id}" in err
        assert f"serves chain {chain.chain_id}" in err
    else:  # same id, another chain: the escrow the server names is not on ours
        assert f"escrow {other.escrow.lower()} has no code" in err.lower()
        assert "another chain" in err


async def test_serve_on_a_private_devnet_and_the_chat_it_suggests(tmp_path: Path) -> None:
    process, serving = await _start_serve({"MPPAGENT_ESCROW": "", "MPPAGENT_TOKEN": ""}, "--devnet")
    try:
        wallet = serving["wallet"]
        assert set(wallet) >= {"MPPAGENT_PRIVATE_KEY", "MPPAGENT_RPC_URL"}
        assert "mppagent-serve-" in serving["state"]  # dies with its chain: a temporary file
        env = wallet | {
            "MPPAGENT_STORE": str(tmp_path / "client.db"),
            "MPPAGENT_CONFIG": str(tmp_path / "absent.toml"),
        }
        code, out, err = await cli(*local_chat_args(serving["baseUrl"], "Hello"), env=env)
        assert code == 0, err
        assert int(lines(out)[-1]["tokens"]) > 0
    finally:
        code, err = await _interrupt(process)
    assert code == 130, err
    assert "Traceback" not in err
