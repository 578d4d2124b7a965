"""The payee side of the Tempo session intent: challenges, verification, accounting.

This follows draft-tempo-session's verification procedure from the server's
side -- deliberately without importing the client's session engine, so a bug
there cannot cancel out here. Every rejection is a
:class:`~mppagent.protocol.ProblemError` of the draft's type; the HTTP layer
turns it into a problem+json response (with a fresh challenge on 402).

Per channel, verification and balance changes are serialised by a lock, and
each accepted voucher or charge is committed to :class:`ServerState` before
anything relies on it.

What differs between session protocols -- checking open and top-up
transactions, deriving channel ids, reading channel state, which voucher
signatures are valid, how a channel is closed -- is a
:class:`~mppagent.devserver.backend.ServerBackend` (v1: the escrow, v2: the
TIP-1034 reserve; ``DevServerConfig.session_protocol``). Voucher signatures are
stored in the one form the contract redeems, so the server never accepts a
voucher it cannot collect.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from mppagent.devserver.backend import LaterPayload, ServerBackend
from mppagent.devserver.backend_v1 import V1ServerBackend
from mppagent.devserver.backend_v2 import V2ServerBackend
from mppagent.devserver.config import DevServerConfig
from mppagent.devserver.faults import Billing, Fault
from mppagent.devserver.snapshot import session_snapshot
from mppagent.devserver.state import ServerChannel, ServerState
from mppagent.devserver.terms import PayeeTerms, refused
from mppagent.errors import ChainError
from mppagent.logging import get_logger
from mppagent.protocol import (
    JSON,
    AmountExceedsDepositProblem,
    Challenge,
    ChallengeNotFoundProblem,
    ChannelFinalizedProblem,
    ChannelNotFoundProblem,
    Credential,
    DeltaTooSmallProblem,
    InvalidChallengeProblem,
    MalformedCredentialProblem,
    MethodUnsupportedProblem,
    PaymentError,
    ProblemError,
    VerificationFailedProblem,
    format_rfc3339,
)
from mppagent.tempo.chain import ChainClient, ContractReverted, Wallet
from mppagent.tempo.escrow import ChannelState, Token
from mppagent.tempo.hexutil import normalize_address
from mppagent.tempo.schemas import (
    ClosePayload,
    OpenPayload,
    TopUpPayload,
    VoucherPayload,
    parse_payload,
)

__all__ = ["Accepted", "RateLimited", "SessionPayee"]

log = get_logger("mppagent.devserver")


class RateLimited(ProblemError):
    """Too many voucher submissions on one channel (the draft asks servers to limit them)."""

    type_uri = "about:blank"
    default_title = "Too Many Requests"
    default_status = 429


@dataclass(frozen=True)
class Accepted:
    """A verified credential: the channel after the action, and what to put in the receipt."""

    action: str
    channel: ServerChannel
    challenge: Challenge
    tx_hash: str | None = None


class _Bucket:
    """Token bucket: ``rate`` per second, ``burst`` at most."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self) -> float:
        """0 if a token is available, else the seconds until one is."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        """Spend one token (a failed verification)."""
        self._refill()
        self.tokens = max(self.tokens - 1, 0.0)


class SessionPayee:
    """Issues challenges and verifies/applies session credentials for one payee."""

    def __init__(
        self,
        config: DevServerConfig,
        *,
        state: ServerState,
        chain: ChainClient,
        chain_id: int,
    ) -> None:
        self.config = config
        self.state = state
        self.chain = chain
        self.chain_id = chain_id
        self.wallet = Wallet(config.payee_private_key.get_secret_value())
        self.payee = normalize_address(self.wallet.address)
        self.token = config.token
        self.fee_token = config.fee_token or (config.token if config.sponsor_fees else None)
        terms = PayeeTerms(
            chain=chain,
            chain_id=chain_id,
            wallet=self.wallet,
            payee=self.payee,
            token=self.token,
            contract=config.contract,
            operator=config.operator,
            fee_payer=self.wallet if config.sponsor_fees else None,
            fee_token=self.fee_token,
        )
        self.backend: ServerBackend = (
            V2ServerBackend(terms) if config.session_protocol == "v2" else V1ServerBackend(terms)
        )
        self._secret = config.challenge_secret.get_secret_value()
        self._locks: dict[str, asyncio.Lock] = {}
        self._voucher_events: dict[str, asyncio.Event] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._chain_seen: dict[str, tuple[float, ChannelState]] = {}
        self.stream_faults: dict[str, frozenset[Fault]] = {}
        self.stream_billing: dict[str, frozenset[Billing]] = {}
        self.active_streams: dict[str, object] = {}
        self._demanded: dict[str, int] = {}

    # -- challenges ------------------------------------------------------------------------

    def request_data(self) -> dict[str, JSON]:
        """The decoded ``request`` of this server's challenges."""
        details: dict[str, JSON] = {
            "escrowContract": self.backend.contract,
            "chainId": self.chain_id,
            **self.backend.method_details(),
        }
        if self.config.min_voucher_delta is not None:
            details["minVoucherDelta"] = str(self.config.min_voucher_delta)
        if self.config.sponsor_fees:
            details["feePayer"] = True
        if self.fee_token is not None:
            details["feeToken"] = self.fee_token
        return {
            "amount": str(self.config.price_per_token),
            "unitType": "llm_token",
            "suggestedDeposit": str(self.config.suggested_deposit),
            "currency": self.token,
            "recipient": self.payee,
            "methodDetails": details,
        }

    def snapshot(self, channel_id: str | None) -> dict[str, JSON] | None:
        """The ``sessionSnapshot`` of one of our open v2 channels (``None`` otherwise)."""
        if self.backend.protocol != "v2" or not channel_id:
            return None
        channel = self.state.get(channel_id.lower())
        if channel is None:
            return None
        return session_snapshot(
            channel,
            reserve=self.backend.contract,
            chain_id=self.chain_id,
            price=self.config.price_per_token,
        )

    def issue_challenge(self, snapshot: dict[str, JSON] | None = None) -> Challenge:
        """A fresh HMAC-bound challenge that expires after ``challenge_ttl`` seconds.

        With a ``snapshot`` (:meth:`snapshot`) the challenge suggests resuming that
        channel: ``methodDetails.channelId`` and ``methodDetails.sessionSnapshot``.
        """
        request = self.request_data()
        if snapshot is not None:
            details = request["methodDetails"]
            assert isinstance(details, dict)
            details["channelId"] = snapshot["channelId"]
            details["sessionSnapshot"] = snapshot
        return Challenge.issue(
            secret=self._secret,
            realm=self.config.realm,
            method="tempo",
            intent="session",
            request=request,
            expires=datetime.now(UTC) + timedelta(seconds=self.config.challenge_ttl),
            description="Pay per token for this completion",
        )

    def lock(self, channel_id: str) -> asyncio.Lock:
        """The per-channel lock that serialises verification and accounting."""
        return self._locks.setdefault(channel_id, asyncio.Lock())

    # -- credentials -----------------------------------------------------------------------

    def verified_challenge(self, credential: Credential, *, top_up: bool = False) -> Challenge:
        """Check the echoed challenge is ours (HMAC) and still valid."""
        echo = credential.challenge
        if not echo.verify_id(self._secret):
            if top_up:
                raise ChallengeNotFoundProblem("unknown challenge id")
            raise InvalidChallengeProblem("this server did not issue that challenge")
        challenge = echo.to_challenge()
        if challenge.method != "tempo" or challenge.intent != "session":
            raise MethodUnsupportedProblem("only tempo/session is accepted here")
        if challenge.is_expired(datetime.now(UTC)):
            if top_up:
                raise ChallengeNotFoundProblem("the challenge has expired")
            # The core draft's status table: expired challenges are invalid-challenge.
            raise InvalidChallengeProblem("the challenge has expired; use the fresh one")
        return challenge

    async def accept(self, credential: Credential, faults: frozenset[Fault]) -> Accepted:
        """Verify and apply one credential (open, topUp, voucher or close)."""
        try:
            payload = parse_payload(credential.payload)
        except PaymentError as exc:
            raise MalformedCredentialProblem(str(exc)) from None
        challenge = self.verified_challenge(credential, top_up=isinstance(payload, TopUpPayload))
        if isinstance(payload, OpenPayload):
            return await self._open(payload, challenge, credential.source)
        faults = faults | self.stream_faults.get(payload.channel_id, frozenset())
        if Fault.GONE in faults and self.state.get(payload.channel_id) is not None:
            raise ChannelNotFoundProblem(
                "channel not found", extras={"channelId": payload.channel_id}
            )
        channel = await self._known_channel(payload, credential.source)
        if isinstance(payload, TopUpPayload):
            return await self._top_up(payload, channel, challenge)
        if isinstance(payload, VoucherPayload):
            return await self._voucher(payload, channel, challenge, faults)
        return await self._close(payload, channel, challenge)

    # -- open ------------------------------------------------------------------------------

    async def _open(
        self, payload: OpenPayload, challenge: Challenge, source: str | None
    ) -> Accepted:
        checked = self.backend.check_open(payload, source)
        channel_id, tx = checked.channel_id, checked.tx
        async with self.lock(channel_id):
            state = await self._chain_state(channel_id, checked.descriptor, fresh=True)
            if not state.exists and not state.finalized:
                try:
                    receipt = await tx.broadcast(self.chain, "open")
                except ContractReverted as exc:
                    raise refused("open", exc) from None
                except ChainError as exc:
                    raise VerificationFailedProblem(f"open could not be broadcast: {exc}") from None
                self.backend.confirm_open(checked, receipt)
                state = await self._chain_state(channel_id, checked.descriptor, fresh=True)
            self._check_usable(state)
            initial_signature = self.backend.redeemable(
                payload.signature, channel_id, payload.cumulative_amount, state.expected_signer
            )
            if payload.cumulative_amount < state.settled:
                raise VerificationFailedProblem("the initial voucher is below the settled amount")
            if payload.cumulative_amount > state.deposit:
                raise AmountExceedsDepositProblem(extras={"channelId": channel_id})
            existing = self.state.get(channel_id)
            accepted = existing.accepted if existing else 0
            signature = existing.accepted_signature if existing else None
            if payload.cumulative_amount > accepted or signature is None:
                accepted, signature = max(accepted, payload.cumulative_amount), initial_signature
            channel = self.state.put(
                ServerChannel(
                    channel_id=channel_id,
                    payer=state.payer,
                    authorized_signer=state.authorized_signer,
                    deposit=state.deposit,
                    settled=state.settled,
                    accepted=max(accepted, state.settled),
                    accepted_signature=signature,
                    spent=max(existing.spent if existing else 0, state.settled),
                    descriptor=checked.descriptor,
                )
            )
        log.info("session.open", channel=channel_id, deposit=state.deposit)
        return Accepted("open", channel, challenge, tx.hash)

    # -- top-up ----------------------------------------------------------------------------

    async def _top_up(
        self, payload: TopUpPayload, channel: ServerChannel, challenge: Challenge
    ) -> Accepted:
        tx = self.backend.check_top_up(payload, channel)
        async with self.lock(channel.channel_id):
            try:
                receipt = await tx.broadcast(self.chain, "topUp")
            except ContractReverted as exc:
                raise refused("topUp", exc) from None
            except ChainError as exc:
                raise VerificationFailedProblem(f"topUp could not be broadcast: {exc}") from None
            self.backend.confirm_top_up(channel.channel_id, payload.additional_deposit, receipt)
            state = await self._chain_state(channel.channel_id, channel.descriptor, fresh=True)
            if state.finalized:
                raise ChannelFinalizedProblem(extras={"channelId": channel.channel_id})
            current = self.state.get(channel.channel_id) or channel
            channel = self.state.put(replace(current, deposit=state.deposit, settled=state.settled))
        self._wake(channel.channel_id)
        return Accepted("topUp", channel, challenge, tx.hash)

    # -- vouchers ----------------------------------------------------------------------------

    async def _voucher(
        self,
        payload: VoucherPayload,
        channel: ServerChannel,
        challenge: Challenge,
        faults: frozenset[Fault],
    ) -> Accepted:
        if (
            payload.cumulative_amount == channel.accepted
            and payload.signature == channel.accepted_signature
        ):
            return Accepted("voucher", channel, challenge)  # idempotent resend: no ECDSA, no limit
        # Throttle failures, never progress: a channel whose vouchers keep failing
        # verification is refused before the (costly) signature recovery -- except a
        # voucher answering our own demand, or anyone could stall a paid stream by
        # flooding its (public) channel id with garbage.
        bucket = self._bucket(channel.channel_id)
        demanded = self._demanded.get(channel.channel_id)
        answers_demand = demanded is not None and payload.cumulative_amount >= demanded
        wait = 0.0 if answers_demand else bucket.wait_time()
        if wait > 0:
            raise RateLimited(
                "too many failed vouchers for this channel",
                extras={"retryAfter": str(int(wait) + 1)},
            )
        if Fault.REJECT_VOUCHER in faults:
            raise VerificationFailedProblem("voucher rejected (fault injection)")
        if Fault.SLOW_VOUCHER in faults:
            await asyncio.sleep(self.config.slow_voucher_delay)
        amount = payload.cumulative_amount
        async with self.lock(channel.channel_id):
            channel = self.state.get(channel.channel_id) or channel
            if amount < channel.accepted:
                bucket.take()
                raise VerificationFailedProblem(
                    f"voucher {amount} is below the accepted cumulative {channel.accepted}",
                    extras={"channelId": channel.channel_id},
                )
            if amount == channel.accepted and payload.signature == channel.accepted_signature:
                return Accepted("voucher", channel, challenge)  # idempotent retry
            state = await self._chain_state(channel.channel_id, channel.descriptor)
            self._check_usable(state)
            try:
                signature = self.backend.redeemable(
                    payload.signature, channel.channel_id, amount, state.expected_signer
                )
            except ProblemError:
                bucket.take()
                raise
            if amount == channel.accepted:
                return Accepted("voucher", channel, challenge)
            delta = self.config.min_voucher_delta
            if delta is not None and amount - channel.accepted < delta:
                raise DeltaTooSmallProblem(
                    f"increase {amount - channel.accepted} is below minVoucherDelta {delta}",
                    extras={"channelId": channel.channel_id},
                )
            if amount > state.deposit:
                # Topped up since?
                state = await self._chain_state(channel.channel_id, channel.descriptor, fresh=True)
            if amount > state.deposit:
                raise AmountExceedsDepositProblem(
                    f"voucher {amount} exceeds the deposit {state.deposit}",
                    extras={"channelId": channel.channel_id, "deposit": str(state.deposit)},
                )
            channel = self.state.put(
                replace(
                    channel,
                    accepted=amount,
                    accepted_signature=signature,
                    deposit=state.deposit,
                )
            )
        self._wake(channel.channel_id)
        return Accepted("voucher", channel, challenge)

    def demand(self, channel_id: str, required: int) -> asyncio.Event:
        """Record a voucher demand; the returned event fires when a voucher is accepted.

        Take the event *before* sending the demand, so a voucher that arrives
        at once cannot be missed.
        """
        log.debug("stream.need_voucher", channel=channel_id, required=required)
        self._demanded[channel_id] = required
        return self._voucher_events.setdefault(channel_id, asyncio.Event())

    def wake(self, channel_id: str) -> None:
        """Wake whatever waits for a voucher on ``channel_id`` (e.g. a superseded stream)."""
        self._wake(channel_id)

    def _wake(self, channel_id: str) -> None:
        self._demanded.pop(channel_id, None)
        event = self._voucher_events.pop(channel_id, None)
        if event is not None:
            event.set()

    # -- close -------------------------------------------------------------------------------

    async def _close(
        self, payload: ClosePayload, channel: ServerChannel, challenge: Challenge
    ) -> Accepted:
        """Close cooperatively, capturing exactly ``spent``.

        The client may sign its close voucher for anything from ``spent`` up to
        what the protocol's backend allows (:meth:`ServerBackend.close_ceiling`:
        the highest accepted voucher in v1, the deposit in v2) -- the reference
        SDK signs the last cumulative it saw or signed, which can exceed
        ``spent`` after an interrupted stream. The backend closes so that the
        payee keeps ``spent``, never more than was consumed; where its close
        cannot capture less than the redeemed voucher (v1) it reports the
        difference as owed, and the payee transfers it back right after.
        """
        channel_id = channel.channel_id
        async with self.lock(channel_id):
            channel = self.state.get(channel_id) or channel
            state = await self._chain_state(channel_id, channel.descriptor, fresh=True)
            if state.finalized:
                raise ChannelFinalizedProblem(extras={"channelId": channel_id})
            spent = max(channel.spent, state.settled)
            highest = self.backend.close_ceiling(max(channel.accepted, spent), state.deposit)
            amount = payload.cumulative_amount
            if not spent <= amount <= highest:
                raise VerificationFailedProblem(
                    f"the close voucher must be for {spent} (spent) up to {highest}",
                    extras={
                        "channelId": channel_id,
                        "requiredCloseAmount": str(spent),
                        "acceptedCumulative": str(max(channel.accepted, spent)),
                    },
                )
            signature = self.backend.redeemable(
                payload.signature, channel_id, amount, state.expected_signer
            )
            closed = await self.backend.close(channel, state, spent, (amount, signature))
            # The debt is recorded with the finalization, so a failed or interrupted refund
            # is retried (return_owed_refunds) rather than forgotten.
            channel = self.state.put(
                replace(
                    channel,
                    finalized=True,
                    close_tx=closed.tx_hash,
                    settled=spent,
                    refund_owed=closed.refund_owed,
                )
            )
            self._chain_seen.pop(channel_id, None)
            if channel.refund_owed:
                channel = await self._return_overcapture(channel)
        self._wake(channel_id)
        log.info("session.close", channel=channel_id, captured=spent, voucher=amount)
        return Accepted("close", channel, challenge, closed.tx_hash)

    async def return_owed_refunds(self) -> None:
        """Retry every close refund still owed (a failed transfer or a crash after a close)."""
        for channel in self.state.owed_refunds():
            async with self.lock(channel.channel_id):
                current = self.state.get(channel.channel_id) or channel
                if current.refund_owed:
                    await self._return_overcapture(current)

    async def _return_overcapture(self, channel: ServerChannel) -> ServerChannel:
        """Send the payer what ``close`` paid beyond ``spent``; clear the debt once mined."""
        token = Token(self.chain, self.token)
        try:
            tx = await token.sign_transfer(self.wallet, channel.payer, channel.refund_owed)
            await self.chain.send_and_wait(tx, context="close refund")
        except ChainError as exc:
            log.error(
                "session.close.refund_failed",
                channel=channel.channel_id,
                amount=channel.refund_owed,
                error=str(exc),
            )
            return channel
        log.info(
            "session.close.refund",
            channel=channel.channel_id,
            amount=channel.refund_owed,
            tx=tx.hash,
        )
        return self.state.put(replace(channel, refund_owed=0))

    # -- metering ------------------------------------------------------------------------------

    async def charge(self, channel_id: str, amount: int) -> ServerChannel | None:
        """Add ``amount`` to ``spent`` if the accepted vouchers cover it; ``None`` if not."""
        async with self.lock(channel_id):
            channel = self.state.get(channel_id)
            if channel is None or channel.finalized or channel.available < amount:
                return None
            return self.state.charge(channel_id, amount)

    def receipt(
        self,
        channel: ServerChannel,
        challenge_id: str,
        *,
        units: int | None = None,
        tx_hash: str | None = None,
        faults: frozenset[Fault] = frozenset(),
    ) -> dict[str, JSON]:
        """A session receipt for ``channel`` (faults may falsify it on purpose)."""
        channel_id = channel.channel_id
        spent = channel.spent
        if Fault.WRONG_CHANNEL in faults:
            channel_id = "0x" + "ee" * 32
        if Fault.WRONG_CHALLENGE in faults:
            challenge_id = "not-the-challenge-you-used"
        if Fault.OVERCHARGE in faults:
            spent = spent + 10 * self.config.price_per_token
        receipt: dict[str, JSON] = {
            "method": "tempo",
            "intent": "session",
            "status": "success",
            "timestamp": format_rfc3339(datetime.now(UTC)),
            "reference": channel_id,
            "challengeId": challenge_id,
            "channelId": channel_id,
            "acceptedCumulative": str(channel.accepted),
            "spent": str(spent),
        }
        if units is not None:
            receipt["units"] = units
        if tx_hash is not None:
            receipt["txHash"] = tx_hash
        return receipt

    # -- internals -------------------------------------------------------------------------------

    async def _known_channel(self, payload: LaterPayload, source: str | None) -> ServerChannel:
        """The channel ``payload`` names, adopted from the chain if this server lost it."""
        channel_id = payload.channel_id
        descriptor = self.backend.channel_descriptor(payload, source)
        channel = self.state.get(channel_id)
        if channel is None:
            # Opened elsewhere (or before a crash): adopt it if the chain says it is ours.
            state = await self._chain_state(channel_id, descriptor, fresh=True)
            if state.cleared:
                # Finalized (and wiped) on chain: nothing says it was ours, nothing can be paid.
                raise ChannelFinalizedProblem(
                    "the channel is closed", extras={"channelId": channel_id}
                )
            if not state.exists or state.payee != self.payee or state.token != self.token:
                raise ChannelNotFoundProblem(
                    "no channel with this id pays this server", extras={"channelId": channel_id}
                )
            channel = self.state.put(
                ServerChannel(
                    channel_id=channel_id,
                    payer=state.payer,
                    authorized_signer=state.authorized_signer,
                    deposit=state.deposit,
                    settled=state.settled,
                    accepted=state.settled,
                    accepted_signature=None,
                    spent=state.settled,
                    finalized=state.finalized,
                    descriptor=descriptor,
                )
            )
        if channel.finalized:
            raise ChannelFinalizedProblem("the channel is closed", extras={"channelId": channel_id})
        return channel

    async def _chain_state(
        self, channel_id: str, descriptor: str | None, *, fresh: bool = False
    ) -> ChannelState:
        seen = self._chain_seen.get(channel_id)
        now = time.monotonic()
        if seen and not fresh and now - seen[0] < self.config.chain_check_interval:
            return seen[1]
        try:
            state = await self.backend.read_state(channel_id, descriptor)
        except ChainError as exc:
            raise VerificationFailedProblem(
                f"cannot read the channel from the chain: {exc}"
            ) from None
        self._chain_seen[channel_id] = (now, state)
        return state

    def _check_usable(self, state: ChannelState) -> None:
        if state.finalized:  # first: the escrow clears payer, payee and token when it finalizes
            raise ChannelFinalizedProblem(extras={"channelId": state.channel_id})
        if not state.exists:
            raise ChannelNotFoundProblem(extras={"channelId": state.channel_id})
        if state.payee != self.payee or state.token != self.token:
            raise VerificationFailedProblem("the channel does not pay this server in this token")
        if state.close_requested_at:
            raise VerificationFailedProblem(
                "a forced close is pending on this channel; no more vouchers are accepted",
                extras={"channelId": state.channel_id},
            )
        if state.deposit - state.settled < self.config.price_per_token:
            raise AmountExceedsDepositProblem(
                "the channel's available deposit cannot pay for one token",
                extras={"channelId": state.channel_id},
            )

    def _bucket(self, channel_id: str) -> _Bucket:
        bucket = self._buckets.get(channel_id)
        if bucket is None:
            bucket = _Bucket(self.config.voucher_rate_per_second, self.config.voucher_burst)
            self._buckets[channel_id] = bucket
        return bucket
