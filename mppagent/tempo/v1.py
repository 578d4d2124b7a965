"""Session protocol v1: the ``TempoStreamChannel`` escrow as a :class:`SessionBackend`.

On a Tempo chain an ``open`` or ``topUp`` is ONE Tempo (``0x76``) transaction
batching an exact ``approve(escrow, amount)`` and the escrow call -- atomic,
with fees paid as the challenge it answers asks (``feeToken``, else the
channel's currency; with ``feePayer`` the server co-signs the hand-over form
and pays) and an expiring nonce, so nothing is left half-done and no nonce counter is
involved. On any other EVM chain the allowance comes first: the plan carries
an exact ``approve`` (never an unlimited one: an escrow can pull no more than
the deposit we decided on) for the client to send and confirm before the
server broadcasts the main EIP-1559 transaction.

Which chains are Tempo chains: Tempo mainnet and the Moderato testnet by
chain id, any other chain by one cheap probe (the fee token pathUSD is a
predeployed TIP-20 at a fixed address; a plain EVM chain has no code there),
cached per backend -- or fixed by the caller (``tempo=True/False``).

The deployed v1 escrows (:data:`CANONICAL_ESCROWS`) are trusted on their
chains without ``allowed_escrows``: their code is the reference deployment,
not ours, so the bytecode comparison would refuse them.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from mppagent.errors import ChainError, ConfigError
from mppagent.tempo.artifacts import load_artifact
from mppagent.tempo.backend import (
    ChannelTerms,
    ClosedAmounts,
    FundingPlan,
    NewChannel,
    PriorSender,
    build_open_payload,
)
from mppagent.tempo.chain import ChainClient, SignedTransaction, Wallet
from mppagent.tempo.channel_id import compute_channel_id
from mppagent.tempo.escrow import ChannelState, Escrow, Token
from mppagent.tempo.hexutil import normalize_address
from mppagent.tempo.schemas import ClosePayload, OpenPayload, TopUpPayload, VoucherPayload
from mppagent.tempo.tempo_chain import PATH_USD, TEMPO_CHAIN_IDS, for_server
from mppagent.tempo.voucher import VoucherSigner

__all__ = ["CANONICAL_ESCROWS", "V1Backend"]


CANONICAL_ESCROWS = {
    4217: "0x33b901018174ddabe4841042ab76ba85d4e24f25",
    42431: "0xe1c4d3dce17bc111181ddf716f75bae49e61a336",
}
"""The deployed v1 ``TempoStreamChannel`` escrow per chain id (lowercase)."""


class V1Backend:
    """v1 sessions over one chain client (one :class:`Escrow` client per deployment)."""

    protocol = "v1"
    initial_units = 0

    def __init__(self, chain: ChainClient, *, tempo: bool | None = None) -> None:
        self.chain = chain
        self._escrows: dict[str, Escrow] = {}
        self._tempo = tempo

    async def is_tempo(self) -> bool:
        """Whether the chain takes Tempo transactions (configured, known id, or probed once)."""
        if self._tempo is None:
            chain_id = await self.chain.chain_id()
            self._tempo = chain_id in TEMPO_CHAIN_IDS or bool(await self.chain.get_code(PATH_USD))
        return self._tempo

    def escrow(self, address: str) -> Escrow:
        """The :class:`Escrow` client for ``address``."""
        key = normalize_address(address)
        if key not in self._escrows:
            self._escrows[key] = Escrow(self.chain, key)
        return self._escrows[key]

    async def new_channel(self, wallet: Wallet, terms: ChannelTerms, deposit: int) -> NewChannel:
        """The id is known before the open: nothing to sign up front."""
        del wallet, deposit
        return NewChannel(channel_id=self.channel_id(terms))

    def channel_id(self, terms: ChannelTerms) -> str:
        """``keccak256(abi.encode(payer, payee, token, salt, signer, escrow, chainId))``."""
        return compute_channel_id(
            terms.payer,
            terms.payee,
            terms.token,
            terms.salt,
            terms.authorized_signer,
            terms.escrow,
            terms.chain_id,
        )

    async def check_contract(self, escrow: str) -> bool:
        """Whether ``escrow`` is the chain's canonical v1 escrow or runs the code we ship."""
        if CANONICAL_ESCROWS.get(await self.chain.chain_id()) == normalize_address(escrow):
            return True
        code = await self.chain.get_code(escrow)
        if not code:  # nothing there: client and server are on different chains
            raise ConfigError(
                f"escrow {escrow} has no code on the chain at {self.chain.rpc_url} (chain "
                f"{await self.chain.chain_id()}): the server is on another chain; point the "
                "RPC URL at the server's chain"
            )
        return load_artifact("TempoStreamChannel").matches_runtime(code)

    async def plan_open(
        self, wallet: Wallet, terms: ChannelTerms, deposit: int, prior: PriorSender
    ) -> FundingPlan:
        """Tempo: one ``0x76`` approve + open. Else an exact ``approve`` if short, then ``open``."""
        escrow = self.escrow(terms.escrow)
        sign: Callable[..., Awaitable[SignedTransaction]]
        if await self.is_tempo():
            sign = functools.partial(
                escrow.sign_open_tempo, fee_token=terms.fee_token, sponsored=terms.fee_payer
            )
        else:
            await self._approve(wallet, terms, deposit, prior)
            sign = escrow.sign_open
        tx = await sign(
            wallet,
            payee=terms.payee,
            token=terms.token,
            deposit=deposit,
            salt=terms.salt,
            authorized_signer=terms.authorized_signer,
        )
        return FundingPlan(main=tx)

    async def plan_top_up(
        self,
        wallet: Wallet,
        terms: ChannelTerms,
        channel_id: str,
        amount: int,
        prior: PriorSender,
    ) -> FundingPlan:
        """Tempo: one ``0x76`` approve + topUp. Else an exact ``approve`` if short, then topUp."""
        if await self.is_tempo():
            return FundingPlan(
                main=await self.escrow(terms.escrow).sign_top_up_tempo(
                    wallet,
                    channel_id,
                    amount,
                    token=terms.token,
                    fee_token=terms.fee_token,
                    sponsored=terms.fee_payer,
                )
            )
        await self._approve(wallet, terms, amount, prior)
        tx = await self.escrow(terms.escrow).sign_top_up(wallet, channel_id, amount)
        return FundingPlan(main=tx)

    async def _approve(
        self, wallet: Wallet, terms: ChannelTerms, amount: int, prior: PriorSender
    ) -> None:
        token = Token(self.chain, terms.token)
        if await token.allowance(terms.payer, terms.escrow) >= amount:
            return
        balance = await token.balance_of(terms.payer)
        if balance < amount:
            raise ChainError(
                f"wallet {wallet.address} holds {balance} of token {terms.token}, "
                f"needs {amount} for this deposit"
            )
        await prior("approve", await token.sign_approve(wallet, terms.escrow, amount))

    def sign_voucher(
        self, signer: VoucherSigner, channel_id: str, amount: int, escrow: str, chain_id: int
    ) -> str:
        """Domain ``Tempo Stream Channel`` v1, ``Voucher(bytes32, uint128)``."""
        return signer.sign(channel_id, amount, escrow, chain_id)

    def open_payload(
        self, terms: ChannelTerms, channel_id: str, tx: SignedTransaction, amount: int, sig: str
    ) -> OpenPayload:
        """``open`` with the signed transaction and the initial voucher."""
        return build_open_payload(terms, channel_id, tx, amount, sig)

    def top_up_payload(
        self, terms: ChannelTerms, channel_id: str, tx: SignedTransaction, amount: int
    ) -> TopUpPayload:
        """``topUp`` with the signed transaction (a sponsored one in its hand-over form)."""
        del terms
        return TopUpPayload(
            channel_id=channel_id, transaction=for_server(tx), additional_deposit=amount
        )

    def voucher_payload(
        self, terms: ChannelTerms, channel_id: str, amount: int, sig: str
    ) -> VoucherPayload:
        """``voucher``."""
        del terms
        return VoucherPayload(channel_id=channel_id, cumulative_amount=amount, signature=sig)

    def close_payload(
        self, terms: ChannelTerms, channel_id: str, amount: int, sig: str
    ) -> ClosePayload:
        """``close`` with the final voucher."""
        del terms
        return ClosePayload(channel_id=channel_id, cumulative_amount=amount, signature=sig)

    async def read_channel(
        self, terms: ChannelTerms, channel_id: str, *, opened_tx: str | None = None
    ) -> ChannelState:
        """``getChannel`` (the escrow keeps closed channels, marked finalized)."""
        del opened_tx  # no log search: the finalized flag survives the wipe
        return await self.escrow(terms.escrow).get_channel(channel_id)

    async def close_grace_period(self, escrow: str) -> int:
        """``CLOSE_GRACE_PERIOD``."""
        return await self.escrow(escrow).close_grace_period()

    async def sign_request_close(
        self, wallet: Wallet, terms: ChannelTerms, channel_id: str
    ) -> SignedTransaction:
        """``requestClose``."""
        return await self.escrow(terms.escrow).sign_request_close(wallet, channel_id)

    async def sign_withdraw(
        self, wallet: Wallet, terms: ChannelTerms, channel_id: str
    ) -> SignedTransaction:
        """``withdraw``."""
        return await self.escrow(terms.escrow).sign_withdraw(wallet, channel_id)

    async def final_settled(
        self, escrow: str, channel_id: str, *, opened_tx: str | None = None
    ) -> int | None:
        """``settledToPayee`` of the channel's ``ChannelClosed`` event, from the logs."""
        from_block = await self.chain.mined_in(opened_tx)
        closed = await self.escrow(escrow).closed_event(channel_id, from_block=from_block)
        return None if closed is None else int(closed.values["settledToPayee"])

    def closed_amounts(
        self, escrow: str, channel_id: str, receipt: dict[str, Any]
    ) -> ClosedAmounts | None:
        """The ``ChannelClosed`` event's payout and refund for ``channel_id``."""
        for event in self.escrow(escrow).events(receipt):
            if event.name == "ChannelClosed" and event.channel_id == channel_id:
                return ClosedAmounts(
                    paid=int(event.values["settledToPayee"]),
                    refunded=int(event.values["refundedToPayer"]),
                )
        return None
