// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReserveTestBase} from "./utils/ReserveTestBase.sol";
import {ITIP20ChannelReserve} from "../src/ITIP20ChannelReserve.sol";

/// @notice Conservation over random amounts up to uint96: at every terminal state, what went in
///         (deposit + top-ups) equals what the payee received plus what the payer got back, and
///         the reserve keeps nothing.
/// forge-config: default.isolate = true
contract ReserveFuzzTest is ReserveTestBase {
    function _u96(uint256 x, uint256 min, uint256 max) internal pure returns (uint96) {
        return uint96(bound(x, min, max));
    }

    /// @dev Opens with `deposit` (freshly minted, so any uint96 fits) and tops up `extra`.
    function _openFunded(uint96 deposit, uint96 extra)
        internal
        returns (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid)
    {
        token.mint(payer, uint256(deposit) + extra);
        (d, cid) = _open(deposit, SALT, address(0), address(0));
        vm.prank(payer);
        reserve.topUp(d, extra);
    }

    function testFuzz_settleThenClose_conserves(
        uint256 depositSeed,
        uint256 extraSeed,
        uint256 settleSeed,
        uint256 voucherSeed,
        uint256 captureSeed
    ) public {
        uint96 deposit = _u96(depositSeed, 1, type(uint96).max);
        uint96 extra = _u96(extraSeed, 0, type(uint96).max - deposit);
        uint96 total = deposit + extra;
        uint96 settled = _u96(settleSeed, 0, total);
        uint96 capture = _u96(captureSeed, settled, total);
        uint96 voucher = _u96(voucherSeed, capture, type(uint96).max); // may exceed the deposit

        uint256 payerBefore = token.balanceOf(payer) + total; // counts the mint in _openFunded
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _openFunded(deposit, extra);
        assertEq(token.balanceOf(RESERVE), total, "reserve holds deposit + top-up");
        if (settled > 0) _settle(d, cid, settled);

        bytes memory sig = _sign(PAYER_KEY, cid, voucher);
        vm.prank(payee);
        reserve.close(d, voucher, capture, sig);

        assertEq(token.balanceOf(payee), capture, "paid to payee = capture");
        assertEq(token.balanceOf(payer), payerBefore - capture, "refunded = deposit - capture");
        assertEq(token.balanceOf(payee) + (token.balanceOf(payer) + total - payerBefore), total, "conserved");
        assertEq(token.balanceOf(RESERVE), 0, "reserve keeps nothing");
        assertEq(_rawState(cid), 0, "state deleted");
    }

    function testFuzz_settleThenWithdraw_conserves(uint256 depositSeed, uint256 extraSeed, uint256 settleSeed, uint256 waitSeed)
        public
    {
        uint96 deposit = _u96(depositSeed, 1, type(uint96).max);
        uint96 extra = _u96(extraSeed, 0, type(uint96).max - deposit);
        uint96 total = deposit + extra;
        uint96 settled = _u96(settleSeed, 0, total);

        uint256 payerBefore = token.balanceOf(payer) + total;
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _openFunded(deposit, extra);
        if (settled > 0) _settle(d, cid, settled);
        _requestClose(d);
        vm.warp(block.timestamp + bound(waitSeed, 900, 365 days));
        vm.prank(payer);
        reserve.withdraw(d);

        assertEq(token.balanceOf(payee), settled, "paid to payee = settled");
        assertEq(token.balanceOf(payer), payerBefore - settled, "refunded = deposit - settled");
        assertEq(token.balanceOf(RESERVE), 0, "reserve keeps nothing");
        assertEq(_rawState(cid), 0, "state deleted");
    }

    /// @dev Several settlements in increasing order: settled never exceeds deposit, never
    ///      decreases, and the payee's balance always equals it.
    function testFuzz_settlementsAreMonotoneAndBounded(uint96 depositSeed, uint96[4] memory steps) public {
        uint96 deposit = _u96(depositSeed, 1, type(uint96).max);
        (ITIP20ChannelReserve.ChannelDescriptor memory d, bytes32 cid) = _openFunded(deposit, 0);
        uint96 last = 0;
        for (uint256 i = 0; i < steps.length; ++i) {
            uint96 next = _u96(steps[i], 0, deposit);
            bytes memory sig = _sign(PAYER_KEY, cid, next);
            vm.prank(payee);
            if (next <= last) {
                vm.expectRevert(ITIP20ChannelReserve.AmountNotIncreasing.selector);
                reserve.settle(d, next, sig);
            } else {
                reserve.settle(d, next, sig);
                last = next;
            }
            ITIP20ChannelReserve.ChannelState memory s = _state(cid);
            assertEq(uint256(s.settled), last, "settled is the highest voucher");
            assertTrue(s.settled <= s.deposit, "settled <= deposit");
            assertEq(token.balanceOf(payee), last, "payee holds exactly settled");
        }
    }
}
