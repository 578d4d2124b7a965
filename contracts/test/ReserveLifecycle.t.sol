// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReserveTestBase} from "./utils/ReserveTestBase.sol";
import {ITIP20ChannelReserve} from "../src/ITIP20ChannelReserve.sol";

/// @notice Every function of the reserve along the channel's life: open, settle, top-up,
///         request close, withdraw, close, and the views, against the spec's rules.
/// forge-config: default.isolate = true
contract ReserveLifecycleTest is ReserveTestBase {
    // ------------------------------------------------------------------ constants and views

    function test_constants() public view {
        assertEq(uint256(reserve.CLOSE_GRACE_PERIOD()), 900, "grace period");
        assertEq(
            reserve.VOUCHER_TYPEHASH(), keccak256("Voucher(bytes32 channelId,uint96 cumulativeAmount)"), "typehash"
        );
    }

    function test_domainSeparator_isTheSpecDomainAtThisAddress() public view {
        bytes32 expected = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("TIP20 Channel Reserve"),
                keccak256("1"),
                block.chainid,
                RESERVE
            )
        );
        assertEq(reserve.domainSeparator(), expected, "domain separator");
    }

    function test_getVoucherDigest_matchesFirstPrinciples() public view {
        bytes32 cid = keccak256("some channel");
        assertEq(
            reserve.getVoucherDigest(cid, 1234),
            _digest("TIP20 Channel Reserve", "1", RESERVE, block.chainid, cid, 1234),
            "digest"
        );
    }

    function test_computeChannelId_formula() public view {
        bytes32 nonceHash = keccak256("tx");
        bytes32 expected = keccak256(
            abi.encode(payer, payee, operator, address(token), SALT, delegate, nonceHash, RESERVE, block.chainid)
        );
        assertEq(
            reserve.computeChannelId(payer, payee, operator, address(token), SALT, delegate, nonceHash),
            expected,
            "channel id"
        );
    }

    function test_domainAndId_followTheChainId() public {
        bytes32 before = reserve.domainSeparator();
        bytes32 idBefore = reserve.computeChannelId(payer, payee, address(0), address(token), SALT, address(0), 0);
        vm.chainId(4217);
        assertNotEq(reserve.domainSeparator(), before, "domain binds the chain id");
        assertNotEq(
            reserve.computeChannelId(payer, payee, address(0), address(token), SALT, address(0), 0),
            idBefore,
            "id binds the chain id"
        );
    }

    function test_unknownChannel_readsAsZero() public view {
        bytes32 cid = keccak256("nothing");
        ITIP20ChannelReserve.ChannelState memory s = reserve.getChannelState(cid);
        assertEq(uint256(s.deposit) + s.settled + s.closeRequestedAt, 0, "zero state");
        ITIP20ChannelReserve.Channel memory c = reserve.getChannel(_descriptor(SALT, address(0), address(0), cid));
        assertEq(c.descriptor.expiringNonceHash, cid, "descriptor echoed");
        assertEq(uint256(c.state.deposit), 0, "zero deposit");
    }

    // ------------------------------------------------------------------ open

    function test_open_storesPackedStateAndPullsDeposit() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        assertEq(
            cid,
            reserve.computeChannelId(payer, payee, address(0), address(token), SALT, address(0), d.expiringNonceHash),
            "returned id"
        );
        ITIP20ChannelReserve.ChannelState memory s = _state(cid);
        assertEq(uint256(s.deposit), DEPOSIT, "deposit");
        assertEq(uint256(s.settled), 0, "settled");
        assertEq(uint256(s.closeRequestedAt), 0, "no close");
        assertEq(_rawState(cid), uint256(DEPOSIT) << 96, "one packed slot: settled | deposit << 96 | t << 192");
        assertEq(token.balanceOf(RESERVE), DEPOSIT, "reserve holds the deposit");
        assertEq(token.balanceOf(payer), INITIAL_BALANCE - DEPOSIT, "payer paid");
        ITIP20ChannelReserve.Channel memory c = reserve.getChannel(d);
        assertEq(c.descriptor.payer, payer, "descriptor payer");
        assertEq(uint256(c.state.deposit), DEPOSIT, "state via descriptor");
    }

    function test_open_emitsTheWholeDescriptor() public {
        bytes32 nonceHash = keccak256("the opening tx");
        _seed(payer, nonceHash);
        bytes32 cid = reserve.computeChannelId(payer, payee, operator, address(token), SALT, delegate, nonceHash);
        vm.expectEmit(true, true, true, true, RESERVE);
        emit ITIP20ChannelReserve.ChannelOpened(
            cid, payer, payee, operator, address(token), delegate, SALT, nonceHash, DEPOSIT
        );
        vmr.prank(payer, payer);
        reserve.open(payee, operator, address(token), DEPOSIT, SALT, delegate);
    }

    function test_open_consumesThePendingHash() public {
        bytes32 nonceHash = keccak256("the opening tx");
        _seed(payer, nonceHash);
        assertEq(reserve.pendingExpiringNonceHash(payer), nonceHash, "slot formula: keccak(sender, 1)");
        vmr.prank(payer, payer);
        reserve.open(payee, address(0), address(token), DEPOSIT, SALT, address(0));
        assertEq(reserve.pendingExpiringNonceHash(payer), bytes32(0), "consumed");

        // The next transaction has no hash of its own: open must refuse, not reuse the old one.
        vmr.prank(payer, payer);
        vm.expectRevert(ITIP20ChannelReserve.ExpiringNonceHashNotSet.selector);
        reserve.open(payee, address(0), address(token), DEPOSIT, keccak256("other salt"), address(0));
    }

    function test_open_hashIsKeyedByTheTransactionSender() public {
        _seed(stranger, keccak256("someone else's tx"));
        vmr.prank(payer, payer);
        vm.expectRevert(ITIP20ChannelReserve.ExpiringNonceHashNotSet.selector);
        reserve.open(payee, address(0), address(token), DEPOSIT, SALT, address(0));
    }

    function test_open_rejectsBadArguments() public {
        _seed(payer, keccak256("tx"));
        vmr.prank(payer, payer);
        vm.expectRevert(ITIP20ChannelReserve.InvalidPayee.selector);
        reserve.open(address(0), address(0), address(token), DEPOSIT, SALT, address(0));

        vmr.prank(payer, payer);
        vm.expectRevert(ITIP20ChannelReserve.InvalidPayee.selector);
        reserve.open(0x20C0000000000000000000000000000000000001, address(0), address(token), DEPOSIT, SALT, address(0));

        vmr.prank(payer, payer);
        vm.expectRevert(ITIP20ChannelReserve.InvalidToken.selector);
        reserve.open(payee, address(0), address(0), DEPOSIT, SALT, address(0));

        vmr.prank(payer, payer);
        vm.expectRevert(ITIP20ChannelReserve.InvalidToken.selector);
        reserve.open(payee, address(0), stranger, DEPOSIT, SALT, address(0)); // no code

        vmr.prank(payer, payer);
        vm.expectRevert(ITIP20ChannelReserve.ZeroDeposit.selector);
        reserve.open(payee, address(0), address(token), 0, SALT, address(0));
    }

    function test_open_sameIdWhileActive_reverts() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d,) = _open();
        _seed(payer, d.expiringNonceHash); // a (broken) front replaying the same hash
        vmr.prank(payer, payer);
        vm.expectRevert(ITIP20ChannelReserve.ChannelAlreadyExists.selector);
        reserve.open(payee, address(0), address(token), DEPOSIT, SALT, address(0));
    }

    function test_open_withoutAllowance_reverts() public {
        vm.prank(payer);
        token.approve(RESERVE, 0);
        _seed(payer, keccak256("tx"));
        vmr.prank(payer, payer);
        vm.expectRevert();
        reserve.open(payee, address(0), address(token), DEPOSIT, SALT, address(0));
        assertEq(reserve.pendingExpiringNonceHash(payer), keccak256("tx"), "a failed open consumes nothing");
    }

    // ------------------------------------------------------------------ settle

    function test_settle_paysTheDelta() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        _settle(d, cid, 1_000);
        bytes memory sig = _sign(PAYER_KEY, cid, 2_500);
        vm.expectEmit(true, true, true, true, RESERVE);
        emit ITIP20ChannelReserve.Settled(cid, payer, payee, 2_500, 1_500, 2_500);
        vm.prank(payee);
        reserve.settle(d, 2_500, sig);
        assertEq(token.balanceOf(payee), 2_500, "payee got the cumulative total");
        assertEq(uint256(_state(cid).settled), 2_500, "settled");
        assertEq(token.balanceOf(RESERVE), DEPOSIT - 2_500, "reserve keeps the rest");
    }

    function test_settle_boundsAndOrder() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        bytes memory tooMuch = _sign(PAYER_KEY, cid, DEPOSIT + 1);
        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.AmountExceedsDeposit.selector);
        reserve.settle(d, DEPOSIT + 1, tooMuch);

        _settle(d, cid, 100);
        bytes memory same = _sign(PAYER_KEY, cid, 100);
        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.AmountNotIncreasing.selector);
        reserve.settle(d, 100, same);

        bytes memory lower = _sign(PAYER_KEY, cid, 50);
        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.AmountNotIncreasing.selector);
        reserve.settle(d, 50, lower);

        _settle(d, cid, DEPOSIT); // the whole deposit is fine
        assertEq(token.balanceOf(payee), DEPOSIT, "all paid");
    }

    function test_settle_whileCloseRequested_isAllowed() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        _requestClose(d);
        _settle(d, cid, 700);
        assertEq(uint256(_state(cid).settled), 700, "payee can still claim in the grace period");
        assertTrue(_state(cid).closeRequestedAt != 0, "request stays pending");
    }

    function test_forgedDescriptor_findsNoChannel() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        d.payee = stranger; // claim the channel pays someone else
        bytes memory sig = _sign(PAYER_KEY, cid, 10);
        vm.prank(stranger);
        vm.expectRevert(ITIP20ChannelReserve.ChannelNotFound.selector);
        reserve.settle(d, 10, sig);
    }

    // ------------------------------------------------------------------ top-up

    function test_topUp_addsDeposit() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        vm.expectEmit(true, true, true, true, RESERVE);
        emit ITIP20ChannelReserve.TopUp(cid, payer, payee, 5, DEPOSIT + 5);
        vm.prank(payer);
        reserve.topUp(d, 5);
        assertEq(uint256(_state(cid).deposit), DEPOSIT + 5, "deposit grew");
        assertEq(token.balanceOf(RESERVE), DEPOSIT + 5, "pulled");
    }

    function test_topUp_zeroWithoutCloseRequest_isANoop() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        uint256 before = _rawState(cid);
        vm.prank(payer);
        reserve.topUp(d, 0);
        assertEq(_rawState(cid), before, "nothing changed");
    }

    function test_topUp_cancelsAPendingClose_evenWhenZero() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        _requestClose(d);
        assertTrue(_state(cid).closeRequestedAt != 0, "requested");
        vm.expectEmit(true, true, true, true, RESERVE);
        emit ITIP20ChannelReserve.CloseRequestCancelled(cid, payer, payee);
        vm.expectEmit(true, true, true, true, RESERVE);
        emit ITIP20ChannelReserve.TopUp(cid, payer, payee, 0, DEPOSIT);
        vm.prank(payer);
        reserve.topUp(d, 0);
        assertEq(uint256(_state(cid).closeRequestedAt), 0, "cancelled");
        assertEq(uint256(_state(cid).deposit), DEPOSIT, "deposit unchanged");

        vm.warp(block.timestamp + 900);
        vm.prank(payer);
        vm.expectRevert(ITIP20ChannelReserve.CloseNotReady.selector);
        reserve.withdraw(d);
    }

    function test_topUp_nonzeroCancelsAPendingClose() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        _requestClose(d);
        vm.prank(payer);
        reserve.topUp(d, 1);
        assertEq(uint256(_state(cid).closeRequestedAt), 0, "cancelled");
    }

    function test_topUp_overflow_reverts() public {
        uint96 max = type(uint96).max;
        token.mint(payer, max);
        (ITIP20ChannelReserve.ChannelDescriptor memory d,) = _open(max, SALT, address(0), address(0));
        vm.prank(payer);
        vm.expectRevert(ITIP20ChannelReserve.DepositOverflow.selector);
        reserve.topUp(d, 1);
    }

    // ------------------------------------------------------------------ forced close

    function test_requestClose_isIdempotent() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        uint256 t0 = block.timestamp;
        vm.expectEmit(true, true, true, true, RESERVE);
        emit ITIP20ChannelReserve.CloseRequested(cid, payer, payee, t0 + 900);
        _requestClose(d);
        vm.warp(t0 + 100);
        _requestClose(d);
        assertEq(uint256(_state(cid).closeRequestedAt), t0, "first request's time is kept");
        assertEq(_rawState(cid), (uint256(t0) << 192) | (uint256(DEPOSIT) << 96), "packed layout");
    }

    function test_withdraw_afterExactlyTheGracePeriod() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        _settle(d, cid, 3_000);
        uint256 t0 = block.timestamp;
        _requestClose(d);

        vm.prank(payer);
        vm.expectRevert(ITIP20ChannelReserve.CloseNotReady.selector);
        reserve.withdraw(d);

        vm.warp(t0 + 899);
        vm.prank(payer);
        vm.expectRevert(ITIP20ChannelReserve.CloseNotReady.selector);
        reserve.withdraw(d);

        vm.warp(t0 + 900);
        vm.expectEmit(true, true, true, true, RESERVE);
        emit ITIP20ChannelReserve.ChannelClosed(cid, payer, payee, 3_000, DEPOSIT - 3_000);
        vm.prank(payer);
        reserve.withdraw(d);
        assertEq(_rawState(cid), 0, "state deleted");
        assertEq(token.balanceOf(payer), INITIAL_BALANCE - 3_000, "refund");
        assertEq(token.balanceOf(RESERVE), 0, "reserve empty");

        vm.prank(payer);
        vm.expectRevert(ITIP20ChannelReserve.ChannelNotFound.selector);
        reserve.withdraw(d);
    }

    function test_withdraw_withoutRequest_reverts() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d,) = _open();
        vm.warp(block.timestamp + 10_000);
        vm.prank(payer);
        vm.expectRevert(ITIP20ChannelReserve.CloseNotReady.selector);
        reserve.withdraw(d);
    }

    // ------------------------------------------------------------------ cooperative close

    function test_close_capturesRefundsAndDeletes() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        _settle(d, cid, 1_000);
        bytes memory sig = _sign(PAYER_KEY, cid, 4_000);
        vm.expectEmit(true, true, true, true, RESERVE);
        emit ITIP20ChannelReserve.ChannelClosed(cid, payer, payee, 3_500, DEPOSIT - 3_500);
        vm.prank(payee);
        reserve.close(d, 4_000, 3_500, sig);
        assertEq(token.balanceOf(payee), 3_500, "payee got the capture");
        assertEq(token.balanceOf(payer), INITIAL_BALANCE - 3_500, "payer got the rest");
        assertEq(_rawState(cid), 0, "slot deleted");
        assertEq(token.balanceOf(RESERVE), 0, "reserve empty");

        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.ChannelNotFound.selector);
        reserve.close(d, 4_000, 3_500, sig);
    }

    function test_close_captureBounds() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        _settle(d, cid, 1_000);
        bytes memory sig = _sign(PAYER_KEY, cid, 2_000);

        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.CaptureAmountInvalid.selector);
        reserve.close(d, 2_000, 999, sig); // below settled

        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.CaptureAmountInvalid.selector);
        reserve.close(d, 2_000, 2_001, sig); // above the voucher

        uint96 huge = DEPOSIT + 10;
        bytes memory hugeSig = _sign(PAYER_KEY, cid, huge);
        vm.prank(payee);
        vm.expectRevert(ITIP20ChannelReserve.AmountExceedsDeposit.selector);
        reserve.close(d, huge, DEPOSIT + 1, hugeSig); // above the deposit

        // A voucher above the deposit still proves consent; the capture is bounded by the deposit.
        vm.prank(payee);
        reserve.close(d, huge, DEPOSIT, hugeSig);
        assertEq(token.balanceOf(payee), DEPOSIT, "whole deposit captured");
    }

    function test_close_atSettled_needsNoSignature() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        _settle(d, cid, 1_000);
        vm.prank(payee);
        reserve.close(d, 1_000, 1_000, "");
        assertEq(token.balanceOf(payer), INITIAL_BALANCE - 1_000, "refund of the unsettled rest");
        assertEq(_rawState(cid), 0, "deleted");
    }

    function test_close_duringGracePeriod_works() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _open();
        _requestClose(d);
        vm.warp(block.timestamp + 10_000); // even after the grace period, until the payer withdraws
        bytes memory sig = _sign(PAYER_KEY, cid, 10);
        vm.prank(payee);
        reserve.close(d, 10, 10, sig);
        assertEq(_rawState(cid), 0, "deleted");
    }

    // ------------------------------------------------------------------ batch view

    function test_getChannelStatesBatch() public {
        (ITIP20ChannelReserve.ChannelDescriptor memory d1, bytes32 c1) = _open();
        (, bytes32 c2) = _open(7, keccak256("salt-2"), address(0), address(0));
        _settle(d1, c1, 3);
        bytes32[] memory ids = new bytes32[](3);
        ids[0] = c1;
        ids[1] = keccak256("unknown");
        ids[2] = c2;
        ITIP20ChannelReserve.ChannelState[] memory states = reserve.getChannelStatesBatch(ids);
        assertEq(states.length, 3, "length");
        assertEq(uint256(states[0].settled), 3, "first settled");
        assertEq(uint256(states[0].deposit), DEPOSIT, "first deposit");
        assertEq(uint256(states[1].deposit), 0, "unknown is zero");
        assertEq(uint256(states[2].deposit), 7, "second deposit");
        assertEq(reserve.getChannelStatesBatch(new bytes32[](0)).length, 0, "empty batch");
    }
}
