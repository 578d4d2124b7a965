// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {ITempoStreamChannel} from "./ITempoStreamChannel.sol";

/// @title TempoStreamChannel
/// @notice Unidirectional payment-channel escrow for the MPP "session" intent, protocol v1
///         (draft-tempo-session-00). A payer locks tokens in a channel, signs EIP-712 vouchers
///         for ever-growing cumulative amounts off-chain, and the payee redeems the latest one
///         with `settle` or `close`. If the payee disappears, the payer gets the unsettled rest
///         back through `requestClose`, a 15-minute grace period, and `withdraw`.
/// @dev Design notes (the why behind the code):
///  - Channels are never deleted. A finalized channel keeps its record so the same id can
///    never be opened again; otherwise old vouchers for that id would become redeemable again.
///  - Every state-changing function is `nonReentrant` and follows checks-effects-interactions:
///    all storage writes and events happen before any token transfer.
///  - Vouchers carry cumulative totals, so replay is harmless: `settled` only moves forward.
///    They are bound to this deployment and chain by the EIP-712 domain (verifyingContract,
///    chainId) and by the channel id, which itself includes `address(this)` and the chain id.
///  - Signatures go through OpenZeppelin ECDSA, which rejects high-s and v other than 27/28.
///    Both 65-byte r||s||v and 64-byte EIP-2098 r||vs encodings are accepted (the draft allows
///    both); every recovery failure is reported as `InvalidSignature`.
///  - The token is trusted to move exactly the requested amount. Fee-on-transfer or rebasing
///    tokens are not supported: the escrow would credit more than it holds for that token.
contract TempoStreamChannel is ITempoStreamChannel, EIP712, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @inheritdoc ITempoStreamChannel
    /// @dev Long enough for a payee to notice `CloseRequested` and submit its last voucher,
    ///      short enough that a payer whose server vanished gets its funds back the same hour.
    uint64 public constant CLOSE_GRACE_PERIOD = 15 minutes;

    /// @inheritdoc ITempoStreamChannel
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)");

    /// @inheritdoc ITempoStreamChannel
    /// @dev Part of the draft's reference interface. No function here consumes a signed close
    ///      request (`requestClose` is authorised by `msg.sender`); the constant and
    ///      `getCloseRequestDigest` exist so tools built against the reference ABI keep working.
    bytes32 public constant CLOSE_REQUEST_TYPEHASH = keccak256("CloseRequest(bytes32 channelId,uint64 requestedAt)");

    /// @dev channelId => channel. `payer == address(0)` means "no such channel".
    mapping(bytes32 channelId => Channel) private _channels;

    constructor() EIP712("Tempo Stream Channel", "1") {}

    // ====================================================================== payer / payee actions

    /// @notice Opens a channel funded by the caller (the payer) and pulls `deposit` of `token`.
    /// @dev The caller must have approved this contract for `deposit` beforehand. The id is
    ///      derived from the caller and all parameters (see `computeChannelId`), so a client can
    ///      know it before the transaction is mined; reusing a salt with the same parameters
    ///      reverts with `ChannelAlreadyExists` even after that channel was finalized.
    /// @param payee The account allowed to redeem vouchers; must not be zero.
    /// @param token The ERC-20 token to escrow; must not be zero.
    /// @param deposit Amount to lock, in base units; must not be zero.
    /// @param salt Any value that makes the id unique among the payer's channels.
    /// @param authorizedSigner Hot key that signs vouchers, or zero to have the payer sign.
    /// @return channelId The new channel's id.
    function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner)
        external
        nonReentrant
        returns (bytes32 channelId)
    {
        if (payee == address(0)) revert InvalidPayee();
        if (token == address(0)) revert InvalidToken();
        if (deposit == 0) revert ZeroDeposit();

        channelId = computeChannelId(msg.sender, payee, token, salt, authorizedSigner);
        Channel storage channel = _channels[channelId];
        if (channel.payer != address(0)) revert ChannelAlreadyExists();

        channel.payer = msg.sender;
        channel.payee = payee;
        channel.token = token;
        channel.authorizedSigner = authorizedSigner;
        channel.deposit = deposit;

        emit ChannelOpened(channelId, msg.sender, payee, token, authorizedSigner, deposit);

        IERC20(token).safeTransferFrom(msg.sender, address(this), deposit);
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
        uint128 settled = channel.settled;
        if (cumulativeAmount <= settled) revert AmountNotIncreasing();
        if (cumulativeAmount > channel.deposit) revert AmountExceedsDeposit();
        _verifyVoucher(channel, channelId, cumulativeAmount, signature);

        uint128 delta = cumulativeAmount - settled;
        channel.settled = cumulativeAmount;

        emit Settled(channelId, channel.payer, channel.payee, cumulativeAmount, delta, cumulativeAmount);

        IERC20(channel.token).safeTransfer(channel.payee, delta);
    }

    /// @notice Adds `additionalDeposit` to the channel, pulled from the payer.
    /// @dev Payer only: a top-up changes the payer's exposure, and it also cancels a pending
    ///      close request (a payer that adds funds evidently wants the channel to continue), as
    ///      the draft requires. The payer must have approved this contract for the amount.
    /// @param channelId The channel.
    /// @param additionalDeposit Amount to add; must not be zero.
    function topUp(bytes32 channelId, uint128 additionalDeposit) external nonReentrant {
        Channel storage channel = _liveChannel(channelId);
        if (msg.sender != channel.payer) revert NotPayer();
        if (additionalDeposit == 0) revert ZeroDeposit();
        uint256 newDeposit = uint256(channel.deposit) + additionalDeposit;
        if (newDeposit > type(uint128).max) revert DepositOverflow();

        // casting to uint128 is safe: newDeposit was checked against type(uint128).max above
        // forge-lint: disable-next-line(unsafe-typecast)
        channel.deposit = uint128(newDeposit);
        bool cancelled = channel.closeRequestedAt != 0;
        if (cancelled) channel.closeRequestedAt = 0;

        emit TopUp(channelId, channel.payer, channel.payee, additionalDeposit, newDeposit);
        if (cancelled) emit CloseRequestCancelled(channelId, channel.payer, channel.payee);

        IERC20(channel.token).safeTransferFrom(msg.sender, address(this), additionalDeposit);
    }

    /// @notice Cooperative close by the payee: settles the final voucher, refunds the rest to
    ///         the payer and finalizes the channel.
    /// @dev `cumulativeAmount` may equal `settled` (nothing more to pay, e.g. the last voucher was
    ///      already settled, or nothing was ever used). In that case no signature is checked:
    ///      the call moves no funds to the payee and only releases the payer's money, which the
    ///      payee may always do. When `cumulativeAmount > settled`, the voucher is verified
    ///      exactly as in `settle`. The refund is `deposit - max(cumulativeAmount, settled)`.
    /// @param channelId The channel.
    /// @param cumulativeAmount Final cumulative total; must be >= `settled` and <= `deposit`.
    /// @param signature The final voucher's signature (ignored when nothing is left to settle).
    function close(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external nonReentrant {
        Channel storage channel = _liveChannel(channelId);
        if (msg.sender != channel.payee) revert NotPayee();
        uint128 settled = channel.settled;
        if (cumulativeAmount < settled) revert AmountNotIncreasing();
        uint128 deposit = channel.deposit;
        if (cumulativeAmount > deposit) revert AmountExceedsDeposit();

        uint128 delta = cumulativeAmount - settled;
        if (delta != 0) {
            _verifyVoucher(channel, channelId, cumulativeAmount, signature);
            channel.settled = cumulativeAmount;
        }
        uint128 refund = deposit - cumulativeAmount;
        channel.finalized = true;

        address payer = channel.payer;
        address payee = channel.payee;
        if (delta != 0) emit Settled(channelId, payer, payee, cumulativeAmount, delta, cumulativeAmount);
        emit ChannelClosed(channelId, payer, payee, cumulativeAmount, refund);

        IERC20 token = IERC20(channel.token);
        if (delta != 0) token.safeTransfer(payee, delta);
        if (refund != 0) token.safeTransfer(payer, refund);
    }

    /// @notice Starts a forced close: after `CLOSE_GRACE_PERIOD` the payer may `withdraw`.
    /// @dev Payer only. A second request while one is pending reverts with
    ///      `CloseAlreadyRequested` rather than restarting or silently keeping the clock: the
    ///      grace end must be unambiguous, and the caller learns that nothing happened. A top-up
    ///      cancels the request; after that a new request starts a fresh grace period.
    /// @param channelId The channel.
    function requestClose(bytes32 channelId) external nonReentrant {
        Channel storage channel = _liveChannel(channelId);
        if (msg.sender != channel.payer) revert NotPayer();
        if (channel.closeRequestedAt != 0) revert CloseAlreadyRequested();

        uint64 requestedAt = uint64(block.timestamp);
        channel.closeRequestedAt = requestedAt;

        emit CloseRequested(channelId, channel.payer, channel.payee, uint256(requestedAt) + CLOSE_GRACE_PERIOD);
    }

    /// @notice Ends a forced close: refunds `deposit - settled` to the payer and finalizes.
    /// @dev Payer only, and only once `block.timestamp >= closeRequestedAt + CLOSE_GRACE_PERIOD`
    ///      (else `CloseNotReady`, also when no close was requested). Vouchers the payee did not
    ///      redeem in time are forfeited, which is the point of the grace period. Emits
    ///      `ChannelClosed` (no separate event), so watchers see one finalization event for both
    ///      the cooperative and the forced path; `settledToPayee` is the final settled total.
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
        channel.finalized = true;

        emit ChannelClosed(channelId, channel.payer, channel.payee, settled, refund);

        if (refund != 0) IERC20(channel.token).safeTransfer(channel.payer, refund);
    }

    // ====================================================================== views

    /// @notice The channel's state; all fields zero when the id is unknown (no revert, so that
    ///         callers and `getChannelsBatch` can probe ids cheaply).
    function getChannel(bytes32 channelId) external view returns (Channel memory) {
        return _channels[channelId];
    }

    /// @notice `getChannel` for many ids in one call; unknown ids yield zeroed entries.
    function getChannelsBatch(bytes32[] calldata channelIds) external view returns (Channel[] memory channels) {
        channels = new Channel[](channelIds.length);
        for (uint256 i = 0; i < channelIds.length; ++i) {
            channels[i] = _channels[channelIds[i]];
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
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount)));
    }

    /// @notice The EIP-712 digest of a `CloseRequest(channelId, requestedAt)`; informational only
    ///         (see `CLOSE_REQUEST_TYPEHASH`).
    function getCloseRequestDigest(bytes32 channelId, uint64 requestedAt) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(CLOSE_REQUEST_TYPEHASH, channelId, requestedAt)));
    }

    /// @notice The EIP-712 domain separator: name "Tempo Stream Channel", version "1", this
    ///         chain's id and this contract's address.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ====================================================================== internals

    /// @dev The channel's storage, after the two checks every mutating call on an existing
    ///      channel needs: it exists, and it is not finalized.
    function _liveChannel(bytes32 channelId) private view returns (Channel storage channel) {
        channel = _channels[channelId];
        if (channel.payer == address(0)) revert ChannelNotFound();
        if (channel.finalized) revert ChannelFinalized();
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
}
