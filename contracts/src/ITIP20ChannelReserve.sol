// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ITIP20ChannelReserve
/// @notice The external interface of the TIP-1034 "TIP-20 Channel Reserve" (MPP session protocol
///         v2), as the public spec `tips/tip-1034.md` defines it and as the reference SDK encodes
///         calls and decodes results and logs. Selectors, struct layouts, event topics and error
///         selectors must stay byte-identical to the spec's: clients and servers find channels by
///         them. Amounts are `uint96` base units.
interface ITIP20ChannelReserve {
    /// @notice The immutable identity of a channel. Never stored on chain: every post-open call
    ///         supplies it and the reserve recomputes the channel id from it.
    struct ChannelDescriptor {
        address payer;
        address payee;
        /// @dev Payee-side authority that may also settle and close; zero means none.
        address operator;
        address token;
        bytes32 salt;
        /// @dev Voucher signer; zero means the payer signs.
        address authorizedSigner;
        /// @dev keccak256(signing payload of the opening transaction || its sender).
        bytes32 expiringNonceHash;
    }

    /// @notice The mutable part of a channel, one storage slot. All zero for no channel.
    struct ChannelState {
        uint96 settled;
        uint96 deposit;
        /// @dev 0 = no close requested; otherwise the unix time of the request.
        uint32 closeRequestedAt;
    }

    struct Channel {
        ChannelDescriptor descriptor;
        ChannelState state;
    }

    /// @notice Seconds between `requestClose` and the earliest `withdraw` (900).
    function CLOSE_GRACE_PERIOD() external view returns (uint64);

    /// @notice keccak256("Voucher(bytes32 channelId,uint96 cumulativeAmount)").
    function VOUCHER_TYPEHASH() external view returns (bytes32);

    function open(address payee, address operator, address token, uint96 deposit, bytes32 salt, address authorizedSigner)
        external
        returns (bytes32 channelId);

    function settle(ChannelDescriptor calldata descriptor, uint96 cumulativeAmount, bytes calldata signature) external;

    function topUp(ChannelDescriptor calldata descriptor, uint96 additionalDeposit) external;

    function close(
        ChannelDescriptor calldata descriptor,
        uint96 cumulativeAmount,
        uint96 captureAmount,
        bytes calldata signature
    ) external;

    function requestClose(ChannelDescriptor calldata descriptor) external;

    function withdraw(ChannelDescriptor calldata descriptor) external;

    function getChannel(ChannelDescriptor calldata descriptor) external view returns (Channel memory);

    function getChannelState(bytes32 channelId) external view returns (ChannelState memory);

    function getChannelStatesBatch(bytes32[] calldata channelIds) external view returns (ChannelState[] memory);

    function computeChannelId(
        address payer,
        address payee,
        address operator,
        address token,
        bytes32 salt,
        address authorizedSigner,
        bytes32 expiringNonceHash
    ) external view returns (bytes32);

    function getVoucherDigest(bytes32 channelId, uint96 cumulativeAmount) external view returns (bytes32);

    function domainSeparator() external view returns (bytes32);

    /// @notice Carries the whole descriptor, so indexers and payees can recover it from the log.
    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address operator,
        address token,
        address authorizedSigner,
        bytes32 salt,
        bytes32 expiringNonceHash,
        uint96 deposit
    );

    event Settled(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint96 cumulativeAmount,
        uint96 deltaPaid,
        uint96 newSettled
    );

    event TopUp(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint96 additionalDeposit,
        uint96 newDeposit
    );

    event CloseRequested(
        bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 closeGraceEnd
    );

    event ChannelClosed(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint96 settledToPayee,
        uint96 refundedToPayer
    );

    event CloseRequestCancelled(bytes32 indexed channelId, address indexed payer, address indexed payee);

    error ChannelAlreadyExists();
    error ChannelNotFound();
    error NotPayer();
    error NotPayeeOrOperator();
    error InvalidPayee();
    error InvalidToken();
    error ZeroDeposit();
    error ExpiringNonceHashNotSet();
    error InvalidSignature();
    error AmountExceedsDeposit();
    error AmountNotIncreasing();
    error CaptureAmountInvalid();
    error CloseNotReady();
    error DepositOverflow();
}
