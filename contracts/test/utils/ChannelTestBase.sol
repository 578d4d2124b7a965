// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {ITempoStreamChannel} from "../../src/ITempoStreamChannel.sol";
import {TempoStreamChannel} from "../../src/TempoStreamChannel.sol";
import {TestToken} from "../../src/TestToken.sol";
import {voucherDigest} from "./VoucherDigest.sol";

/// @notice Shared fixture: one escrow, one token, and four keyed actors with funds and approvals.
abstract contract ChannelTestBase is Test {
    /// @dev secp256k1 group order n; n - s turns a low-s signature into its high-s twin.
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 internal constant INITIAL_BALANCE = 1_000_000_000; // 1,000 tUSD (6 decimals)
    uint128 internal constant DEPOSIT = 10_000_000; // 10 tUSD
    bytes32 internal constant SALT = keccak256("salt-1");

    uint256 internal constant PAYER_KEY = 0xA11CE;
    uint256 internal constant PAYEE_KEY = 0xB0B;
    uint256 internal constant STRANGER_KEY = 0xC4A5E;
    uint256 internal constant DELEGATE_KEY = 0xDE1E6A7E;

    TempoStreamChannel internal escrow;
    TestToken internal token;
    address internal payer;
    address internal payee;
    address internal stranger;
    address internal delegate;

    function setUp() public virtual {
        escrow = new TempoStreamChannel();
        token = new TestToken();
        payer = vm.addr(PAYER_KEY);
        payee = vm.addr(PAYEE_KEY);
        stranger = vm.addr(STRANGER_KEY);
        delegate = vm.addr(DELEGATE_KEY);
        vm.label(payer, "payer");
        vm.label(payee, "payee");
        vm.label(stranger, "stranger");
        vm.label(delegate, "delegate");
        vm.label(address(escrow), "escrow");
        vm.label(address(token), "token");
        _fund(payer, address(escrow));
        _fund(payee, address(escrow));
        _fund(stranger, address(escrow));
    }

    function _fund(address who, address spender) internal {
        token.mint(who, INITIAL_BALANCE);
        vm.prank(who);
        token.approve(spender, type(uint256).max);
    }

    /// @dev Opens payer -> payee with `deposit`, vouchers signed by `signer` (0 = payer).
    function _open(uint128 deposit, address signer) internal returns (bytes32 channelId) {
        vm.prank(payer);
        channelId = escrow.open(payee, address(token), deposit, SALT, signer);
    }

    function _open() internal returns (bytes32) {
        return _open(DEPOSIT, address(0));
    }

    function _channel(bytes32 channelId) internal view returns (ITempoStreamChannel.Channel memory) {
        return escrow.getChannel(channelId);
    }

    /// @dev A 65-byte r||s||v voucher signature, using the escrow's own digest.
    function _sign(uint256 key, bytes32 channelId, uint128 amount) internal view returns (bytes memory) {
        return _signWith(escrow, key, channelId, amount);
    }

    function _signWith(TempoStreamChannel target, uint256 key, bytes32 channelId, uint128 amount)
        internal
        view
        returns (bytes memory)
    {
        return _signDigest(key, _voucherDigest(address(target), block.chainid, channelId, amount));
    }

    function _signDigest(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev The voucher digest computed from first principles (independent of the contract), so
    ///      tests can sign for any domain.
    function _voucherDigest(address verifyingContract, uint256 chainId, bytes32 channelId, uint128 amount)
        internal
        pure
        returns (bytes32)
    {
        return _voucherDigestCustom("Tempo Stream Channel", "1", verifyingContract, chainId, channelId, amount);
    }

    function _voucherDigestCustom(
        string memory name,
        string memory version,
        address verifyingContract,
        uint256 chainId,
        bytes32 channelId,
        uint128 amount
    ) internal pure returns (bytes32) {
        return voucherDigest(
            "Voucher(bytes32 channelId,uint128 cumulativeAmount)",
            name,
            version,
            verifyingContract,
            chainId,
            channelId,
            amount
        );
    }

    /// @dev Settles as the payee with a payer-signed voucher.
    function _settle(bytes32 channelId, uint128 amount) internal {
        bytes memory sig = _sign(PAYER_KEY, channelId, amount);
        vm.prank(payee);
        escrow.settle(channelId, amount, sig);
    }

    function _requestClose(bytes32 channelId) internal {
        vm.prank(payer);
        escrow.requestClose(channelId);
    }

    /// @dev Opens a channel, closes it cooperatively at 0, leaving a finalized channel.
    function _finalizedChannel() internal returns (bytes32 channelId) {
        vm.prank(payer);
        channelId = escrow.open(payee, address(token), DEPOSIT, keccak256("finalized"), address(0));
        vm.prank(payee);
        escrow.close(channelId, 0, "");
    }
}
