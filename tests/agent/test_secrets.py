"""No private key, signature, signed transaction or credential ever reaches a log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

import mppagent.logging as mpp_logging
from mppagent import ServerMisbehaviour
from mppagent.devchain import DevAccount
from mppagent.devserver import RunningServer
from mppagent.tempo import VoucherSigner, Wallet
from tests.support import CHAT, AgentFactory, chat_body


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything every logger emits at DEBUG, mppagent's own through its redactor."""
    buffer = io.StringIO()
    mpp_logging.configure(level="DEBUG", stream=buffer)
    root = logging.getLogger()
    handler = logging.StreamHandler(buffer)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        logging.getLogger("mppagent").handlers.clear()
        logging.getLogger("mppagent").propagate = True
        logging.getLogger("mppagent").setLevel(logging.NOTSET)


async def test_full_session_logs_no_secrets(
    captured: io.StringIO, server: RunningServer, make_agent: AgentFactory, payer: DevAccount
) -> None:
    agent = await make_agent(delegate_signer=True)
    async for _ in agent.stream("POST", server.url + CHAT, json=chat_body(300)):
        pass
    await agent.request("POST", server.url + CHAT, json=chat_body(10, stream=False))
    (record,) = agent.channels.list()
    await agent.channels.close(record.channel_id)
    with pytest.raises(ServerMisbehaviour):
        async for _ in agent.stream(
            "POST", server.url + CHAT, json=chat_body(300), headers={"x-mpp-fault": "overcharge"}
        ):
            pass

    text = captured.getvalue()
    assert "channel.open.signed" in text  # the session really was logged
    secrets = [payer.private_key, payer.private_key[2:]]
    for channel in agent.channels.list():
        if channel.signer_key:
            secrets += [channel.signer_key, channel.signer_key[2:]]
    for op in agent.store.operations():
        if op.payload:
            secrets.append(op.payload[2:])  # voucher signatures and signed transactions
    assert len(secrets) > 10
    for secret in secrets:
        assert secret.lower() not in text.lower()
    assert "Payment eyJ" not in text
    assert "payment eyj" not in text.lower()


def test_redactor_scrubs_by_key_and_by_shape() -> None:
    event = {
        "event": "x",
        "private_key": "0x" + "11" * 32,
        "note": "sig 0x"
        + "ab" * 65
        + " and Payment eyJhbGciOiJIUzI1NiJ9abcdefghijklmnopqrstuvwxyz0123456789",
        "nested": {"signature": "0x" + "cd" * 65, "fine": "channel 0x" + "ef" * 32},
    }
    out = mpp_logging.redact(None, "info", dict(event))
    assert out["private_key"] == "<redacted>"
    assert "ab" * 65 not in out["note"]
    assert "eyJhbGci" not in out["note"]
    assert out["nested"]["signature"] == "<redacted>"
    assert out["nested"]["fine"] == "channel 0x" + "ef" * 32  # ids are not secrets


def test_reprs_hide_keys(payer: DevAccount) -> None:
    for obj in (Wallet(payer.private_key), VoucherSigner(payer.private_key), payer):
        assert payer.private_key[2:] not in repr(obj)
        assert payer.private_key[2:] not in str(obj)
