// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ReenteringToken} from "./Reentrancy.t.sol";
import {ReserveTestBase} from "./utils/ReserveTestBase.sol";
import {ITIP20ChannelReserve} from "../src/ITIP20ChannelReserve.sol";

/// @notice A token that calls back during a payout cannot re-enter the reserve (no
///         constructor ran: the guard lives in transient storage, so it works after `etch`).
/// forge-config: default.isolate = true
contract ReserveReentrancyTest is ReserveTestBase {
    function test_reentryDuringSettlePayout_isBlocked() public {
        ReenteringToken hostile = new ReenteringToken();
        hostile.mint(payer, DEPOSIT);
        vm.prank(payer);
        hostile.approve(RESERVE, DEPOSIT);
        bytes32 h = keccak256("tx");
        _seed(payer, h);
        vmr.prank(payer, payer);
        bytes32 cid = reserve.open(payee, address(0), address(hostile), DEPOSIT, SALT, address(0));
        ITIP20ChannelReserve.ChannelDescriptor memory d = ITIP20ChannelReserve.ChannelDescriptor(
            payer, payee, address(0), address(hostile), SALT, address(0), h
        );

        bytes memory sig = _sign(PAYER_KEY, cid, 1_000);
        hostile.arm(RESERVE, abi.encodeCall(ITIP20ChannelReserve.settle, (d, 1_000, sig)));
        vm.prank(payee);
        reserve.settle(d, 1_000, sig);

        assertTrue(hostile.attempted(), "the token tried to re-enter");
        assertEq(
            keccak256(hostile.reentryResult()),
            keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)),
            "re-entry stopped by the guard"
        );
        assertEq(hostile.balanceOf(payee), 1_000, "paid once");
    }
}
