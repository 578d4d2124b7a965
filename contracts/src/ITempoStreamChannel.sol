// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ITempoStreamChannel
/// @notice Interface of the v1 escrow for the Machine Payments Protocol "session" intent
///         (draft-tempo-session-00, "Legacy Contract Reference Implementation"), plus the few
///         extra custom errors this implementation uses for inputs the draft leaves open.
/// @dev Clients talk to the escrow through this ABI only. Amounts are token base units; the
///      draft's tokens have 6 decimals, but nothing here depends on that.
interface ITempoStreamChannel {
    /// @notice On-chain state of one channel. A channel exists when `payer != address(0)`.
    /// @param payer Account that opened the channel and funds it.
    /// @param payee Account paid by vouchers; the only one that may settle or close cooperatively.
    /// @param token ERC-20 token the deposit is held in.
    /// @param authorizedSigner Voucher signer; `address(0)` means the payer signs its own vouchers.
    /// @param deposit Total deposited so far (open plus every top-up).
    /// @param settled Cumulative amount already paid out to the payee (never decreases).
    /// @param closeRequestedAt Timestamp of a pending forced-close request, 0 when none.
    /// @param finalized True once the channel has been closed or withdrawn; final forever.
    struct Channel {
        address payer;
        address payee;
        address token;
        address authorizedSigner;
        uint128 deposit;
        uint128 settled;
        uint64 closeRequestedAt;
        bool finalized;
    }

    // ------------------------------------------------------------------ events

    /// @notice A channel was opened and `deposit` pulled from `payer`.
    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        address authorizedSigner,
        uint256 deposit
    );

    /// @notice The payee redeemed a voucher: `deltaPaid` moved to the payee, `newSettled` is the
    ///         channel's settled total afterwards (equal to `cumulativeAmount`).
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

    /// @notice A pending forced-close request was cancelled (by a top-up).
    event CloseRequestCancelled(bytes32 indexed channelId, address indexed payer, address indexed payee);

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

    // ------------------------------------------------------------------ errors (draft appendix)

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
    /// @notice Kept for ABI compatibility with the draft; this implementation uses SafeERC20, so
    ///         token failures surface as the token's own revert or `SafeERC20FailedOperation`.
    error TransferFailed();
    /// @notice `withdraw` without a close request, or before the grace period has passed.
    error CloseNotReady();

    // ------------------------------------------------------------------ errors (this implementation)

    /// @notice `open` with `payee == address(0)`: the funds could never be settled.
    error InvalidPayee();
    /// @notice `open` with `token == address(0)`.
    error InvalidToken();
    /// @notice `open` or `topUp` with a zero amount.
    error ZeroDeposit();
    /// @notice `topUp` would push the deposit above `type(uint128).max`.
    error DepositOverflow();
    /// @notice `requestClose` while a close request is already pending (the grace period is never
    ///         restarted; read `closeRequestedAt` from `getChannel`).
    error CloseAlreadyRequested();

    // ------------------------------------------------------------------ constants

    /// @notice Time between `requestClose` and the earliest `withdraw`: 15 minutes.
    function CLOSE_GRACE_PERIOD() external view returns (uint64);

    /// @notice keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)").
    function VOUCHER_TYPEHASH() external view returns (bytes32);

    /// @notice keccak256("CloseRequest(bytes32 channelId,uint64 requestedAt)"); informational only.
    function CLOSE_REQUEST_TYPEHASH() external view returns (bytes32);

    // ------------------------------------------------------------------ state-changing functions

    function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner)
        external
        returns (bytes32 channelId);

    function settle(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external;

    function topUp(bytes32 channelId, uint128 additionalDeposit) external;

    function close(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external;

    function requestClose(bytes32 channelId) external;

    function withdraw(bytes32 channelId) external;

    // ------------------------------------------------------------------ views

    function getChannel(bytes32 channelId) external view returns (Channel memory);

    function getChannelsBatch(bytes32[] calldata channelIds) external view returns (Channel[] memory);

    function computeChannelId(address payer, address payee, address token, bytes32 salt, address authorizedSigner)
        external
        view
        returns (bytes32);

    function getVoucherDigest(bytes32 channelId, uint128 cumulativeAmount) external view returns (bytes32);

    function getCloseRequestDigest(bytes32 channelId, uint64 requestedAt) external view returns (bytes32);

    function domainSeparator() external view returns (bytes32);
}
