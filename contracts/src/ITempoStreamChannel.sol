// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ITempoStreamChannel
/// @notice Interface of the v1 escrow for the Machine Payments Protocol "session" intent
///         (draft-tempo-session-00), ABI-identical to the `TempoStreamChannel` deployed on Tempo
///         (mainnet 4217 at 0x33b901018174DDabE4841042ab76ba85D4e24f25, Moderato 42431 at
///         0xe1c4d3dce17bc111181ddf716f75bae49e61a336): the same function selectors, the same
///         field order in `Channel`, the same events and the same custom errors.
/// @dev Clients talk to any v1 escrow through this ABI only, so a client tested against this
///      implementation encodes and decodes exactly what the deployed contract expects
///      (`tests/tempo/test_escrow_abi.py` compares the two ABIs item by item). Amounts are token
///      base units; the draft's tokens have 6 decimals, but nothing here depends on that.
interface ITempoStreamChannel {
    /// @notice On-chain state of one channel, in the deployed contract's field order (the first
    ///         three fields share one storage slot).
    /// @dev A live channel has `payer != address(0)`. A finalized channel keeps only
    ///      `finalized == true`: every other field is cleared on `close`/`withdraw`, exactly as
    ///      the deployed escrow does, so readers must not expect amounts after finalization
    ///      (the `ChannelClosed` event carries them).
    /// @param finalized True once the channel has been closed or withdrawn; final forever.
    /// @param closeRequestedAt Timestamp of a pending forced-close request, 0 when none.
    /// @param payer Account that opened the channel and funds it.
    /// @param payee Account paid by vouchers; the only one that may settle or close cooperatively.
    /// @param token ERC-20 (TIP-20) token the deposit is held in.
    /// @param authorizedSigner Voucher signer; `address(0)` means the payer signs its own vouchers.
    /// @param deposit Total deposited so far (open plus every top-up).
    /// @param settled Cumulative amount already paid out to the payee (never decreases).
    struct Channel {
        bool finalized;
        uint64 closeRequestedAt;
        address payer;
        address payee;
        address token;
        address authorizedSigner;
        uint128 deposit;
        uint128 settled;
    }

    // ------------------------------------------------------------------ events

    /// @notice A channel was opened and `deposit` pulled from `payer`; `salt` lets a watcher
    ///         recompute the channel id from the event alone.
    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        address authorizedSigner,
        bytes32 salt,
        uint256 deposit
    );

    /// @notice The payee redeemed a voucher with `settle`: `deltaPaid` moved to the payee,
    ///         `newSettled` is the channel's settled total afterwards (equal to `cumulativeAmount`).
    event Settled(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 cumulativeAmount,
        uint256 deltaPaid,
        uint256 newSettled
    );

    /// @notice The payer started a forced close; `withdraw` becomes possible at `closeGraceEnd`.
    event CloseRequested(
        bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 closeGraceEnd
    );

    /// @notice The payer added `additionalDeposit`; the channel now holds `newDeposit` in total.
    event TopUp(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 additionalDeposit,
        uint256 newDeposit
    );

    /// @notice The channel was finalized, by `close` (payee) or by `withdraw` (payer).
    /// @param settledToPayee The channel's final settled total: everything the payee received over
    ///        the channel's life, including earlier `settle` calls (so the two amounts always sum
    ///        to the final deposit).
    /// @param refundedToPayer What this transaction returned to the payer.
    event ChannelClosed(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 settledToPayee,
        uint256 refundedToPayer
    );

    /// @notice A pending forced-close request was cancelled (by a top-up).
    event CloseRequestCancelled(bytes32 indexed channelId, address indexed payer, address indexed payee);

    /// @notice The payer finished a forced close with `withdraw` (emitted just before that
    ///         transaction's `ChannelClosed`), so watchers can tell it from a cooperative close.
    event ChannelExpired(bytes32 indexed channelId, address indexed payer, address indexed payee);

    // ------------------------------------------------------------------ errors

    /// @notice `open` would create a channel id that already exists (open or finalized).
    error ChannelAlreadyExists();
    /// @notice No channel has this id.
    error ChannelNotFound();
    /// @notice The channel was closed or withdrawn; it accepts nothing any more.
    error ChannelFinalized();
    /// @notice The voucher signature is malformed, high-s, or not from the expected signer.
    error InvalidSignature();
    /// @notice The voucher's cumulative amount is larger than the channel's deposit.
    error AmountExceedsDeposit();
    /// @notice The voucher's cumulative amount does not advance the settled total.
    error AmountNotIncreasing();
    /// @notice Only the channel's payer may call this function.
    error NotPayer();
    /// @notice Only the channel's payee may call this function.
    error NotPayee();
    /// @notice The token reported failure (returned false) or is not a contract. A token that
    ///         reverts surfaces with its own error instead.
    error TransferFailed();
    /// @notice `withdraw` without a close request, or before the grace period has passed.
    error CloseNotReady();
    /// @notice `open` with `payee == address(0)`: the funds could never be settled.
    error InvalidPayee();
    /// @notice `topUp` would push the deposit above `type(uint128).max`.
    error DepositOverflow();

    // ------------------------------------------------------------------ constants

    /// @notice Time between `requestClose` and the earliest `withdraw`: 15 minutes.
    function CLOSE_GRACE_PERIOD() external view returns (uint64);

    /// @notice keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)").
    function VOUCHER_TYPEHASH() external view returns (bytes32);

    // ------------------------------------------------------------------ state-changing functions

    function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner)
        external
        returns (bytes32 channelId);

    function settle(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external;

    function topUp(bytes32 channelId, uint256 additionalDeposit) external;

    function close(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external;

    function requestClose(bytes32 channelId) external;

    function withdraw(bytes32 channelId) external;

    // ------------------------------------------------------------------ views

    function getChannel(bytes32 channelId) external view returns (Channel memory);

    function getChannelsBatch(bytes32[] calldata channelIds) external view returns (Channel[] memory channelStates);

    function computeChannelId(address payer, address payee, address token, bytes32 salt, address authorizedSigner)
        external
        view
        returns (bytes32);

    function getVoucherDigest(bytes32 channelId, uint128 cumulativeAmount) external view returns (bytes32);

    function domainSeparator() external view returns (bytes32);

    /// @notice ERC-5267: the EIP-712 domain, so wallets can build vouchers without hard-coding it.
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
        );
}
