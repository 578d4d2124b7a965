// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {ITIP20ChannelReserve} from "./ITIP20ChannelReserve.sol";

/// @title TIP20ChannelReserve
/// @notice A local stand-in for the TIP-1034 "TIP-20 Channel Reserve" precompile that Tempo
///         mainnet runs at 0x4D50500000000000000000000000000000000000 (MPP session protocol v2).
///         Development chains (anvil) have no such precompile; the devchain installs this
///         contract's runtime code at that address with `anvil_setCode`, so clients, servers and
///         the reference SDK talk to it exactly as they would to the real one: same selectors,
///         structs, events, errors, channel ids and voucher digests.
/// @dev What it keeps from the spec (the why is in the spec; the how is here):
///  - A channel is a payer -> payee reserve of one token. Only the packed `ChannelState`
///    (settled | deposit | closeRequestedAt, one slot) is stored; the descriptor comes back in
///    calldata and the id is recomputed from it, so a forged descriptor finds no channel.
///  - Terminal `close` and `withdraw` delete the slot. Reopening in a later transaction yields a
///    new id because the opening transaction's hash is part of it; reopening the same id in the
///    same transaction is refused through a transient "opened in this transaction" mark.
///  - Any `topUp` (even of zero) cancels a pending close; a zero top-up with no close pending is
///    a silent no-op. `requestClose` is idempotent; `withdraw` needs
///    `block.timestamp >= closeRequestedAt + CLOSE_GRACE_PERIOD`.
///  - `settle` and `close` may be sent by the payee or by a nonzero operator; payouts always go
///    to the payee. `close` captures `captureAmount` with `settled <= capture <= cumulative` and
///    `capture <= deposit`, and needs a voucher only when it captures more than `settled`.
///  - The voucher signer is `authorizedSigner` when set, otherwise the payer (exclusive).
///  - No immutables and no constructor state: `anvil_setCode` installs runtime code only, so the
///    EIP-712 domain separator is computed from `address(this)` and `block.chainid` on each use.
///
/// The only divergences from the precompile, each standing in for something a contract cannot do:
///  (a) Implicit approval (TIP-1035). The precompile moves TIP-20 funds without an `approve`.
///      This contract uses ordinary `transferFrom`, so the devchain grants it an allowance from
///      every account it funds. Pulls are always from `msg.sender`, as the implicit-approval
///      admission rules require.
///  (b) `expiringNonceHash`. The precompile derives it from the enclosing transaction as
///      keccak256(encodeForSigning(tx) || sender); a contract cannot see its transaction's
///      envelope. Instead a JSON-RPC front in front of anvil computes that hash from each raw
///      transaction that calls `open` and writes it with `anvil_setStorageAt` into
///      `pendingExpiringNonceHash[sender]` before forwarding the transaction. The first `open` of
///      the transaction consumes (deletes) that slot and keeps the value in transient storage,
///      so further opens in the same transaction see the same hash, as with the precompile.
///      The slot of `pendingExpiringNonceHash[sender]` is
///          keccak256(abi.encode(sender, uint256(1)))
///      (the mapping is the second state variable; `_states` is slot 0). `sender` is
///      `tx.origin`, the top-level transaction sender, as for the precompile.
/// Also not supported here: TIP-1020 P256 and WebAuthn voucher signatures. Vouchers must be
/// 65-byte secp256k1 `r || s || v` (v = 27/28 or 0/1) with low s; anything else is
/// `InvalidSignature`. TIP-403 transfer policies do not exist on a plain ERC-20 and are not
/// checked. The token is trusted to move exactly the requested amount.
contract TIP20ChannelReserve is ITIP20ChannelReserve, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @inheritdoc ITIP20ChannelReserve
    uint64 public constant CLOSE_GRACE_PERIOD = 15 minutes;

    /// @inheritdoc ITIP20ChannelReserve
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint96 cumulativeAmount)");

    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("TIP20 Channel Reserve");
    bytes32 private constant _VERSION_HASH = keccak256("1");

    /// @dev TIP-20 tokens live under this 12-byte prefix; the precompile refuses them as payees
    ///      (a token contract cannot receive payouts or sign as payee).
    bytes12 private constant _TIP20_PREFIX = 0x20c000000000000000000000;

    /// @dev Namespace of the transient "opened in this transaction" marks (one per channel id).
    bytes32 private constant _OPENED_NAMESPACE = keccak256("mppagent.TIP20ChannelReserve.openedThisTx");

    /// @dev Slot 0. channelId => packed state; `deposit == 0` means no channel.
    mapping(bytes32 channelId => ChannelState) private _states;

    /// @notice Divergence (b): the opening transaction's hash, written per sender by the
    ///         devchain's JSON-RPC front before it forwards a transaction that calls `open`.
    /// @dev Slot 1: `pendingExpiringNonceHash[s]` lives at keccak256(abi.encode(s, uint256(1))).
    ///      Do not add state variables before it.
    mapping(address sender => bytes32) public pendingExpiringNonceHash;

    /// @dev The hash consumed by the first `open` of this transaction, for later opens in it.
    bytes32 private transient _txExpiringNonceHash;

    // ====================================================================== payer actions

    /// @notice Opens a channel funded by the caller and pulls `deposit` of `token` from it.
    /// @return channelId keccak256(abi.encode(payer, payee, operator, token, salt,
    ///         authorizedSigner, expiringNonceHash, address(this), block.chainid)).
    function open(address payee, address operator, address token, uint96 deposit, bytes32 salt, address authorizedSigner)
        external
        nonReentrant
        returns (bytes32 channelId)
    {
        if (payee == address(0) || bytes12(bytes20(payee)) == _TIP20_PREFIX) revert InvalidPayee();
        if (token == address(0) || token.code.length == 0) revert InvalidToken();
        if (deposit == 0) revert ZeroDeposit();

        bytes32 expiringNonceHash = _expiringNonceHash();
        channelId = computeChannelId(msg.sender, payee, operator, token, salt, authorizedSigner, expiringNonceHash);
        if (_states[channelId].deposit != 0 || _openedThisTx(channelId)) revert ChannelAlreadyExists();

        _states[channelId] = ChannelState({settled: 0, deposit: deposit, closeRequestedAt: 0});
        _markOpened(channelId);

        IERC20(token).safeTransferFrom(msg.sender, address(this), deposit);

        emit ChannelOpened(
            channelId, msg.sender, payee, operator, token, authorizedSigner, salt, expiringNonceHash, deposit
        );
    }

    /// @notice Adds `additionalDeposit` (pulled from the payer) and cancels a pending close.
    /// @dev A zero top-up with a close pending only cancels it (and still emits `TopUp`, as the
    ///      precompile does); with no close pending it changes nothing and emits nothing.
    function topUp(ChannelDescriptor calldata descriptor, uint96 additionalDeposit) external nonReentrant {
        bytes32 channelId = _channelId(descriptor);
        ChannelState memory state = _existing(channelId);
        if (msg.sender != descriptor.payer) revert NotPayer();

        bool cancelsClose = state.closeRequestedAt != 0;
        if (additionalDeposit == 0 && !cancelsClose) return;
        if (additionalDeposit > type(uint96).max - state.deposit) revert DepositOverflow();

        state.deposit += additionalDeposit;
        state.closeRequestedAt = 0;
        _states[channelId] = state;

        if (additionalDeposit != 0) {
            IERC20(descriptor.token).safeTransferFrom(msg.sender, address(this), additionalDeposit);
        }

        if (cancelsClose) emit CloseRequestCancelled(channelId, descriptor.payer, descriptor.payee);
        emit TopUp(channelId, descriptor.payer, descriptor.payee, additionalDeposit, state.deposit);
    }

    /// @notice Starts the forced close: `withdraw` becomes possible `CLOSE_GRACE_PERIOD` later.
    /// @dev Idempotent: while a request is pending, later calls keep the first timestamp and emit
    ///      nothing, so the payee's deadline never moves.
    function requestClose(ChannelDescriptor calldata descriptor) external nonReentrant {
        bytes32 channelId = _channelId(descriptor);
        ChannelState memory state = _existing(channelId);
        if (msg.sender != descriptor.payer) revert NotPayer();
        if (state.closeRequestedAt != 0) return;

        // casting to uint32 is safe until the year 2106, which the spec's layout accepts
        // forge-lint: disable-next-line(unsafe-typecast)
        _states[channelId].closeRequestedAt = uint32(block.timestamp);

        emit CloseRequested(channelId, descriptor.payer, descriptor.payee, block.timestamp + CLOSE_GRACE_PERIOD);
    }

    /// @notice Ends the forced close: refunds `deposit - settled` and deletes the channel.
    function withdraw(ChannelDescriptor calldata descriptor) external nonReentrant {
        bytes32 channelId = _channelId(descriptor);
        ChannelState memory state = _existing(channelId);
        if (msg.sender != descriptor.payer) revert NotPayer();
        uint256 requestedAt = state.closeRequestedAt;
        // forge-lint: disable-next-line(block-timestamp)
        if (requestedAt == 0 || block.timestamp < requestedAt + CLOSE_GRACE_PERIOD) revert CloseNotReady();

        uint96 refund = state.deposit - state.settled;
        delete _states[channelId];

        if (refund != 0) IERC20(descriptor.token).safeTransfer(descriptor.payer, refund);

        emit ChannelClosed(channelId, descriptor.payer, descriptor.payee, state.settled, refund);
    }

    // ====================================================================== payee side

    /// @notice Pays the payee `cumulativeAmount - settled` against a voucher, channel stays open.
    /// @dev Allowed while a close is pending: the grace period exists so the payee can claim.
    function settle(ChannelDescriptor calldata descriptor, uint96 cumulativeAmount, bytes calldata signature)
        external
        nonReentrant
    {
        bytes32 channelId = _channelId(descriptor);
        ChannelState memory state = _existing(channelId);
        _onlyPayeeOrOperator(descriptor);
        if (cumulativeAmount > state.deposit) revert AmountExceedsDeposit();
        if (cumulativeAmount <= state.settled) revert AmountNotIncreasing();
        _checkVoucher(descriptor, channelId, cumulativeAmount, signature);

        uint96 delta = cumulativeAmount - state.settled;
        _states[channelId].settled = cumulativeAmount;

        IERC20(descriptor.token).safeTransfer(descriptor.payee, delta);

        emit Settled(channelId, descriptor.payer, descriptor.payee, cumulativeAmount, delta, cumulativeAmount);
    }

    /// @notice Cooperative close: pays `captureAmount - settled` to the payee, refunds
    ///         `deposit - captureAmount` to the payer and deletes the channel.
    /// @dev `cumulativeAmount` may exceed the deposit (the voucher still proves consent);
    ///      `captureAmount` is what is actually paid and must fit the deposit. No voucher is
    ///      checked when nothing beyond `settled` is captured: then the call only releases the
    ///      payer's money, which the payee side may always do.
    function close(
        ChannelDescriptor calldata descriptor,
        uint96 cumulativeAmount,
        uint96 captureAmount,
        bytes calldata signature
    ) external nonReentrant {
        bytes32 channelId = _channelId(descriptor);
        ChannelState memory state = _existing(channelId);
        _onlyPayeeOrOperator(descriptor);
        if (captureAmount < state.settled || captureAmount > cumulativeAmount) revert CaptureAmountInvalid();
        if (captureAmount > state.deposit) revert AmountExceedsDeposit();
        if (captureAmount > state.settled) _checkVoucher(descriptor, channelId, cumulativeAmount, signature);

        uint96 delta = captureAmount - state.settled;
        uint96 refund = state.deposit - captureAmount;
        delete _states[channelId];

        IERC20 token = IERC20(descriptor.token);
        if (delta != 0) token.safeTransfer(descriptor.payee, delta);
        if (refund != 0) token.safeTransfer(descriptor.payer, refund);

        emit ChannelClosed(channelId, descriptor.payer, descriptor.payee, captureAmount, refund);
    }

    // ====================================================================== views

    /// @notice The descriptor echoed with its state (all zero when there is no such channel).
    function getChannel(ChannelDescriptor calldata descriptor) external view returns (Channel memory) {
        return Channel({descriptor: descriptor, state: _states[_channelId(descriptor)]});
    }

    /// @notice The state of `channelId`; all zero for an unknown or closed channel (no revert).
    function getChannelState(bytes32 channelId) external view returns (ChannelState memory) {
        return _states[channelId];
    }

    /// @notice `getChannelState` for many ids in one call.
    function getChannelStatesBatch(bytes32[] calldata channelIds) external view returns (ChannelState[] memory states) {
        states = new ChannelState[](channelIds.length);
        for (uint256 i = 0; i < channelIds.length; ++i) {
            states[i] = _states[channelIds[i]];
        }
    }

    /// @inheritdoc ITIP20ChannelReserve
    function computeChannelId(
        address payer,
        address payee,
        address operator,
        address token,
        bytes32 salt,
        address authorizedSigner,
        bytes32 expiringNonceHash
    ) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                payer, payee, operator, token, salt, authorizedSigner, expiringNonceHash, address(this), block.chainid
            )
        );
    }

    /// @notice The EIP-712 digest a voucher for `(channelId, cumulativeAmount)` signs.
    function getVoucherDigest(bytes32 channelId, uint96 cumulativeAmount) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    /// @notice EIP-712 domain {name "TIP20 Channel Reserve", version "1", chainId, this address}.
    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    // ====================================================================== internals

    function _channelId(ChannelDescriptor calldata d) private view returns (bytes32) {
        return computeChannelId(d.payer, d.payee, d.operator, d.token, d.salt, d.authorizedSigner, d.expiringNonceHash);
    }

    function _existing(bytes32 channelId) private view returns (ChannelState memory state) {
        state = _states[channelId];
        if (state.deposit == 0) revert ChannelNotFound();
    }

    /// @dev A zero operator authorises nobody (so `msg.sender == 0` can never pass as operator).
    function _onlyPayeeOrOperator(ChannelDescriptor calldata d) private view {
        if (msg.sender != d.payee && (d.operator == address(0) || msg.sender != d.operator)) {
            revert NotPayeeOrOperator();
        }
    }

    /// @dev Divergence (b): this transaction's hash, from transient storage, else taken (and
    ///      deleted) from the sender's pending slot the JSON-RPC front wrote.
    function _expiringNonceHash() private returns (bytes32 hash) {
        hash = _txExpiringNonceHash;
        if (hash != bytes32(0)) return hash;
        hash = pendingExpiringNonceHash[tx.origin];
        if (hash == bytes32(0)) revert ExpiringNonceHashNotSet();
        delete pendingExpiringNonceHash[tx.origin];
        _txExpiringNonceHash = hash;
    }

    function _openedThisTx(bytes32 channelId) private view returns (bool opened) {
        bytes32 slot = keccak256(abi.encode(_OPENED_NAMESPACE, channelId));
        assembly ("memory-safe") {
            opened := tload(slot)
        }
    }

    function _markOpened(bytes32 channelId) private {
        bytes32 slot = keccak256(abi.encode(_OPENED_NAMESPACE, channelId));
        assembly ("memory-safe") {
            tstore(slot, 1)
        }
    }

    /// @dev Reverts `InvalidSignature` unless `signature` is a 65-byte low-s secp256k1 signature
    ///      of the voucher digest by the expected signer.
    function _checkVoucher(
        ChannelDescriptor calldata d,
        bytes32 channelId,
        uint96 cumulativeAmount,
        bytes calldata signature
    ) private view {
        if (signature.length != 65) revert InvalidSignature();
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27; // TIP-1020 accepts the raw recovery id 0/1 as well as 27/28
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(
            getVoucherDigest(channelId, cumulativeAmount), v, bytes32(signature[0:32]), bytes32(signature[32:64])
        );
        address expected = d.authorizedSigner == address(0) ? d.payer : d.authorizedSigner;
        if (err != ECDSA.RecoverError.NoError || recovered != expected) revert InvalidSignature();
    }
}
