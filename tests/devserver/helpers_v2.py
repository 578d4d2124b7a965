"""Session v2 credentials for testing the reference server as a client would see it.

Built from :mod:`mppagent.tempo.v2` (the reserve's primitives and its transaction
builder) -- never through the Agent, transport or session engine -- as
``helpers.py`` does for v1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from mppagent.devchain import DevAccount, DevChain
from mppagent.devserver import DevServerConfig
from mppagent.tempo import ChainClient, Token
from mppagent.tempo.backend import ChannelTerms
from mppagent.tempo.chain import SignedTransaction
from mppagent.tempo.schemas import ClosePayload, OpenPayload, TopUpPayload, VoucherPayload
from mppagent.tempo.tempo_chain import OutgoingTempoTransaction
from mppagent.tempo.v2 import RESERVE_ADDRESS, ChannelDescriptor, sign_voucher
from mppagent.tempo.v2.backend import V2Backend
from mppagent.tempo.v2.calls import decode_channel_state, encode_get_channel_state
from mppagent.tempo.voucher import VoucherSigner
from tests.support import v2_terms

from .helpers import make_config, pay_head


def make_v2_config(chain: DevChain, tmp_path: Path, **overrides: Any) -> DevServerConfig:
    """A v2 server (the devchain's reserve) paying accounts[0]; see ``make_config``."""
    return make_config(chain, tmp_path, **{"session_protocol": "v2", **overrides})


@dataclass(frozen=True)
class V2Channel:
    """A channel a payer signed the open of: its terms (with the descriptor), id and tx."""

    terms: ChannelTerms
    channel_id: str
    tx: SignedTransaction

    @property
    def descriptor(self) -> ChannelDescriptor:
        assert self.terms.descriptor is not None
        return ChannelDescriptor.from_wire(json.loads(self.terms.descriptor))


@dataclass
class V2Payer:
    """One dev account paying the server's payee (accounts[0]) over the reserve."""

    chain: DevChain
    client: ChainClient
    account: DevAccount

    @property
    def address(self) -> str:
        return self.account.address.lower()

    @property
    def backend(self) -> V2Backend:
        return V2Backend(self.client)

    async def balance(self) -> int:
        return await Token(self.client, self.chain.token).balance_of(self.address)

    def sign(self, channel_id: str, amount: int) -> str:
        signer = VoucherSigner(self.account.private_key)
        return sign_voucher(signer, channel_id, amount, RESERVE_ADDRESS, self.chain.chain_id)

    async def new_channel(
        self, deposit: int, *, sponsored: bool = False, **changes: Any
    ) -> V2Channel:
        """Sign (not send) an open of a fresh channel; ``changes`` alter its terms."""
        terms = v2_terms(self.chain, self.account, self.chain.accounts[0])
        terms = replace(terms, fee_payer=sponsored, **changes)
        new = await self.backend.new_channel(self.account.wallet(), terms, deposit)
        assert new.plan is not None
        return V2Channel(replace(terms, descriptor=new.descriptor), new.channel_id, new.plan.main)

    def open_payload(self, channel: V2Channel, initial: int = 0) -> OpenPayload:
        sig = self.sign(channel.channel_id, initial)
        return self.backend.open_payload(
            channel.terms, channel.channel_id, channel.tx, initial, sig
        )

    async def top_up(self, channel: V2Channel, amount: int) -> tuple[TopUpPayload, str]:
        """A top-up payload and the hash its transaction will have (unsponsored)."""
        plan = await self.backend.plan_top_up(
            self.account.wallet(), channel.terms, channel.channel_id, amount, _no_prior
        )
        payload = self.backend.top_up_payload(channel.terms, channel.channel_id, plan.main, amount)
        return payload, plan.main.hash

    def voucher(self, channel: V2Channel, amount: int) -> VoucherPayload:
        sig = self.sign(channel.channel_id, amount)
        return self.backend.voucher_payload(channel.terms, channel.channel_id, amount, sig)

    def close(self, channel: V2Channel, amount: int) -> ClosePayload:
        sig = self.sign(channel.channel_id, amount)
        return self.backend.close_payload(channel.terms, channel.channel_id, amount, sig)

    async def reserve_state(self, channel_id: str) -> tuple[int, int]:
        """``(deposit, settled)`` on the reserve; ``(0, 0)`` when it holds no such channel."""
        output = await self.client.call(RESERVE_ADDRESS, encode_get_channel_state(channel_id))
        state = decode_channel_state(output)
        return state.deposit, state.settled


async def opened(http: httpx.AsyncClient, payer: V2Payer, deposit: int) -> V2Channel:
    """A fresh channel, opened through the server (a ``HEAD`` open credential)."""
    channel = await payer.new_channel(deposit)
    response = await pay_head(http, payer.open_payload(channel))
    assert response.status_code == 200, response.text
    return channel


async def _no_prior(kind: str, tx: SignedTransaction) -> None:
    raise AssertionError(f"a v2 top-up needs no prior {kind} transaction")


def sponsored_wire(tx: SignedTransaction) -> str:
    """What a payer sends for a sponsored transaction: the ``0x78`` hand-over."""
    assert isinstance(tx, OutgoingTempoTransaction)
    assert tx.handover is not None
    return tx.handover
