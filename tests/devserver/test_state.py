"""The reference server's SQLite store: databases from before ``refund_owed`` (and before
v2's ``descriptor``) still open, and a v2 channel's descriptor survives a restart. And the
process entry point's choice of session protocol."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from mppagent.devserver import state as state_module
from mppagent.devserver.__main__ import load_config
from mppagent.devserver.state import ServerChannel, ServerState
from mppagent.tempo.v2 import RESERVE_ADDRESS

# The schema as it was before the columns: today's, minus those lines.
_COLUMN = "    refund_owed TEXT NOT NULL DEFAULT '0',\n"
_DESCRIPTOR = "    descriptor TEXT,\n"
assert _COLUMN in state_module._SCHEMA
assert _DESCRIPTOR in state_module._SCHEMA
_OLD_SCHEMA = state_module._SCHEMA.replace(_COLUMN, "").replace(_DESCRIPTOR, "")
_OLD_ROW = (
    "INSERT INTO channels VALUES ('0xc1', '0xaa', '0x00', '1000', '0', '500', NULL, '300', 1,"
    " '0xt', 0)"
)


def test_database_without_refund_column_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(_OLD_SCHEMA)
    with db:
        db.execute(_OLD_ROW)
    db.close()

    state = ServerState(path)
    try:
        channel = state.get("0xc1")
        assert channel is not None
        assert (channel.spent, channel.finalized, channel.refund_owed) == (300, True, 0)
        assert channel.descriptor is None  # a v1 channel
        assert state.owed_refunds() == []
        state.put(replace(channel, refund_owed=200))
    finally:
        state.close()

    reopened = ServerState(path)  # the column now exists: no second ALTER
    try:
        (owed,) = reopened.owed_refunds()
        assert (owed.channel_id, owed.refund_owed) == ("0xc1", 200)
    finally:
        reopened.close()


def test_descriptor_is_stored_with_the_channel(tmp_path: Path) -> None:
    """A v2 channel's descriptor is what closing it takes: it must survive a restart."""
    path = tmp_path / "v2.db"
    state = ServerState(path)
    try:
        row = ServerChannel("0xc2", "0xaa", "0x00", 1000, 0, 0, None, 0, descriptor='{"salt":"x"}')
        state.put(row)
    finally:
        state.close()
    reopened = ServerState(path)
    try:
        channel = reopened.get("0xc2")
        assert channel is not None
        assert channel.descriptor == '{"salt":"x"}'
    finally:
        reopened.close()


def test_the_process_entry_point_takes_the_session_protocol_from_its_flag() -> None:
    """``python -m mppagent.devserver --session-protocol``: v2 by default, the flag wins."""
    raw = json.dumps(
        {"rpc_url": "http://127.0.0.1:1", "token": "0x" + "22" * 20, "payee_private_key": "k"}
    )
    assert load_config(raw).session_protocol == "v2"
    assert load_config(raw).contract == RESERVE_ADDRESS
    with pytest.raises(ValueError, match="escrow"):
        load_config(raw, "v1")  # v1 needs its escrow
    with_escrow = json.dumps({**json.loads(raw), "escrow": "0x" + "11" * 20})
    v1 = load_config(with_escrow, "v1")
    assert (v1.session_protocol, v1.contract) == ("v1", "0x" + "11" * 20)
    assert load_config(with_escrow, "v2").contract == RESERVE_ADDRESS
