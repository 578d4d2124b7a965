"""The reference SDK's own v2 session server (``node/v2_session_server.mjs``) as a process.

Shared by both interop directions against the SDK's server: our agent paying it, and
the SDK's own client paying it (the baseline our server must match).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mppagent.devchain import DevAccount, DevChain
from mppagent.tempo.v2.constants import RESERVE_ADDRESS
from tests.interop.driver import DRIVERS, ROOT, node_binary


@contextmanager
def sdk_v2_server(
    chain: DevChain,
    payee: DevAccount,
    *,
    amount: str,
    suggested_deposit: str,
    tokens: int,
    fee_payer: bool,
    bootstrap: bool = False,
    hints: bool = False,
) -> Iterator[str]:
    """Run the server on 127.0.0.1 paying ``payee``; yields its chat-completions URL.

    ``amount`` and ``suggested_deposit`` are whole tokens as decimal strings (6
    decimals); each paid request streams ``tokens`` SSE events at ``amount`` each.
    ``fee_payer``: the challenge sets ``feePayer`` and the server co-signs opens and
    top-ups and pays their fees. ``bootstrap``: the server answers the SDK's same-route
    ``HEAD`` recovery (a zero-amount proof of the payer's identity, then 204 with
    ``Payment-Session`` and ``Payment-Session-Snapshot`` for the payer's last channel).
    ``hints`` (implies ``bootstrap``): a request's ``Payment-Session`` hint names the
    channel too, so the 402 challenge it earns carries that channel's snapshot.
    """
    config = {
        "rpcUrl": chain.rpc_url,
        "chainId": chain.chain_id,
        "payeeKey": payee.private_key,
        "currency": chain.token,
        "escrow": RESERVE_ADDRESS,
        "amount": amount,
        "suggestedDeposit": suggested_deposit,
        "tokens": tokens,
        "feePayer": fee_payer,
        "bootstrap": bootstrap,
        "hints": hints,
    }
    process = subprocess.Popen(
        [node_binary(), str(DRIVERS / "v2_session_server.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps(config).encode())
        process.stdin.close()
        line = process.stdout.readline()
        if not line:
            assert process.stderr is not None
            pytest.fail(f"the SDK server did not start: {process.stderr.read().decode()[-2000:]}")
        yield str(json.loads(line)["url"])
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
