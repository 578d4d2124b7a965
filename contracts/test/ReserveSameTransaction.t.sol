// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReserveTestBase} from "./utils/ReserveTestBase.sol";
import {ITIP20ChannelReserve} from "../src/ITIP20ChannelReserve.sol";
import {TestToken} from "../src/TestToken.sol";

/// @dev A smart account (the payer) that runs several reserve calls in one transaction, like a
///      Tempo AA batch.
contract Batcher {
    ITIP20ChannelReserve internal immutable reserve;

    constructor(ITIP20ChannelReserve reserve_, TestToken token) {
        reserve = reserve_;
        token.approve(address(reserve_), type(uint256).max);
    }

    function openTwo(address payee, address token, bytes32 saltA, bytes32 saltB)
        external
        returns (bytes32 a, bytes32 b)
    {
        a = reserve.open(payee, address(0), token, 100, saltA, address(0));
        b = reserve.open(payee, address(0), token, 200, saltB, address(0));
    }

    /// @dev Opens a channel to itself, closes it at once (as its own payee) and opens the same
    ///      descriptor again, all in one transaction whose expiring-nonce hash is `h`.
    function openCloseReopen(address token, bytes32 salt, bytes32 h) external {
        reserve.open(address(this), address(0), token, 100, salt, address(0));
        reserve.close(
            ITIP20ChannelReserve.ChannelDescriptor(address(this), address(this), address(0), token, salt, address(0), h),
            0,
            0,
            ""
        );
        reserve.open(address(this), address(0), token, 100, salt, address(0));
    }
}

/// @notice Several opens in one transaction share its expiring-nonce hash; a channel id opened in
///         a transaction cannot be opened again in it, even after a terminal close deleted it.
/// forge-config: default.isolate = true
contract ReserveSameTransactionTest is ReserveTestBase {
    Batcher internal batcher;

    function setUp() public override {
        super.setUp();
        batcher = new Batcher(reserve, token);
        token.mint(address(batcher), INITIAL_BALANCE);
    }

    function test_twoOpensInOneTransaction_shareTheHash() public {
        bytes32 h = keccak256("batch tx");
        _seed(stranger, h); // the transaction's sender is the EOA driving the smart account
        vmr.prank(stranger, stranger);
        (bytes32 a, bytes32 b) = batcher.openTwo(payee, address(token), keccak256("a"), keccak256("b"));
        assertEq(
            a, reserve.computeChannelId(address(batcher), payee, address(0), address(token), keccak256("a"), address(0), h),
            "first id uses the transaction hash"
        );
        assertEq(
            b, reserve.computeChannelId(address(batcher), payee, address(0), address(token), keccak256("b"), address(0), h),
            "second id uses the same hash"
        );
        assertEq(uint256(_state(a).deposit), 100, "first opened");
        assertEq(uint256(_state(b).deposit), 200, "second opened");
        assertEq(reserve.pendingExpiringNonceHash(stranger), bytes32(0), "slot consumed");
    }

    function test_sameDescriptorTwiceInOneTransaction_reverts() public {
        _seed(stranger, keccak256("batch tx"));
        vmr.prank(stranger, stranger);
        vm.expectRevert(ITIP20ChannelReserve.ChannelAlreadyExists.selector);
        batcher.openTwo(payee, address(token), keccak256("a"), keccak256("a"));
    }

    function test_reopenAfterCloseInTheSameTransaction_reverts() public {
        bytes32 h = keccak256("batch tx");
        _seed(stranger, h);
        vmr.prank(stranger, stranger);
        vm.expectRevert(ITIP20ChannelReserve.ChannelAlreadyExists.selector);
        batcher.openCloseReopen(address(token), keccak256("a"), h);
    }

    function test_reopenInALaterTransaction_getsANewId() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 first) = _open();
        vm.prank(payee);
        reserve.close(d, 0, 0, "");
        (, bytes32 second) = _open();
        assertNotEq(first, second, "a new transaction hash makes a new channel");
        assertEq(uint256(_state(second).deposit), DEPOSIT, "reopened");
    }
}
