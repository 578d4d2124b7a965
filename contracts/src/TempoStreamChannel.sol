// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {ITempoStreamChannel} from "./ITempoStreamChannel.sol";

/// @title TempoStreamChannel
/// @notice Unidirectional payment-channel escrow for the MPP "session" intent, protocol v1
///         (draft-tempo-session-00), with the ABI of the escrow deployed on Tempo. A payer locks
///         tokens in a channel, signs EIP-712 vouchers for ever-growing cumulative amounts
///         off-chain, and the payee redeems the latest one with `settle` or `close`. If the payee
///         disappears, the payer gets the unsettled rest back through `requestClose`, a 15-minute
///         grace period, and `withdraw`.
/// @dev Design notes (the why behind the code):
///  - ABI: every function selector, the `Channel` field order, every event and every custom
///    error are those of the deployed contract (see `ITempoStreamChannel`). The only addition is
///    OpenZeppelin's `ReentrancyGuardReentrantCall` error, which only a malicious token can ever
///    trigger. To keep the ABI exact, the EIP-712 domain is built here from OpenZeppelin's
///    `MessageHashUtils` instead of inheriting OpenZeppelin's `EIP712` (whose `EIP712DomainChanged`
///    event and string errors the deployed contract does not have).
///  - Behaviour follows the deployed contract where clients can observe it: finalizing clears a
///    channel's record except `finalized` (the id can never be opened again, so old vouchers can
///    never become redeemable again); `close` emits only `ChannelClosed` (no `Settled`), and
///    with an amount at or below `settled` it just closes;
///    a second `requestClose` is a no-op that keeps the first grace period; `withdraw` emits
///    `ChannelExpired` before `ChannelClosed`; zero deposits and top-ups are allowed (the ABI
///    has no error for them, and they move no funds).
///  - Safety beyond the deployed contract: signatures go through OpenZeppelin ECDSA, which rejects
///    high-s and v other than 27/28 (the draft requires low-s; the deployed contract's library
///    does not check it). 65-byte r||s||v and 64-byte EIP-2098 r||vs are both accepted, as the
///    draft and the deployed contract do. Every state-changing function is `nonReentrant` and
///    follows checks-effects-interactions: storage writes and events come before any token call.
///    Token calls accept tokens that return nothing (as OpenZeppelin SafeERC20 does), bubble a
///    token's own revert, and report a `false` return or a code-less token as `TransferFailed`.
///  - Vouchers carry cumulative totals, so replay is harmless: `settled` only moves forward.
///    They are bound to this deployment and chain by the EIP-712 domain (verifyingContract,
///    chainId) and by the channel id, which itself includes `address(this)` and the chain id.
///  - The token is trusted to move exactly the requested amount. Fee-on-transfer or rebasing
///    tokens are not supported: the escrow would credit more than it holds for that token.
contract TempoStreamChannel is ITempoStreamChannel, ReentrancyGuard {
    /// @inheritdoc ITempoStreamChannel
    /// @dev Long enough for a payee to notice `CloseRequested` and submit its last voucher,
    ///      short enough that a payer whose server vanished gets its funds back the same hour.
    uint64 public constant CLOSE_GRACE_PERIOD = 15 minutes;

    /// @inheritdoc ITempoStreamChannel
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)");

    string private constant _NAME = "Tempo Stream Channel";
    string private constant _VERSION = "1";
    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    /// @dev The domain separator is cached for the deployment chain and recomputed if the chain id
    ///      ever differs (a fork), so vouchers never verify under a stale chain id.
    bytes32 private immutable _cachedDomainSeparator;
    uint256 private immutable _cachedChainId;

    /// @notice Channel state by id; the public getter returns the fields in `Channel` order.
    /// @dev `payer == address(0) && !finalized` means "no such channel".
    mapping(bytes32 => Channel) public channels;

    constructor() {
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    // ====================================================================== payer / payee actions

    /// @notice Opens a channel funded by the caller (the payer) and pulls `deposit` of `token`.
    /// @dev The caller must have approved this contract for `deposit` beforehand. The id is
    ///      derived from the caller and all parameters (see `computeChannelId`), so a client can
    ///      know it before the transaction is mined; reusing a salt with the same parameters
    ///      reverts with `ChannelAlreadyExists` even after that channel was finalized.
    /// @param payee The account allowed to redeem vouchers; must not be zero.
    /// @param token The ERC-20 token to escrow (a code-less address fails with `TransferFailed`).
    /// @param deposit Amount to lock, in base units.
    /// @param salt Any value that makes the id unique among the payer's channels.
    /// @param authorizedSigner Hot key that signs vouchers, or zero to have the payer sign.
    /// @return channelId The new channel's id.
    function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner)
        external
        nonReentrant
        returns (bytes32 channelId)
    {
        if (payee == address(0)) revert InvalidPayee();

        channelId = computeChannelId(msg.sender, payee, token, salt, authorizedSigner);
        Channel storage channel = channels[channelId];
        if (channel.payer != address(0) || channel.finalized) revert ChannelAlreadyExists();

        channel.payer = msg.sender;
        channel.payee = payee;
        channel.token = token;
        channel.authorizedSigner = authorizedSigner;
        channel.deposit = deposit;

        emit ChannelOpened(channelId, msg.sender, payee, token, authorizedSigner, salt, deposit);

        _callToken(token, abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), deposit)));
    }

    /// @notice Redeems a voucher without closing: pays the payee `cumulativeAmount - settled`.
    /// @dev Payee only, so a third party cannot force an early settlement (and the gas cost) on
    ///      the payee. Allowed while a close request is pending: the grace period exists exactly
    ///      so the payee can still claim what it is owed. Once the grace period has passed, settle
    ///      and close still work until the payer actually withdraws (first transaction wins).
    /// @param channelId The channel.
    /// @param cumulativeAmount Total authorised by the voucher; must exceed `settled` and must
    ///        not exceed `deposit`.
    /// @param signature The voucher's EIP-712 signature by the authorized signer (or payer).
    function settle(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external nonReentrant {
        Channel storage channel = _liveChannel(channelId);
        if (msg.sender != channel.payee) revert NotPayee();
        if (cumulativeAmount > channel.deposit) revert AmountExceedsDeposit();
        uint128 settled = channel.settled;
        if (cumulativeAmount <= settled) revert AmountNotIncreasing();
        _verifyVoucher(channel, channelId, cumulativeAmount, signature);

        uint128 delta = cumulativeAmount - settled;
        channel.settled = cumulativeAmount;

        emit Settled(channelId, channel.payer, channel.payee, cumulativeAmount, delta, cumulativeAmount);

        _callToken(channel.token, abi.encodeCall(IERC20.transfer, (channel.payee, delta)));
    }

    /// @notice Adds `additionalDeposit` to the channel, pulled from the payer.
    /// @dev Payer only: a top-up changes the payer's exposure, and it also cancels a pending
    ///      close request (a payer that adds funds evidently wants the channel to continue), as
    ///      the draft requires. The payer must have approved this contract for the amount. The
    ///      amount is a uint256 as in the deployed ABI; the total must still fit in uint128.
    /// @param channelId The channel.
    /// @param additionalDeposit Amount to add.
    function topUp(bytes32 channelId, uint256 additionalDeposit) external nonReentrant {
        Channel storage channel = _liveChannel(channelId);
        if (msg.sender != channel.payer) revert NotPayer();
        uint128 deposit = channel.deposit;
        if (additionalDeposit > type(uint128).max - deposit) revert DepositOverflow();

        // casting to uint128 is safe: the sum was checked against type(uint128).max above
        // forge-lint: disable-next-line(unsafe-typecast)
        uint128 newDeposit = deposit + uint128(additionalDeposit);
        channel.deposit = newDeposit;
        if (channel.closeRequestedAt != 0) {
            channel.closeRequestedAt = 0;
            emit CloseRequestCancelled(channelId, channel.payer, channel.payee);
        }

        emit TopUp(channelId, channel.payer, channel.payee, additionalDeposit, newDeposit);

        _callToken(channel.token, abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), additionalDeposit)));
    }

    /// @notice Cooperative close by the payee: settles the final voucher, refunds the rest to
    ///         the payer and finalizes the channel.
    /// @dev The payee receives `cumulativeAmount - settled` (the voucher's amount, not a separate
    ///      capture figure: v1 has none). When `cumulativeAmount <= settled` nothing more is paid
    ///      and no signature is checked: the call only releases the payer's money, which the payee
    ///      may always do. The refund is `deposit - max(cumulativeAmount, settled)`.
    /// @param channelId The channel.
    /// @param cumulativeAmount Final cumulative total; must not exceed `deposit` when above `settled`.
    /// @param signature The final voucher's signature (ignored when nothing is left to settle).
    function close(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external nonReentrant {
        Channel storage channel = _liveChannel(channelId);
        if (msg.sender != channel.payee) revert NotPayee();
        uint128 settled = channel.settled;
        uint128 deposit = channel.deposit;
        uint128 delta = 0;
        if (cumulativeAmount > settled) {
            if (cumulativeAmount > deposit) revert AmountExceedsDeposit();
            _verifyVoucher(channel, channelId, cumulativeAmount, signature);
            delta = cumulativeAmount - settled;
            settled = cumulativeAmount;
        }
        uint128 refund = deposit - settled;
        address token = channel.token;
        address payer = channel.payer;
        address payee = channel.payee;
        _finalize(channelId);

        emit ChannelClosed(channelId, payer, payee, settled, refund);

        if (delta != 0) _callToken(token, abi.encodeCall(IERC20.transfer, (payee, delta)));
        if (refund != 0) _callToken(token, abi.encodeCall(IERC20.transfer, (payer, refund)));
    }

    /// @notice Starts a forced close: after `CLOSE_GRACE_PERIOD` the payer may `withdraw`.
    /// @dev Payer only. A second request while one is pending changes nothing (no event): the
    ///      grace end stays the first one, so repeating the call cannot extend the payee's window.
    ///      A top-up cancels the request; after that a new request starts a fresh grace period.
    /// @param channelId The channel.
    function requestClose(bytes32 channelId) external nonReentrant {
        Channel storage channel = _liveChannel(channelId);
        if (msg.sender != channel.payer) revert NotPayer();
        if (channel.closeRequestedAt != 0) return;

        uint64 requestedAt = uint64(block.timestamp);
        channel.closeRequestedAt = requestedAt;

        emit CloseRequested(channelId, channel.payer, channel.payee, uint256(requestedAt) + CLOSE_GRACE_PERIOD);
    }

    /// @notice Ends a forced close: refunds `deposit - settled` to the payer and finalizes.
    /// @dev Payer only, and only once `block.timestamp >= closeRequestedAt + CLOSE_GRACE_PERIOD`
    ///      (else `CloseNotReady`, also when no close was requested). Vouchers the payee did not
    ///      redeem in time are forfeited, which is the point of the grace period. Emits
    ///      `ChannelExpired` and then `ChannelClosed`, whose `settledToPayee` is the final
    ///      settled total, so watchers see one finalization event for both paths.
    /// @param channelId The channel.
    function withdraw(bytes32 channelId) external nonReentrant {
        Channel storage channel = _liveChannel(channelId);
        if (msg.sender != channel.payer) revert NotPayer();
        uint64 requestedAt = channel.closeRequestedAt;
        // Timestamps are what the draft specifies; a validator's few seconds of skew are
        // immaterial against a 15-minute window.
        // forge-lint: disable-next-line(block-timestamp)
        if (requestedAt == 0 || block.timestamp < uint256(requestedAt) + CLOSE_GRACE_PERIOD) {
            revert CloseNotReady();
        }

        uint128 settled = channel.settled;
        uint128 refund = channel.deposit - settled;
        address token = channel.token;
        address payer = channel.payer;
        address payee = channel.payee;
        _finalize(channelId);

        emit ChannelExpired(channelId, payer, payee);
        emit ChannelClosed(channelId, payer, payee, settled, refund);

        if (refund != 0) _callToken(token, abi.encodeCall(IERC20.transfer, (payer, refund)));
    }

    // ====================================================================== views

    /// @notice The channel's state; all fields zero when the id is unknown (no revert, so that
    ///         callers and `getChannelsBatch` can probe ids cheaply), only `finalized` once closed.
    function getChannel(bytes32 channelId) external view returns (Channel memory) {
        return channels[channelId];
    }

    /// @notice `getChannel` for many ids in one call; unknown ids yield zeroed entries.
    function getChannelsBatch(bytes32[] calldata channelIds) external view returns (Channel[] memory channelStates) {
        channelStates = new Channel[](channelIds.length);
        for (uint256 i = 0; i < channelIds.length; ++i) {
            channelStates[i] = channels[channelIds[i]];
        }
    }

    /// @notice The id `open` assigns: keccak256(abi.encode(payer, payee, token, salt,
    ///         authorizedSigner, address(this), block.chainid)).
    /// @dev Binding the escrow address and chain id into the id keeps channels (and therefore
    ///      vouchers) of different deployments apart even if everything else is equal.
    function computeChannelId(address payer, address payee, address token, bytes32 salt, address authorizedSigner)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(payer, payee, token, salt, authorizedSigner, address(this), block.chainid));
    }

    /// @notice The EIP-712 digest a voucher signer signs for `(channelId, cumulativeAmount)`.
    function getVoucherDigest(bytes32 channelId, uint128 cumulativeAmount) public view returns (bytes32) {
        return MessageHashUtils.toTypedDataHash(
            domainSeparator(), keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount))
        );
    }

    /// @notice The EIP-712 domain separator: name "Tempo Stream Channel", version "1", this
    ///         chain's id and this contract's address.
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    /// @inheritdoc ITempoStreamChannel
    /// @dev `fields == 0x0f`: name, version, chainId and verifyingContract are used; no salt and no
    ///      extensions.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", _NAME, _VERSION, block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    // ====================================================================== internals

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                _DOMAIN_TYPEHASH, keccak256(bytes(_NAME)), keccak256(bytes(_VERSION)), block.chainid, address(this)
            )
        );
    }

    /// @dev The channel's storage, after the two checks every mutating call on an existing
    ///      channel needs. `finalized` is checked first: a finalized record has no payer left.
    function _liveChannel(bytes32 channelId) private view returns (Channel storage channel) {
        channel = channels[channelId];
        if (channel.finalized) revert ChannelFinalized();
        if (channel.payer == address(0)) revert ChannelNotFound();
    }

    /// @dev Clears the record (a storage refund) but keeps `finalized`, which blocks re-opening.
    function _finalize(bytes32 channelId) private {
        delete channels[channelId];
        channels[channelId].finalized = true;
    }

    /// @dev Reverts `InvalidSignature` unless `signature` is a canonical signature of the voucher
    ///      digest by the channel's authorized signer, or by the payer when none is set. When a
    ///      delegate is set, the payer's own signature is rejected: delegation is exclusive, so
    ///      the payer's cold key is never needed (or accepted) while streaming.
    function _verifyVoucher(
        Channel storage channel,
        bytes32 channelId,
        uint128 cumulativeAmount,
        bytes calldata signature
    ) private view {
        address expected = channel.authorizedSigner;
        if (expected == address(0)) expected = channel.payer;

        bytes32 digest = getVoucherDigest(channelId, cumulativeAmount);
        address recovered;
        ECDSA.RecoverError err;
        if (signature.length == 64) {
            // EIP-2098 compact form r || vs; OpenZeppelin still enforces low s.
            (recovered, err,) = ECDSA.tryRecover(digest, bytes32(signature[0:32]), bytes32(signature[32:64]));
        } else {
            // 65-byte r || s || v (v must be 27 or 28); any other length yields an error.
            (recovered, err,) = ECDSA.tryRecoverCalldata(digest, signature);
        }
        if (err != ECDSA.RecoverError.NoError || recovered != expected) revert InvalidSignature();
    }

    /// @dev Calls `transfer`/`transferFrom` on `token` with SafeERC20's acceptance rule (no return
    ///      value is fine if the token has code; a returned value must be true), but bubbles a
    ///      token's own revert (e.g. insufficient allowance, so a client learns why) and reports
    ///      every other failure as the ABI's `TransferFailed`.
    function _callToken(address token, bytes memory data) private {
        // forge-lint: disable-next-line(unchecked-call)
        (bool ok, bytes memory returned) = token.call(data);
        if (!ok) {
            if (returned.length != 0) {
                assembly ("memory-safe") {
                    revert(add(returned, 0x20), mload(returned))
                }
            }
            revert TransferFailed();
        }
        bool accepted = returned.length == 0
            ? token.code.length != 0
            : returned.length >= 32 && abi.decode(returned, (uint256)) == 1;
        if (!accepted) revert TransferFailed();
    }
}
