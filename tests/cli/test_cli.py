"""The ``mppagent`` command line, run as a real process against the real chain and server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mppagent.cli.output import exit_code_for, format_units
from mppagent.devchain import DevAccount
from mppagent.devserver import RunningServer
from mppagent.errors import ChainError, ConfigError, PolicyViolation, ServerMisbehaviour
from mppagent.protocol import VerificationFailedProblem
from tests.cli.helpers import ENTRY, ROOT, chat_args, cli, faulty_request, lines
from tests.support import ServerFactory

pytestmark = pytest.mark.timeout(180)


async def test_help_and_usage_errors() -> None:
    code, out, _ = await cli("--help")
    assert code == 0
    assert "demo" in out
    assert "channels" in out
    code, _, err = await cli("chat", "--no-such-flag")
    assert code == 2
    assert "unrecognized arguments" in err


@pytest.mark.parametrize(("chain", "protocol"), [("tempo", "v2"), ("tempo", "v1"), ("evm", "v1")])
async def test_demo_json_settles_exactly(chain: str, protocol: str) -> None:
    """Tempo and session v2 are the default: pathUSD, fees in pathUSD on top; v1 on
    request; plain EVM (v1 only): to the base unit."""
    args = ("--chain", chain) if chain == "evm" else ()
    if (chain, protocol) == ("tempo", "v1"):
        args = ("--session-protocol", "v1")
    code, out, err = await cli("demo", "--json", "--tokens", "120", "--rate", "0", *args)
    assert code == 0, err
    records = lines(out)
    (setup,) = [r for r in records if r["type"] == "setup"]
    assert setup["sessionProtocol"] == protocol
    summary = records[-1]
    assert summary["type"] == "summary"
    assert summary["tokens"] == "120"
    assert summary["paid"] == str(120 * 25)
    assert int(summary["refunded"]) == int(summary["deposit"]) - 120 * 25
    payer_delta = int(summary["payerBalanceBefore"]) - int(summary["payerBalanceAfter"])
    payee_delta = int(summary["payeeBalanceAfter"]) - int(summary["payeeBalanceBefore"])
    fees = int(summary["payerFees"]), int(summary["payeeFees"])
    assert (payer_delta, payee_delta) == (120 * 25 + fees[0], 120 * 25 - fees[1])
    if chain == "tempo":
        assert summary["unit"] == "pathUSD"
        assert fees[0] > 0  # the 0x76 open paid its fee in pathUSD
    else:
        assert (summary["unit"], fees) == ("tUSD", (0, 0))
    kinds = [r["kind"] for r in records if r["type"] == "payment"]
    assert kinds[:3] == ["challenge", "open", "receipt"]
    assert "final_receipt" in kinds


async def test_demo_refuses_v2_on_plain_anvil_before_starting_anything() -> None:
    code, out, err = await cli("demo", "--chain", "evm", "--session-protocol", "v2")
    assert code == 2
    assert "v2 needs the Tempo chain" in err
    assert out == ""


async def test_chat_streams_and_reports_json(
    server: RunningServer, payer_env: dict[str, str]
) -> None:
    base = f"{server.url}/v1"
    code, out, err = await cli(
        "chat",
        "Hello there",
        "--base-url",
        base,
        "--model",
        "mpp-fake-thinking",
        "--max-tokens",
        "60",
        env=payer_env,
    )
    assert code == 0, err
    assert len(out.split()) > 10  # the answer went to stdout
    assert "[reasoning]" in err  # reasoning shown apart, on stderr
    code, out, err = await cli(
        "chat",
        "Hello there",
        "--base-url",
        base,
        "--model",
        "mpp-fake-1",
        "--max-tokens",
        "40",
        "--json",
        env=payer_env,
    )
    assert code == 0, err
    records = lines(out)
    deltas = [r for r in records if r["type"] == "delta"]
    assert len(deltas) == 40
    summary = records[-1]
    assert summary["type"] == "summary"
    assert summary["tokens"] == "40"


async def test_prompt_from_stdin(server: RunningServer, payer_env: dict[str, str]) -> None:
    code, out, err = await cli(
        "chat",
        "--base-url",
        f"{server.url}/v1",
        "--model",
        "mpp-fake-1",
        "--max-tokens",
        "5",
        env=payer_env,
        stdin=b"from stdin",
    )
    assert code == 0, err
    assert out.strip()


async def test_policy_refusal_exit_3(server: RunningServer, payer_env: dict[str, str]) -> None:
    env = {**payer_env, "MPPAGENT_POLICY": json.dumps({"max_price": {"llm_token": 1}})}
    code, out, _ = await cli(
        "chat", "hi", "--base-url", f"{server.url}/v1", "--model", "mpp-fake-1", "--json", env=env
    )
    assert code == 3
    error = lines(out)[-1]
    assert (error["type"], error["error"], error["rule"]) == (
        "error",
        "PolicyViolation",
        "max_price",
    )


async def test_misbehaving_server_exit_4(server: RunningServer, payer_env: dict[str, str]) -> None:
    code, _, err = await faulty_request(server.url, "wrong-challenge", payer_env, tokens=50)
    assert code == 4, err
    assert "receipt_challenge" in err


async def test_request_streams_raw_sse(server: RunningServer, payer_env: dict[str, str]) -> None:
    body = json.dumps(
        {
            "model": "mpp-fake-1",
            "stream": True,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    code, out, err = await cli(
        "request",
        "POST",
        f"{server.url}/v1/chat/completions",
        "-H",
        "content-type: application/json",
        "--data",
        body,
        env=payer_env,
    )
    assert code == 0, err
    assert out.count("data: ") == 8 + 3
    assert "payment-receipt" not in out
    assert out.rstrip().endswith("data: [DONE]")


async def test_channels_list_show_close(server: RunningServer, payer_env: dict[str, str]) -> None:
    await cli(*chat_args(f"{server.url}/v1", "--max-tokens", "20"), env=payer_env)
    code, out, err = await cli("channels", "list", "--json", env=payer_env)
    assert code == 0, err
    (channel,) = [r for r in lines(out) if r["type"] == "channel"]
    assert channel["spent"] == str(20 * 25)
    code, out, _ = await cli("channels", "show", channel["channelId"], env=payer_env)
    assert code == 0
    assert channel["channelId"] in out
    code, out, err = await cli("channels", "close", channel["channelId"], "--json", env=payer_env)
    assert code == 0, err
    summary = lines(out)[-1]
    assert (summary["paid"], summary["refunded"]) == (
        str(20 * 25),
        str(int(channel["deposit"]) - 20 * 25),
    )
    code, out, _ = await cli("channels", "list", env=payer_env)
    assert "closed" in out


async def test_configuration_errors_exit_2(payer_env: dict[str, str]) -> None:
    env = {k: v for k, v in payer_env.items() if k != "MPPAGENT_PRIVATE_KEY"}
    code, _, err = await cli("channels", "sync", env=env)
    assert code == 2
    assert "MPPAGENT_PRIVATE_KEY" in err
    code, _, err = await cli("chat", "hi", "--provider", "nope", env=payer_env)
    assert code == 2
    assert "unknown provider" in err


async def test_config_file_sets_policy(
    server: RunningServer, payer_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[policy]\nmax_price = { llm_token = 10 }\n")
    env = {**payer_env, "MPPAGENT_CONFIG": str(config)}
    code, _, err = await cli(
        "chat", "hi", "--base-url", f"{server.url}/v1", "--model", "mpp-fake-1", env=env
    )
    assert code == 3, err
    config.write_text("[policy\n")
    code, _, err = await cli("channels", "sync", env=env)
    assert code == 2
    assert "cannot read config file" in err


async def test_unreachable_upstream_exit_6(payer_env: dict[str, str]) -> None:
    code, _, _ = await cli(
        "chat", "hi", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", env=payer_env
    )
    assert code == 6


async def test_unreachable_chain_exit_7(server: RunningServer, payer_env: dict[str, str]) -> None:
    env = {**payer_env, "MPPAGENT_RPC_URL": "http://127.0.0.1:9"}
    code, _, err = await cli(
        "chat", "hi", "--base-url", f"{server.url}/v1", "--model", "mpp-fake-1", env=env
    )
    assert code == 7, err


async def test_bearer_provider_profile(
    start_server: ServerFactory, payer_env: dict[str, str], tmp_path: Path
) -> None:
    server = await start_server(auth_mode="bearer", api_keys=("sekrit",))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[providers.mine]\nextends = "openrouter"\nbase_url = "{server.url}/v1"\n'
        'default_model = "mpp-fake-reasoning-details"\napi_key_env = "MINE_KEY"\n'
    )
    env = {**payer_env, "MPPAGENT_CONFIG": str(config), "MINE_KEY": "sekrit"}
    code, out, err = await cli("chat", "hi", "--provider", "mine", "--max-tokens", "12", env=env)
    assert code == 0, err
    assert out.strip()
    code, out, _ = await cli("providers", env=env)
    assert code == 0
    assert "mine" in out
    assert "openrouter" in out


async def test_providers_list() -> None:
    code, out, _ = await cli("providers", "--json")
    assert code == 0
    names = {r["name"] for r in lines(out)}
    assert {"perceptron", "perceptron-mk1", "mpp-router", "ppq", "openrouter", "local"} <= names


def test_exit_code_mapping() -> None:
    assert exit_code_for(ConfigError("x")) == 2
    assert exit_code_for(PolicyViolation("r", "m")) == 3
    assert exit_code_for(ServerMisbehaviour("c", "m")) == 4
    assert exit_code_for(VerificationFailedProblem("bad")) == 5
    assert exit_code_for(ChainError("down")) == 7
    assert format_units(1_234_567) == "1.234567"


async def test_key_from_encrypted_keystore(
    server: RunningServer, payer: DevAccount, payer_env: dict[str, str], tmp_path: Path
) -> None:
    from eth_account import Account

    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(payer.private_key, "correct horse")))
    env = {k: v for k, v in payer_env.items() if k != "MPPAGENT_PRIVATE_KEY"}
    env |= {"MPPAGENT_KEYSTORE": str(keystore), "MPPAGENT_KEYSTORE_PASSWORD": "correct horse"}
    code, out, err = await cli(
        "chat",
        "hi",
        "--base-url",
        f"{server.url}/v1",
        "--model",
        "mpp-fake-1",
        "--max-tokens",
        "5",
        "--json",
        env=env,
    )
    assert code == 0, err
    assert lines(out)[-1]["tokens"] == "5"
    env["MPPAGENT_KEYSTORE_PASSWORD"] = "wrong"
    code, _, err = await cli("channels", "sync", env=env)
    assert code == 2
    assert "cannot decrypt keystore" in err
    assert payer.private_key[2:] not in err


async def test_devnet_prints_its_environment_and_cleans_up_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        *ENTRY,
        "devnet",
        "--json",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    devnet = json.loads(line)
    assert devnet["type"] == "devnet"
    rpc = devnet["MPPAGENT_RPC_URL"]
    host, port = rpc.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))  # anvil is up
    writer.close()
    process.terminate()
    assert await asyncio.wait_for(process.wait(), 30) == 130
    with pytest.raises(OSError):  # and gone: SIGTERM ran the clean-up
        await asyncio.open_connection(host, int(port))
